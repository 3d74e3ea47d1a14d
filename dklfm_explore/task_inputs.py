"""A task set in a trained model's standardised units, as :meth:`TrainedModel.infer` conditions on it."""

from __future__ import annotations

from .data import TaskSet
from .errors import InvalidInputError
from .standardise import TIME_MAPPINGS, Standardised, standardise
from .trained import TrainedModel

__all__ = ["standardise_inputs"]


def standardise_inputs(model: TrainedModel, tasks: TaskSet, time_mapping: str = "shift", output_scaling: str = "auto") -> Standardised:
    """``tasks`` mapped onto ``model``'s training window, outputs standardised, on its device (see :meth:`TrainedModel.infer`)."""
    if not isinstance(tasks, TaskSet):
        raise InvalidInputError(f"Needs a TaskSet, got {type(tasks).__name__}.")
    model._check_tasks(tasks)
    if time_mapping not in TIME_MAPPINGS:
        raise InvalidInputError(f"time_mapping {time_mapping!r} is not one of {', '.join(TIME_MAPPINGS)}.")
    return standardise(tasks, model.normaliser, time_mapping=time_mapping, output_scaling=model._output_scaling(tasks, output_scaling),
                       latent=False, window=model.time_window, device=model.device)
