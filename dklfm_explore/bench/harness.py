"""The benchmark: DKLFM side by side with its peers on the same tasks, in one run.

    dklfm bench [--quick] [--families transcription,...] [--device cuda] [--out-dir DIR]
    python -m dklfm_explore.bench ...        # the same; python -m benchmarks.harness from a checkout too

Families:
  transcription            softplus transcription, 5 genes: DKLFM trained on fresh simulated tasks (8 min) vs a
                           neural process trained on as many tasks of the same simulator in the same budget, and
                           the per-task and state-space LFMs, 20 test tasks
  transcription-linear     the same with G = identity, plus the exact LFM with the true parameters
  reaction-diffusion       DKLFM trained on fresh tasks on 21x21; 20 test tasks observed on 21x21, latent
                           inferred on 40x40 (super-resolution); the neural process and the exact LFM on the same
  lotka-volterra-extrapolation  trained on [0, T]; the latent over [0, 2T] inferred from outputs on [0, T] and
                           scored on [T, 2T] (the extrapolation alone); the neural process, per-task and
                           state-space LFMs on the same
  paper-protocol           the paper's Table 1 as the authors' code simulated it (PROTOCOL.md 1.1): 256 noise-free
                           tasks on 10 times, 9 condition, MSE in the data's units; DKLFM and per-task LFM
  learning-curve           test latent MSE of DKLFM against the number of fixed training tasks (32 ... 1024),
                           then fresh tasks at every step, each in the same wall-clock budget

Metrics (except paper-protocol's, in the data's units as the paper reports them) are in standardised units: each test task's latent (outputs) divided by the *training set's*
latent (per-output) standard deviation; outputs are scored against the noise-free simulation.
Writes benchmarks/results/latest.json (+ a dated copy) and latest.md; --quick writes quick.json / quick.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..data import TaskSet
from ..devices import resolve_device
from ..metrics import latent_metrics, output_metrics
from ..runtime import tune_allocator
from ..simulate import simulate
from ..systems import get_system
from . import methods
from .paper_protocol import N_POINTS, PAPER_REFERENCE, PaperTranscription, conditioning_times
from .provenance import RESULTS, header
from .report import check_targets, render_markdown
from .settings import FAMILIES, ROW_KEYS, TEST_SEED, TRAIN_SEED, Settings

__all__ = ["FAMILIES", "ROW_KEYS", "Settings", "main", "score", "run_ode_family", "run_reaction_diffusion",
           "run_lotka_volterra", "run_paper_protocol", "scored_from", "run_learning_curve", "TRAIN_SEED", "TEST_SEED"]


def score(family, method, result, truth: TaskSet, scales, n_train, device, train_s=None, infer_s=None, peak=None,
          latent_truth=None) -> dict:
    """One row of the record (keys :data:`ROW_KEYS`): ``result`` scored against ``truth`` in ``scales``' units."""
    latent_scale, output_scale = scales
    latent = latent_metrics(result, latent_truth if latent_truth is not None else truth.dataset["f"], latent_scale)
    row = {"family": family, "method": method, "n_train": n_train, "n_test": truth.n_tasks,
           **latent, "output_mse": None, "infer_ms_per_instance": None if infer_s is None else 1000 * infer_s / truth.n_tasks,
           "train_s": train_s, "peak_mem_mb": peak, "device": str(device)}
    if "output_mean" in result and result["output_mean"].shape == truth.dataset["y_clean"].shape:
        row.update(output_metrics(result, truth.dataset["y_clean"], output_scale))
    return {key: row[key] for key in ROW_KEYS}


def _training_source(train_tasks: TaskSet, settings: Settings):
    """What DKLFM trains on: fresh tasks from the spec that made ``train_tasks`` (``settings.stream``), or ``train_tasks``."""
    return train_tasks.spec if settings.stream else train_tasks


def _dklfm_row(family, train_tasks, observed, truth, scales, settings, device, timings, with_model=False, **query):
    model, train_s, train_mem = methods.train_dklfm(_training_source(train_tasks, settings), settings, device)
    result, batched_s, single_s, infer_mem = methods.infer_dklfm(model, observed, device, **query)
    timings[f"{family}/dklfm"] = {"batched_ms": 1000 * batched_s / observed.n_tasks, "one_at_a_time_ms": 1000 * single_s}
    row = score(family, "dklfm", result, truth, scales, methods.tasks_trained_on(model), device, train_s, batched_s,
                max(train_mem, infer_mem))
    return (row, model, result, batched_s) if with_model else row


def _refined_row(family, model, amortised, first_s, n_train, observed, truth, scales, device, timings, **query) -> dict:
    """``dklfm-refined``: the first answer refined per task; its time is the first answer's plus the refinement's."""
    result, seconds, memory = methods.refine_dklfm(model, observed, amortised, device, **query)
    timings[f"{family}/dklfm-refined"] = {"batched_ms": 1000 * (first_s + seconds) / observed.n_tasks,
                                          "first_answer_ms": 1000 * first_s / observed.n_tasks}
    return score(family, "dklfm-refined", result, truth, scales, n_train, device, None, first_s + seconds, memory)


def _per_task_row(family, observed, truth, scales, settings, device, timings, **query) -> dict:
    result, seconds, memory = methods.per_task(observed, settings, device, **query)
    timings[f"{family}/per-task-lfm"] = {"batched_ms": 1000 * seconds / observed.n_tasks}
    return score(family, "per-task-lfm", result, truth, scales, 0, device, None, seconds, memory)


def _state_space_row(family, observed, truth, scales, settings, device, timings, **query) -> dict:
    result, seconds, memory = methods.state_space(observed, settings, device, **query)
    timings[f"{family}/state-space-lfm"] = {"batched_ms": 1000 * seconds / observed.n_tasks}
    return score(family, "state-space-lfm", result, truth, scales, 0, device, None, seconds, memory)


def _neural_process_row(family, train_tasks, observed, truth, scales, settings, device, timings, dklfm_tasks, **query) -> dict:
    """The neural process trained on the same simulator as DKLFM: as many fresh tasks as DKLFM saw (``settings.stream``), or its task set."""
    if settings.stream:
        train_tasks = simulate(train_tasks.spec, max(int(dklfm_tasks), 1), device=device)
    result, train_s, steps, batched_s, single_s, memory = methods.neural_process(train_tasks, observed, settings, device, **query)
    timings[f"{family}/neural-process"] = {"batched_ms": 1000 * batched_s / observed.n_tasks, "one_at_a_time_ms": 1000 * single_s,
                                           "train_steps": steps}
    return score(family, "neural-process", result, truth, scales, train_tasks.n_tasks, device, train_s, batched_s, memory)


def _absent(family, method, reason, timings) -> None:
    timings[f"{family}/{method}"] = {"absent": reason}
    print(f"{family}: no {method} row: {reason}", flush=True)


def _exact_row(family, observed, truth, scales, device, timings, **query) -> dict:
    result, seconds, memory = methods.exact(observed, device, **query)
    timings[f"{family}/exact-lfm"] = {"batched_ms": 1000 * seconds / observed.n_tasks}
    return score(family, "exact-lfm", result, truth, scales, 0, device, None, seconds, memory)


def run_ode_family(family: str, settings: Settings, device, timings: dict) -> list[dict]:
    """Transcription (softplus or linear): DKLFM vs per-task LFM (and the exact LFM for the linear system)."""
    train_tasks = simulate(family, settings.n_train, n_points=settings.n_points, seed=TRAIN_SEED, device=device)
    test_tasks = simulate(family, settings.n_test, n_points=settings.n_points, seed=TEST_SEED, device=device)
    scales = methods.scales(train_tasks)
    dklfm, model, amortised, first_s = _dklfm_row(family, train_tasks, test_tasks, test_tasks, scales, settings, device, timings,
                                                  with_model=True)
    if family == "transcription":
        timings["transcription/throughput"] = methods.throughput(model, settings, device)
    rows = [dklfm, _refined_row(family, model, amortised, first_s, dklfm["n_train"], test_tasks, test_tasks, scales, device, timings),
            _neural_process_row(family, train_tasks, test_tasks, test_tasks, scales, settings, device, timings, dklfm["n_train"]),
            _per_task_row(family, test_tasks, test_tasks, scales, settings, device, timings),
            _state_space_row(family, test_tasks, test_tasks, scales, settings, device, timings)]
    if family == "transcription-linear":
        rows.append(_exact_row(family, test_tasks, test_tasks, scales, device, timings))
    return rows


def run_reaction_diffusion(settings: Settings, device, timings: dict) -> list[dict]:
    """Train on the coarse grid; observe test tasks on it and infer the latent on the fine grid."""
    family = "reaction-diffusion"
    train_tasks = simulate(family, settings.n_train_rd, grid=settings.rd_train_grid, seed=TRAIN_SEED, device=device)
    coarse_x, coarse_t = (np.linspace(0, 1, n) for n in settings.rd_train_grid)
    fine_x, fine_t = (np.linspace(0, 1, n) for n in settings.rd_test_grid)
    test_union = simulate(family, settings.n_test, space=np.union1d(coarse_x, fine_x), time=np.union1d(coarse_t, fine_t),
                          seed=TEST_SEED, device=device)
    observed = test_union.select_mesh(time=coarse_t, space=coarse_x)
    fine = test_union.select_mesh(time=fine_t, space=fine_x)
    scales = methods.scales(train_tasks)
    query = {"space": fine.dataset["space"].values, "time": fine.dataset["time"].values}
    _absent(family, "state-space-lfm", "the state-space LFM covers ODE systems; reaction-diffusion is a PDE", timings)
    dklfm = _dklfm_row(family, train_tasks, observed, fine, scales, settings, device, timings, **query)
    return [dklfm, _neural_process_row(family, train_tasks, observed, fine, scales, settings, device, timings, dklfm["n_train"], **query),
            _exact_row(family, observed, fine, scales, device, timings, **query)]


def run_lotka_volterra(settings: Settings, device, timings: dict) -> list[dict]:
    """Train on [0, T]; infer the predator over [0, 2T] from the prey on [0, T] (and, for reference, on [0, 2T])."""
    family = "lotka-volterra-extrapolation"
    system = get_system("lotka-volterra")
    start, end = system.time_range
    span = end - start
    train_tasks = simulate(system, settings.n_train, n_points=settings.lv_points, seed=TRAIN_SEED, device=device)
    test_full = simulate(system, settings.n_test, n_points=2 * settings.lv_points - 1, t_range=(start, start + 2 * span),
                         seed=TEST_SEED, device=device)
    observed = test_full.window(t_max=end)
    scales = methods.scales(train_tasks)
    query = {"time": test_full.dataset["time"].values}
    model, train_s, train_mem = methods.train_dklfm(_training_source(train_tasks, settings), settings, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, batched_s, single_s, infer_mem = methods.infer_dklfm(model, observed, device, **query)
        full_result = model.infer(test_full)
    beyond = scored_from(test_full, end)
    rows = [score(family, "dklfm", result, beyond, scales, methods.tasks_trained_on(model), device, train_s, batched_s,
                  max(train_mem, infer_mem))]
    timings[f"{family}/dklfm"] = {"batched_ms": 1000 * batched_s / observed.n_tasks, "one_at_a_time_ms": 1000 * single_s}
    timings[f"{family}/dklfm-scored-on-0-2T"] = latent_metrics(result, test_full.dataset["f"], scales[0])
    timings[f"{family}/dklfm-observed-on-0-2T"] = latent_metrics(full_result, test_full.dataset["f"], scales[0])
    rows.append(_neural_process_row(family, train_tasks, observed, beyond, scales, settings, device, timings, rows[0]["n_train"], **query))
    rows.append(_per_task_row(family, observed, beyond, scales, settings, device, timings, **query))
    rows.append(_state_space_row(family, observed, beyond, scales, settings, device, timings, **query))
    return rows


def scored_from(tasks: TaskSet, t_min: float) -> TaskSet:
    """``tasks`` with the truth (``f``, ``y_clean``) hidden (NaN) before ``t_min``: scores count ``[t_min, end]`` only."""
    dataset = tasks.dataset.copy()
    before = dataset["time"] < t_min
    for name in ("f", "y_clean"):
        dataset[name] = dataset[name].where(~before)
    return TaskSet(dataset)


def run_paper_protocol(settings: Settings, device, timings: dict) -> list[dict]:
    """The paper's Table 1 protocol: 256 noise-free tasks on 10 times, 9 condition, MSE in the data's own units."""
    family = "paper-protocol"
    system = PaperTranscription()
    train_tasks = simulate(system, settings.n_train_paper, n_points=N_POINTS, noise_level=0.0, seed=TRAIN_SEED, device=device)
    test_tasks = simulate(system, settings.n_test, n_points=N_POINTS, noise_level=0.0, seed=TEST_SEED, device=device)
    observed = test_tasks.select_mesh(time=conditioning_times(test_tasks.dataset["time"].values))
    raw_units = (1.0, np.ones(test_tasks.n_outputs))
    query = {"time": test_tasks.dataset["time"].values}
    timings[f"{family}/paper-table-1"] = {f"{method}_{key}": value for method, values in PAPER_REFERENCE.items()
                                          for key, value in values.items()}
    fixed = dataclasses.replace(settings, stream=False)
    return [_dklfm_row(family, train_tasks, observed, test_tasks, raw_units, fixed, device, timings, **query),
            _per_task_row(family, observed, test_tasks, raw_units, settings, device, timings, **query)]


def run_learning_curve(settings: Settings, device) -> list[dict]:
    """Test latent MSE of DKLFM on the same test tasks for growing fixed training sets (the paper's Figure 5),
    then for fresh simulated tasks at every step within the same wall-clock budget."""
    largest = max(settings.learning_curve)
    pool = simulate("transcription", largest, n_points=settings.n_points, seed=TRAIN_SEED, device=device)
    test_tasks = simulate("transcription", settings.n_test, n_points=settings.n_points, seed=TEST_SEED, device=device)
    points = []
    for size in settings.learning_curve:
        train_tasks = pool.isel(slice(0, size))
        model, train_s, _ = methods.train_dklfm(train_tasks, settings, device, seconds=settings.learning_curve_seconds)
        result = model.infer(test_tasks)
        scores = latent_metrics(result, test_tasks.dataset["f"], methods.scales(train_tasks)[0])
        points.append({"n_train": size, "latent_mse": scores["latent_mse"], "coverage95": scores["coverage95"], "train_s": train_s})
    model, train_s, _ = methods.train_dklfm(pool.spec, settings, device, seconds=settings.learning_curve_seconds)
    scores = latent_metrics(model.infer(test_tasks), test_tasks.dataset["f"], methods.scales(pool)[0])
    points.append({"n_train": methods.tasks_trained_on(model), "latent_mse": scores["latent_mse"],
                   "coverage95": scores["coverage95"], "train_s": train_s, "streamed": True})
    return points


RUNNERS = {
    "transcription": lambda settings, device, timings: run_ode_family("transcription", settings, device, timings),
    "transcription-linear": lambda settings, device, timings: run_ode_family("transcription-linear", settings, device, timings),
    "reaction-diffusion": run_reaction_diffusion,
    "lotka-volterra-extrapolation": run_lotka_volterra,
    "paper-protocol": run_paper_protocol,
}
"""Family name -> ``runner(settings, device, timings) -> rows``."""


def main(argv=None, prog: str = "dklfm bench") -> dict:
    """Run the chosen families, write the record and its table, print the table; return the record."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description="DKLFM vs its peers on the same tasks, in one run.")
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke run (writes quick.json, not latest.json)")
    parser.add_argument("--families", default=",".join(FAMILIES) + ",learning-curve",
                        help="comma-separated subset of: " + ", ".join(FAMILIES) + ", learning-curve")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    tune_allocator()
    settings = Settings.quick_settings() if args.quick else Settings()
    device = resolve_device(args.device)
    chosen = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = set(chosen) - set(FAMILIES) - {"learning-curve"}
    if unknown:
        parser.error(f"unknown families {sorted(unknown)}; choose from {', '.join(FAMILIES)}, learning-curve")
    run_header = header(device, command=" ".join([prog, *map(shlex.quote, argv)]), quick=settings.quick,
                        settings=dataclasses.asdict(settings))
    rows, timings, curve = [], {}, []
    for family in chosen:
        started = time.perf_counter()
        if family == "learning-curve":
            curve = run_learning_curve(settings, device)
        else:
            rows += RUNNERS[family](settings, device, timings)
        print(f"{family}: done in {time.perf_counter() - started:.0f} s", flush=True)
    noise = {name: get_system(name).noise_level for name in ("transcription", "transcription-linear", "reaction-diffusion", "lotka-volterra")}
    payload = {
        "header": {**run_header, "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "noise": "simulator default: noise std = noise_level x each output's std across tasks; " + json.dumps(noise),
                   "units": "standardised: latent / training-set latent std; outputs / training-set per-output std, vs noise-free outputs"},
        "rows": rows,
        "timings": timings,
        "learning_curve": curve,
    }
    payload["targets"] = check_targets(rows, curve)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "quick" if settings.quick else "latest"
    (args.out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(render_markdown(payload))
    if not settings.quick:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
        (args.out_dir / f"{stamp}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(render_markdown(payload))
    return payload
