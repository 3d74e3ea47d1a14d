"""Data-parallel scaling: steps per second and held-out latent MSE after equal steps with 1 and N processes.

    python -m benchmarks.distributed_scaling [--steps 150] [--batch-size 16] [--processes 1 2] [--device cpu]

Each run is ``torchrun --standalone --nproc-per-node N -m benchmarks.distributed_scaling --worker ...``: fresh
transcription tasks (10 points), ``--batch-size`` tasks per process and step, the same step budget for every run,
and a run of one process with the largest global batch as the reference a data-parallel run should match.  Rows:
steps per second (validation included, as in training), tasks per second, per-device tasks per second and the
scaling efficiency against one process, and the best held-out latent MSE (standardised, the same 256 validation
tasks in every run).  On GPUs use ``--device cuda`` (one process per GPU).  Writes
``benchmarks/results/distributed_scaling.json`` and ``.md`` with the machine's load average: on a shared CPU the
processes compete with other users for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.provenance import RESULTS, header, write_json

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_VALIDATION = 50
VALIDATION_TASKS = 256


def worker(args) -> None:
    from dklfm_explore.config import TrainingConfig
    from dklfm_explore.distributed import process_group
    from dklfm_explore.spec import SimulationSpec
    from dklfm_explore.train import train

    with process_group(args.device) as parallel:
        global_batch = args.batch_size * parallel.world_size
        config = TrainingConfig(max_steps=args.steps, epochs=10**6, patience=10**6, batch_size=args.batch_size,
                                epoch_tasks=global_batch * STEPS_PER_VALIDATION, validation_tasks=VALIDATION_TASKS,
                                device=str(parallel.device))
        model = train(SimulationSpec("transcription", n_points=10, seed=0), config, parallel=parallel)
        if parallel.is_main:
            last = model.history[-1]
            Path(args.out).write_text(json.dumps({
                "processes": parallel.world_size, "batch_per_process": args.batch_size, "global_batch": global_batch,
                "steps": last["step"], "tasks_seen": last["tasks_seen"], "elapsed_s": round(last["elapsed_s"], 2),
                "best_validation_latent_mse": last["best_validation_latent_mse"]}))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    runs = [(n, args.batch_size) for n in args.processes] + [(1, args.batch_size * max(args.processes))]
    rows = []
    for processes, batch in runs:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder, "run.json")
            load_before = os.getloadavg()[0]
            subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
                            "-m", "benchmarks.distributed_scaling", "--worker", "--steps", str(args.steps), "--batch-size",
                            str(batch), "--device", args.device, "--out", str(out)], check=True, env=environment, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            row = json.loads(out.read_text())
        row["steps_per_s"] = round(row["steps"] / row["elapsed_s"], 2)
        row["tasks_per_s"] = round(row["tasks_seen"] / row["elapsed_s"], 1)
        row["tasks_per_s_per_device"] = round(row["tasks_per_s"] / processes, 1)
        row["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        rows.append(row)
        print(row)
    alone = next(r for r in rows if r["processes"] == 1 and r["batch_per_process"] == args.batch_size)
    for row in rows:
        row["scaling_efficiency"] = round(row["tasks_per_s"] / (alone["tasks_per_s"] * row["processes"]), 3)
    device = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
    payload = {"header": header(device, module="benchmarks.distributed_scaling", benchmark="distributed_scaling",
                                cpu_count=os.cpu_count(), note="shared CPU: other users' load (load_average_1min, before "
                                "and after each run) competes with the processes for the cores"), "rows": rows}
    write_json("distributed_scaling.json", payload)
    lines = [f"# Data-parallel scaling (`{payload['header']['command']}`)", "",
             f"{payload['header']['date']}, commit {payload['header']['git_commit']}, device {args.device}, "
             f"{os.cpu_count()} CPU cores shared with other users; fresh transcription tasks, 10 points, "
             f"{args.steps} steps each, validation every {STEPS_PER_VALIDATION} steps on {VALIDATION_TASKS} tasks.", "",
             "| processes | batch per process | global batch | steps/s | tasks/s | tasks/s per device | scaling efficiency "
             "| best held-out latent MSE | load average (before, after) |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['processes']} | {r['batch_per_process']} | {r['global_batch']} | {r['steps_per_s']} | {r['tasks_per_s']} | "
              f"{r['tasks_per_s_per_device']} | {r['scaling_efficiency']} | {r['best_validation_latent_mse']:.4f} | "
              f"{r['load_average_1min'][0]}, {r['load_average_1min'][1]} |" for r in rows]
    (RESULTS / "distributed_scaling.md").write_text("\n".join(lines) + "\n")
    return payload


if __name__ == "__main__":
    main()
