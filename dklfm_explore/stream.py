"""Inference over a netCDF task set of any size, with memory flat in the number of tasks.

:class:`TaskChunks` opens the file lazily and hands out its tasks a chunk at a time, each chunk
checked as :func:`~dklfm_explore.io.load_measurements` checks a whole file.  :func:`infer_chunks`
conditions the model on one chunk after the other and writes each chunk's rows of the result into
a chunked netCDF file (:class:`~dklfm_explore.chunked_netcdf.ChunkedNetCDF`), which is renamed
onto the output only once complete (:func:`~dklfm_explore.atomic.atomic_write`): an interrupted
run leaves the output as it was.  The result is :meth:`TrainedModel.infer`'s on the whole set:
outputs scaled by their own statistics (``output_scaling="self"``) use those of the whole file,
gathered in a first pass over it, and the warnings are given once for the whole file.
"""

from __future__ import annotations

import math
import os
import time as clock
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from .atomic import atomic_write
from .chunked_netcdf import ChunkedNetCDF
from .data import MIN_STD, NETCDF_ENGINE, TaskSet, reading_netcdf
from .errors import InvalidInputError, OutOfDistributionWarning
from .io.checks import check_values, match_outputs
from .io.netcdf_read import measurement_dataset
from .io.source import CLASSIC_NETCDF_MAGIC
from .ood import SHOWN_TASKS, flagged_warning

__all__ = ["TaskChunks", "infer_chunks", "StreamedInference", "STREAM_CHUNK_TASKS"]

STREAM_CHUNK_TASKS = 1024
"""Tasks read, conditioned and written at once: memory holds this many tasks' data and result."""


class TaskChunks:
    """A netCDF task set (or measurements) opened lazily and read a chunk of tasks at a time.

    Parameters
    ----------
    path : path
        netCDF with ``y (task, output, [space,] time)`` (any dim order; without ``task``: one task).
    expected_outputs, output_aliases, outputs_in_order :
        As :func:`~dklfm_explore.io.load_measurements` takes them: each chunk's outputs are put in
        the model's order.
    chunk_tasks : int

    Raises
    ------
    InvalidInputError
        If the file is missing, not readable netCDF, has no ``y``, or its first chunk fails the checks.
    """

    def __init__(self, path: str | os.PathLike, *, expected_outputs: int | Sequence[str] | None = None,
                 output_aliases: Mapping[str, Sequence[str]] | None = None, outputs_in_order: bool = False,
                 chunk_tasks: int = STREAM_CHUNK_TASKS):
        self.path = Path(path)
        self.source = self.path.name
        if not self.path.is_file():
            raise InvalidInputError(f"No measurement file at {str(self.path)!r}.")
        if int(chunk_tasks) < 1:
            raise InvalidInputError(f"chunk_tasks must be at least 1, got {chunk_tasks}.")
        self.chunk_tasks = int(chunk_tasks)
        self.matching = dict(expected=expected_outputs, aliases=output_aliases, in_order=outputs_in_order)
        with open(self.path, "rb") as handle:
            engine = "scipy" if handle.read(len(CLASSIC_NETCDF_MAGIC)) == CLASSIC_NETCDF_MAGIC else NETCDF_ENGINE
        with reading_netcdf(self.source):
            dataset = xr.open_dataset(self.path, engine=engine, cache=False)
        if "y" not in dataset:
            raise InvalidInputError(f"{self.source} has no variable 'y' (found: {', '.join(map(str, dataset.data_vars)) or 'none'}); "
                                    "measurements need 'y' with dims (task, output, [space,] time).")
        self.dataset = dataset if "task" in dataset["y"].dims else dataset.expand_dims(task=[0])
        self.n_tasks = int(self.dataset.sizes["task"])
        self.first = self.chunk(0)

    def __repr__(self) -> str:
        return f"<TaskChunks {self.source}: {self.n_tasks} tasks in chunks of {self.chunk_tasks}>"

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_tasks / self.chunk_tasks)

    def chunk(self, start: int) -> TaskSet:
        """Tasks ``start`` to ``start + chunk_tasks`` in memory, checked and with the model's output order."""
        rows = self.dataset.isel(task=slice(start, start + self.chunk_tasks))
        with reading_netcdf(self.source):
            rows = rows.load()
        dataset = check_values(measurement_dataset(rows, self.source), self.source, output_word="Output", task_word="Task")
        if self.matching["expected"] is not None:
            dataset = match_outputs(dataset, self.matching["expected"], self.source, aliases=self.matching["aliases"],
                                    in_order=self.matching["in_order"])
        dataset.attrs["source"] = self.source
        return TaskSet(dataset)

    def __iter__(self) -> Iterator[tuple[int, TaskSet]]:
        """``(first task's position, chunk)`` in file order."""
        for start in range(0, self.n_tasks, self.chunk_tasks):
            yield start, self.first if start == 0 else self.chunk(start)

    def pooled_output_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-output mean and std over every task and mesh point (NaN ignored), as
        :func:`~dklfm_explore.standardise.pooled_stats` gives them for the whole file: ``(output, 1[, 1])`` each.

        One pass over the file, merging the chunks' counts, means and sums of squared deviations.
        """
        count = mean = squares = None
        for _, tasks in self:
            y = tasks.y()
            per_output = y.transpose(0, 1).reshape(y.shape[1], -1)
            observed = ~torch.isnan(per_output)
            n = observed.sum(-1).to(torch.float64)
            chunk_mean = torch.nan_to_num(per_output).sum(-1) / n.clamp_min(1)
            chunk_squares = torch.where(observed, per_output - chunk_mean[:, None], torch.zeros_like(per_output)).pow(2).sum(-1)
            if count is None:
                count, mean, squares = n, chunk_mean, chunk_squares
                continue
            total = count + n
            delta = chunk_mean - mean
            mean = mean + delta * n / total.clamp_min(1)
            squares = squares + chunk_squares + delta.pow(2) * count * n / total.clamp_min(1)
            count = total
        std = (squares / (count - 1).clamp_min(1)).sqrt().clamp_min(MIN_STD)
        shape = (-1,) + (1,) * (self.first.dataset["y"].ndim - 2)
        return mean.reshape(shape), std.reshape(shape)


@dataclass(frozen=True)
class StreamedInference:
    """What :func:`infer_chunks` wrote.

    Attributes
    ----------
    path : Path
    n_tasks, n_time : int
        Tasks, and query time points per task.
    infer_ms_per_task : float
        Conditioning time per task (as :meth:`TrainedModel.infer` reports it).
    tasks_per_s : float
        Tasks per second of the whole run: reading, conditioning and writing.
    n_flagged : int or None
        Tasks flagged out of distribution (None when the model has no reference to score them).
    output_match : str
        The first chunk's ``output_match`` attr ("" when the names matched as they are).
    """

    path: Path
    n_tasks: int
    n_time: int
    infer_ms_per_task: float
    tasks_per_s: float
    n_flagged: int | None
    output_match: str


def infer_chunks(model, chunks: TaskChunks, out: str | os.PathLike, *, time=None, space=None, time_mapping: str = "shift",
                 overwrite: bool = True, progress: Callable[[int, int], None] | None = None) -> StreamedInference:
    """Infer the latent force of every task of ``chunks`` and write the result to ``out`` as it goes.

    Parameters
    ----------
    model : TrainedModel
    chunks : TaskChunks
    out : path
        The netCDF result, the format of :func:`~dklfm_explore.io.write_result` (the same
        variables, dims and attrs; ``infer_ms_per_task`` over the whole file); it appears complete or not at all.
    time, space, time_mapping :
        As :meth:`TrainedModel.infer` takes them.
    overwrite : bool
        ``False``: refuse to replace an existing ``out``.
    progress : callable ``(done, total)``, optional
        Called after each chunk is written.

    Warns
    -----
    The warnings of :meth:`TrainedModel.infer`, each once; one OutOfDistributionWarning counting the flagged tasks of the file.
    """
    out = Path(out)
    self_stats = chunks.pooled_output_stats()
    started = clock.perf_counter()
    infer_ms, flagged, first_flagged, given = 0.0, None, [], {}
    result = None
    with atomic_write(out, overwrite=overwrite) as partial:
        writer = None
        try:
            for start, tasks in chunks:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = model.infer(tasks, time=time, space=space, time_mapping=time_mapping, self_stats=self_stats)
                for warning in caught:
                    if not issubclass(warning.category, OutOfDistributionWarning):
                        given.setdefault((warning.category, str(warning.message)), warning.message)
                if "out_of_distribution" in result:
                    marked = result["out_of_distribution"].values
                    flagged = (flagged or 0) + int(marked.sum())
                    first_flagged += [str(name) for name in result["task"].values[marked]][: SHOWN_TASKS - len(first_flagged)]
                infer_ms += result.attrs["infer_ms_per_task"] * tasks.n_tasks
                writer = writer or ChunkedNetCDF(partial, chunks.n_tasks, result.attrs)
                writer.write(result, start)
                if progress is not None:
                    progress(start + tasks.n_tasks, chunks.n_tasks)
        finally:
            if writer is not None:
                writer.close({"infer_ms_per_task": infer_ms / chunks.n_tasks})
    for message in given.values():
        warnings.warn(message, stacklevel=2)
    if flagged:
        warnings.warn(flagged_warning(first_flagged, flagged), stacklevel=2)
    return StreamedInference(
        path=out, n_tasks=chunks.n_tasks, n_time=int(result.sizes["time"]), infer_ms_per_task=infer_ms / chunks.n_tasks,
        tasks_per_s=chunks.n_tasks / max(clock.perf_counter() - started, np.finfo(float).tiny), n_flagged=flagged,
        output_match=str(chunks.first.dataset.attrs.get("output_match", "")),
    )
