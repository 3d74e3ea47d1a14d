"""Probe (negative result, docs/beyond.md): refine per task by a test-time fit of the kernel scalars; prints latent MSE and 95% coverage, amortised vs refined.

Usage: python benchmarks/refine_scalars_probe.py MODEL.pt  (a transcription model, 5 outputs, 20-point mesh)."""
import time, torch, numpy as np
from dklfm_explore import simulate
from dklfm_explore.trained import load_model
from dklfm_explore.task_inputs import standardise_inputs
from dklfm_explore.refine import refined_posterior
from dklfm_explore.model.dklfm import DKLFM
import sys
m = load_model(sys.argv[1])
test = simulate("transcription", 20, n_points=20, seed=21)
inp = standardise_inputs(m, test)
f = m.normaliser.transform_f(test.f())
with torch.no_grad():
    p = m.module.posterior(inp.coords, inp.y)
t=time.perf_counter(); lm, lv, _, _ = refined_posterior(m.module, inp.coords, inp.y, inp.coords); el=time.perf_counter()-t
z = lambda mean, var: float(((f-mean).abs() <= 1.96*var.sqrt()*m.latent_std_scale).float().mean())
print("amortised mse", float((p.latent_mean-f).pow(2).mean()), "cov", z(p.latent_mean, p.latent_var))
print("refined mse", float((lm-f).pow(2).mean()), "cov", z(lm, lv), "s/task", el/20)
