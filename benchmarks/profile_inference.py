"""Where ``TrainedModel.infer`` spends its time: the bundled model on the benchmark's 20 transcription test tasks.

Profiles repeated calls of ``infer`` (after a warm-up) with cProfile and reports the cumulative time per call of the
parts that do not nest inside one another: the task embedding (FNO), the feature networks, the kernel's Gram
matrices, the Cholesky factorisations, the triangular solves, the result's xarray dataset and the out-of-distribution
score.  A second table times what a shortcut for queries on the observed mesh would need,
``diag((K + sigma^2 I)^-1)`` by ``torch.cholesky_inverse``, against the solve it would replace (``L^-1 K_yq`` with as
many right-hand sides as observed points), at the model's sizes.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.profile_inference
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
import warnings
from pathlib import Path

import torch

from dklfm_explore import load_pretrained, simulate
from dklfm_explore.bench.provenance import header
from dklfm_explore.bench.settings import TEST_SEED

RESULTS = Path(__file__).parent / "results"

def _parts() -> dict:
    """Profile rows: the functions, none of which calls another, whose cumulative time is reported."""
    from dklfm_explore import linalg, ood, result
    from dklfm_explore.model.embedding import TaskEmbedding
    from dklfm_explore.model.kernel import FeatureMap, _ScaledKernel

    return {
        "task embedding (FNO)": TaskEmbedding.forward,
        "feature networks": FeatureMap.forward,
        "kernel Gram matrices": _ScaledKernel.forward,
        "kernel diagonals": _ScaledKernel.diag,
        "Cholesky factorisations": linalg.cholesky,
        "triangular solves": linalg.solve_lower,
        "result dataset (xarray)": result.result_dataset,
        "out-of-distribution score": ood.annotate,
    }


def _cumulative_ms(stats: pstats.Stats, function, calls: int) -> float:
    """Cumulative ms of ``function`` per ``infer`` call."""
    code = function.__code__
    entry = stats.stats.get((code.co_filename, code.co_firstlineno, code.co_name))
    return 0.0 if entry is None else 1000 * entry[3] / calls


def _median_ms(function, repeats: int = 20) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def run(n_tasks: int, n_points: int, calls: int) -> dict:
    torch.set_num_threads(1)
    model = load_pretrained("transcription", device="cpu")
    tasks = simulate("transcription", n_tasks, n_points=n_points, seed=TEST_SEED)
    warnings.simplefilter("ignore")
    model.infer(tasks)
    wall_ms = _median_ms(lambda: model.infer(tasks), repeats=calls)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        model.infer(tasks)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = _cumulative_ms(stats, type(model).infer, calls)
    parts = {label: _cumulative_ms(stats, function, calls) for label, function in _parts().items()}

    n_observed = tasks.n_outputs * n_points
    generator = torch.Generator().manual_seed(0)
    square = torch.randn(n_tasks, n_observed, n_observed, generator=generator, dtype=torch.float64)
    factor = torch.linalg.cholesky(square @ square.mT + n_observed * torch.eye(n_observed, dtype=torch.float64))
    right = torch.randn(n_tasks, n_observed, n_observed, generator=generator, dtype=torch.float64)
    shortcut = {
        "solve L^-1 K_yq": _median_ms(lambda: torch.linalg.solve_triangular(factor, right, upper=False)),
        "cholesky_inverse (for its diagonal)": _median_ms(lambda: torch.cholesky_inverse(factor)),
    }
    return {"tasks": n_tasks, "points": n_points, "observed_per_task": n_observed, "calls": calls,
            "infer_wall_ms": wall_ms, "infer_profiled_ms": total, "parts_ms": parts, "shortcut_ms": shortcut}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--points", type=int, default=30)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    result = {"header": header(torch.device("cpu"), "benchmarks.profile_inference"), **run(args.tasks, args.points, args.calls)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inference_profile.json").write_text(json.dumps(result, indent=1))
    total = result["infer_profiled_ms"]
    lines = [f"# Where inference spends its time ({args.tasks} transcription tasks x {args.points} points, bundled model, 1 thread)", "",
             f"Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD {result['header']['command']}`; commit {result['header']['git_commit']}.", "",
             f"`infer` of all {args.tasks} tasks: median {result['infer_wall_ms']:.1f} ms unprofiled, {total:.1f} ms per call under cProfile.", "",
             "| part | ms per call (profiled) | share |", "|---|---|---|"]
    for label, value in result["parts_ms"].items():
        lines.append(f"| {label} | {value:.2f} | {value / total:.0%} |")
    covered = sum(result["parts_ms"].values())
    lines.append(f"| everything else (standardising, checks, indexing, Python) | {total - covered:.2f} | {(total - covered) / total:.0%} |")
    lines += ["", f"A shortcut for queries on the observed mesh ({result['observed_per_task']} observed points per task, {args.tasks} tasks, median ms):", "",
              "| operation | ms |", "|---|---|"]
    lines += [f"| {label} | {value:.2f} |" for label, value in result["shortcut_ms"].items()]
    (RESULTS / "inference_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
