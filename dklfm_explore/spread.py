"""Pooled mean and standard deviation that cannot overflow, and when a spread is no spread.

Values are divided by their largest magnitude before they are summed, so the moments of data
near the float64 limit (about 1.8e308) are finite; a spread below :data:`RELATIVE_SPREAD` of that
magnitude is float rounding, not signal (``1 + 1e-15 * noise`` is constant).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

__all__ = ["pooled_moments", "is_constant", "RELATIVE_SPREAD", "MAX_MAGNITUDE"]

RELATIVE_SPREAD = 1e-10
"""A standard deviation at most this fraction of the largest magnitude counts as zero: values that agree
to ten significant digits differ by rounding, and standardising by that difference would blow rounding up."""
MAX_MAGNITUDE = 1e150
"""Largest magnitude of an output or force the model takes: its variance (the square, summed) must fit in a float64."""


def pooled_moments(values: xr.DataArray, dims: Sequence[str], ddof: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation and largest magnitude of ``values`` over ``dims``, NaN ignored.

    Returns
    -------
    mean, std, magnitude : arrays over the dims of ``values`` not in ``dims``
        NaN where a group has no value (``std`` also where it has too few for ``ddof``).
    """
    magnitude = abs(values).max(dims, skipna=True)
    scale = magnitude.where(magnitude > 0, 1.0).fillna(1.0)
    scaled = values / scale
    mean = scaled.mean(dims, skipna=True) * scale
    std = scaled.std(dims, skipna=True, ddof=ddof) * scale
    return np.asarray(mean.values, dtype=np.float64), np.asarray(std.values, dtype=np.float64), np.asarray(magnitude.values, dtype=np.float64)


def is_constant(std: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Whether each spread ``std`` is no spread: at most :data:`RELATIVE_SPREAD` of ``magnitude`` (or not finite)."""
    std, magnitude = np.asarray(std, dtype=np.float64), np.asarray(magnitude, dtype=np.float64)
    return ~(std > RELATIVE_SPREAD * magnitude)
