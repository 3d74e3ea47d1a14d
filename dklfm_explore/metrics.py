"""Accuracy and calibration of inferred forces, in standardised units.

Every metric compares a result (``latent_mean``, ``latent_std`` ``(task, [space,] time)``;
``output_mean``, ``output_std`` ``(task, output, [space,] time)``) with the truth of the same
tasks on the same mesh.  "Standardised" means divided by a *training-set* scale: the latent's
standard deviation over the training tasks (and each output's, for outputs), so that numbers
are comparable across systems and never use test-set statistics.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .errors import InvalidInputError

__all__ = ["latent_metrics", "output_metrics", "task_latent_mse", "COVERAGE_Z"]

COVERAGE_Z = 1.959963984540054
"""Half-width of a central 95% Gaussian interval in standard deviations."""


def _aligned(result: xr.Dataset, truth: xr.DataArray, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, std = result[f"{name}_mean"], result[f"{name}_std"]
    if mean.shape != truth.shape:
        raise InvalidInputError(f"{name} result has shape {mean.shape} but the truth has {truth.shape}; infer on the truth's mesh.")
    return mean.values, std.values, truth.values


def _scores(mean: np.ndarray, std: np.ndarray, truth: np.ndarray, scale: np.ndarray | float) -> dict[str, float]:
    error = (mean - truth) / scale
    sd = np.maximum(std / scale, 1e-12)
    keep = np.isfinite(truth) & np.isfinite(mean)
    if not keep.any():
        raise InvalidInputError("No finite truth values to score against.")
    squared = error[keep] ** 2
    z = np.abs(error[keep]) / sd[keep]
    nlpd = 0.5 * math.log(2 * math.pi) + np.log(sd[keep]) + 0.5 * z**2
    return {"mse": float(squared.mean()), "coverage95": float((z <= COVERAGE_Z).mean()), "nlpd": float(nlpd.mean())}


def latent_metrics(result: xr.Dataset, truth: xr.DataArray, scale: float) -> dict[str, float]:
    """Latent MSE, 95%-interval coverage and mean negative log predictive density.

    Parameters
    ----------
    result : xarray.Dataset
        With ``latent_mean`` and ``latent_std`` ``(task, [space,] time)``.
    truth : xarray.DataArray ``(task, [space,] time)``
        The true latent force.
    scale : float
        The training set's latent standard deviation.

    Returns
    -------
    dict with ``latent_mse`` = mean ((mean - f) / scale)^2, ``coverage95`` = fraction of points with
    |mean - f| <= 1.96 std, ``nlpd`` = mean of -log N(f / scale | mean / scale, (std / scale)^2).
    """
    scores = _scores(*_aligned(result, truth, "latent"), scale)
    return {"latent_mse": scores["mse"], "coverage95": scores["coverage95"], "nlpd": scores["nlpd"]}


def output_metrics(result: xr.Dataset, truth: xr.DataArray, scale) -> dict[str, float]:
    """Output MSE in standardised units.

    Parameters
    ----------
    truth : xarray.DataArray ``(task, output, [space,] time)``
        Noise-free outputs where known (``y_clean``), else the observations.
    scale : array ``(output,)``
        The training set's standard deviation of each output.
    """
    mean, std, values = _aligned(result, truth, "output")
    shape = (1, -1) + (1,) * (values.ndim - 2)
    scores = _scores(mean, std, values, np.asarray(scale, dtype=float).reshape(shape))
    return {"output_mse": scores["mse"]}


def task_latent_mse(result: xr.Dataset, truth: xr.DataArray, task: int = 0, scale: float = 1.0) -> float:
    """Standardised latent MSE of one task, ``mean(((mean - f) / scale)^2)``, on the truth's mesh.

    Parameters
    ----------
    result : xarray.Dataset
        ``latent_mean (task, [space,] time)`` queried on a mesh that contains the truth's mesh
        (the same mesh, or a denser one).
    truth : xarray.DataArray ``(task, [space,] time)``
    scale : float
        The training set's latent standard deviation (1 gives the MSE in the force's units).
    """
    one = truth.isel(task=task)
    mean = result["latent_mean"].isel(task=task).sel({name: one[name].values for name in one.dims})
    return float(np.nanmean(((mean.values - one.values) / scale) ** 2))
