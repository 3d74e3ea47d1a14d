"""Robustness of the default DKLFM: train N seeds per family, count held-out latent MSE < 0.5, report the spread.

Each seed simulates its own training tasks (seed S) and trains with the default ModelConfig/TrainingConfig
and a wall-clock budget; every seed is scored on the same 64 held-out tasks (seed 999), latent MSE in
standardised units (the prior-mean predictor scores ~1).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.robustness --families transcription --seeds 0 1 2 3 --seconds 40
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from dklfm_explore.simulate import simulate
from dklfm_explore.train import TrainingConfig, latent_mse, prepare, train

MESHES = {"reaction-diffusion": {"grid": (11, 11)}}
THRESHOLD = 0.5
RESULTS = Path(__file__).parent / "results"


def run(families, seeds, seconds: float, n_tasks: int) -> dict:
    rows = []
    for family in families:
        mesh = MESHES.get(family, {})
        test = simulate(family, 64, seed=999, **mesh)
        for seed in seeds:
            model = train(simulate(family, n_tasks, seed=seed, **mesh), TrainingConfig(seed=seed, max_seconds=seconds))
            mse = latent_mse(model.module, prepare(test, model.normaliser, torch.device("cpu")))
            rows.append({"family": family, "seed": seed, "latent_mse": round(mse, 4)})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for family in families:
        values = [r["latent_mse"] for r in rows if r["family"] == family]
        summary[family] = {"below_0.5": sum(v < THRESHOLD for v in values), "seeds": len(values),
                           "min": min(values), "median": statistics.median(values), "max": max(values)}
    return {"seconds_per_seed": seconds, "n_tasks": n_tasks, "rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["transcription", "transcription-linear", "lotka-volterra", "reaction-diffusion"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(8)))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tasks", type=int, default=256)
    args = parser.parse_args()
    result = run(args.families, args.seeds, args.seconds, args.tasks)
    result["command"] = "python -m benchmarks.robustness " + " ".join(
        ["--families", *args.families, "--seeds", *map(str, args.seeds), "--seconds", f"{args.seconds:g}", "--tasks", str(args.tasks)])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "robustness.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Robustness of the defaults ({args.seconds:g} s per seed, {args.tasks} tasks, 2 shared CPU cores)", "",
             f"Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD {result['command']}`", "",
             "| family | seeds with held-out latent MSE < 0.5 | min | median | max |", "|---|---|---|---|---|"]
    for family, s in result["summary"].items():
        lines.append(f"| {family} | {s['below_0.5']} / {s['seeds']} | {s['min']:.3f} | {s['median']:.3f} | {s['max']:.3f} |")
    (RESULTS / "robustness.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
