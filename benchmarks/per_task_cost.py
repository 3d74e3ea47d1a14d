"""Cost and accuracy of the per-task LFM on the benchmark's ODE families, one configuration a run.

    OMP_NUM_THREADS=1 /usr/bin/time -v python -m benchmarks.per_task_cost lotka-volterra --points 16 --tasks 3 --iterations 20
    OMP_NUM_THREADS=1 /usr/bin/time -v python -m benchmarks.per_task_cost transcription --points 30 --tasks 20

``lotka-volterra`` is set up as the harness's extrapolation family: observed on [0, T], latent queried on
[0, 2T].  Prints one JSON line: seconds per task, peak RSS (MB, this process), latent MSE and 95% coverage
(latent divided by the test tasks' latent std), output MSE on the query grid against the noise-free outputs.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from dklfm_explore import get_system, simulate
from dklfm_explore.metrics import latent_metrics, output_metrics
from dklfm_explore.model.baselines import per_task_posterior


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=("lotka-volterra", "transcription", "transcription-linear"))
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    system = get_system(args.family)
    points = args.points or system.default_points
    if args.family == "lotka-volterra":
        start, end = system.time_range
        full = simulate(system, args.tasks, n_points=2 * points - 1, t_range=(start, 2 * end - start), seed=args.seed)
        observed, query = full.window(t_max=end), {"time": full.dataset["time"].values}
    else:
        full = simulate(system, args.tasks, n_points=points, seed=args.seed)
        observed, query = full, {}
    started = time.perf_counter()
    result = per_task_posterior(observed, iterations=args.iterations, threads=args.threads, **query)
    seconds = time.perf_counter() - started
    reduce = [d for d in full.dataset["y_clean"].dims if d != "output"]
    row = {
        "family": args.family, "points": points, "tasks": args.tasks, "iterations": args.iterations, "seed": args.seed,
        "s_per_task": seconds / args.tasks,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **latent_metrics(result, full.dataset["f"], float(full.dataset["f"].std())),
        **output_metrics(result, full.dataset["y_clean"], full.dataset["y_clean"].std(reduce).values),
        "solver_steps": result.attrs.get("solver_steps"),
    }
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
