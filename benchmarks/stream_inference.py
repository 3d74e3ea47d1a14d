"""Streamed inference: tasks per second and peak memory of ``dklfm infer`` on 10,000 and 100,000 transcription tasks.

    python -m benchmarks.stream_inference [--sizes 10000 100000] [--points 10] [--model PATH] [--work DIR]

Each size is simulated once into ``--work`` (kept, so a rerun skips it), then inferred by the command line in a fresh
process, ``dklfm infer MODEL tasks.nc --out result.nc``, whose wall time and peak resident memory (``ru_maxrss`` of
that process) are recorded, beside the peak of a process that only loads the model (``dklfm info MODEL``).  Streaming
should make the time grow with the tasks (ratio about 10) and the memory not (ratio about 1).  Writes
``benchmarks/results/stream_inference.json`` and ``.md``; the machine's load average is recorded with each row,
because on a shared CPU the times say as much about the other users as about the code.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dklfm_explore.datasets.registry import DATA_DIR

from benchmarks.provenance import RESULTS, header, write_json

DEFAULT_MODEL = DATA_DIR / "transcription_p53.pt"
ROOT = Path(__file__).resolve().parents[1]


def run_measured(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak resident MB and stdout of ``command`` run in its own process."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment, text=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {os.waitstatus_to_exitcode(status)}: {stdout[-500:]}")
    return seconds, usage.ru_maxrss / 1024, stdout


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dklfm-stream-benchmark")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "dklfm_explore.cli"]
    model_only_s, model_only_mb, _ = run_measured(cli + ["info", str(args.model)])
    rows = []
    for size in args.sizes:
        tasks = args.work / f"transcription_{size}_tasks_{args.points}_points.nc"
        if not tasks.is_file():
            run_measured(cli + ["simulate", "transcription", "--tasks", str(size), "--points", str(args.points), "--seed", "1",
                                "--out", str(tasks)])
        out = args.work / f"result_{size}.nc"
        load_before = os.getloadavg()[0]
        seconds, peak_mb, stdout = run_measured(cli + ["infer", str(args.model), str(tasks), "--out", str(out), "--force",
                                                       "--device", args.device])
        conditioning = re.search(r"([0-9.]+) ms per task", stdout)
        rows.append({"tasks": size, "points": args.points, "wall_s": round(seconds, 1), "tasks_per_s": round(size / seconds, 1),
                     "conditioning_ms_per_task": float(conditioning.group(1)) if conditioning else None,
                     "peak_rss_mb": round(peak_mb, 1), "result_mb": round(out.stat().st_size / 2**20, 1),
                     "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
        out.unlink()
        print(rows[-1])
    ratios = {"tasks": rows[-1]["tasks"] / rows[0]["tasks"], "time": round(rows[-1]["wall_s"] / rows[0]["wall_s"], 2),
              "time_beyond_start_up": round((rows[-1]["wall_s"] - model_only_s) / (rows[0]["wall_s"] - model_only_s), 2),
              "peak_rss": round(rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3)}
    payload = {"header": header(torch.device(args.device), module="benchmarks.stream_inference", benchmark="stream_inference",
                                cpu_count=os.cpu_count(), note="shared CPU: other users' load (load_average_1min, before and after "
                                "each run) inflates the times; the memory is this process's own"),
               "model": str(args.model.name), "model_only_peak_rss_mb": round(model_only_mb, 1),
               "model_only_wall_s": round(model_only_s, 1), "rows": rows,
               "ratios_largest_over_smallest": ratios}
    write_json("stream_inference.json", payload)
    lines = [f"# Streamed inference (`{payload['header']['command']}`)", "",
             f"{payload['header']['date']}, commit {payload['header']['git_commit']}, device {args.device}, "
             f"{os.cpu_count()} CPU cores shared with other users. Model `{args.model.name}`; a process that only loads it "
             f"peaks at {model_only_mb:.0f} MB and takes {model_only_s:.1f} s (start-up: imports, model).", "",
             "| tasks | wall s | tasks/s | conditioning ms/task | peak RSS MB | result MB | load average (before, after) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['tasks']} | {r['wall_s']} | {r['tasks_per_s']} | {r['conditioning_ms_per_task']} | {r['peak_rss_mb']} | "
              f"{r['result_mb']} | {r['load_average_1min'][0]}, {r['load_average_1min'][1]} |" for r in rows]
    lines += ["", f"Ratios {ratios['tasks']:g}x the tasks: {ratios['time']}x the time ({ratios['time_beyond_start_up']}x beyond "
              f"the start-up), {ratios['peak_rss']}x the peak memory."]
    (RESULTS / "stream_inference.md").write_text("\n".join(lines) + "\n")
    return payload


if __name__ == "__main__":
    main()
