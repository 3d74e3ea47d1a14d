"""Is this data like what the model was trained on?  An out-of-distribution score per task.

A task's score combines two parts, each measured against its distribution over the validation
tasks, which :func:`ood_reference` records at training time for each output scaling
(``"training"``: the training set's statistics; ``"self"``: each task standardised by its own
mean/std, which is how uploaded measurements are scored whatever the other tasks of the file):

- the outputs' negative log marginal likelihood under the model per observed point,
  ``-log N(y | mu_y, K_yy + sigma_y^2 I) / n`` (the embedding is the task's own), two-sided:
  curves too unlikely (another system, pure noise) and too likely (constant ones, which a smooth GP
  explains better than any real task) are both unusual;
- the Mahalanobis distance of simple summary statistics of the curves (per output: roughness, and
  under the training scaling their level and spread), which catches curves the GP explains
  well but that no training task resembled (kinetics far outside the training ranges).

Each part is scaled so that 1 is its validation quantile (the likelihood's 0.25% and 99.75%, the
distance's 99.5%), which weighs their tails alike, and the task's raw score is the largest.  One
threshold on that raw score then sets the flag rate, as in conformal prediction (Vovk et al. 2005):
with ``n`` validation tasks it is their ``ceil((n + 1) * 0.99)``-th smallest raw score.  Were their
scores exchangeable with a new task's, a new task like them would exceed it with probability at most
1% and at least ``1% - 1 / (n + 1)``.  So each validation task is scored as a new one is, with the
other tasks' quantiles, centre and covariance (leave-one-out); in-sample ones are biased, since each
task pulls them towards itself (most the Mahalanobis distance: three statistics per output under the
training scaling).  Leave-one-out makes the scores nearly, not exactly, exchangeable: the rate is measured.
``ood_score`` is the raw score over that threshold: above 1 the task is flagged.  With fewer than 99
validation tasks the threshold is their largest raw score and the expected rate ``1 / (n + 1)``
(2% at 50 tasks).  benchmarks/results/ood_rate.md measures the rate on fresh tasks.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import xarray as xr

from .data import MIN_STD, Normaliser, TaskSet
from .errors import OutOfDistributionWarning

__all__ = ["flagged_warning", "OOD_QUANTILE", "output_nll", "summary_statistics", "MIN_REFERENCE_TASKS", "ood_reference", "reference_from_standardised", "ood_scores", "annotate", "ood_sentence"]

OOD_QUANTILE = 0.99
"""Fraction of the validation tasks whose score lies within the flagging threshold."""
MIN_REFERENCE_TASKS = 50
"""Fewest validation tasks :func:`ood_reference` accepts: with fewer, a 99% bound is little more than their extremes."""
CHUNK = 256
"""Tasks scored at once."""
SHOWN_TASKS = 10
"""Flagged tasks a warning names."""


def output_nll(module, coords, y: torch.Tensor) -> torch.Tensor:
    """Negative log marginal likelihood per observed point of each task's outputs ``y (task, output, *mesh)``
    (standardised, NaN = missing) on the normalised mesh ``coords``: Tensor ``(task,)`` float64, CPU."""
    parts = []
    with torch.no_grad():
        for start in range(0, y.shape[0], CHUNK):
            chunk = y[start : start + CHUNK]
            no_latent = torch.full((chunk.shape[0],) + tuple(chunk.shape[2:]), float("nan"), dtype=chunk.dtype, device=chunk.device)
            parts.append(module.loss_terms(coords, chunk, no_latent)[1].cpu())
    return torch.cat(parts)


def summary_statistics(y: torch.Tensor, scaling: str) -> torch.Tensor:
    """Per task and output: log roughness (mean squared step along time over the variance; scale-free), and with
    ``scaling="training"`` also the mean and log std of the standardised curve.

    Parameters
    ----------
    y : Tensor (task, output, *mesh)
        Standardised, NaN = missing.

    Returns
    -------
    Tensor (task, statistic) float64, CPU
    """
    y = y.cpu()
    flat = y.reshape(y.shape[0], y.shape[1], -1)
    mean = flat.nanmean(-1)
    variance = (flat - mean[..., None]).pow(2).nanmean(-1).clamp_min(MIN_STD**2)
    step = torch.diff(y, dim=-1).reshape(y.shape[0], y.shape[1], -1).pow(2).nanmean(-1)
    columns = [torch.log(torch.nan_to_num(step, nan=0.0).clamp_min(MIN_STD**2) / variance)]
    if scaling == "training":
        columns += [torch.nan_to_num(mean), 0.5 * torch.log(variance)]
    return torch.cat(columns, -1)


def ood_reference(module, normaliser: Normaliser, validation_tasks: TaskSet) -> dict | None:
    """Distribution of the score's parts over ``validation_tasks`` (on the training time axis), to store with the model.

    Returns
    -------
    dict
        ``{scaling: {...}}`` for ``"training"`` and ``"self"``: ``nll_low``, ``nll_median``, ``nll_high`` (the
        per-point NLL's 0.25%, 50% and 99.75% quantiles), ``summary_mean`` and ``summary_precision`` (of
        :func:`summary_statistics`), ``summary_threshold`` (the 99.5% quantile of their leave-one-out
        Mahalanobis distance), ``score_threshold`` (the raw score's conformal 99% bound), ``n_tasks``.
        Lists and floats only, so that a checkpoint loads it safely.
        None with fewer than :data:`MIN_REFERENCE_TASKS` validation tasks (inference then has no score).
    """
    device = module.latent_mean.device
    coords = (normaliser.transform_time(validation_tasks.time),)
    if validation_tasks.is_spatial:
        coords = (normaliser.transform_space(validation_tasks.space),) + coords
    y = validation_tasks.y()
    mean, std = normaliser.y_stats(y)
    return reference_from_standardised(module, tuple(c.to(device) for c in coords), ((y - mean) / std).to(device))


def reference_from_standardised(module, coords, y: torch.Tensor) -> dict | None:
    """:func:`ood_reference` from validation outputs already standardised by the training statistics.

    ``coords``: normalised mesh; ``y (task, output, *mesh)`` on the module's device.  The ``"self"``
    reference standardises each task by itself, which gives the same curves from these as from the raw ones.
    """
    if y.shape[0] < MIN_REFERENCE_TASKS:
        return None
    standardised = {"training": y, "self": _each_task_standardised(y)}
    tail = (1 - OOD_QUANTILE) / 4
    reference = {}
    for scaling, values in standardised.items():
        nll = output_nll(module, coords, values).numpy()
        summary = summary_statistics(values, scaling)
        centre = summary.mean(0)
        covariance = torch.atleast_2d(torch.cov(summary.T))
        ridge = 1e-6 * float(torch.diagonal(covariance).mean().clamp_min(1e-12))
        precision = torch.linalg.inv(covariance + ridge * torch.eye(covariance.shape[0], dtype=covariance.dtype))
        distance = _leave_one_out(_mahalanobis(summary, centre, precision), summary.shape[0]).numpy()
        low, median, high = (float(v) for v in np.quantile(nll, [tail, 0.5, 1 - tail]))
        stats = {
            "nll_low": low, "nll_median": median, "nll_high": high,
            "summary_mean": centre.tolist(), "summary_precision": precision.tolist(),
            "summary_threshold": float(np.quantile(distance, 1 - 2 * tail)), "n_tasks": int(nll.size),
        }
        others = {"nll_low": _quantile_of_others(nll, tail), "nll_median": _quantile_of_others(nll, 0.5),
                  "nll_high": _quantile_of_others(nll, 1 - tail), "summary_threshold": _quantile_of_others(distance, 1 - 2 * tail)}
        raw = _raw_scores(others, torch.from_numpy(nll), torch.from_numpy(distance)).numpy()
        stats["score_threshold"] = float(np.sort(raw)[min(math.ceil((raw.size + 1) * OOD_QUANTILE), raw.size) - 1])
        reference[scaling] = stats
    return reference


def _mahalanobis(summary: torch.Tensor, centre: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    centred = summary - centre
    return ((centred @ precision) * centred).sum(-1).clamp_min(0.0).sqrt()


def _leave_one_out(distance: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """Mahalanobis distances ``(task,)`` of each of ``n_tasks`` tasks to the centre and covariance of the others, from
    their in-sample ones (Sherman-Morrison on the scatter matrix ``W``, with ``h = d^2 / (n - 1) = z^T W^-1 z``):
    ``d_(-i)^2 = (n - 2) n^2 / (n - 1)^2 * h / (1 - n h / (n - 1))``."""
    n = n_tasks
    leverage = (distance.pow(2) / (n - 1)).clamp_max((n - 1) / n * (1 - 1e-12))
    return ((n - 2) * n**2 / (n - 1) ** 2 * leverage / (1 - n * leverage / (n - 1))).sqrt()


def _quantile_of_others(values: np.ndarray, level: float) -> np.ndarray:
    """For each of the ``values (task,)``, the ``level`` quantile (``np.quantile``'s linear one) of the other tasks' values."""
    n = values.size
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    position = level * (n - 2)
    below = int(np.floor(position))
    above = min(below + 1, n - 2)
    lower = ordered[below + (below >= rank)]
    upper = ordered[above + (above >= rank)]
    return lower + (position - below) * (upper - lower)


def _raw_scores(stats: dict, nll: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """The largest of the three parts ``(task,)``, each 1 at its validation quantile (floats, or one per task)."""
    as_tensor = lambda key: torch.as_tensor(stats[key], dtype=nll.dtype)  # noqa: E731
    median = as_tensor("nll_median")
    above = (nll - median) / (as_tensor("nll_high") - median).clamp_min(1e-12)
    below = (median - nll) / (median - as_tensor("nll_low")).clamp_min(1e-12)
    return torch.stack([above, below, distance / as_tensor("summary_threshold").clamp_min(1e-12)]).amax(0)


def _each_task_standardised(y: torch.Tensor) -> torch.Tensor:
    """``y (task, output, *mesh)`` with each task's outputs standardised by their own mean/std over the mesh, NaN ignored."""
    flat = y.reshape(y.shape[0], y.shape[1], -1)
    observed = ~torch.isnan(flat)
    count = observed.sum(-1, keepdim=True).clamp_min(1)
    mean = torch.nan_to_num(flat).sum(-1, keepdim=True) / count
    centred = torch.where(observed, flat - mean, torch.zeros_like(flat))
    std = (centred.pow(2).sum(-1, keepdim=True) / (count - 1).clamp_min(1)).sqrt().clamp_min(MIN_STD)
    return ((flat - mean) / std).reshape(y.shape)


def ood_scores(module, reference: dict | None, coords, y: torch.Tensor, output_scaling: str,
               conditioned_nll: torch.Tensor | None = None) -> torch.Tensor | None:
    """Each task's raw score over the validation threshold (flagged above 1): Tensor ``(task,)``.

    ``y (task, output, *mesh)`` as the task was conditioned; with ``output_scaling="self"`` each task is
    standardised by itself first, as the reference's were, so that its score does not depend on the file's
    other tasks.  ``conditioned_nll (task,)``: :func:`output_nll` of ``y`` as conditioned, when the conditioning
    already computed it (:attr:`~dklfm_explore.model.dklfm.Posterior.output_nll`); used under the ``"training"``
    scaling only, where the scored curves are the conditioned ones.  None when the model has no reference (checkpoints written before it existed).  References
    stored before the threshold was calibrated (no ``score_threshold``) keep their threshold of 1.
    """
    if not reference or output_scaling not in reference:
        return None
    stats = reference[output_scaling]
    if output_scaling == "self":
        y = _each_task_standardised(y)
    summary = summary_statistics(y, output_scaling)
    centre = torch.tensor(stats["summary_mean"], dtype=summary.dtype)
    precision = torch.tensor(stats["summary_precision"], dtype=summary.dtype)
    nll = conditioned_nll if conditioned_nll is not None and output_scaling == "training" else output_nll(module, coords, y)
    raw = _raw_scores(stats, nll, _mahalanobis(summary, centre, precision))
    return raw / max(stats.get("score_threshold", 1.0), 1e-12)


def annotate(result: xr.Dataset, module, reference: dict | None, coords, y: torch.Tensor, output_scaling: str,
             *, output_nll: torch.Tensor | None = None, stacklevel: int = 3) -> xr.Dataset:
    """Add ``ood_score`` and ``out_of_distribution`` ``(task,)`` to an inference ``result`` (unchanged without a
    ``reference``); warn naming the flagged tasks.  ``coords``, ``y``, ``output_scaling``: as the result was conditioned;
    ``output_nll``: the conditioning's own (see :func:`ood_scores`)."""
    scores = ood_scores(module, reference, coords, y, output_scaling, conditioned_nll=output_nll)
    if scores is None:
        return result
    flagged = scores.numpy() > 1.0
    result["ood_score"] = ("task", scores.numpy(), {"description": "above 1: outside the central 99% of the validation tasks"})
    result["out_of_distribution"] = ("task", flagged)
    if flagged.any():
        names = [str(name) for name in result["task"].values[flagged]]
        warnings.warn(flagged_warning(names[:SHOWN_TASKS], len(names)), stacklevel=stacklevel)
    return result


def flagged_warning(first_names: list[str], count: int) -> OutOfDistributionWarning:
    """The warning naming ``count`` flagged tasks, of which the first :data:`SHOWN_TASKS` names are given."""
    shown = ", ".join(first_names[:SHOWN_TASKS]) + (f" and {count - SHOWN_TASKS} more" if count > SHOWN_TASKS else "")
    return OutOfDistributionWarning(
        f"{count} task(s) look unlike the model's validation tasks (score beyond their 99th percentile): {shown}.")


def ood_sentence(result: xr.Dataset) -> str:
    """One sentence naming an inference result's flagged tasks with their scores; "" when none is flagged or it has no score."""
    if "out_of_distribution" not in result or not result["out_of_distribution"].values.any():
        return ""
    flagged = result["out_of_distribution"].values
    named = [f"{name} ({score:.1f})" for name, score in zip(result["task"].values[flagged], result["ood_score"].values[flagged])]
    return (f"Out of distribution: {', '.join(named[:10])}{' and more' if len(named) > 10 else ''} look unlike the "
            f"model's validation tasks (score above 1 = beyond their 99th percentile); treat the inference with care.")
