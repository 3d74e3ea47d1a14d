"""One DKLFM variant trained from the simulator for a fixed time, scored on its validation tasks and the benchmark's test tasks.

``python -m benchmarks.kernel_variants --family reaction-diffusion --seconds 360 --model '{"linear_features": 0}'``
appends one JSON line to ``benchmarks/results/kernel_variants.jsonl``: steps, the verdict's validation latent MSE and
coverage, and the latent MSE on the test tasks of ``python -m dklfm_explore.bench`` for that family (same seeds,
meshes and units: reaction-diffusion observed on 21x21 and inferred on 40x40 and on 21x21; Lotka-Volterra observed
on [0, T] and inferred over [0, 2T], scored on [T, 2T] as the benchmark does and on [0, 2T]).  Run one at a time per core with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from dklfm_explore.bench import methods
from dklfm_explore.bench.harness import scored_from
from dklfm_explore.bench.settings import TEST_SEED, TRAIN_SEED, Settings
from dklfm_explore.metrics import latent_metrics
from dklfm_explore.model.dklfm import ModelConfig
from dklfm_explore.simulate import SimulationSpec, simulate
from dklfm_explore.systems import get_system
from dklfm_explore.train import TrainingConfig, train

RECORD = Path(__file__).parent / "results" / "kernel_variants.jsonl"


def test_scores(model, family: str, settings: Settings) -> dict:
    """Latent metrics of ``model`` on the benchmark's test tasks of ``family``, in its units."""
    if family == "reaction-diffusion":
        train_tasks = simulate(family, settings.n_train_rd, grid=settings.rd_train_grid, seed=TRAIN_SEED)
        coarse_x, coarse_t = (np.linspace(0, 1, n) for n in settings.rd_train_grid)
        fine_x, fine_t = (np.linspace(0, 1, n) for n in settings.rd_test_grid)
        union = simulate(family, settings.n_test, space=np.union1d(coarse_x, fine_x), time=np.union1d(coarse_t, fine_t), seed=TEST_SEED)
        observed, fine = union.select_mesh(time=coarse_t, space=coarse_x), union.select_mesh(time=fine_t, space=fine_x)
        scale = methods.scales(train_tasks)[0]
        return {"test_fine": latent_metrics(model.infer(observed, space=fine.dataset["space"].values, time=fine.dataset["time"].values),
                                            fine.dataset["f"], scale),
                "test_coarse": latent_metrics(model.infer(observed), observed.dataset["f"], scale)}
    if family == "lotka-volterra":
        system = get_system(family)
        start, end = system.time_range
        train_tasks = simulate(system, settings.n_train, n_points=settings.lv_points, seed=TRAIN_SEED)
        full = simulate(system, settings.n_test, n_points=2 * settings.lv_points - 1, t_range=(start, 2 * end - start), seed=TEST_SEED)
        observed = full.window(t_max=end)
        scale = methods.scales(train_tasks)[0]
        extrapolated = model.infer(observed, time=full.dataset["time"].values)
        return {"test_T_2T": latent_metrics(extrapolated, scored_from(full, end).dataset["f"], scale),
                "test_0_2T": latent_metrics(extrapolated, full.dataset["f"], scale),
                "test_0_T": latent_metrics(model.infer(observed), observed.dataset["f"], scale)}
    train_tasks = simulate(family, settings.n_train, n_points=settings.n_points, seed=TRAIN_SEED)
    test = simulate(family, settings.n_test, n_points=settings.n_points, seed=TEST_SEED)
    return {"test": latent_metrics(model.infer(test), test.dataset["f"], methods.scales(train_tasks)[0])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="transcription")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="{}", help="ModelConfig fields as JSON")
    parser.add_argument("--train", default="{}", help="TrainingConfig fields as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model_fields, train_fields = json.loads(args.model), json.loads(args.train)
    started = time.time()
    model = train(SimulationSpec(system=args.family, seed=args.seed),
                  TrainingConfig(seed=args.seed, max_seconds=args.seconds, **train_fields), model_config=ModelConfig(**model_fields))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = test_scores(model, args.family, Settings())
    verdict = model.verdict
    line = {"family": args.family, "seed": args.seed, "seconds": args.seconds, "model": model_fields, "train": train_fields,
            "steps": model.provenance.get("steps"), "validation_latent_mse": verdict.latent_mse, "validation_prior_mse": verdict.prior_mse,
            "validation_coverage95": verdict.coverage95, **scores, "wall_s": round(time.time() - started, 1)}
    print(json.dumps(line))
    with RECORD.open("a") as record:
        record.write(json.dumps(line) + "\n")
    return line


if __name__ == "__main__":
    main()
