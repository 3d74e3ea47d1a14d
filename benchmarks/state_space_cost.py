"""Cost of the state-space LFM against the number of time points (linear), beside the exact LFM (cubic).

    OMP_NUM_THREADS=1 python -m benchmarks.state_space_cost [--points 25,50,100,200] [--tasks 5]

Linear transcription, true kinetics, no hyperparameter fit (one filter + smoother pass, substep 0.375 h)
against ``exact_posterior`` on the same tasks.  Writes ``benchmarks/results/state_space_cost.json``.
"""

from __future__ import annotations

import argparse
import time

from dklfm_explore import resolve_device, simulate
from dklfm_explore.model.baselines import exact_posterior, state_space_posterior

from benchmarks.provenance import header, write_json

KINETICS = ("basal_rate", "sensitivity", "decay_rate")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="25,50,100,200")
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args(argv)
    device = resolve_device("cpu")
    rows = []
    for points in (int(p) for p in args.points.split(",")):
        tasks = simulate("transcription-linear", args.tasks, n_points=points, seed=1)
        truth = {name: tasks.dataset[name].values for name in KINETICS}
        started = time.perf_counter()
        state_space_posterior(tasks, fit=False, parameters=truth, force_lengthscale=tasks.dataset["force_lengthscale"].values)
        filter_s = time.perf_counter() - started
        started = time.perf_counter()
        exact_posterior(tasks)
        exact_s = time.perf_counter() - started
        rows.append({"points": points, "tasks": args.tasks, "state_space_s": round(filter_s, 3), "exact_s": round(exact_s, 3),
                     "state_space_ms_per_point": round(1000 * filter_s / points, 2)})
        print(rows[-1], flush=True)
    payload = {"header": header(device, module="benchmarks.state_space_cost", benchmark="state_space_cost"), "rows": rows}
    write_json("state_space_cost.json", payload)
    return payload


if __name__ == "__main__":
    main()
