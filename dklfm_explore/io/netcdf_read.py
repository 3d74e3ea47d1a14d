"""Read a netCDF dataset of measurements: canonical dim order, numeric finite values, sorted mesh."""

from __future__ import annotations

import io

import numpy as np
import xarray as xr

from ..data import NETCDF_ENGINE, check_simulation_values, reading_netcdf
from ..errors import InvalidInputError
from .source import CLASSIC_NETCDF_MAGIC

__all__ = ["netcdf_dataset", "measurement_dataset"]


def netcdf_dataset(data: bytes, source: str) -> xr.Dataset:
    """The measurement variables of netCDF content, ``y : (task, output, [space,] time)``, sorted in the mesh."""
    engine = "scipy" if data.startswith(CLASSIC_NETCDF_MAGIC) else NETCDF_ENGINE
    with reading_netcdf(source):
        dataset = xr.open_dataset(io.BytesIO(data), engine=engine).load()
    return measurement_dataset(dataset, source)


def measurement_dataset(dataset: xr.Dataset, source: str) -> xr.Dataset:
    """A loaded netCDF dataset checked as measurements: ``y : (task, output, [space,] time)``, sorted in the mesh."""
    check_simulation_values(dataset, source)
    if "y" not in dataset:
        raise InvalidInputError(
            f"{source} has no variable 'y' (found: {', '.join(map(str, dataset.data_vars)) or 'none'}); "
            "measurements need 'y' with dims (task, output, [space,] time)."
        )
    dims = set(dataset["y"].dims)
    if not {"output", "time"} <= dims <= {"task", "output", "space", "time"}:
        raise InvalidInputError(f"Variable 'y' of {source} has dims {dataset['y'].dims} but needs (task, output, [space,] time).")
    if "task" not in dims:
        dataset = dataset.expand_dims(task=[0])
    mesh_dims = ("space", "time") if "space" in dims else ("time",)
    for dim in ("output",) + mesh_dims:
        if dim not in dataset.coords:
            raise InvalidInputError(f"{source} has no '{dim}' coordinate; label the {dim} dimension.")
    for dim in mesh_dims:
        values = dataset[dim].values
        if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
            raise InvalidInputError(f"The '{dim}' coordinate of {source} must hold finite numbers.")
        unique, counts = np.unique(values, return_counts=True)
        if (counts > 1).any():
            raise InvalidInputError(f"{dim.capitalize()} {unique[counts > 1][0]:g} appears twice in the '{dim}' coordinate of {source}.")
    for name, needed in (("y", ("task", "output") + mesh_dims), ("y_se", ("task", "output") + mesh_dims), ("f", ("task",) + mesh_dims)):
        if name in dataset:
            if set(dataset[name].dims) != set(needed):
                raise InvalidInputError(f"Variable {name!r} of {source} has dims {dataset[name].dims} but needs {needed}.")
            if not np.issubdtype(dataset[name].dtype, np.number):
                raise InvalidInputError(f"Variable {name!r} of {source} holds {dataset[name].dtype} values; it needs numbers.")
            dataset[name] = dataset[name].transpose(*needed).astype(np.float64)
    if "y_clean" in dataset and set(dataset["y_clean"].dims) == set(dataset["y"].dims):
        dataset["y_clean"] = dataset["y_clean"].transpose(*dataset["y"].dims)
    for name in ("y", "y_se", "f"):
        if name in dataset and np.isinf(dataset[name].values).any():
            index = np.argwhere(np.isinf(dataset[name].values))[0]
            where = ", ".join(f"{dim} {dataset[dim].values[i]}" for dim, i in zip(dataset[name].dims, index))
            raise InvalidInputError(f"Variable {name!r} of {source} has an infinite value at {where}; values must be finite or NaN.")
    if "y_se" in dataset and (dataset["y_se"].values < 0).any():
        raise InvalidInputError(f"Variable 'y_se' of {source} has negative measurement errors; errors are standard deviations (>= 0).")
    return dataset.sortby(list(mesh_dims))
