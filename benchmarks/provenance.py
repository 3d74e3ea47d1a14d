"""Run metadata recorded with every benchmark result: device, versions, commit, command, date."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(device: torch.device, module: str | None = None, **extra) -> dict:
    """The header of a result file; ``module`` (e.g. ``benchmarks.harness``) names how the run was started."""
    from importlib.metadata import version

    packages = {}
    for name in ("dklfm-explore", "torch", "torchdiffeq", "neuraloperator", "numpy", "xarray"):
        try:
            packages[name] = version(name)
        except Exception:
            packages[name] = "not installed"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([f"python -m {module}" if module else shlex.quote(Path(sys.argv[0]).name), *map(shlex.quote, sys.argv[1:])]),
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "packages": packages,
        **extra,
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path
