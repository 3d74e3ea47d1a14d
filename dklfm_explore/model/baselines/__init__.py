"""Reference methods every DKLFM result is compared with, looked up by name in :data:`BASELINES`.

* ``"exact-lfm"`` -- :func:`exact_posterior`: the closed-form joint Gaussian of the
  linear systems with each task's true parameters (the accuracy ceiling).
* ``"per-task-lfm"`` -- :func:`per_task_posterior`: a GP force pushed through the
  system's ODE, fitted to each task on its own (slow and accurate).
* ``"state-space-lfm"`` -- :func:`state_space_posterior`: a Matern force appended to
  the ODE's state, an extended Kalman filter and RTS smoother in one linear-time pass,
  hyperparameters by the filter's marginal likelihood per task.

Amortised like DKLFM, so not a per-task baseline of :data:`BASELINES`:
:func:`train_neural_process` meta-trains a transformer neural process on simulated
tasks; its :meth:`NeuralProcess.infer` returns the same format.

Both take a :class:`~dklfm_explore.data.TaskSet` and optional query ``time`` /
``space`` and return the DKLFM's ``infer`` format: ``latent_mean``,
``latent_std`` ``(task, [space,] time)``, ``output_mean``, ``output_std``
``(task, output, [space,] time)``, attrs ``infer_ms_per_task``.
"""

from typing import Callable

import xarray as xr

from ...errors import UnknownNameError
from .exact_linear_lfm import EXACT_SYSTEMS, SineBasis, exact_posterior
from .neural_process import NeuralProcess, train_neural_process
from .per_task_lfm import PerTaskLFM, per_task_posterior
from .state_space_lfm import state_space_posterior

__all__ = [
    "BASELINES",
    "get_baseline",
    "exact_posterior",
    "per_task_posterior",
    "state_space_posterior",
    "PerTaskLFM",
    "NeuralProcess",
    "train_neural_process",
    "EXACT_SYSTEMS",
    "SineBasis",
]

BASELINES: dict[str, Callable[..., xr.Dataset]] = {
    "exact-lfm": exact_posterior,
    "per-task-lfm": per_task_posterior,
    "state-space-lfm": state_space_posterior,
}
"""Baselines by name: ``f(tasks, *, time=None, space=None, **options) -> xarray.Dataset``."""


def get_baseline(name: str) -> Callable[..., xr.Dataset]:
    """Return the baseline called ``name``.

    Raises
    ------
    UnknownNameError
        If ``name`` is not in :data:`BASELINES`; the message lists the valid names.
    """
    try:
        return BASELINES[name]
    except KeyError:
        raise UnknownNameError("baseline", str(name), BASELINES) from None
