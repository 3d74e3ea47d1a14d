"""Load measurements from a file or its content, whatever its format, into a checked task set."""

from __future__ import annotations

import os
from typing import BinaryIO, Mapping, Sequence

from ..data import TaskSet
from ..systems.base import get_system
from .checks import apply_system, check_values, match_outputs
from .csv_read import csv_dataset
from .netcdf_read import netcdf_dataset
from .source import decode, is_netcdf, read_source

__all__ = ["load_measurements"]


def load_measurements(
    path: str | os.PathLike | bytes | BinaryIO,
    *,
    expected_outputs: int | Sequence[str] | None = None,
    output_aliases: Mapping[str, Sequence[str]] | None = None,
    outputs_in_order: bool = False,
    system: str | None = None,
    name: str | None = None,
) -> TaskSet:
    """Read measured time courses from a CSV or netCDF file into a task set.

    Parameters
    ----------
    path : path, bytes or binary file object
        The file, or its content (for example the bytes of a dashboard upload).
    expected_outputs : int or list of str, optional
        What a model expects: a number of outputs, or their names (the outputs
        are then put in this order, keeping the file's names).
    output_aliases : dict, optional
        ``{expected name: (other name, ...)}`` also accepted for an output, without regard to case;
        default the ``system``'s :attr:`~dklfm_explore.systems.System.output_aliases`.
    outputs_in_order : bool
        Take the outputs in the file's column order as the ``expected_outputs``, whatever their
        names (the counts must match).  The attr ``output_match`` says which went where.
    system : str, optional
        Name of the system the measurements come from; recorded in the attrs
        ``system``, and its units are used where the header gives none.
    name : str, optional
        File name used in messages and the ``source`` attr when ``path`` is content.

    Returns
    -------
    TaskSet
        ``y : (task, output, time)`` or ``(task, output, space, time)``, NaN where
        not measured; ``f : (task, [space,] time)`` if there is a ``force``
        column; ``y_se`` (same dims as ``y``) if there are ``<output>_se``
        columns.  The task coordinate holds the replicate labels as the strings
        written (stripped; ``1`` and ``01`` are two replicates), ``0`` without a
        replicate column; times (and positions) are sorted.

    Raises
    ------
    InvalidInputError
        With one sentence naming the problem and its column or line: an empty,
        binary or non-UTF-8 file, no ``time`` column, a non-numeric or infinite
        cell, an output without values, a time repeated within a replicate,
        fewer than :data:`~dklfm_explore.io.format.MIN_POINTS` points in a replicate, or outputs that do
        not match ``expected_outputs``.
    UnknownNameError
        If ``system`` is not a registered system.

    Examples
    --------
    >>> tasks = load_measurements(example_csv().encode(), name="example.csv")
    >>> tasks.dataset["y"].dims
    ('task', 'output', 'time')
    """
    spec = get_system(system) if system is not None else None
    data, source = read_source(path, name)
    if is_netcdf(data, source):
        dataset = check_values(netcdf_dataset(data, source), source, output_word="Output", task_word="Task")
    else:
        dataset, has_replicates = csv_dataset(decode(data, source), source)
        dataset = check_values(dataset, source, output_word="Column", task_word="Replicate" if has_replicates else None)
    if expected_outputs is not None:
        if output_aliases is None and spec is not None:
            output_aliases = spec.output_aliases
        dataset = match_outputs(dataset, expected_outputs, source, aliases=output_aliases, in_order=outputs_in_order)
    if spec is not None:
        dataset = apply_system(dataset, spec, source)
    dataset.attrs["source"] = source
    return TaskSet(dataset)
