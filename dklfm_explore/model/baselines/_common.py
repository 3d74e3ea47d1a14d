"""Helpers shared by the baselines: Cholesky with jitter, task-set facts, the result format."""

from __future__ import annotations

import json

import numpy as np
import torch
import xarray as xr

from ...data import TaskSet
from ...errors import InvalidInputError
from ...linalg import cholesky as linalg_cholesky
from ...systems.base import ForcePrior, System, get_system

BASELINE_JITTER_CAP = 1e-4
"""Last relative jitter the baselines accept: beyond it their posteriors would be visibly biased."""


def cholesky(matrix: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of ``matrix (..., n, n)`` (float64) via :func:`dklfm_explore.linalg.cholesky`."""
    return linalg_cholesky(matrix, cap=BASELINE_JITTER_CAP)[0]


def settings_of(tasks: TaskSet) -> dict:
    """The simulation settings stored in the task set's attrs (empty for measurements)."""
    raw = tasks.dataset.attrs.get("settings")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return {}


def system_of(tasks: TaskSet) -> System:
    """The registered system that simulated ``tasks``."""
    if not tasks.system_name:
        raise InvalidInputError("The task set names no system (attrs['system'] is empty); give one simulated by a registered system.")
    return get_system(tasks.system_name)


def force_prior_of(tasks: TaskSet, system: System) -> ForcePrior:
    """The force prior the tasks were simulated with (settings), else the system's default."""
    stored = settings_of(tasks).get("force_prior")
    if not isinstance(stored, dict):
        return system.force_prior
    fields = {key: tuple(value) if isinstance(value, list) else value for key, value in stored.items()}
    return system.force_prior.with_(**{k: v for k, v in fields.items() if k in ForcePrior.__dataclass_fields__})


def start_time_of(tasks: TaskSet, system: System) -> float:
    """Time at which the simulation started (its initial condition holds there)."""
    t_range = settings_of(tasks).get("t_range")
    start = float(t_range[0]) if t_range else float(system.time_range[0])
    return min(start, float(tasks.time[0]))


def query_axis(values, default: torch.Tensor, name: str) -> torch.Tensor:
    """A query coordinate as a float64 tensor ``(point,)``: ``default`` if ``values`` is None."""
    if values is None:
        return default.to(torch.float64)
    axis = torch.as_tensor(np.asarray(values, dtype=np.float64)).reshape(-1)
    if axis.numel() < 1 or not torch.all(torch.isfinite(axis)):
        raise InvalidInputError(f"The query {name} must be a non-empty 1-D array of finite values, got {axis.numel()} value(s).")
    return axis


def check_observed(y: torch.Tensor, minimum: int) -> torch.Tensor:
    """Mask ``(task, output, [space,] time)`` of observed values; each task needs ``minimum`` of them.

    Raises
    ------
    InvalidInputError
        If a task has fewer than ``minimum`` finite values.
    """
    observed = torch.isfinite(y)
    counts = observed.flatten(1).sum(1)
    if torch.any(counts < minimum):
        task = int(torch.nonzero(counts < minimum)[0, 0])
        raise InvalidInputError(
            f"Task {task} has {int(counts[task])} observed value(s); a baseline needs at least {minimum} per task."
        )
    return observed


def result_dataset(
    tasks: TaskSet,
    time: torch.Tensor,
    space: torch.Tensor | None,
    latent_mean: torch.Tensor,
    latent_var: torch.Tensor,
    output_mean: torch.Tensor,
    output_var: torch.Tensor,
    attrs: dict,
    extra: dict | None = None,
) -> xr.Dataset:
    """Assemble the result in the DKLFM ``infer`` format (see MODEL_CONTRACT.md).

    Parameters
    ----------
    latent_mean, latent_var : Tensor ``(task, [space,] time)``
    output_mean, output_var : Tensor ``(task, output, [space,] time)``
    extra : dict of name -> (dims, array), optional
        Further variables (fitted parameters, noise levels).
    """
    mesh_dims = ("space", "time") if space is not None else ("time",)
    coords = {"task": tasks.dataset["task"].values, "output": tasks.dataset["output"].values, "time": time.cpu().numpy()}
    if space is not None:
        coords["space"] = space.cpu().numpy()
    numpy = lambda value: value.detach().to(torch.float64).cpu().numpy()  # noqa: E731
    variables = {
        "latent_mean": (("task",) + mesh_dims, numpy(latent_mean)),
        "latent_std": (("task",) + mesh_dims, numpy(latent_var.clamp_min(0).sqrt())),
        "output_mean": (("task", "output") + mesh_dims, numpy(output_mean)),
        "output_std": (("task", "output") + mesh_dims, numpy(output_var.clamp_min(0).sqrt())),
    }
    for name, (dims, value) in (extra or {}).items():
        variables[name] = (dims, numpy(value) if isinstance(value, torch.Tensor) else value)
    return xr.Dataset(variables, coords=coords, attrs=attrs)
