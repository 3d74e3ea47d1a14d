"""Where training batches come from: a task set in memory, a task set streamed from its file, or the simulator.

Each source yields, epoch by epoch, batches ``(y, f)`` already standardised and on the training
device: ``y (task, output, [space,] time)``, ``f (task, [space,] time)``.  :func:`task_set_source`
and :func:`spec_source` also fit the :class:`~dklfm_explore.data.Normaliser` (on training tasks
only) and build the fixed validation set.

Random streams of a run from a spec with seed ``s`` (:func:`~dklfm_explore.simulate.stream_generator`):
the normaliser's reference tasks, the validation tasks and the training draws each have their own
stream, none of them a chunk stream of :func:`~dklfm_explore.simulate.simulate`, so validation
tasks are never drawn for training and the same seed gives the same run.

Data-parallel training (:mod:`dklfm_explore.distributed`) gives each process its share of a
source with ``source.rank_share(rank, world_size)``: process ``r`` draws fresh tasks from its own
stream ``TRAINING_STREAM - r``, or takes its slice of each global batch of ``world_size`` x
``batch_size`` tasks of a task set (all processes follow the same global order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .config import TrainingConfig
from .data import Normaliser, TaskSet
from .errors import InvalidInputError
from .simulate import CHUNK_SEED_STRIDE, BatchSimulator, stream_generator
from .spec import SimulationSpec
from .task_checks import check_learnable, check_validation_split
from .standardise import Standardised, TimeMap, standardise, standardise_coords

__all__ = ["TrainingData", "task_set_source", "spec_source", "default_validation_tasks",
           "REFERENCE_STREAM", "VALIDATION_STREAM", "TRAINING_STREAM", "REFERENCE_TASKS"]

REFERENCE_STREAM = CHUNK_SEED_STRIDE - 1
VALIDATION_STREAM = CHUNK_SEED_STRIDE - 2
TRAINING_STREAM = CHUNK_SEED_STRIDE - 3
REFERENCE_TASKS = 1024
"""Tasks drawn once, from their own stream, to fit the normaliser and the noise level of a spec."""
VALIDATION_TASKS = {1: 512, 2: 64}
"""Default validation set of a spec by mesh dimension (see :class:`~dklfm_explore.config.TrainingConfig`)."""
STREAM_BLOCK_TASKS = 1024
"""Tasks read from a streamed file at once (the file's chunk): the batches of an epoch come from one block at a time."""
SIMULATION_BLOCK_TASKS = 256
"""Tasks simulated at once when training from a spec (measured in benchmarks/simulate_vs_step.md)."""
STREAMED_VALIDATION_CAP = 4096
"""Most validation tasks held out of a streamed task set (they are kept in memory)."""


def default_validation_tasks(input_dim: int) -> int:
    return VALIDATION_TASKS[input_dim]


class _InMemory:
    """A standardised task set in memory; an epoch is one pass in a random order."""

    def __init__(self, data: Standardised, batch_size: int):
        self.data, self.batch_size = data, batch_size
        self.steps_per_epoch = math.ceil(data.y.shape[0] / batch_size)

    def rank_share(self, rank: int, world_size: int) -> "_RankShare":
        return _RankShare(_InMemory(self.data, self.batch_size * world_size), rank, world_size)

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(self.data.y.shape[0], generator=generator).to(self.data.y.device)
        for batch in range(self.steps_per_epoch):
            index = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield self.data.y[index], self.data.f[index]


class _Streamed:
    """A task set read from its file a block of tasks at a time; an epoch visits the blocks and their tasks in random orders."""

    def __init__(self, tasks: TaskSet, normaliser: Normaliser, batch_size: int, device, block: int | None = None):
        block = block or STREAM_BLOCK_TASKS
        self.tasks, self.normaliser, self.batch_size, self.device, self.block = tasks, normaliser, batch_size, device, block
        sizes = [min(block, tasks.n_tasks - start) for start in range(0, tasks.n_tasks, block)]
        self.steps_per_epoch = sum(math.ceil(size / batch_size) for size in sizes)

    def rank_share(self, rank: int, world_size: int) -> "_RankShare":
        return _RankShare(_Streamed(self.tasks, self.normaliser, self.batch_size * world_size, self.device, self.block), rank, world_size)

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n_blocks = math.ceil(self.tasks.n_tasks / self.block)
        for block in torch.randperm(n_blocks, generator=generator).tolist():
            rows = slice(block * self.block, min((block + 1) * self.block, self.tasks.n_tasks))
            y = self.normaliser.transform_y(self.tasks.y(rows)).to(self.device)
            f = self.normaliser.transform_f(self.tasks.f(rows)).to(self.device)
            order = torch.randperm(y.shape[0], generator=generator).to(self.device)
            for start in range(0, y.shape[0], self.batch_size):
                index = order[start : start + self.batch_size]
                yield y[index], f[index]


class _Simulated:
    """Fresh tasks from the simulator for every step; an epoch is ``epoch_tasks`` of them.

    Tasks are simulated :data:`SIMULATION_BLOCK_TASKS` at a time (a batched ODE solve costs
    nearly the same for 16 tasks as for 256) and each is used in exactly one step.
    """

    def __init__(self, simulator: BatchSimulator, normaliser: Normaliser, batch_size: int, epoch_tasks: int, seed: int,
                 stream: int = TRAINING_STREAM):
        self.simulator, self.normaliser, self.batch_size = simulator, normaliser, batch_size
        self.epoch_tasks, self.seed = epoch_tasks, seed
        self.steps_per_epoch = math.ceil(epoch_tasks / batch_size)
        self.generator = stream_generator(seed, stream)
        self.block = max(batch_size, SIMULATION_BLOCK_TASKS // batch_size * batch_size)
        self.pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self.position = 0

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps_per_epoch):
            if self.pending is None or self.position >= self.pending[0].shape[0]:
                batch = self.simulator.draw(self.block, self.generator)
                self.pending = (self.normaliser.transform_y(batch.y), self.normaliser.transform_f(batch.f))
                self.position = 0
            rows = slice(self.position, self.position + self.batch_size)
            self.position += self.batch_size
            yield self.pending[0][rows], self.pending[1][rows]

    def rank_share(self, rank: int, world_size: int) -> "_Simulated":
        """Process ``rank``'s own fresh tasks, ``batch_size`` a step, for ``1 / world_size`` of an epoch's tasks."""
        return _Simulated(self.simulator, self.normaliser, self.batch_size, math.ceil(self.epoch_tasks / world_size),
                          self.seed, TRAINING_STREAM - rank)


class _RankShare:
    """Process ``rank``'s slice of every global batch of a task-set source built with the global batch size.

    Every process runs the same global source with the same generator, so the slices of one step
    are disjoint and together make the batch a single process with the global batch size would
    take.  A global batch is cut to a multiple of ``world_size`` (all slices equal, so averaging
    the processes' gradients averages over its tasks); one smaller than ``world_size`` is skipped.
    """

    def __init__(self, source, rank: int, world_size: int):
        self.source, self.rank, self.world_size = source, rank, world_size
        self.steps_per_epoch = source.steps_per_epoch

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for y, f in self.source.epoch(generator):
            share = y.shape[0] // self.world_size
            if share == 0:
                continue
            rows = slice(self.rank * share, (self.rank + 1) * share)
            yield y[rows], f[rows]


@dataclass
class TrainingData:
    """What a training run needs to know about its tasks.

    Attributes
    ----------
    source : object with ``steps_per_epoch`` and ``epoch(generator)``
        Yields standardised batches ``(y, f)`` on the device.
    coords : tuple of Tensor ``([space,] time)``
        The standardised training mesh, on the device.
    validation : Standardised or None
        The fixed validation tasks, standardised, on the device.
    normaliser : Normaliser
        Fitted on training tasks only.
    system_name, output_names, time_window, space_window :
        As the trained model records them.
    provenance : dict
        ``source``, ``spec``, ``file`` (completed with ``steps`` and ``tasks_seen`` at the end).
    """

    source: object
    coords: tuple[torch.Tensor, ...]
    validation: Standardised | None
    normaliser: Normaliser
    system_name: str
    output_names: list[str]
    time_window: tuple[float, float]
    space_window: tuple[float, float] | None
    provenance: dict

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    @property
    def input_dim(self) -> int:
        return len(self.coords)

    @property
    def n_mesh(self) -> int:
        return math.prod(c.numel() for c in self.coords)


def _spec_or_none(tasks: TaskSet) -> dict | None:
    try:
        spec = tasks.spec
    except InvalidInputError:
        return None
    return None if spec is None else spec.to_dict()


def task_set_source(tasks: TaskSet, config: TrainingConfig, validation_tasks: TaskSet | None, device) -> TrainingData:
    """Training data from a fixed task set: held-out validation tasks, normaliser, in memory or streamed.

    A task set whose ``y`` and ``f`` exceed ``config.in_memory_limit_mb`` is streamed from its file
    (at most :data:`STREAMED_VALIDATION_CAP` validation tasks are held out of it).
    """
    check_learnable(tasks, "The training tasks")
    path = tasks.dataset.encoding.get("source")
    streamed = _nbytes(tasks) > config.in_memory_limit_mb * 2**20
    if validation_tasks is None and config.validation > 0:
        check_validation_split(tasks, config.validation)
        held_out = max(config.validation, 1 / tasks.n_tasks)
        if streamed:
            held_out = min(int(round(held_out * tasks.n_tasks)) if held_out < 1 else int(held_out), STREAMED_VALIDATION_CAP)
        tasks, validation_tasks = tasks.split(held_out, seed=config.seed)
    if validation_tasks is not None:
        check_learnable(validation_tasks, "The validation tasks")
        if validation_tasks.n_outputs != tasks.n_outputs or validation_tasks.is_spatial != tasks.is_spatial:
            raise InvalidInputError(
                f"Validation tasks have {validation_tasks.n_outputs} outputs (spatial={validation_tasks.is_spatial}) "
                f"but training tasks have {tasks.n_outputs} (spatial={tasks.is_spatial})."
            )
    normaliser = Normaliser.fit(tasks)
    if streamed:
        source = _Streamed(tasks, normaliser, config.batch_size, device)
        coords = tuple(c.to(device) for c in standardise_coords(normaliser, tasks.time, tasks.space))
    else:
        data = standardise(tasks, normaliser, device=device)
        source, coords = _InMemory(data, config.batch_size), data.coords
    validation = standardise(validation_tasks, normaliser, device=device) if validation_tasks is not None else None
    provenance = {"source": "file" if path else "task set", "spec": _spec_or_none(tasks), "file": str(path) if path else None,
                  "streamed": streamed, "training_tasks": tasks.n_tasks,
                  "validation_tasks": 0 if validation_tasks is None else validation_tasks.n_tasks}
    return TrainingData(
        source=source, coords=coords, validation=validation, normaliser=normaliser, system_name=tasks.system_name,
        output_names=tasks.output_names, time_window=(float(tasks.time[0]), float(tasks.time[-1])),
        space_window=(float(tasks.space[0]), float(tasks.space[-1])) if tasks.is_spatial else None, provenance=provenance,
    )


def spec_source(spec: SimulationSpec, config: TrainingConfig, device) -> TrainingData:
    """Training data drawn from the simulator: a normaliser fitted on reference tasks, a fixed validation set, fresh batches.

    The validation set has ``config.validation_tasks`` tasks (default by mesh dimension, see
    :data:`VALIDATION_TASKS`); ``config.validation == 0`` draws none.
    """
    if not isinstance(spec, SimulationSpec):
        raise InvalidInputError(f"Expected a SimulationSpec, got {type(spec).__name__}.")
    simulator = BatchSimulator(spec, device=device)
    reference = simulator.draw(REFERENCE_TASKS, stream_generator(simulator.spec.seed, REFERENCE_STREAM))
    normaliser = Normaliser.fit_tensors(reference.y, reference.f, simulator.time, simulator.space)
    del reference
    coords = tuple(c.to(device) for c in standardise_coords(normaliser, simulator.time, simulator.space))
    validation = None
    n_validation = 0
    if config.validation > 0:
        n_validation = config.validation_tasks or default_validation_tasks(len(coords))
        generator = stream_generator(simulator.spec.seed, VALIDATION_STREAM)
        parts = [simulator.draw(min(simulator.spec.chunk_size, n_validation - start), generator)
                 for start in range(0, n_validation, simulator.spec.chunk_size)]
        y = normaliser.transform_y(torch.cat([p.y for p in parts]))
        f = normaliser.transform_f(torch.cat([p.f for p in parts]))
        mean, std = normaliser.y_stats(y.cpu())
        validation = Standardised(coords, y, f, mean, std, time_map=TimeMap())
    source = _Simulated(simulator, normaliser, config.batch_size, config.epoch_tasks, simulator.spec.seed)
    time, space = simulator.time, simulator.space
    provenance = {"source": "spec", "spec": simulator.spec.to_dict(), "file": None, "streamed": True,
                  "training_tasks": None, "validation_tasks": n_validation}
    return TrainingData(
        source=source, coords=coords, validation=validation, normaliser=normaliser, system_name=simulator.system.name,
        output_names=list(simulator.output_names), time_window=(float(time[0]), float(time[-1])),
        space_window=(float(space[0]), float(space[-1])) if space is not None else None, provenance=provenance,
    )


def _nbytes(tasks: TaskSet) -> int:
    return int(tasks.dataset["y"].nbytes + tasks.dataset["f"].nbytes)
