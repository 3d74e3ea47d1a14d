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

__all__ = ["RESULTS", "git_commit", "header", "write_json"]

_CHECKOUT = Path(__file__).resolve().parents[2]
RESULTS = (_CHECKOUT if (_CHECKOUT / "benchmarks").is_dir() else Path.cwd()) / "benchmarks" / "results"
"""Where results go: ``benchmarks/results`` of the checkout the package runs from, else of the working directory."""

PACKAGES = ("dklfm-explore", "torch", "torchdiffeq", "neuraloperator", "numpy", "xarray")


def git_commit() -> str:
    """Short commit of the checkout the package runs from, ``-dirty`` if tracked files changed; else ``unknown``."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=_CHECKOUT)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               cwd=_CHECKOUT).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(device: torch.device, module: str | None = None, command: str | None = None, **extra) -> dict:
    """The header of a result file.

    ``command`` is the command line as typed (e.g. ``dklfm bench --quick``); without it, ``module``
    (e.g. ``benchmarks.simulation_throughput``) and this process's arguments rebuild it.
    """
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    if command is None:
        command = " ".join([f"python -m {module}" if module else shlex.quote(Path(sys.argv[0]).name), *map(shlex.quote, sys.argv[1:])])
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "packages": packages,
        **extra,
    }


def write_json(name: str, payload: dict, folder: Path = RESULTS) -> Path:
    """Write ``payload`` as indented JSON to ``folder / name`` (the folder is created)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path
