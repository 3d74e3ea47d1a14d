"""How close the phase input's period estimate comes to each task's true period, on Lotka-Volterra prey.

:func:`~dklfm_explore.model.period.estimate_periods` on ``--tasks`` simulated Lotka-Volterra tasks (the
system's defaults: 60 points on 0-30, noise 0.1 of the prey's spread), from the noisy and from the
noise-free prey, against the force period each task was drawn with (the prey cycles with the predator's
period).  Searched as a model searches it: bounded by the 5th-95th percentile periods estimated on
``--training-tasks`` other tasks (seed 0), widened by ``PERIOD_BOUND_MARGIN`` (``train.fit_period_bounds``);
and unbounded, from four sample spacings to the span.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.period_accuracy
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dklfm_explore import simulate
from dklfm_explore.bench.provenance import header
from dklfm_explore.model.period import estimate_periods
from dklfm_explore.train import PERIOD_BOUND_MARGIN

RESULTS = Path(__file__).parent / "results"
TEST_SEED, TRAINING_SEED = 1, 0
ALIAS = 0.05
"""Relative error above which an estimate counts as a wrong cycle (half or twice the period lie 50% / 100% off)."""


def _prey(tasks, variable: str) -> torch.Tensor:
    return torch.tensor(tasks.dataset[variable].values, dtype=torch.float64)


def training_bounds(n_tasks: int) -> tuple[float, float]:
    """The bounds ``train`` sets for a phase model trained on ``n_tasks`` Lotka-Volterra tasks (seed 0)."""
    tasks = simulate("lotka-volterra", n_tasks, seed=TRAINING_SEED)
    periods = estimate_periods(torch.tensor(tasks.dataset["time"].values), _prey(tasks, "y"))
    low, high = torch.quantile(periods, torch.tensor([0.05, 0.95], dtype=periods.dtype)).tolist()
    return low / PERIOD_BOUND_MARGIN, high * PERIOD_BOUND_MARGIN


def run(n_tasks: int, n_training_tasks: int) -> dict:
    torch.set_num_threads(1)
    tasks = simulate("lotka-volterra", n_tasks, seed=TEST_SEED)
    times = torch.tensor(tasks.dataset["time"].values)
    truth = tasks.dataset["force_period"].values
    bounds = training_bounds(n_training_tasks)
    rows = []
    for search, limits in (("bounded by the training tasks' periods", bounds), ("unbounded", None)):
        for variable, label in (("y", "noisy"), ("y_clean", "noise-free")):
            start = time.process_time()
            estimate = estimate_periods(times, _prey(tasks, variable), limits).numpy()
            elapsed = time.process_time() - start
            error = np.abs(estimate / truth - 1)
            rows.append({"search": search, "prey": label, "median": float(np.median(error)),
                         "p90": float(np.quantile(error, 0.9)), "max": float(error.max()),
                         "wrong_cycle": float((error > ALIAS).mean()), "cpu_ms_per_task": 1000 * elapsed / n_tasks})
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "bounds": list(bounds), "true_period_range": [float(truth.min()), float(truth.max())]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--training-tasks", type=int, default=256)
    args = parser.parse_args()
    result = run(args.tasks, args.training_tasks)
    command = (f"OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.period_accuracy --tasks {args.tasks} "
               f"--training-tasks {args.training_tasks}")
    payload = {"header": header(torch.device("cpu"), command=command), "tasks": args.tasks,
               "training_tasks": args.training_tasks, **result}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "period_accuracy.json").write_text(json.dumps(payload, indent=1) + "\n")
    low, high = result["bounds"]
    lines = [f"# Period estimate on Lotka-Volterra prey ({args.tasks} tasks, seed {TEST_SEED}, 60 points on 0-30)", "",
             f"Command: `{command}`", "",
             f"Relative error |estimate / true period - 1|; true periods {result['true_period_range'][0]:.2f}-"
             f"{result['true_period_range'][1]:.2f}; bounds from {args.training_tasks} training tasks: {low:.2f}-{high:.2f}.", "",
             f"| search | prey | median | 90th percentile | max | off by more than {ALIAS:.0%} | CPU ms/task |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['search']} | {r['prey']} | {r['median']:.2%} | {r['p90']:.2%} | {r['max']:.2%} | {r['wrong_cycle']:.1%} | "
              f"{r['cpu_ms_per_task']:.1f} |" for r in result["rows"]]
    (RESULTS / "period_accuracy.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
