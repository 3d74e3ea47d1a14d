"""A task set in a trained model's standardised units, as :meth:`TrainedModel.infer` conditions on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .data import TaskSet
from .errors import InvalidInputError
from .trained import OUTPUT_SCALINGS, TIME_MAPPINGS, TrainedModel, _pooled_stats

__all__ = ["TaskInputs", "standardise_inputs"]


@dataclass
class TaskInputs:
    """coords: normalised mesh ``(time,)`` or ``(space, time)``; y: ``(task, output, *mesh)`` standardised, on the
    model's device; time_map: user time -> training time (system units); output_scaling: the one used."""

    coords: tuple[torch.Tensor, ...]
    y: torch.Tensor
    time_map: Callable[[torch.Tensor], torch.Tensor]
    output_scaling: str


def standardise_inputs(model: TrainedModel, tasks: TaskSet, time_mapping: str = "shift", output_scaling: str = "auto") -> TaskInputs:
    """Map ``tasks`` onto ``model``'s training window and standardise their outputs (see :meth:`TrainedModel.infer`)."""
    if tasks.n_outputs != len(model.output_names):
        raise InvalidInputError(f"The tasks have {tasks.n_outputs} output(s) but the model was trained on {len(model.output_names)}.")
    if tasks.is_spatial != (model.space_window is not None):
        raise InvalidInputError("The tasks' mesh (time-only or space x time) differs from the model's.")
    if time_mapping not in TIME_MAPPINGS:
        raise InvalidInputError(f"time_mapping {time_mapping!r} is not one of {', '.join(TIME_MAPPINGS)}.")
    if output_scaling not in OUTPUT_SCALINGS:
        raise InvalidInputError(f"output_scaling {output_scaling!r} is not one of {', '.join(OUTPUT_SCALINGS)}.")
    if output_scaling == "auto":
        simulated = "y_clean" in tasks.dataset and tasks.system_name == model.system_name
        output_scaling = "training" if simulated else "self"
    time_map = model._time_map(tasks.time, time_mapping)
    coords = (model.normaliser.transform_time(time_map(tasks.time)),)
    if tasks.is_spatial:
        coords = (model.normaliser.transform_space(tasks.space),) + coords
    y = tasks.y()
    mean, std = model.normaliser.y_stats(y) if output_scaling == "training" else _pooled_stats(y)
    device = model.device
    return TaskInputs(tuple(c.to(device) for c in coords), ((y - mean) / std).to(device), time_map, output_scaling)
