"""The one way into the model's standardised units and back, for training and inference alike.

Training standardises its tasks with the :class:`~dklfm_explore.data.Normaliser` fitted on
them; inference first places the user's time axis on the training window (:class:`TimeMap`)
and may standardise outputs by the data's own statistics.  Both call :func:`standardise`;
:func:`unstandardise` maps a posterior back into the user's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import MIN_STD, Normaliser, TaskSet
from .errors import InvalidInputError

__all__ = ["TimeMap", "Standardised", "standardise", "standardise_coords", "unstandardise", "pooled_stats",
           "TIME_MAPPINGS", "OUTPUT_SCALINGS"]

TIME_MAPPINGS = ("shift", "scale", "none")
OUTPUT_SCALINGS = ("training", "self")


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


def standardise(tasks: TaskSet, normaliser: Normaliser, *, time_mapping: str = "none", output_scaling: str = "training",
                latent: bool = True, window: tuple[float, float] | None = None, device=None) -> Standardised:
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
        mean and std pooled over tasks and mesh (:func:`pooled_stats`).
    latent : bool
        Also standardise the latent force ``f`` (training, validation).
    window : (float, float), optional
        The training time window the mapping aims at; default the normaliser's.
    device :
        Where the standardised tensors go (default CPU).
    """
    if output_scaling not in OUTPUT_SCALINGS:
        raise InvalidInputError(f"output_scaling {output_scaling!r} is not one of {', '.join(OUTPUT_SCALINGS)}.")
    window = window or (normaliser.time_offset, normaliser.time_offset + normaliser.time_scale)
    time_map = TimeMap.fit(time_mapping, tasks.time, window)
    coords = standardise_coords(normaliser, tasks.time, tasks.space, time_map)
    y = tasks.y()
    mean, std = normaliser.y_stats(y) if output_scaling == "training" else pooled_stats(y)
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


def pooled_stats(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output mean and std of ``y (task, output, *mesh)`` pooled over tasks and mesh, NaN ignored.

    Returns tensors shaped ``(output, 1[, 1])`` to broadcast against ``y``.
    """
    per_output = y.transpose(0, 1).reshape(y.shape[1], -1)
    observed = ~torch.isnan(per_output)
    count = observed.sum(-1).clamp_min(1)
    mean = torch.nan_to_num(per_output).sum(-1) / count
    centred = torch.where(observed, per_output - mean[:, None], torch.zeros_like(per_output))
    std = (centred.pow(2).sum(-1) / (count - 1).clamp_min(1)).sqrt().clamp_min(MIN_STD)
    shape = (-1,) + (1,) * (y.ndim - 2)
    return mean.reshape(shape), std.reshape(shape)
