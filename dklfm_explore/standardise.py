"""The one way into the model's standardised units and back, for training and inference alike.

Training standardises its tasks with the :class:`~dklfm_explore.data.Normaliser` fitted on
them; inference first places the user's time axis on the training window (:class:`TimeMap`)
and may standardise outputs by the data's own statistics.  Both call :func:`standardise`;
:func:`unstandardise` maps a posterior back into the user's units.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from .data import Normaliser, TaskSet
from .errors import ConstantOutputWarning, InvalidInputError
from .messages import listed, shown
from .spread import MAX_MAGNITUDE, RELATIVE_SPREAD, is_constant, pooled_moments

__all__ = ["TimeMap", "Standardised", "standardise", "standardise_coords", "unstandardise", "pooled_stats", "check_reach", "span_text",
           "TIME_MAPPINGS", "OUTPUT_SCALINGS", "MAX_REACH"]

TIME_MAPPINGS = ("shift", "scale", "none")
OUTPUT_SCALINGS = ("training", "self")
MAX_REACH = 1e6
"""Farthest a standardised coordinate may lie from the training window ([0, 1]), in window lengths: the model computes
in float32, whose range (3e38) squared distances of far larger coordinates overflow; a force a million windows out is the prior's."""


@dataclass(frozen=True)
class TimeMap:
    """Affine map from the user's time axis to the training one: ``t_training = offset + slope * t_user``."""

    slope: float = 1.0
    offset: float = 0.0

    def __call__(self, time: torch.Tensor) -> torch.Tensor:
        return self.offset + self.slope * time

    def inverse(self, time):
        """The user's time of a training time (tensor or float)."""
        return (time - self.offset) / self.slope

    @classmethod
    def fit(cls, mapping: str, user_time: torch.Tensor, window: tuple[float, float]) -> "TimeMap":
        """The map of ``mapping`` for data measured at ``user_time (time,)`` and a training ``window``.

        ``"shift"`` moves the first measured time to the window start, ``"scale"`` maps the
        measured range onto the window, ``"none"`` is the identity.
        """
        if mapping not in TIME_MAPPINGS:
            raise InvalidInputError(f"time_mapping {mapping!r} is not one of {', '.join(TIME_MAPPINGS)}.")
        start, stop = (float(v) for v in window)
        first, last = float(user_time[0]), float(user_time[-1])
        if mapping == "shift":
            return cls(1.0, start - first)
        if mapping == "scale":
            if last <= first:
                raise InvalidInputError(f"time_mapping='scale' needs at least two distinct times, got range [{first}, {last}].")
            slope = (stop - start) / (last - first)
            return cls(slope, start - first * slope)
        return cls()


@dataclass
class Standardised:
    """Tasks in the model's standardised units.

    Attributes
    ----------
    coords : tuple of Tensor ``([space,] time)``
        Standardised mesh coordinates (the training window is [0, 1]), on the device.
    y : Tensor ``(task, output, [space,] time)``
        Standardised outputs, NaN where missing, on the device.
    f : Tensor ``(task, [space,] time)`` or None
        Standardised latent force (None when not asked for or unknown), on the device.
    y_mean, y_std : Tensor ``(output, 1[, 1])``
        The statistics ``y`` was standardised with (float64, CPU).
    time_map : TimeMap
        User time to training time.
    """

    coords: tuple[torch.Tensor, ...]
    y: torch.Tensor
    f: torch.Tensor | None
    y_mean: torch.Tensor
    y_std: torch.Tensor
    time_map: TimeMap


def standardise_coords(normaliser: Normaliser, time: torch.Tensor, space: torch.Tensor | None = None,
                       time_map: TimeMap = TimeMap()) -> tuple[torch.Tensor, ...]:
    """Standardised mesh coordinates ``([space,] time)`` of user coordinates ``time (time,)``, ``space (space,)``."""
    coords = (normaliser.transform_time(time_map(time.to(torch.float64))),)
    if space is not None:
        coords = (normaliser.transform_space(space.to(torch.float64)),) + coords
    return coords


def check_reach(coords: tuple[torch.Tensor, ...], source: str, window: tuple[float, float]) -> None:
    """Refuse standardised coordinates ``([space,] time)`` that are not finite or lie more than :data:`MAX_REACH` windows out.

    ``window`` is the training time window, for the message.
    """
    for name, values in zip(("space", "time")[-len(coords):], coords):
        reach = float(torch.nan_to_num(values.abs(), nan=math.inf).max()) if values.numel() else 0.0
        if not reach <= MAX_REACH:
            where = f"its training window {span_text(*window)}" if name == "time" else "its training positions"
            raise InvalidInputError(
                f"The {name}s of {source}, placed on the model's axis, lie more than {MAX_REACH:g} window lengths from {where}, "
                f"too far to compute; give the {name}s in the model's unit, or map them onto its window (time_mapping='scale')."
            )


def standardise(tasks: TaskSet, normaliser: Normaliser, *, time_mapping: str = "none", output_scaling: str = "training",
                latent: bool = True, window: tuple[float, float] | None = None, device=None,
                self_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> Standardised:
    """Bring a task set into the model's standardised units.

    Parameters
    ----------
    tasks : TaskSet
    normaliser : Normaliser
        Fitted on the training tasks.
    time_mapping : {"none", "shift", "scale"}
        How the tasks' time axis is placed on the training window (:meth:`TimeMap.fit`).
    output_scaling : {"training", "self"}
        Standardise outputs with the training statistics, or with the tasks' own per-output
        mean and std pooled over tasks and mesh (:func:`pooled_stats`; a
        :class:`~dklfm_explore.errors.ConstantOutputWarning` names the outputs that do not vary).
    latent : bool
        Also standardise the latent force ``f`` (training, validation).
    window : (float, float), optional
        The training time window the mapping aims at; default the normaliser's.
    device :
        Where the standardised tensors go (default CPU).
    self_stats : (Tensor, Tensor), optional
        Per-output ``(mean, std)`` shaped ``(output, 1[, 1])`` that ``output_scaling="self"`` uses
        instead of the tasks' own (streamed inference passes those of the whole file, a chunk at a time).

    Raises
    ------
    InvalidInputError
        An output beyond :data:`~dklfm_explore.spread.MAX_MAGNITUDE` (its variance would overflow).
    """
    if output_scaling not in OUTPUT_SCALINGS:
        raise InvalidInputError(f"output_scaling {output_scaling!r} is not one of {', '.join(OUTPUT_SCALINGS)}.")
    window = window or (normaliser.time_offset, normaliser.time_offset + normaliser.time_scale)
    time_map = TimeMap.fit(time_mapping, tasks.time, window)
    coords = standardise_coords(normaliser, tasks.time, tasks.space, time_map)
    y = tasks.y()
    _check_magnitude(tasks, y)
    if output_scaling == "training":
        mean, std = normaliser.y_stats(y)
    else:
        mean, std = self_stats if self_stats is not None else _own_stats(tasks, y)
    f = normaliser.transform_f(tasks.f()).to(device) if latent else None
    return Standardised(tuple(c.to(device) for c in coords), ((y - mean) / std).to(device), f, mean, std, time_map)


def unstandardise(normaliser: Normaliser, standardised: Standardised, latent_mean: torch.Tensor, latent_var: torch.Tensor,
                  output_mean: torch.Tensor, output_var: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Map a posterior back into the user's units: the inverse of :func:`standardise`.

    Parameters
    ----------
    latent_mean, latent_var : Tensor ``(task, [space,] time)``
        In standardised units; returned in the training set's latent units.
    output_mean, output_var : Tensor ``(task, output, [space,] time)``
        Returned in the units of the outputs that were standardised.

    Returns
    -------
    (latent_mean, latent_var, output_mean, output_var), float64 on the CPU.
    """
    shape = (1, -1) + (1,) * (output_mean.ndim - 2)
    mean, std = standardised.y_mean.reshape(shape), standardised.y_std.reshape(shape)
    cpu = lambda value: value.detach().to(torch.float64).cpu()  # noqa: E731
    return (
        normaliser.inverse_f(cpu(latent_mean)),
        normaliser.inverse_f(cpu(latent_var), variance=True),
        cpu(output_mean) * std + mean,
        cpu(output_var) * std**2,
    )


def pooled_stats(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-output mean and std of ``y (task, output, *mesh)`` pooled over tasks and mesh, NaN ignored, without overflow.

    Returns tensors shaped ``(output, 1[, 1])`` to broadcast against ``y``: the mean, the std
    (an output whose spread is none, :func:`~dklfm_explore.spread.is_constant`, gets its own
    magnitude, or 1 when that is 0) and a bool, whether the spread was none.
    """
    values = xr.DataArray(y.detach().to(torch.float64).cpu().numpy(), dims=("task", "output") + tuple(f"mesh{k}" for k in range(y.ndim - 2)))
    mean, std, magnitude = pooled_moments(values, [d for d in values.dims if d != "output"], ddof=1 if y.shape[0] * y[0, 0].numel() > 1 else 0)
    constant = is_constant(std, magnitude)
    std = np.where(constant, np.where(magnitude > 0, magnitude, 1.0), std)
    shape = (-1,) + (1,) * (y.ndim - 2)
    as_tensor = lambda values: torch.as_tensor(values).reshape(shape)  # noqa: E731
    return as_tensor(np.nan_to_num(mean)), as_tensor(std), as_tensor(constant)


def _source(tasks: TaskSet) -> str:
    return str(tasks.dataset.attrs.get("source") or "the tasks")


def _check_magnitude(tasks: TaskSet, y: torch.Tensor) -> None:
    """Refuse an output beyond :data:`~dklfm_explore.spread.MAX_MAGNITUDE`, whose variance would overflow."""
    largest = torch.nan_to_num(y.abs(), nan=0.0).transpose(0, 1).reshape(y.shape[1], -1).amax(-1)
    for name, value in zip(tasks.output_names, largest.tolist()):
        if value > MAX_MAGNITUDE:
            raise InvalidInputError(
                f"Output {shown(name)} of {_source(tasks)} reaches {value:.3g}, beyond the {MAX_MAGNITUDE:g} whose variance a "
                "float64 holds; rescale it (a larger unit) or remove the cell."
            )


def _own_stats(tasks: TaskSet, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pooled_stats` of the tasks' outputs; one :class:`ConstantOutputWarning` names the outputs that do not vary."""
    mean, std, constant = pooled_stats(y)
    names = [name for name, flag in zip(tasks.output_names, constant.flatten().tolist()) if flag]
    if names:
        warnings.warn(
            f"Output(s) {listed(shown(name) for name in names)} of {_source(tasks)} do not vary (to {RELATIVE_SPREAD:g} of their size); "
            "they are scaled by their own size, tell nothing about the force, and their output_std is a guess.",
            ConstantOutputWarning,
            stacklevel=4,
        )
    return mean, std


def span_text(low: float, high: float) -> str:
    """``"low to high"`` with as many significant digits as tell them apart (up to 17: 1e16 and 1e16 + 22)."""
    for digits in range(6, 18):
        if f"{low:.{digits}g}" != f"{high:.{digits}g}":
            break
    return f"{low:.{digits}g} to {high:.{digits}g}"
