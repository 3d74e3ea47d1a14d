"""Simulation of task sets: parameters and forces drawn, systems solved, noise added, in chunks.

:class:`BatchSimulator` draws tasks of a :class:`~dklfm_explore.spec.SimulationSpec` as tensors
on a device (what training from the simulator draws every step); :func:`simulate` runs it chunk
by chunk into a :class:`~dklfm_explore.data.TaskSet` (in memory or a netCDF file).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import h5netcdf
import h5py
import numpy as np
import torch
import xarray as xr

from .atomic import atomic_write
from .data import CHECKSUMMED, TaskSet, open_taskset
from .devices import resolve_device
from .errors import CancelledError, InvalidInputError
from .spec import SPEC_ATTR, SimulationSpec
from .systems.base import ForcePrior, Mesh, System, get_system
from .systems.forces import sample_force
from .systems.mesh import make_mesh
from .version import package_version

__all__ = ["simulate", "make_mesh", "package_version", "BatchSimulator", "SimulatedTasks", "stream_generator",
           "observation_noise_std"]

CHUNK_SEED_STRIDE = 1_000_003
"""Chunk ``k`` of a run with seed ``s`` draws from seed ``s * stride + k``: chunks never share a stream."""


def stream_generator(seed: int, stream: int) -> torch.Generator:
    """The CPU generator of stream ``stream`` of ``seed`` (chunk ``k`` of :func:`simulate` is stream ``k``)."""
    return torch.Generator().manual_seed(int(seed) * CHUNK_SEED_STRIDE + int(stream))


def observation_noise_std(y_clean: torch.Tensor, noise_level: float) -> torch.Tensor:
    """The simulator's noise rule: ``noise_level`` times each output's std across tasks and mesh.

    Parameters
    ----------
    y_clean : Tensor ``(task, output, [space,] time)`` float64
        Noise-free outputs.
    noise_level : float
        Noise std as a fraction of each output's std; an output with a single
        value has std 1 for this rule.

    Returns
    -------
    Tensor ``(output,)`` float64, on the CPU
    """
    n_outputs = y_clean.shape[1]
    per_output = y_clean.transpose(0, 1).reshape(n_outputs, -1)
    spread = per_output.std(dim=1).cpu() if per_output.shape[1] > 1 else torch.ones(n_outputs, dtype=torch.float64)
    return noise_level * spread


@dataclass
class SimulatedTasks:
    """A batch of simulated tasks as tensors.

    Attributes
    ----------
    y, y_clean : Tensor ``(task, output, [space,] time)`` float64, on the simulator's device
    f : Tensor ``(task, [space,] time)`` float64, on the simulator's device
    parameters, hyper : dict of Tensor ``(task,)`` or ``(task, output)`` float64, on the CPU
    noise_std : Tensor ``(output,)`` float64, on the CPU
    """

    y: torch.Tensor
    y_clean: torch.Tensor
    f: torch.Tensor
    parameters: dict[str, torch.Tensor]
    hyper: dict[str, torch.Tensor]
    noise_std: torch.Tensor


class BatchSimulator:
    """Draws batches of tasks of a :class:`SimulationSpec` as tensors on a device (no xarray).

    The observation noise std of each output is ``noise_level`` times that output's std across
    the tasks and mesh of the first batch drawn, then kept fixed (as :func:`simulate` does), or
    given as ``noise_std``.

    Parameters
    ----------
    spec : SimulationSpec
    system : System, optional
        The system instance to solve (default: the registered one ``spec`` names).
    device, dtype :
        Where and in which precision to solve; results are float64.
    noise_std : Tensor ``(output,)``, optional
    """

    def __init__(self, spec: SimulationSpec, *, system: System | None = None, device=None,
                 dtype: torch.dtype = torch.float64, noise_std: torch.Tensor | None = None):
        self.system = get_system(system if system is not None else spec.system)
        self.spec = spec.resolved(self.system)
        self.mesh = self.spec.mesh(self.system)
        self.output_names = _output_names(self.system, self.spec.n_outputs)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.noise_std = None if noise_std is None else torch.as_tensor(noise_std, dtype=torch.float64).cpu()

    @property
    def time(self) -> torch.Tensor:
        """Output times ``(time,)`` float64."""
        return self.mesh.time

    @property
    def space(self) -> torch.Tensor | None:
        return self.mesh.space

    def draw(self, count: int, generator: torch.Generator) -> SimulatedTasks:
        """Draw ``count`` tasks from ``generator`` (a CPU generator: the same draws on every device).

        Raises
        ------
        InvalidInputError
            If the system produced non-finite outputs.
        """
        system, mesh, spec, device = self.system, self.mesh, self.spec, self.device
        parameters = system.sample_parameters(count, spec.n_outputs, generator=generator, ranges=spec.ranges)
        draw, hyper = sample_force(spec.force_prior, mesh, count, generator, device=device, dtype=self.dtype)
        on_device = {key: value.to(device=device, dtype=self.dtype) for key, value in parameters.items()}
        force = system.latent_force(draw, on_device, mesh, hyper)
        y_clean = system.solve(mesh, force, on_device).to(torch.float64)
        if not torch.all(torch.isfinite(y_clean)):
            raise InvalidInputError(
                f"System {system.name!r} produced non-finite outputs; narrow the parameter ranges or shorten the time step."
            )
        force = force.to(torch.float64)
        if mesh.space is not None:
            latent = force[:, mesh.space_index.to(device)][..., mesh.time_index.to(device)]
        else:
            latent = force[:, mesh.time_index.to(device)]
        if self.noise_std is None:
            self.noise_std = observation_noise_std(y_clean, spec.noise_level)
        shape = (1, -1) + (1,) * (y_clean.ndim - 2)
        noise = torch.randn(y_clean.shape, generator=generator, dtype=torch.float64) * self.noise_std.reshape(shape)
        return SimulatedTasks(y=y_clean + noise.to(device), y_clean=y_clean, f=latent, parameters=parameters,
                              hyper=hyper, noise_std=self.noise_std)


def _spec_of(system, n_tasks, keywords: dict) -> SimulationSpec:
    """The spec of a call to :func:`simulate`: given, or built from the keyword form."""
    if isinstance(system, SimulationSpec):
        given = sorted(key for key, value in keywords.items() if value is not None and key not in ("seed", "chunk_size"))
        if given:
            raise InvalidInputError(f"simulate() got a SimulationSpec and also {', '.join(given)}; put them in the spec.")
        changes = {key: keywords[key] for key in ("seed", "chunk_size") if keywords[key] is not None}
        return system.replace(**changes) if changes else system
    values = {key: value for key, value in keywords.items() if value is not None}
    for name in ("time", "space"):
        if name in values:
            values[name] = tuple(np.asarray(torch.as_tensor(values[name]).cpu(), dtype=np.float64).reshape(-1).tolist())
    return SimulationSpec(system=get_system(system).name, **values)


def simulate(
    system: str | System | SimulationSpec,
    n_tasks: int,
    *,
    n_points: int | None = None,
    grid: tuple[int, int] | None = None,
    t_range: tuple[float, float] | None = None,
    time=None,
    space=None,
    n_outputs: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    noise_level: float | None = None,
    parameter_ranges: Mapping[str, tuple[float, float]] | None = None,
    force_prior: ForcePrior | None = None,
    chunk_size: int | None = None,
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
    system : SimulationSpec, str or System
        A spec, or a registered name (``"transcription"``, ...) or a system instance with the
        spec's fields as keywords (``seed`` and ``chunk_size`` may also override a spec's).
    n_tasks : int
    n_points, grid, t_range, time, space, n_outputs, noise_level, parameter_ranges, force_prior, seed, chunk_size :
        The fields of :class:`SimulationSpec` (defaults: seed 0, chunk size 1024).
    device, dtype :
        Where and in which precision to solve; results are stored as float64.
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
        parameters and force hyperparameters per task; attrs ``spec``: the resolved spec as JSON.

    Raises
    ------
    InvalidInputError, UnknownNameError, CancelledError
    """
    instance = system if isinstance(system, System) else None
    spec = _spec_of(system, n_tasks, dict(
        n_points=n_points, grid=None if grid is None else tuple(grid), t_range=None if t_range is None else tuple(t_range),
        time=time, space=space, n_outputs=n_outputs, seed=seed, noise_level=noise_level,
        parameter_ranges=parameter_ranges, force_prior=force_prior, chunk_size=chunk_size,
    ))
    if int(n_tasks) < 1:
        raise InvalidInputError(f"n_tasks must be at least 1, got {n_tasks}.")
    simulator = BatchSimulator(spec, system=instance, device=device, dtype=dtype)
    system, spec = simulator.system, simulator.spec
    attrs = {
        "system": system.name,
        "title": system.title,
        "time_unit": system.time_unit,
        "space_unit": system.space_unit,
        "output_unit": system.output_unit,
        "latent_unit": system.latent_unit,
        "latent_name": system.latent_name,
        "noise_level": spec.noise_level,
        SPEC_ATTR: spec.to_json(),
        "package_version": package_version(),
    }
    chunks = []
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, overwrite=overwrite) if out is not None else nullcontext() as partial:
        writer = _ChunkWriter(partial, n_tasks, attrs) if partial is not None else None
        try:
            for index, start in enumerate(range(0, n_tasks, spec.chunk_size)):
                if cancel is not None and cancel():
                    raise CancelledError(f"Simulation cancelled after {start} of {n_tasks} tasks; nothing was kept.")
                count = min(spec.chunk_size, n_tasks - start)
                batch = simulator.draw(count, stream_generator(spec.seed, index))
                dataset = _to_dataset(batch, simulator.mesh, simulator.output_names, start, attrs, system)
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


def _to_dataset(batch: SimulatedTasks, mesh: Mesh, names, start: int, attrs: dict, system: System) -> xr.Dataset:
    spatial = mesh.space is not None
    mesh_dims = ("space", "time") if spatial else ("time",)
    count = batch.y.shape[0]
    numpy = lambda value: value.detach().to(torch.float64).cpu().numpy()  # noqa: E731
    coords = {"task": np.arange(start, start + count), "output": names, "time": mesh.time.numpy()}
    if spatial:
        coords["space"] = mesh.space.numpy()
    variables = {
        "y": (("task", "output") + mesh_dims, numpy(batch.y), {"long_name": "observed outputs", "units": system.output_unit}),
        "y_clean": (("task", "output") + mesh_dims, numpy(batch.y_clean), {"long_name": "noise-free outputs", "units": system.output_unit}),
        "f": (("task",) + mesh_dims, numpy(batch.f), {"long_name": system.latent_name, "units": system.latent_unit}),
        "noise_std": (("output",), numpy(batch.noise_std), {"long_name": "observation noise standard deviation", "units": system.output_unit}),
    }
    specs = system.parameter_specs
    for key, value in batch.parameters.items():
        dims = ("task", "output") if value.ndim == 2 else ("task",)
        spec = specs[key]
        variables[key] = (dims, numpy(value), {"long_name": spec.doc, "units": spec.unit, "symbol": spec.symbol})
    for key, value in batch.hyper.items():
        variables[key] = (("task",), numpy(value), {"long_name": key.replace("_", " "), "units": system.time_unit})
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
