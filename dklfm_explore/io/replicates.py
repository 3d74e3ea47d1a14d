"""Combine the replicates (tasks) of measurements."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..data import TaskSet

__all__ = ["pool_replicates"]


def pool_replicates(tasks: TaskSet, label: str = "pooled") -> TaskSet:
    """Average the replicates (tasks) into one task, point by point.

    ``y`` is the mean over the replicates observed at each point (NaN where none is);
    ``y_se``, when present, becomes the standard error of that mean,
    ``sqrt(sum se^2) / n``; ``f`` (if known) is averaged the same way.

    Returns
    -------
    TaskSet with one task called ``label``.
    """
    data = tasks.dataset
    keep = [name for name in ("y", "y_se", "f") if name in data]
    count = data["y"].notnull().sum("task")
    pooled = {}
    for name in keep:
        if name == "y_se":
            pooled[name] = np.sqrt((data[name] ** 2).sum("task", skipna=True)) / count.where(count > 0)
        else:
            pooled[name] = data[name].mean("task", skipna=True, keep_attrs=True)
    dataset = xr.Dataset(pooled, attrs=dict(data.attrs)).expand_dims(task=[label])
    dataset = dataset.transpose("task", *[d for d in data["y"].dims if d != "task"], ...)
    return TaskSet(dataset)
