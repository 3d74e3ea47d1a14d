"""Robustness of the default DKLFM: train N seeds per family from the simulator, count held-out latent MSE < 0.5.

Each seed trains as ``dklfm train SYSTEM --seed S`` does (fresh tasks from the system's default spec with seed S,
the default ModelConfig and TrainingConfig) but for a fixed number of optimiser steps instead of the CLI's
5 minutes, so that a shared CPU gives the same result as an idle one.  Every seed of a family is scored on
the same 64 held-out tasks (seed 999), latent MSE in standardised units (the prior-mean predictor scores ~1),
and its verdict is recorded.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.robustness --families transcription --seeds 0 1 2 3 --steps 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dklfm_explore.simulate import simulate
from dklfm_explore.spec import SimulationSpec
from dklfm_explore.train import TrainingConfig, latent_mse, prepare, train

MESHES = {"reaction-diffusion": {"grid": (11, 11)}}
THRESHOLD = 0.5
RESULTS = Path(__file__).parent / "results"


def run(families, seeds, steps: int, out: Path) -> dict:
    rows = []
    for family in families:
        mesh = MESHES.get(family, {})
        test = simulate(family, 64, seed=999, **mesh)
        for seed in seeds:
            started = time.perf_counter()
            model = train(SimulationSpec(system=family, seed=seed, **mesh), TrainingConfig(seed=seed, max_steps=steps))
            mse = latent_mse(model.module, prepare(test, model.normaliser, torch.device("cpu")))
            rows.append({"family": family, "seed": seed, "latent_mse": round(mse, 4), "learned": model.verdict.learned,
                         "validation_latent_mse": round(model.verdict.latent_mse, 4),
                         "coverage95": round(model.verdict.coverage95, 3),
                         "restarts": model.provenance.get("restarts", 0), "seconds": round(time.perf_counter() - started, 1)})
            print(json.dumps(rows[-1]), flush=True)
            out.write_text(json.dumps(rows, indent=1))
    summary = {}
    for family in families:
        values = [r["latent_mse"] for r in rows if r["family"] == family]
        summary[family] = {"below_0.5": sum(v < THRESHOLD for v in values), "seeds": len(values),
                           "learned": sum(r["learned"] for r in rows if r["family"] == family),
                           "restarts": sum(r.get("restarts", 0) for r in rows if r["family"] == family),
                           "min": min(values), "median": statistics.median(values), "max": max(values)}
    return {"steps_per_seed": steps, "rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["transcription", "transcription-linear", "lotka-volterra", "reaction-diffusion"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(8)))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--name", default="robustness", help="stem of the files written to benchmarks/results/")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    result = run(args.families, args.seeds, args.steps, RESULTS / f"{args.name}.partial.json")
    result["command"] = "python -m benchmarks.robustness " + " ".join(
        ["--families", *args.families, "--seeds", *map(str, args.seeds), "--steps", str(args.steps), "--name", args.name])
    (RESULTS / f"{args.name}.partial.json").unlink(missing_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Robustness of the defaults ({args.steps} steps per seed on fresh simulated tasks, 2 shared CPU cores)", "",
             f"Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD {result['command']}`", "",
             "| family | seeds with held-out latent MSE < 0.5 | verdict 'learned' | restarts | min | median | max |", "|---|---|---|---|---|---|---|"]
    for family, s in result["summary"].items():
        lines.append(f"| {family} | {s['below_0.5']} / {s['seeds']} | {s['learned']} / {s['seeds']} | {s['restarts']} | {s['min']:.3f} | {s['median']:.3f} | {s['max']:.3f} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
