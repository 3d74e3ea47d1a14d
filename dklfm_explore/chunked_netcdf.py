"""A netCDF file written a chunk of tasks at a time, so that no more than one chunk is ever in memory."""

from __future__ import annotations

import os

import h5netcdf
import h5py
import numpy as np
import xarray as xr

from .data import CHECKSUMMED

__all__ = ["ChunkedNetCDF", "STORAGE_CHUNK_TASKS"]

STORAGE_CHUNK_TASKS = 1024
"""Tasks per HDF5 chunk of a variable along ``task`` (a reader of one task reads at most this many)."""


class ChunkedNetCDF:
    """Write datasets of consecutive tasks into one netCDF file of ``n_tasks`` tasks.

    The first dataset fixes the variables, their dims, dtypes and attrs and the coordinates
    without a ``task`` dim; each :meth:`write` fills its rows of every variable along ``task``
    (the ``task`` coordinate included).  Floats get a Fletcher-32 checksum and NaN as fill value;
    booleans are stored as int8 marked ``dtype: bool``, which xarray reads back as booleans.

    Parameters
    ----------
    path : path
        Usually the temporary file of :func:`~dklfm_explore.atomic.atomic_write`.
    n_tasks : int
    attrs : dict
        Global attributes (:meth:`close` may update them).
    """

    def __init__(self, path: str | os.PathLike, n_tasks: int, attrs: dict):
        self.path, self.n_tasks, self.attrs = path, int(n_tasks), dict(attrs)
        self.file = None

    def _create(self, dataset: xr.Dataset) -> None:
        handle = h5netcdf.File(self.path, "w")
        handle.dimensions = dict(dataset.sizes, task=self.n_tasks)
        for name, variable in dataset.variables.items():
            along_task = "task" in variable.dims
            kind = variable.dtype.kind
            options = {}
            if kind in "UO":
                options["dtype"] = h5py.string_dtype()
            else:
                options["dtype"] = np.int8 if kind == "b" else variable.dtype
                if variable.ndim:
                    options.update(CHECKSUMMED)
            if along_task:
                options["chunks"] = (min(STORAGE_CHUNK_TASKS, self.n_tasks),) + tuple(variable.shape[1:])
                if kind == "f":
                    options["fillvalue"] = np.nan
            else:
                options["data"] = _stored(variable.values)
            created = handle.create_variable(name, variable.dims, **options)
            created.attrs.update(variable.attrs)
            if kind == "b":
                created.attrs["dtype"] = "bool"
        handle.attrs.update(self.attrs)
        self.file = handle

    def write(self, dataset: xr.Dataset, start: int) -> None:
        """Fill rows ``start : start + dataset.sizes["task"]`` of every variable along ``task``."""
        if self.file is None:
            self._create(dataset)
        stop = start + dataset.sizes["task"]
        for name, variable in dataset.variables.items():
            if "task" in variable.dims:
                self.file.variables[name][start:stop] = _stored(variable.values)

    def close(self, attrs: dict | None = None) -> None:
        """Update the global attributes with ``attrs`` and close the file."""
        if self.file is not None:
            self.file.attrs.update(attrs or {})
            self.file.close()
            self.file = None


def _stored(values: np.ndarray) -> np.ndarray:
    """``values`` as HDF5 stores them: strings as objects, booleans as int8."""
    if values.dtype.kind in "UO":
        return values.astype(object)
    if values.dtype.kind == "b":
        return values.astype(np.int8)
    return values
