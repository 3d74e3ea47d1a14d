"""Simulation of task sets: parameters and forces drawn, systems solved, noise added, in chunks."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Mapping

import h5netcdf
import h5py
import numpy as np
import torch
import xarray as xr

from .atomic import atomic_write
from .data import CHECKSUMMED, TaskSet, open_taskset, settings_json
from .devices import resolve_device
from .errors import CancelledError, InvalidInputError
from .systems.base import ForcePrior, Mesh, System, get_system
from .systems.forces import sample_force
from .systems.mesh import make_mesh

__all__ = ["simulate", "make_mesh", "package_version"]

CHUNK_SEED_STRIDE = 1_000_003
"""Chunk ``k`` of a run with seed ``s`` draws from seed ``s * stride + k``: chunks never share a stream."""


def package_version() -> str:
    try:
        return version("dklfm-explore")
    except PackageNotFoundError:
        return "0+unknown"


def simulate(
    system: str | System,
    n_tasks: int,
    *,
    n_points: int | None = None,
    grid: tuple[int, int] | None = None,
    t_range: tuple[float, float] | None = None,
    time=None,
    space=None,
    n_outputs: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    noise_level: float | None = None,
    parameter_ranges: Mapping[str, tuple[float, float]] | None = None,
    force_prior: ForcePrior | None = None,
    chunk_size: int = 1024,
    out: str | os.PathLike | None = None,
    overwrite: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> TaskSet:
    """Simulate ``n_tasks`` tasks of a system.

    Each task draws kinetic parameters (:meth:`System.sample_parameters`), a
    latent force from the force prior, solves the system on the mesh and adds
    Gaussian observation noise whose standard deviation is ``noise_level`` times
    each output's standard deviation across tasks and mesh (measured on the first
    chunk and then kept fixed).

    Parameters
    ----------
    system : str or System
        A registered name (``"transcription"``, ...) or a system instance.
    n_tasks : int
    n_points, grid, t_range, time, space :
        The mesh; see :func:`make_mesh`.  ``time``/``space`` (1-D, increasing) give explicit coordinates,
        e.g. the union of a coarse and a fine grid so one task is known on both.
    n_outputs : int, optional
        Number of outputs, for systems whose states are their outputs (genes).
    seed : int
        The same seed and chunk size give the same tasks on every device.
    device, dtype :
        Where and in which precision to solve; results are stored as float64.
    noise_level : float, optional
        Default ``system.noise_level``.
    parameter_ranges : dict, optional
        ``{parameter: (low, high)}`` overriding the system's ranges.
    force_prior : ForcePrior, optional
        Default ``system.force_prior``.
    chunk_size : int
        Tasks simulated at once; memory is flat in ``n_tasks``.
    out : path, optional
        Write to this netCDF file chunk by chunk and return it opened lazily.  The file appears
        complete or not at all (:func:`~dklfm_explore.atomic.atomic_write`).
    overwrite : bool
        ``False``: refuse to replace an existing ``out``, also one another run creates meanwhile.
    progress : callable ``(done, total)``, optional
    cancel : callable ``() -> bool``, optional
        Polled between chunks; when it returns True nothing is kept.

    Returns
    -------
    TaskSet
        ``y``, ``y_clean`` ``(task, output, [space,] time)``, ``f`` ``(task, [space,] time)``,
        parameters and force hyperparameters per task.

    Raises
    ------
    InvalidInputError, UnknownNameError, CancelledError
    """
    system = get_system(system)
    if int(n_tasks) < 1:
        raise InvalidInputError(f"n_tasks must be at least 1, got {n_tasks}.")
    if chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be at least 1, got {chunk_size}.")
    noise_level = system.noise_level if noise_level is None else float(noise_level)
    if not 0 <= noise_level < 10:
        raise InvalidInputError(f"noise_level {noise_level} must be in [0, 10).")
    n_outputs = int(n_outputs or len(system.output_names))
    if getattr(system, "state_names", None) is not None and n_outputs != len(system.output_names):
        raise InvalidInputError(f"System {system.name!r} has exactly {len(system.output_names)} output(s), not {n_outputs}.")
    device = resolve_device(device)
    prior = force_prior or system.force_prior
    mesh = make_mesh(
        system,
        n_points=n_points,
        grid=grid,
        t_range=t_range,
        time=None if time is None else torch.as_tensor(time, dtype=torch.float64),
        space=None if space is None else torch.as_tensor(space, dtype=torch.float64),
    )
    names = _output_names(system, n_outputs)
    settings = dict(
        n_points=n_points, grid=grid, t_range=t_range, explicit_mesh=time is not None or space is not None, seed=seed, noise_level=noise_level,
        parameter_ranges=dict(parameter_ranges or {}), force_prior=prior.__dict__, chunk_size=chunk_size,
    )
    attrs = {
        "system": system.name,
        "title": system.title,
        "time_unit": system.time_unit,
        "space_unit": system.space_unit,
        "output_unit": system.output_unit,
        "latent_unit": system.latent_unit,
        "latent_name": system.latent_name,
        "noise_level": noise_level,
        "settings": settings_json(settings),
        "package_version": package_version(),
    }
    chunks = []
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, overwrite=overwrite) if out is not None else nullcontext() as partial:
        writer = _ChunkWriter(partial, n_tasks, attrs) if partial is not None else None
        noise_std = None
        try:
            for index, start in enumerate(range(0, n_tasks, chunk_size)):
                if cancel is not None and cancel():
                    raise CancelledError(f"Simulation cancelled after {start} of {n_tasks} tasks; nothing was kept.")
                count = min(chunk_size, n_tasks - start)
                generator = torch.Generator().manual_seed(int(seed) * CHUNK_SEED_STRIDE + index)
                chunk, noise_std = _simulate_chunk(
                    system, mesh, prior, count, n_outputs, generator, device, dtype, noise_level, parameter_ranges, noise_std
                )
                dataset = _to_dataset(chunk, mesh, names, start, attrs, system)
                if writer is not None:
                    writer.write(dataset, start)
                else:
                    chunks.append(dataset)
                if progress is not None:
                    progress(start + count, n_tasks)
        finally:
            if writer is not None:
                writer.close()
    if out is not None:
        return open_taskset(out)
    dataset = xr.concat(chunks, dim="task", data_vars="minimal", coords="minimal", compat="override", combine_attrs="override") if len(chunks) > 1 else chunks[0]
    return TaskSet(dataset)


def _output_names(system: System, n_outputs: int) -> list[str]:
    base = list(system.output_names)
    if n_outputs <= len(base):
        return base[:n_outputs]
    return base + [f"output_{k}" for k in range(len(base), n_outputs)]


def _simulate_chunk(system, mesh, prior, count, n_outputs, generator, device, dtype, noise_level, ranges, noise_std):
    parameters = system.sample_parameters(count, n_outputs, generator=generator, ranges=ranges)
    draw, hyper = sample_force(prior, mesh, count, generator, device=device, dtype=dtype)
    on_device = {key: value.to(device=device, dtype=dtype) for key, value in parameters.items()}
    force = system.latent_force(draw, on_device, mesh, hyper)
    y_clean = system.solve(mesh, force, on_device).to(torch.float64).cpu()
    if not torch.all(torch.isfinite(y_clean)):
        raise InvalidInputError(
            f"System {system.name!r} produced non-finite outputs; narrow the parameter ranges or shorten the time step."
        )
    force = force.to(torch.float64).cpu()
    if mesh.space is not None:
        latent = force[:, mesh.space_index][..., mesh.time_index]
    else:
        latent = force[:, mesh.time_index]
    if noise_std is None:
        per_output = y_clean.transpose(0, 1).reshape(n_outputs, -1)
        spread = per_output.std(dim=1) if per_output.shape[1] > 1 else torch.ones(n_outputs, dtype=torch.float64)
        noise_std = noise_level * spread
    shape = (1, -1) + (1,) * (y_clean.ndim - 2)
    noise = torch.randn(y_clean.shape, generator=generator, dtype=torch.float64) * noise_std.reshape(shape)
    chunk = {"y": y_clean + noise, "y_clean": y_clean, "f": latent, "parameters": parameters, "hyper": hyper,
             "noise_std": noise_std}
    return chunk, noise_std


def _to_dataset(chunk, mesh: Mesh, names, start: int, attrs: dict, system: System) -> xr.Dataset:
    spatial = mesh.space is not None
    mesh_dims = ("space", "time") if spatial else ("time",)
    count = chunk["y"].shape[0]
    coords = {"task": np.arange(start, start + count), "output": names, "time": mesh.time.numpy()}
    if spatial:
        coords["space"] = mesh.space.numpy()
    variables = {
        "y": (("task", "output") + mesh_dims, chunk["y"].numpy(), {"long_name": "observed outputs", "units": system.output_unit}),
        "y_clean": (("task", "output") + mesh_dims, chunk["y_clean"].numpy(), {"long_name": "noise-free outputs", "units": system.output_unit}),
        "f": (("task",) + mesh_dims, chunk["f"].numpy(), {"long_name": system.latent_name, "units": system.latent_unit}),
        "noise_std": (("output",), chunk["noise_std"].numpy(), {"long_name": "observation noise standard deviation", "units": system.output_unit}),
    }
    specs = system.parameter_specs
    for key, value in chunk["parameters"].items():
        dims = ("task", "output") if value.ndim == 2 else ("task",)
        spec = specs[key]
        variables[key] = (dims, value.numpy(), {"long_name": spec.doc, "units": spec.unit, "symbol": spec.symbol})
    for key, value in chunk["hyper"].items():
        variables[key] = (("task",), value.numpy(), {"long_name": key.replace("_", " "), "units": system.time_unit})
    return xr.Dataset(variables, coords=coords, attrs=attrs)


class _ChunkWriter:
    """Write chunks of tasks into one netCDF file (the temporary file of an atomic write)."""

    def __init__(self, path: Path, n_tasks: int, attrs: dict):
        self.path, self.n_tasks, self.attrs = path, n_tasks, attrs
        self.file = None

    def _create(self, dataset: xr.Dataset) -> None:
        handle = h5netcdf.File(self.path, "w")
        sizes = dict(dataset.sizes)
        sizes["task"] = self.n_tasks
        handle.dimensions = sizes
        for name, coordinate in dataset.coords.items():
            values = coordinate.values
            if name == "task":
                values = np.arange(self.n_tasks)
            if values.dtype.kind in "UO":
                handle.create_variable(name, (name,), dtype=h5py.string_dtype(), data=values.astype(object))
            else:
                handle.create_variable(name, (name,), data=values, **CHECKSUMMED)
        for name, variable in dataset.data_vars.items():
            if "task" not in variable.dims:
                created = handle.create_variable(name, variable.dims, data=variable.values, **(CHECKSUMMED if variable.ndim else {}))
            else:
                chunks = (min(1024, self.n_tasks),) + tuple(variable.shape[1:])
                fill = {"fillvalue": np.nan} if variable.dtype.kind == "f" else {}
                created = handle.create_variable(name, variable.dims, dtype=variable.dtype, chunks=chunks, **CHECKSUMMED, **fill)
            created.attrs.update(variable.attrs)
        handle.attrs.update(self.attrs)
        self.file = handle

    def write(self, dataset: xr.Dataset, start: int) -> None:
        if self.file is None:
            self._create(dataset)
        stop = start + dataset.sizes["task"]
        for name, variable in dataset.data_vars.items():
            if "task" in variable.dims:
                self.file.variables[name][start:stop] = variable.values

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
