"""The benchmark: DKLFM side by side with the per-task LFM and the exact linear LFM, on the same tasks, in one run.

    python -m benchmarks.harness            # full settings (CPU: about an hour)
    python -m benchmarks.harness --quick    # smoke run used by the test suite (never overwrites latest.json)
    dklfm bench [--quick] [--families transcription,...] [--device cuda]

Families (issue 5):
  transcription            softplus transcription, 5 genes: DKLFM on 256 tasks vs per-task LFM, 20 test tasks
  transcription-linear     the same with G = identity, plus the exact LFM with the true parameters
  reaction-diffusion       DKLFM trained on 500 tasks on 21x21; 20 test tasks observed on 21x21, latent
                           inferred on 40x40 (super-resolution); exact LFM on the same
  lotka-volterra-extrapolation  trained on [0, T]; the latent over [0, 2T] inferred from outputs on [0, T]
  learning curve           test latent MSE of DKLFM against the number of training tasks (32 ... 1024)

Metrics are in standardised units: each test task's latent (outputs) divided by the *training set's*
latent (per-output) standard deviation; outputs are scored against the noise-free simulation.
Writes benchmarks/results/latest.json (+ a dated copy) and latest.md; --quick writes quick.json / quick.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.provenance import RESULTS, header
from dklfm_explore import TaskSet, get_system, resolve_device, simulate
from dklfm_explore.metrics import latent_metrics, output_metrics
from dklfm_explore.runtime import tune_allocator

FAMILIES = ("transcription", "transcription-linear", "reaction-diffusion", "lotka-volterra-extrapolation")
ROW_KEYS = ("family", "method", "n_train", "n_test", "latent_mse", "output_mse", "coverage95", "nlpd",
            "infer_ms_per_instance", "train_s", "peak_mem_mb", "device")
TRAIN_SEED, TEST_SEED = 0, 1


@dataclass
class Settings:
    """Sizes of one benchmark run; ``quick()`` shrinks everything for a CPU smoke test."""

    n_train: int = 256
    n_train_rd: int = 500
    n_test: int = 20
    n_points: int = 30
    lv_points: int = 60
    rd_train_grid: tuple[int, int] = (21, 21)
    rd_test_grid: tuple[int, int] = (40, 40)
    epochs: int = 300
    max_train_seconds: float = 480.0
    per_task_iterations: int | None = None
    learning_curve: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    learning_curve_seconds: float = 240.0
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> "Settings":
        return cls(n_train=24, n_train_rd=24, n_test=3, n_points=10, lv_points=16, rd_train_grid=(9, 9),
                   rd_test_grid=(12, 12), epochs=2, max_train_seconds=20.0, per_task_iterations=20,
                   learning_curve=(8, 16), learning_curve_seconds=10.0, quick=True)


class PeakMemory:
    """Peak resident memory (MB) above the level at entry, sampled every 5 ms; CUDA: the allocator's peak."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb, self._stop = device, 0.0, threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, self._rss_mb() - self._base)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self._rss_mb() - self._base)
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function, device):
    _sync(device)
    start = time.perf_counter()
    value = function()
    _sync(device)
    return value, time.perf_counter() - start


def _scales(train: TaskSet) -> tuple[float, np.ndarray]:
    reduce = [d for d in train.dataset["y"].dims if d != "output"]
    return float(train.dataset["f"].std()), train.dataset["y_clean"].std(reduce).values


def _score(family, method, result, truth: TaskSet, scales, n_train, device, train_s=None, infer_s=None, peak=None,
           latent_truth=None) -> dict:
    latent_scale, output_scale = scales
    latent = latent_metrics(result, latent_truth if latent_truth is not None else truth.dataset["f"], latent_scale)
    row = {"family": family, "method": method, "n_train": n_train, "n_test": truth.n_tasks,
           **latent, "output_mse": None, "infer_ms_per_instance": None if infer_s is None else 1000 * infer_s / truth.n_tasks,
           "train_s": train_s, "peak_mem_mb": peak, "device": str(device)}
    if "output_mean" in result and result["output_mean"].shape == truth.dataset["y_clean"].shape:
        row.update(output_metrics(result, truth.dataset["y_clean"], output_scale))
    return {key: row[key] for key in ROW_KEYS}


def _train_dklfm(train_tasks: TaskSet, settings: Settings, device, seconds=None, model_config=None):
    from dklfm_explore.train import TrainingConfig, train

    config = TrainingConfig(epochs=settings.epochs, max_seconds=seconds or settings.max_train_seconds,
                            seed=TRAIN_SEED, device=str(device))
    with PeakMemory(device) as memory:
        model, train_s = _timed(lambda: train(train_tasks, config=config, model_config=model_config), device)
    return model, train_s, memory.peak_mb


def _infer_dklfm(model, observed: TaskSet, device, **query):
    model.infer(observed.isel([0]), **query)
    with PeakMemory(device) as memory:
        result, batched_s = _timed(lambda: model.infer(observed, **query), device)
    one_by_one = []
    for k in range(observed.n_tasks):
        _, seconds = _timed(lambda: model.infer(observed.isel([k]), **query), device)
        one_by_one.append(seconds)
    return result, batched_s, float(np.mean(one_by_one)), memory.peak_mb


def _per_task(observed: TaskSet, settings: Settings, device, **query):
    from dklfm_explore.model.baselines import per_task_posterior

    options = {} if settings.per_task_iterations is None else {"iterations": settings.per_task_iterations}
    with PeakMemory(device) as memory:
        result, seconds = _timed(lambda: per_task_posterior(observed, device=device, **options, **query), device)
    return result, seconds, memory.peak_mb


def _exact(observed: TaskSet, device, **query):
    from dklfm_explore.model.baselines import exact_posterior

    with PeakMemory(device) as memory:
        result, seconds = _timed(lambda: exact_posterior(observed, **query), device)
    return result, seconds, memory.peak_mb


def run_ode_family(family: str, settings: Settings, device, timings: dict) -> list[dict]:
    """Transcription (softplus or linear): DKLFM vs per-task LFM (and the exact LFM for the linear system)."""
    train_tasks = simulate(family, settings.n_train, n_points=settings.n_points, seed=TRAIN_SEED, device=device)
    test_tasks = simulate(family, settings.n_test, n_points=settings.n_points, seed=TEST_SEED, device=device)
    scales = _scales(train_tasks)
    model, train_s, train_mem = _train_dklfm(train_tasks, settings, device)
    result, batched_s, single_s, infer_mem = _infer_dklfm(model, test_tasks, device)
    rows = [_score(family, "dklfm", result, test_tasks, scales, settings.n_train, device, train_s, batched_s,
                   max(train_mem, infer_mem))]
    timings[f"{family}/dklfm"] = {"batched_ms": 1000 * batched_s / test_tasks.n_tasks, "one_at_a_time_ms": 1000 * single_s}
    per_task, seconds, memory = _per_task(test_tasks, settings, device)
    rows.append(_score(family, "per-task-lfm", per_task, test_tasks, scales, 0, device, None, seconds, memory))
    timings[f"{family}/per-task-lfm"] = {"batched_ms": 1000 * seconds / test_tasks.n_tasks}
    if family == "transcription-linear":
        exact, seconds, memory = _exact(test_tasks, device)
        rows.append(_score(family, "exact-lfm", exact, test_tasks, scales, 0, device, None, seconds, memory))
        timings[f"{family}/exact-lfm"] = {"batched_ms": 1000 * seconds / test_tasks.n_tasks}
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
    scales = _scales(train_tasks)
    query = {"space": fine.dataset["space"].values, "time": fine.dataset["time"].values}
    model, train_s, train_mem = _train_dklfm(train_tasks, settings, device)
    result, batched_s, single_s, infer_mem = _infer_dklfm(model, observed, device, **query)
    rows = [_score(family, "dklfm", result, fine, scales, settings.n_train_rd, device, train_s, batched_s,
                   max(train_mem, infer_mem))]
    timings[f"{family}/dklfm"] = {"batched_ms": 1000 * batched_s / observed.n_tasks, "one_at_a_time_ms": 1000 * single_s}
    exact, seconds, memory = _exact(observed, device, **query)
    rows.append(_score(family, "exact-lfm", exact, fine, scales, 0, device, None, seconds, memory))
    timings[f"{family}/exact-lfm"] = {"batched_ms": 1000 * seconds / observed.n_tasks}
    return rows


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
    scales = _scales(train_tasks)
    query = {"time": test_full.dataset["time"].values}
    model, train_s, train_mem = _train_dklfm(train_tasks, settings, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, batched_s, single_s, infer_mem = _infer_dklfm(model, observed, device, **query)
        full_result = model.infer(test_full)
    rows = [_score(family, "dklfm", result, test_full, scales, settings.n_train, device, train_s, batched_s,
                   max(train_mem, infer_mem))]
    timings[f"{family}/dklfm"] = {"batched_ms": 1000 * batched_s / observed.n_tasks, "one_at_a_time_ms": 1000 * single_s}
    reference = latent_metrics(full_result, test_full.dataset["f"], scales[0])
    timings[f"{family}/dklfm-observed-on-0-2T"] = reference
    per_task, seconds, memory = _per_task(observed, settings, device, **query)
    rows.append(_score(family, "per-task-lfm", per_task, test_full, scales, 0, device, None, seconds, memory))
    timings[f"{family}/per-task-lfm"] = {"batched_ms": 1000 * seconds / observed.n_tasks}
    return rows


def run_learning_curve(settings: Settings, device) -> list[dict]:
    """Test latent MSE of DKLFM on the same test tasks for growing training sets (the paper's Figure 5)."""
    largest = max(settings.learning_curve)
    pool = simulate("transcription", largest, n_points=settings.n_points, seed=TRAIN_SEED, device=device)
    test_tasks = simulate("transcription", settings.n_test, n_points=settings.n_points, seed=TEST_SEED, device=device)
    points = []
    for size in settings.learning_curve:
        train_tasks = pool.isel(slice(0, size))
        model, train_s, _ = _train_dklfm(train_tasks, settings, device, seconds=settings.learning_curve_seconds)
        result = model.infer(test_tasks)
        scores = latent_metrics(result, test_tasks.dataset["f"], _scales(train_tasks)[0])
        points.append({"n_train": size, "latent_mse": scores["latent_mse"], "coverage95": scores["coverage95"], "train_s": train_s})
    return points


def check_targets(rows: list[dict], curve: list[dict]) -> list[dict]:
    """The issue's acceptance targets, each with the measured value and whether it was met."""
    def get(family, method, key):
        for row in rows:
            if row["family"] == family and row["method"] == method:
                return row[key]
        return None

    targets = []

    def add(name, value, met):
        targets.append({"target": name, "measured": value, "met": bool(met) if value is not None else None})

    d, p = get("transcription", "dklfm", "latent_mse"), get("transcription", "per-task-lfm", "latent_mse")
    add("transcription: DKLFM latent MSE <= 0.8 x per-task LFM", None if None in (d, p) else f"{d:.4f} vs 0.8 x {p:.4f}",
        None if None in (d, p) else d <= 0.8 * p)
    d, p = get("transcription", "dklfm", "infer_ms_per_instance"), get("transcription", "per-task-lfm", "infer_ms_per_instance")
    add("transcription: inference >= 1000x faster than per-task LFM", None if None in (d, p) else f"{p / d:.0f}x",
        None if None in (d, p) else p / d >= 1000)
    for family, slack in (("transcription-linear", 0.05), ("reaction-diffusion", 0.1)):
        d, e = get(family, "dklfm", "latent_mse"), get(family, "exact-lfm", "latent_mse")
        bound = None if None in (d, e) else max(e + slack, 2 * e)
        add(f"{family}: DKLFM latent MSE <= max(exact + {slack}, 2 x exact)",
            None if bound is None else f"{d:.4f} vs bound {bound:.4f}", None if bound is None else d <= bound)
    for family in FAMILIES:
        c = get(family, "dklfm", "coverage95")
        add(f"{family}: DKLFM 95% coverage in [0.85, 0.99]", None if c is None else f"{c:.3f}", None if c is None else 0.85 <= c <= 0.99)
    if len(curve) >= 2:
        first, last = curve[0]["latent_mse"], curve[-1]["latent_mse"]
        add("learning curve falls with the number of training tasks", f"{first:.4f} -> {last:.4f}", last < first)
    return targets


def render_markdown(payload: dict) -> str:
    h = payload["header"]
    lines = [f"# Benchmark results ({'quick smoke run' if h['quick'] else 'full settings'})", "",
             f"- date: {h['date']}  \n- command: `{h['command']}`  \n- commit: `{h['git_commit']}`  \n"
             f"- device: {h['device']} ({h['device_name']}, {h['cpu_threads']} threads); absolute times count only from a GPU run  \n"
             f"- observation noise: {h['noise']}  \n- units: {h['units']}", "",
             "| family | method | n_train | n_test | latent MSE | output MSE | 95% coverage | NLPD | infer ms/instance | train s | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, spec: "–" if v is None else format(v, spec)
    for r in payload["rows"]:
        lines.append(f"| {r['family']} | {r['method']} | {r['n_train']} | {r['n_test']} | {fmt(r['latent_mse'], '.4f')} | "
                     f"{fmt(r['output_mse'], '.4f')} | {fmt(r['coverage95'], '.3f')} | {fmt(r['nlpd'], '.3f')} | "
                     f"{fmt(r['infer_ms_per_instance'], '.2f')} | {fmt(r['train_s'], '.1f')} | {fmt(r['peak_mem_mb'], '.0f')} |")
    lines += ["", "## Inference time per instance (ms): batched over the test tasks vs one at a time", "",
              "| run | batched | one at a time |", "|---|---|---|"]
    for key, value in payload["timings"].items():
        if "batched_ms" in value:
            lines.append(f"| {key} | {value['batched_ms']:.2f} | {fmt(value.get('one_at_a_time_ms'), '.2f')} |")
    if payload["learning_curve"]:
        lines += ["", "## Learning curve (transcription, same test tasks)", "", "| n_train | latent MSE | 95% coverage | train s |", "|---|---|---|---|"]
        lines += [f"| {p['n_train']} | {p['latent_mse']:.4f} | {p['coverage95']:.3f} | {p['train_s']:.1f} |" for p in payload["learning_curve"]]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in payload["targets"]:
        lines.append(f"| {t['target']} | {t['measured'] or 'not run'} | {'yes' if t['met'] else ('NO' if t['met'] is False else '–')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="dklfm bench", description="DKLFM vs per-task and exact LFMs, in one run.")
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
    run_header = header(device, module="benchmarks.harness", quick=settings.quick, settings=dataclasses.asdict(settings))
    rows, timings, curve = [], {}, []
    for family in chosen:
        started = time.perf_counter()
        if family in ("transcription", "transcription-linear"):
            rows += run_ode_family(family, settings, device, timings)
        elif family == "reaction-diffusion":
            rows += run_reaction_diffusion(settings, device, timings)
        elif family == "lotka-volterra-extrapolation":
            rows += run_lotka_volterra(settings, device, timings)
        else:
            curve = run_learning_curve(settings, device)
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


if __name__ == "__main__":
    main()
