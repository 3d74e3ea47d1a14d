"""Is this data like what the model was trained on?  An out-of-distribution score per task.

The score of a task is its outputs' negative log marginal likelihood under the model, per observed
point, ``-log N(y | mu_y, K_yy + sigma_y^2 I) / n`` (the embedding is the task's own).  At training
time :func:`ood_reference` records its distribution over the validation tasks, for each output
scaling (``"training"``: the training set's statistics; ``"self"``: each task standardised by its own
pooled mean/std, as uploaded measurements are).  A task's ``ood_score`` is its distance from the
validation median in units of the distance from the median to the validation tasks' 99.5th percentile
(above the median) or 0.5th percentile (below it), so that a score above 1 (flagged) lies outside the
central 99% of the validation tasks.  The test is two-sided: curves that are too unlikely
(another system, pure noise, kinetics far outside the training ranges) and curves that are too
likely (constant ones, which a smooth GP explains better than any real task) are both flagged.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import xarray as xr

from .data import TaskSet
from .errors import OutOfDistributionWarning
from .task_inputs import TaskInputs, standardise_inputs

__all__ = ["OOD_QUANTILE", "output_nll", "ood_reference", "ood_scores", "annotate"]

OOD_QUANTILE = 0.99
"""Fraction of the validation tasks whose score lies within the flagging threshold."""
CHUNK = 256
"""Tasks scored at once."""


def output_nll(module, inputs: TaskInputs) -> torch.Tensor:
    """Negative log marginal likelihood of each task's observed outputs per observed point: Tensor ``(task,)`` float64, CPU."""
    y = inputs.y
    parts = []
    with torch.no_grad():
        for start in range(0, y.shape[0], CHUNK):
            chunk = y[start : start + CHUNK]
            no_latent = torch.full((chunk.shape[0],) + tuple(chunk.shape[2:]), float("nan"), dtype=chunk.dtype, device=chunk.device)
            parts.append(module.loss_terms(inputs.coords, chunk, no_latent)[1].cpu())
    return torch.cat(parts)


def ood_reference(model, validation_tasks: TaskSet) -> dict:
    """Distribution of the score over ``validation_tasks``, to store with the model.

    Returns
    -------
    dict
        ``{scaling: {"low": float, "median": float, "high": float, "n_tasks": int}}`` for ``"training"`` and
        ``"self"``; ``low`` and ``high`` bound the central :data:`OOD_QUANTILE` of the validation scores.
    """
    reference = {}
    for scaling in ("training", "self"):
        if scaling == "training":
            nll = output_nll(model.module, standardise_inputs(model, validation_tasks, "none", "training"))
        else:
            nll = torch.cat([output_nll(model.module, standardise_inputs(model, validation_tasks.isel([i]), "none", "self"))
                             for i in range(validation_tasks.n_tasks)])
        tail = (1 - OOD_QUANTILE) / 2
        low, median, high = (float(v) for v in np.quantile(nll.numpy(), [tail, 0.5, 1 - tail]))
        reference[scaling] = {"low": low, "median": median, "high": high, "n_tasks": int(nll.numel())}
    return reference


def ood_scores(model, inputs: TaskInputs) -> torch.Tensor | None:
    """Distance from the validation median in units of the central-99% half-width on that side, Tensor ``(task,)``.

    None when the model has no reference (checkpoints written before it existed).
    """
    reference = getattr(model, "ood_reference", None)
    if not reference or inputs.output_scaling not in reference:
        return None
    stats = reference[inputs.output_scaling]
    nll = output_nll(model.module, inputs)
    above = (nll - stats["median"]) / max(stats["high"] - stats["median"], 1e-12)
    below = (stats["median"] - nll) / max(stats["median"] - stats["low"], 1e-12)
    return torch.maximum(above, below)


def annotate(model, inputs: TaskInputs, result: xr.Dataset, *, stacklevel: int = 3) -> xr.Dataset:
    """Add ``ood_score`` and ``out_of_distribution`` ``(task,)`` to an inference ``result``; warn naming the flagged tasks."""
    scores = ood_scores(model, inputs)
    if scores is None:
        return result
    flagged = scores.numpy() > 1.0
    result["ood_score"] = ("task", scores.numpy(), {"description": "above 1: outside the central 99% of the validation tasks"})
    result["out_of_distribution"] = ("task", flagged)
    if flagged.any():
        names = [str(name) for name in result["task"].values[flagged]]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        warnings.warn(OutOfDistributionWarning(
            f"{len(names)} task(s) look unlike the model's validation tasks (score beyond their 99th percentile): {shown}."),
            stacklevel=stacklevel)
    return result
