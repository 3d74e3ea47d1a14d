"""Whether tasks can be used: trained on (a force to learn, outputs that move, a time axis, room for validation) or conditioned on.

Each check raises :class:`~dklfm_explore.errors.InvalidInputError` with one sentence naming what is
wrong, so a task set from which nothing can be learned never trains to a figure that looks fine.
A lazily opened task set is read in passes of reductions, never whole.
"""

from __future__ import annotations

import numpy as np

from .data import TaskSet
from .errors import InvalidInputError
from .io.checks import label_text
from .messages import shown
from .spread import MAX_MAGNITUDE, RELATIVE_SPREAD, is_constant, pooled_moments

__all__ = ["check_learnable", "check_observed", "check_validation_split", "tasks_needed"]


def check_learnable(tasks: TaskSet, what: str) -> None:
    """Refuse tasks from which no force can be learned.

    Refused: no latent force, a force with no value or a constant one, an infinite value or
    one beyond :data:`~dklfm_explore.spread.MAX_MAGNITUDE` in ``y`` or ``f``, an output that is
    constant over every task and time, a task without any value of an output, a time (or
    space) axis that is not strictly increasing.
    """
    if not isinstance(tasks, TaskSet):
        raise InvalidInputError(f"{what} must be a TaskSet, got {type(tasks).__name__}.")
    if not tasks.has_latent:
        raise InvalidInputError(f"{what} carry no latent force `f`; training needs simulated tasks with a known force.")
    for name in ("time", "space") if tasks.is_spatial else ("time",):
        _check_axis(tasks.dataset[name].values, name, what)
    y, f = tasks.dataset["y"], tasks.dataset["f"]
    for label, variable in (("y", y), ("f", f)):
        if bool(np.isinf(variable).any()):
            raise InvalidInputError(f"{what} contain infinite values in `{label}`; use NaN for missing values.")
    f_mean, f_std, f_magnitude = pooled_moments(f, list(f.dims))
    if not np.isfinite(f_magnitude):
        raise InvalidInputError(f"The latent force `f` of {what.lower()} has no value (every entry is NaN), so there is nothing to learn.")
    if f_magnitude > MAX_MAGNITUDE:
        raise InvalidInputError(f"The latent force `f` of {what.lower()} reaches {float(f_magnitude):.3g}, beyond the {MAX_MAGNITUDE:g} a float64 variance holds; rescale it.")
    if is_constant(f_std, f_magnitude):
        raise InvalidInputError(
            f"The latent force `f` of {what.lower()} is constant ({float(f_mean):.6g} everywhere), so there is no force to learn."
        )
    mesh = [d for d in y.dims if d not in ("task", "output")]
    y_mean, y_std, y_magnitude = pooled_moments(y, ["task"] + mesh)
    for name, mean, magnitude, constant in zip(tasks.output_names, y_mean, y_magnitude, is_constant(y_std, y_magnitude)):
        if not np.isfinite(magnitude):
            raise InvalidInputError(f"Output {shown(name)} of {what.lower()} has no value (every entry is NaN), so it says nothing about the force.")
        if magnitude > MAX_MAGNITUDE:
            raise InvalidInputError(f"Output {shown(name)} of {what.lower()} reaches {magnitude:.3g}, beyond the {MAX_MAGNITUDE:g} a float64 variance holds; rescale it.")
        if constant:
            raise InvalidInputError(
                f"Output {shown(name)} of {what.lower()} is constant ({mean:.6g} in every task at every time, to within "
                f"{RELATIVE_SPREAD:g} of its size), so it says nothing about the force; remove it or simulate again."
            )
    check_observed(tasks, what.lower())


def check_observed(tasks: TaskSet, source: str) -> None:
    """Refuse a task with no observed value of an output (the model conditions every output of every task on its values)."""
    observed = tasks.dataset["y"].notnull().any([d for d in tasks.dataset["y"].dims if d not in ("task", "output")]).values
    if not observed.all():
        task, output = np.argwhere(~observed)[0]
        raise InvalidInputError(
            f"Output {shown(tasks.output_names[output])} of task {shown(label_text(tasks.dataset['task'].values[task]))} "
            f"of {source} has no observed value; every output of every task needs at least one."
        )


def tasks_needed(validation: float) -> int:
    """Fewest tasks that a validation fraction ``validation`` splits into at least one validation and one training task."""
    n_tasks = 2
    while n_tasks - _held_out(validation, n_tasks) < 1:
        n_tasks += 1
    return n_tasks


def check_validation_split(tasks: TaskSet, validation: float) -> None:
    """Refuse a task set too small to hold out ``validation`` of it (:meth:`~dklfm_explore.data.TaskSet.split` as training does)."""
    if validation <= 0:
        return
    needed = tasks_needed(validation)
    if tasks.n_tasks < needed:
        raise InvalidInputError(
            f"Training holds out a fraction {validation:g} of the tasks for validation (at least one) and trains on the rest, "
            f"so it needs at least {needed} tasks, got {tasks.n_tasks}; give more tasks, a smaller validation fraction, or none (0)."
        )


def _held_out(validation: float, n_tasks: int) -> int:
    fraction = max(validation, 1 / n_tasks)
    return max(int(round(fraction * n_tasks)), 1)


def _check_axis(values: np.ndarray, name: str, what: str) -> None:
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InvalidInputError(f"The {name} axis of {what.lower()} has a value that is not a finite number.")
    steps = np.diff(values)
    if (steps <= 0).any():
        position = int(np.flatnonzero(steps <= 0)[0])
        raise InvalidInputError(
            f"The {name} axis of {what.lower()} is not strictly increasing ({name} {values[position + 1]:.17g} follows "
            f"{values[position]:.17g} at position {position + 1}); sort the tasks by {name}."
        )
