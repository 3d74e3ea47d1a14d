"""Task sets: named-dimension arrays of simulated or measured tasks.

A task set is an :class:`xarray.Dataset` with dims ``task``, ``output``,
``time`` (and ``space`` for space x time systems), in that order::

    y        (task, output, [space,] time)   observed outputs, NaN where missing
    y_clean  (task, output, [space,] time)   noise-free outputs (simulations)
    f        (task, [space,] time)           latent force, where known
    y_se     (task, output, [space,] time)   known measurement error (optional)
    <param>  (task,) or (task, output)       kinetic parameters, force hyperparameters

and attrs ``system``, ``time_unit``, ``output_unit``, ``latent_unit``,
``noise_level``, ``spec`` (JSON of the :class:`~dklfm_explore.spec.SimulationSpec`; older files:
``settings``) and ``package_version``.  :class:`TaskSet`
wraps it with validation, I/O, splits, re-meshing and tensor access.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import xarray as xr

from .atomic import atomic_write
from .errors import InvalidInputError
from .spec import LEGACY_SETTINGS_ATTR, SPEC_ATTR, SimulationSpec

__all__ = ["TaskSet", "Normaliser", "open_taskset"]

NETCDF_ENGINE = "h5netcdf"
CHECKSUMMED = {"fletcher32": True}
"""Storage options of every variable this package writes: a Fletcher-32 checksum per chunk."""
MAX_DETAIL = 120
"""An engine's own message is quoted up to this many characters."""
MIN_STD = 1e-12
"""Standard deviations below this are treated as zero (a constant series) when normalising."""


class TaskSet:
    """A set of tasks over one mesh, backed by an :class:`xarray.Dataset`.

    Parameters
    ----------
    dataset : xarray.Dataset
        With the dims and variables described in this module's docstring.

    Raises
    ------
    InvalidInputError
        If ``y`` is missing or its dims are not ``(task, output, [space,] time)``.
    """

    def __init__(self, dataset: xr.Dataset):
        if "y" not in dataset:
            raise InvalidInputError("A task set needs a variable `y` with dims (task, output, [space,] time).")
        dims = dataset["y"].dims
        if dims not in (("task", "output", "time"), ("task", "output", "space", "time")):
            raise InvalidInputError(f"`y` has dims {dims} but needs (task, output, time) or (task, output, space, time).")
        if "f" in dataset and dataset["f"].dims != tuple(d for d in dims if d != "output"):
            raise InvalidInputError(f"`f` has dims {dataset['f'].dims} but needs {tuple(d for d in dims if d != 'output')}.")
        self.dataset = dataset

    def __repr__(self) -> str:
        mesh = f"{self.n_space} x {self.n_time}" if self.is_spatial else f"{self.n_time}"
        return f"<TaskSet {self.system_name or 'measurements'}: {self.n_tasks} tasks, {self.n_outputs} outputs, mesh {mesh}>"

    @property
    def system_name(self) -> str:
        """Name of the system that simulated the tasks ('' for measurements)."""
        return str(self.dataset.attrs.get("system", ""))

    @property
    def spec(self) -> SimulationSpec | None:
        """The :class:`SimulationSpec` that simulated these tasks, from the attrs (None for measurements).

        Read from the ``spec`` attribute, or from the ``settings`` of files written before the
        spec existed (their explicit meshes are taken from the file's coordinates).

        Raises
        ------
        InvalidInputError
            If the stored spec is not valid.
        """
        attrs = self.dataset.attrs
        if attrs.get(SPEC_ATTR):
            return SimulationSpec.from_json(attrs[SPEC_ATTR])
        raw = attrs.get(LEGACY_SETTINGS_ATTR)
        if not raw or not self.system_name:
            return None
        try:
            settings = json.loads(raw)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"The task set's settings attribute is not valid JSON ({error}).") from error
        return SimulationSpec.from_legacy_settings(
            self.system_name, settings, n_outputs=self.n_outputs, time=self.dataset["time"].values,
            space=self.dataset["space"].values if self.is_spatial else None,
        )

    @property
    def n_tasks(self) -> int:
        return int(self.dataset.sizes["task"])

    @property
    def n_outputs(self) -> int:
        return int(self.dataset.sizes["output"])

    @property
    def n_time(self) -> int:
        return int(self.dataset.sizes["time"])

    @property
    def n_space(self) -> int:
        return int(self.dataset.sizes.get("space", 0))

    @property
    def is_spatial(self) -> bool:
        return "space" in self.dataset["y"].dims

    @property
    def has_latent(self) -> bool:
        """Whether the latent force ``f`` is known."""
        return "f" in self.dataset

    @property
    def output_names(self) -> list[str]:
        return [str(v) for v in self.dataset["output"].values]

    @property
    def time(self) -> torch.Tensor:
        """Tensor ``(time,)`` float64."""
        return torch.tensor(self.dataset["time"].values, dtype=torch.float64)

    @property
    def space(self) -> torch.Tensor | None:
        """Tensor ``(space,)`` float64, or ``None`` for time-only tasks."""
        return torch.tensor(self.dataset["space"].values, dtype=torch.float64) if self.is_spatial else None

    @property
    def parameter_names(self) -> list[str]:
        """Per-task variables other than the outputs and the force."""
        skip = {"y", "y_clean", "f", "y_se", "noise_std"}
        return [name for name, var in self.dataset.data_vars.items() if name not in skip and var.dims[:1] == ("task",)]

    def tensor(self, name: str, tasks=None, *, device=None, dtype=torch.float64) -> torch.Tensor:
        """Return variable ``name`` for ``tasks`` (index, slice or list) as a tensor, loading only those tasks."""
        variable = self.dataset[name]
        if tasks is not None:
            variable = variable.isel(task=tasks)
        return torch.as_tensor(np.asarray(variable.values, dtype=np.float64), dtype=dtype, device=device)

    def y(self, tasks=None, **kwargs) -> torch.Tensor:
        """Outputs, Tensor ``(task, output, [space,] time)``; NaN where not observed."""
        return self.tensor("y", tasks, **kwargs)

    def f(self, tasks=None, **kwargs) -> torch.Tensor:
        """Latent force, Tensor ``(task, [space,] time)``."""
        if not self.has_latent:
            raise InvalidInputError("This task set has no latent force `f` (measurements only carry outputs).")
        return self.tensor("f", tasks, **kwargs)

    def isel(self, tasks) -> "TaskSet":
        """The task set restricted to ``tasks`` (positions)."""
        return TaskSet(self.dataset.isel(task=tasks))

    def split(self, n_test: int | float, *, seed: int = 0) -> tuple["TaskSet", "TaskSet"]:
        """Split into ``(train, test)`` with a permutation drawn from ``seed``.

        ``n_test`` is a count, or a fraction of the tasks if below 1.
        """
        count = int(round(n_test * self.n_tasks)) if 0 < n_test < 1 else int(n_test)
        if not 0 < count < self.n_tasks:
            raise InvalidInputError(f"Cannot hold out {n_test} of {self.n_tasks} tasks; keep at least one on each side.")
        order = np.random.default_rng(seed).permutation(self.n_tasks)
        return self.isel(np.sort(order[count:])), self.isel(np.sort(order[:count]))

    def coarsen(self, time: int = 1, space: int = 1) -> "TaskSet":
        """Keep every ``time``-th time and ``space``-th space point (41 x 41 -> 21 x 21 with 2, 2)."""
        index = {"time": slice(None, None, time)}
        if self.is_spatial:
            index["space"] = slice(None, None, space)
        return TaskSet(self.dataset.isel(index))

    def window(self, t_min: float | None = None, t_max: float | None = None) -> "TaskSet":
        """Keep the times in ``[t_min, t_max]`` (for example a training window for extrapolation)."""
        times = self.dataset["time"].values
        keep = np.ones(times.shape, dtype=bool)
        if t_min is not None:
            keep &= times >= t_min
        if t_max is not None:
            keep &= times <= t_max
        if keep.sum() < 2:
            raise InvalidInputError(f"The window [{t_min}, {t_max}] keeps {int(keep.sum())} time point(s); it needs at least 2.")
        return TaskSet(self.dataset.isel(time=np.flatnonzero(keep)))

    def select_mesh(self, time=None, space=None, *, tolerance: float = 1e-9) -> "TaskSet":
        """Keep the mesh points at the given coordinates (each must be on the mesh within ``tolerance``).

        With a task set simulated on the union of a coarse and a fine grid, this gives the same tasks
        on either grid (observed coarse, truth fine: super-resolution).
        """
        index = {}
        for name, wanted in (("time", time), ("space", space)):
            if wanted is None:
                continue
            if name == "space" and not self.is_spatial:
                raise InvalidInputError("A space selection was given but the tasks are over time only.")
            grid = self.dataset[name].values
            wanted = np.atleast_1d(np.asarray(wanted, dtype=np.float64))
            nearest = np.abs(grid[None, :] - wanted[:, None]).argmin(axis=1)
            off = np.abs(grid[nearest] - wanted) > tolerance
            if off.any():
                raise InvalidInputError(f"{name} {wanted[off][0]:g} is not on the task set's {name} mesh.")
            index[name] = nearest
        return TaskSet(self.dataset.isel(index))

    def batches(self, batch_size: int, *, seed: int | None = None, device=None) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """Stream ``(task_index, y, f)`` batches, reading only one batch at a time from a lazy file.

        ``seed`` shuffles the order of the batches' tasks; ``None`` keeps file order.
        """
        order = np.arange(self.n_tasks) if seed is None else np.random.default_rng(seed).permutation(self.n_tasks)
        for start in range(0, self.n_tasks, batch_size):
            index = np.sort(order[start : start + batch_size])
            yield index, self.y(index, device=device), self.f(index, device=device)

    def load(self) -> "TaskSet":
        """Read every variable into memory.

        Raises
        ------
        InvalidInputError
            If the file behind a lazily opened task set is damaged (see :func:`reading_netcdf`).
        """
        source = Path(self.dataset.encoding.get("source", "the task set's file")).name
        with reading_netcdf(source):
            dataset = self.dataset.load()
        check_simulation_values(dataset, source)
        return TaskSet(dataset)

    def save(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write the task set as netCDF (atomically: a failed write leaves no partial file).

        ``overwrite=False`` refuses an existing ``path`` (:func:`~dklfm_explore.atomic.atomic_write`).
        """
        path = Path(path)
        encoding = {
            name: dict(CHECKSUMMED) for name, variable in self.dataset.variables.items() if variable.ndim and variable.dtype.kind in "biuf"
        }
        with atomic_write(path, overwrite=overwrite) as partial:
            self.dataset.to_netcdf(partial, engine=NETCDF_ENGINE, encoding=encoding)
        return path


@contextmanager
def reading_netcdf(source: str) -> Iterator[None]:
    """Read netCDF inside this block: a failure becomes one :class:`InvalidInputError` sentence.

    A damaged file can leave the engine's half-opened objects behind, whose clean-up would print
    "Exception ignored ..." tracebacks later; they are freed here, quietly.  A changed byte in the
    data of a file this package wrote fails its checksum (:data:`CHECKSUMMED`) and is reported.
    """
    try:
        yield
    except Exception as error:  # the engines raise many unrelated types for a bad file
        detail = str(error).splitlines()[0][:MAX_DETAIL] if str(error) else ""
        hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: None
        try:
            traceback.clear_frames(error.__traceback__)
            gc.collect()
        finally:
            sys.unraisablehook = hook
        raise InvalidInputError(f"{source} is not a readable netCDF file ({type(error).__name__}: {detail}).") from error


def open_taskset(path: str | os.PathLike, *, lazy: bool = True, chunk_tasks: int = 1024) -> TaskSet:
    """Open a task set saved as netCDF.

    Parameters
    ----------
    lazy : bool
        Keep the data on disk and read tasks as they are asked for (dask chunks of
        ``chunk_tasks`` tasks), so a task set larger than memory can be trained on.

    Raises
    ------
    InvalidInputError
        If the file does not exist, is not netCDF or is not a task set.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"No task set file at {str(path)!r}.")
    with reading_netcdf(path.name):
        dataset = xr.open_dataset(path, engine=NETCDF_ENGINE, chunks={"task": chunk_tasks} if lazy else None)
        if not lazy:
            dataset = dataset.load()
    _check_package_attrs(dataset, path.name)
    if not lazy:
        check_simulation_values(dataset, path.name)
    return TaskSet(dataset)


def check_simulation_values(dataset: xr.Dataset, source: str) -> None:
    """Refuse a simulated task set (it has ``y_clean``) with a missing value: a simulation has none, so a
    damaged file (its unreadable chunks read as NaN) is caught here."""
    if "y_clean" not in dataset:
        return
    for name in ("y", "y_clean", "f"):
        if name in dataset and not np.isfinite(dataset[name].values).all():
            raise InvalidInputError(f"Variable {name!r} of {source} has missing values, which a simulation never has; the file is damaged.")


def _check_package_attrs(dataset: xr.Dataset, source: str) -> None:
    if "settings" in dataset.attrs:
        try:
            json.loads(dataset.attrs["settings"])
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"The 'settings' attribute of {source} is damaged (not JSON); simulate the task set again.") from error


@dataclass(frozen=True)
class Normaliser:
    """Invertible affine standardisation of outputs, latent force and time.

    Fitted on training tasks only: ``y`` per output over (task, mesh), ``f`` over
    (task, mesh); time is mapped to ``[0, 1]`` over the training window.  Test
    tasks never contribute to the statistics.

    Attributes
    ----------
    y_mean, y_std : tuple of float, one per output
    f_mean, f_std : float
    time_offset, time_scale : float
        ``time_normalised = (time - time_offset) / time_scale``.
    space_offset, space_scale : float
    """

    y_mean: tuple[float, ...]
    y_std: tuple[float, ...]
    f_mean: float
    f_std: float
    time_offset: float
    time_scale: float
    space_offset: float = 0.0
    space_scale: float = 1.0
    mesh_dims: int = 1

    @classmethod
    def fit(cls, tasks: TaskSet) -> "Normaliser":
        """Fit on ``tasks`` (the training set)."""
        reduce = [d for d in tasks.dataset["y"].dims if d != "output"]
        y_mean = tasks.dataset["y"].mean(reduce, skipna=True).values
        y_std = tasks.dataset["y"].std(reduce, skipna=True).values
        f_mean, f_std = (0.0, 1.0)
        if tasks.has_latent:
            f_mean = float(tasks.dataset["f"].mean().values)
            f_std = float(tasks.dataset["f"].std().values)
        return cls._from_statistics(np.asarray(y_mean), np.asarray(y_std), f_mean, f_std, tasks.time, tasks.space)

    @classmethod
    def fit_tensors(cls, y: torch.Tensor, f: torch.Tensor, time: torch.Tensor, space: torch.Tensor | None = None) -> "Normaliser":
        """Fit on tensors ``y (task, output, [space,] time)``, ``f (task, [space,] time)`` as :meth:`fit` does on a task set."""
        per_output = y.detach().to(torch.float64).transpose(0, 1).reshape(y.shape[1], -1).cpu()
        observed = ~torch.isnan(per_output)
        count = observed.sum(-1).clamp_min(1)
        y_mean = torch.nan_to_num(per_output).sum(-1) / count
        centred = torch.where(observed, per_output - y_mean[:, None], torch.zeros_like(per_output))
        y_std = (centred.pow(2).sum(-1) / count).sqrt()
        latent = f.detach().to(torch.float64).reshape(-1).cpu()
        latent = latent[~torch.isnan(latent)]
        f_mean = float(latent.mean()) if latent.numel() else 0.0
        f_std = float(latent.std(correction=0)) if latent.numel() else 1.0
        return cls._from_statistics(y_mean.tolist(), y_std.tolist(), f_mean, f_std, time, space)

    @classmethod
    def _from_statistics(cls, y_mean, y_std, f_mean: float, f_std: float, time, space) -> "Normaliser":
        """The normaliser of per-output ``y_mean``, ``y_std`` ``(output,)``, the latent's ``f_mean``, ``f_std`` and the mesh.

        A std below ``MIN_STD`` is raised to it (a non-finite output std becomes 1);
        ``time (time,)`` maps to ``[0, 1]``, as ``space (space,)`` (or ``None``) does.
        """
        return cls(
            y_mean=tuple(float(v) for v in y_mean),
            y_std=tuple(float(max(v, MIN_STD)) if np.isfinite(v) else 1.0 for v in y_std),
            f_mean=f_mean,
            f_std=max(f_std, MIN_STD),
            time_offset=float(time[0]),
            time_scale=float(max(time[-1] - time[0], MIN_STD)),
            space_offset=float(space[0]) if space is not None else 0.0,
            space_scale=float(max(space[-1] - space[0], MIN_STD)) if space is not None else 1.0,
            mesh_dims=2 if space is not None else 1,
        )

    def y_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-output mean and std shaped ``(output, 1[, 1])`` to broadcast over ``(..., output, [space,] time)``."""
        shape = (-1,) + (1,) * self.mesh_dims
        mean = like.new_tensor(self.y_mean).reshape(shape)
        std = like.new_tensor(self.y_std).reshape(shape)
        return mean, std

    def transform_y(self, y: torch.Tensor) -> torch.Tensor:
        """Standardise ``y (..., output, [space,] time)``."""
        mean, std = self.y_stats(y)
        return (y - mean) / std

    def inverse_y(self, y: torch.Tensor, variance: bool = False) -> torch.Tensor:
        """Undo :meth:`transform_y`; with ``variance=True`` scale a variance instead of a value."""
        mean, std = self.y_stats(y)
        return y * std**2 if variance else y * std + mean

    def transform_f(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.f_mean) / self.f_std

    def inverse_f(self, f: torch.Tensor, variance: bool = False) -> torch.Tensor:
        return f * self.f_std**2 if variance else f * self.f_std + self.f_mean

    def transform_time(self, time: torch.Tensor) -> torch.Tensor:
        return (time - self.time_offset) / self.time_scale

    def transform_space(self, space: torch.Tensor) -> torch.Tensor:
        return (space - self.space_offset) / self.space_scale

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Normaliser":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

