"""Simulation throughput: tasks per second for transcription tasks (default 10,000 x 5 genes x 100 points).

    python -m benchmarks.simulation_throughput [--tasks 10000] [--points 100] [--device auto] [--repeats 3]

Writes ``benchmarks/results/simulation_throughput.json``.  Times are wall-clock on the device given; on the CPU
they are only comparable with runs on the same machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from dklfm_explore import resolve_device, simulate

from benchmarks.provenance import header, write_json


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--genes", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=2500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    simulate("transcription", 64, n_points=args.points, device=device)
    rows = []
    for dtype in (torch.float64, torch.float32):
        seconds = []
        for repeat in range(args.repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            simulate("transcription", args.tasks, n_points=args.points, n_outputs=args.genes, seed=repeat,
                     device=device, dtype=dtype, chunk_size=args.chunk_size)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
        best = min(seconds)
        rows.append({"dtype": str(dtype).replace("torch.", ""), "tasks": args.tasks, "genes": args.genes,
                     "points": args.points, "best_s": round(best, 3), "tasks_per_s": round(args.tasks / best, 1),
                     "all_s": [round(s, 3) for s in seconds]})
        print(f"{rows[-1]['dtype']}: {rows[-1]['tasks_per_s']} tasks/s (best of {args.repeats}: {best:.2f} s)")
    payload = {"header": header(device, module="benchmarks.simulation_throughput", benchmark="simulation_throughput"), "rows": rows}
    write_json("simulation_throughput.json", payload)
    return payload


if __name__ == "__main__":
    main()
