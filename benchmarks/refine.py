"""Refining per task: the first answer, the refined one and the per-task LFM from the prior on the same test tasks.

Uses the bundled pretrained transcription model and the benchmark's transcription test tasks (seed 1, 30 points,
5 genes); latent MSE in the benchmark's units (divided by the training set's latent std, seed 0, 256 tasks).
Times per task, batched over the tasks, both wall-clock and process CPU (the CPU time is the one to compare on a
shared machine: wall-clock there counts other users' work), after a warm-up of each method.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.refine --tasks 20
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

from dklfm_explore import load_pretrained, simulate
from dklfm_explore.bench.provenance import header
from dklfm_explore.bench.settings import TEST_SEED, TRAIN_SEED
from dklfm_explore.metrics import latent_metrics
from dklfm_explore.model.baselines import per_task_posterior
from dklfm_explore.refine import refine

RESULTS = Path(__file__).parent / "results"


def _timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def run(n_tasks: int, n_points: int) -> list[dict]:
    torch.set_num_threads(1)
    model = load_pretrained("transcription", device="cpu")
    scale = float(simulate("transcription", 256, n_points=n_points, seed=TRAIN_SEED).dataset["f"].std())
    tasks = simulate("transcription", n_tasks, n_points=n_points, seed=TEST_SEED)
    warm = tasks.isel([0])
    refine(model, warm, iterations=1, gauss_newton_steps=1, n_samples=4)
    per_task_posterior(warm, iterations=1, n_samples=4)
    first, first_wall, first_cpu = _timed(lambda: model.infer(tasks))
    refined, refine_wall, refine_cpu = _timed(lambda: refine(model, tasks, first))
    scratch, scratch_wall, scratch_cpu = _timed(lambda: per_task_posterior(tasks))
    rows = []
    for method, result, wall, cpu in (("dklfm", first, first_wall, first_cpu),
                                      ("dklfm-refined", refined, first_wall + refine_wall, first_cpu + refine_cpu),
                                      ("per-task-lfm", scratch, scratch_wall, scratch_cpu)):
        rows.append({"method": method, **latent_metrics(result, tasks.dataset["f"], scale),
                     "wall_ms_per_task": 1000 * wall / n_tasks, "cpu_ms_per_task": 1000 * cpu / n_tasks})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--points", type=int, default=30)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run(args.tasks, args.points)
    command = f"OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.refine --tasks {args.tasks} --points {args.points}"
    by = {row["method"]: row for row in rows}
    speedup = {kind: by["per-task-lfm"][f"{kind}_ms_per_task"] / by["dklfm-refined"][f"{kind}_ms_per_task"] for kind in ("cpu", "wall")}
    payload = {"header": header(torch.device("cpu"), command=command), "rows": rows, "speedup_over_per_task": speedup}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "refine.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [f"# Refining per task ({args.tasks} transcription test tasks, pretrained model, 1 thread on a shared CPU)", "",
             f"Command: `{command}`", "",
             "| method | latent MSE | 95% coverage | NLPD | CPU ms/task | wall ms/task |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['latent_mse']:.4f} | {r['coverage95']:.3f} | {r['nlpd']:.3f} | {r['cpu_ms_per_task']:.1f} | "
              f"{r['wall_ms_per_task']:.1f} |" for r in rows]
    lines += ["", f"dklfm-refined's time includes the first answer. Per-task LFM from the prior / dklfm-refined: "
              f"{speedup['cpu']:.1f}x CPU time, {speedup['wall']:.1f}x wall-clock."]
    (RESULTS / "refine.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
