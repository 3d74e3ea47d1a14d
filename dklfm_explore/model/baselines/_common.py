"""Helpers shared by the baselines: Cholesky with jitter, task-set facts (from their spec), the result format."""

from __future__ import annotations

import numpy as np
import torch

from ...data import TaskSet
from ...errors import InvalidInputError
from ...linalg import cholesky as linalg_cholesky
from ...result import result_dataset
from ...systems.base import ForcePrior, System, get_system

__all__ = ["cholesky", "system_of", "force_prior_of", "start_time_of", "query_axis", "check_observed", "result_dataset"]

BASELINE_JITTER_CAP = 1e-4
"""Last relative jitter the baselines accept: beyond it their posteriors would be visibly biased."""


def cholesky(matrix: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of ``matrix (..., n, n)`` (float64) via :func:`dklfm_explore.linalg.cholesky`."""
    return linalg_cholesky(matrix, cap=BASELINE_JITTER_CAP)[0]


def system_of(tasks: TaskSet) -> System:
    """The registered system that simulated ``tasks``."""
    if not tasks.system_name:
        raise InvalidInputError("The task set names no system (attrs['system'] is empty); give one simulated by a registered system.")
    return get_system(tasks.system_name)


def force_prior_of(tasks: TaskSet, system: System) -> ForcePrior:
    """The force prior the tasks were simulated with (their spec), else the system's default."""
    spec = tasks.spec
    return spec.force_prior if spec is not None and spec.force_prior is not None else system.force_prior


def start_time_of(tasks: TaskSet, system: System) -> float:
    """Time at which the simulation started (its initial condition holds there)."""
    spec = tasks.spec
    start = float(spec.resolved(system).t_range[0]) if spec is not None else float(system.time_range[0])
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
