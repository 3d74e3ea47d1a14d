"""Measured time courses: read and write the upload format as a :class:`~dklfm_explore.data.TaskSet`.

CSV format
----------
One row per measured point, one column per observed output::

    # title: p53 targets after 5 Gy
    time [h],replicate,DDB2 [MAS5 signal],p21 [MAS5 signal],DDB2_se,p21_se
    0,1,211.6,5.9,22.69,4.08
    2,1,482.58,117.02,39.14,14.11
    4,1,1104.54,418.56,79.74,33.62
    4,2,954.43,310.47,46.0,28.3
    0,2,168.0,,20.24,
    2,2,431.61,118.89,39.15,16.0

* ``time`` (required): the measurement times, any order, irregular spacing allowed.
* ``space`` (optional): the position, for space x time systems.
* ``replicate`` (optional): a label per row; each replicate becomes one task
  (the ``task`` coordinate holds the labels, integers if every label is one).
  Replicates may be measured at different times: the task set uses the union
  of all times, with NaN where a replicate was not measured.
* every other column is an observed output, except
* ``force`` (optional): a known latent force, kept as ``f`` for comparison, and
* ``<output>_se`` (optional): the known standard deviation of the measurement
  error of ``<output>``, kept as ``y_se``.

Units go in square brackets after a column name, e.g. ``time [h]`` or
``DDB2 [MAS5 signal]``; they become the attrs ``time_unit``, ``space_unit``,
``output_unit`` (``output_units``, a JSON list, if the outputs differ) and
``latent_unit``.  Names are matched without their unit and, for ``time``,
``space``, ``replicate`` and ``force``, without regard to case.

A missing value is an empty cell or ``NA``, ``N/A``, ``NaN`` or ``null``; it is
kept as NaN (masked), never filled in.  Lines starting with ``#`` before the
header are comments; a comment of the form ``# key: value`` becomes the string
attribute ``key``.  The delimiter is a comma, a semicolon or a tab, whichever the
header uses most.  The text must be UTF-8 (a UTF-8 or UTF-16 byte-order mark is
accepted).

netCDF format
-------------
A saved :class:`TaskSet`, or any dataset with a variable ``y`` with dims
``output`` and ``time`` (plus optionally ``task`` and ``space``), and
optionally ``f`` and ``y_se``; it is brought to the canonical dim order, sorted
in time (and space) and validated like a CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
import xarray as xr

from .data import NETCDF_ENGINE, TaskSet
from .errors import InvalidInputError
from .systems.base import get_system

__all__ = ["load_measurements", "measurements_to_csv", "example_csv", "pool_replicates", "MIN_POINTS"]

MIN_POINTS = 3
"""Each replicate needs this many measured points: fewer cannot show a trend for a force to explain."""

TIME, SPACE, REPLICATE, FORCE = "time", "space", "replicate", "force"
SE_SUFFIX = "_se"
MISSING = frozenset({"", "na", "n/a", "nan", "null"})
"""Cells that mean 'not measured' (compared in lower case)."""

NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
INFINITY = re.compile(r"[+-]?inf(?:inity)?", re.IGNORECASE)
INTEGER = re.compile(r"[+-]?\d+")
HEADER_UNIT = re.compile(r"(?P<name>.*?)\s*\[(?P<unit>[^\[\]]*)\]")
METADATA_KEY = re.compile(r"[A-Za-z_][\w.-]*")
METADATA = re.compile(r"#\s*(?P<key>[A-Za-z_][\w.-]*)\s*:\s*(?P<value>.*)")
DELIMITERS = (",", ";", "\t")
UNIT_ATTRS = ("time_unit", "space_unit", "output_unit", "output_units", "latent_unit")

NETCDF_MAGIC = (b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"CDF\x05")
CLASSIC_NETCDF_MAGIC = b"CDF"
ZIP_MAGIC = b"PK\x03\x04"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
BINARY_FRACTION = 0.1
BINARY_SNIFF_BYTES = 4096
"""Text with more than this share of control bytes (other than tab, CR, LF) in its first
``BINARY_SNIFF_BYTES`` bytes is reported as binary."""
EXAMPLE_TIME_POINTS = 9
EXAMPLE_SPACE_POINTS = 5
EXAMPLE_DIGITS = 4
"""The example is small enough to read in a spreadsheet."""
MAX_SHOWN = 40
"""Offending cell values are shown up to this many characters."""


def load_measurements(
    path: str | os.PathLike | bytes | BinaryIO,
    *,
    expected_outputs: int | Sequence[str] | None = None,
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
        are then put in this order).
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
        columns.  The task coordinate holds the replicate labels; times (and
        positions) are sorted.

    Raises
    ------
    InvalidInputError
        With one sentence naming the problem and its column or line: an empty,
        binary or non-UTF-8 file, no ``time`` column, a non-numeric or infinite
        cell, an output without values, a time repeated within a replicate,
        fewer than :data:`MIN_POINTS` points in a replicate, or outputs that do
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
    data, source = _read_source(path, name)
    if data.startswith(NETCDF_MAGIC) or source.lower().endswith((".nc", ".nc4", ".netcdf")):
        dataset = _check_values(_netcdf_dataset(data, source), source, output_word="Output", task_word="Task")
    else:
        dataset, has_replicates = _csv_dataset(_decode(data, source), source)
        dataset = _check_values(dataset, source, output_word="Column", task_word="Replicate" if has_replicates else None)
    if expected_outputs is not None:
        dataset = _match_outputs(dataset, expected_outputs, source)
    if spec is not None:
        dataset = _apply_system(dataset, spec, source)
    dataset.attrs["source"] = source
    return TaskSet(dataset)


def measurements_to_csv(tasks: TaskSet, path: str | os.PathLike | None = None) -> str | Path:
    """Write a task set in the CSV upload format that :func:`load_measurements` reads.

    Writes ``y``, ``f`` (as ``force``) and ``y_se`` (as ``<output>_se``, for the
    outputs that have any), units in the header and every string attribute other
    than units and ``source`` as a ``# key: value`` comment.  Rows where nothing
    is known are left out; ``y_clean`` and per-task parameters are not written.
    Numbers are written with ``repr`` precision, so reading the file back gives
    bit-identical values.

    Parameters
    ----------
    tasks : TaskSet
    path : path, optional
        Where to write; without it the CSV text is returned.

    Returns
    -------
    str or Path
        The text, or the path written.
    """
    dataset = tasks.dataset
    attrs = dataset.attrs
    outputs = tasks.output_names
    output_units = _output_units(attrs, len(outputs))
    spatial = tasks.is_spatial
    y = np.asarray(dataset["y"].values, dtype=np.float64)
    force = np.asarray(dataset["f"].values, dtype=np.float64) if tasks.has_latent else None
    se = np.asarray(dataset["y_se"].values, dtype=np.float64) if "y_se" in dataset else None
    se_outputs = [k for k in range(len(outputs)) if se is not None and np.isfinite(se[:, k]).any()]

    header = [_with_unit(TIME, attrs.get("time_unit", ""))]
    if spatial:
        header.append(_with_unit(SPACE, attrs.get("space_unit", "")))
    header.append(REPLICATE)
    header += [_with_unit(output, unit) for output, unit in zip(outputs, output_units)]
    if force is not None:
        header.append(_with_unit(FORCE, attrs.get("latent_unit", "")))
    header += [outputs[k] + SE_SUFFIX for k in se_outputs]

    buffer = io.StringIO()
    for key, value in attrs.items():
        if isinstance(value, str) and key not in UNIT_ATTRS and key != "source" and METADATA_KEY.fullmatch(key):
            buffer.write(f"# {key}: {' '.join(value.splitlines())}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    times = dataset["time"].values
    positions = dataset["space"].values if spatial else [None]
    for task, label in enumerate(dataset["task"].values):
        for s, position in enumerate(positions):
            for t, time in enumerate(times):
                at = (task, slice(None), s, t) if spatial else (task, slice(None), t)
                values = list(y[at])
                if force is not None:
                    values.append(force[(task, s, t) if spatial else (task, t)])
                values += [se[at][k] for k in se_outputs]
                if not np.isfinite(values).any():
                    continue
                mesh = [_format(time)] + ([_format(position)] if spatial else [])
                writer.writerow(mesh + [_label(label)] + [_format(v) for v in values])
    text = buffer.getvalue()
    if path is None:
        return text
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


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


def example_csv(system: str = "transcription", *, seed: int = 0) -> str:
    """Return example CSV text in the upload format, simulated from ``system``.

    Two replicates of the system's outputs with the known force, rounded to
    :data:`EXAMPLE_DIGITS` significant digits: replicate 2 is measured at every
    other time only, and one cell of replicate 1 is left empty to show a missing
    value.

    Parameters
    ----------
    system : str
        A registered system name; the example has its outputs and units.
    seed : int
        Seed of the simulation.
    """
    from .simulate import simulate

    spec = get_system(system)
    shape = dict(grid=(EXAMPLE_SPACE_POINTS, EXAMPLE_TIME_POINTS)) if spec.is_spatial else dict(n_points=EXAMPLE_TIME_POINTS)
    simulated = simulate(spec, 2, seed=seed, **shape).dataset
    y, force = (_round_significant(simulated[name].values) for name in ("y", "f"))
    y[1, ..., 1::2] = np.nan
    force[1, ..., 1::2] = np.nan
    y[(0, 0) + (0,) * spec.is_spatial + (EXAMPLE_TIME_POINTS // 2,)] = np.nan
    mesh_dims = simulated["f"].dims[1:]
    dataset = xr.Dataset(
        {"y": (simulated["y"].dims, y), "f": (simulated["f"].dims, force)},
        coords={"task": [1, 2], "output": simulated["output"].values, **{dim: simulated[dim].values for dim in mesh_dims}},
        attrs={key: simulated.attrs[key] for key in UNIT_ATTRS if key in simulated.attrs},
    )
    dataset.attrs["note"] = (
        f"simulated example of the upload format ({spec.title}); replicate 2 is measured at fewer times, "
        "an empty cell is a missing value, and the force column is optional (a known force to compare with)"
    )
    return measurements_to_csv(TaskSet(dataset))


def _read_source(source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "upload"
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidInputError("The measurement file object must be opened in binary mode ('rb').")
        return bytes(data), name or str(getattr(source, "name", "upload"))
    path = Path(source)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        raise InvalidInputError(f"No measurement file at {str(path)[:MAX_SHOWN]!r}.")
    try:
        return path.read_bytes(), name or path.name
    except OSError as error:
        raise InvalidInputError(f"{path.name} cannot be read ({error.strerror}).") from error


def _decode(data: bytes, source: str) -> str:
    if not data.strip():
        raise InvalidInputError(f"{source} is empty; it needs a header row and at least {MIN_POINTS} data rows.")
    if data.startswith(ZIP_MAGIC):
        raise InvalidInputError(f"{source} is a zip archive (an Excel workbook?), not CSV text; export it as CSV (UTF-8).")
    if data.startswith(UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise InvalidInputError(f"{source} starts like UTF-16 text but is not; save it as CSV (UTF-8).") from error
    head = data[:BINARY_SNIFF_BYTES]
    controls = sum(byte < 9 or 13 < byte < 32 for byte in head)
    if b"\x00" in data or controls > BINARY_FRACTION * len(head):
        raise InvalidInputError(f"{source} looks like a binary file, not CSV text; upload a CSV or a netCDF file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{source} is not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}); "
            "save it as CSV (UTF-8)."
        ) from error


def _split_header(cell: str) -> tuple[str, str]:
    match = HEADER_UNIT.fullmatch(cell)
    if match and match["name"]:
        return match["name"].strip(), match["unit"].strip()
    return cell.strip(), ""


def _csv_dataset(text: str, source: str) -> tuple[xr.Dataset, bool]:
    lines = io.StringIO(text, newline="").readlines()
    metadata, first = {}, 0
    while first < len(lines) and (not lines[first].strip() or lines[first].lstrip().startswith("#")):
        match = METADATA.fullmatch(lines[first].strip())
        if match:
            metadata[match["key"]] = match["value"].strip()
        first += 1
    if first == len(lines):
        raise InvalidInputError(f"{source} has no header row, only comments or blank lines.")
    header_line = lines[first]
    delimiter = max(DELIMITERS, key=header_line.count)
    try:
        rows = [(first + reader_line, row) for reader_line, row in _csv_rows("".join(lines[first:]), delimiter)]
    except csv.Error as error:
        raise InvalidInputError(f"{source} is not valid CSV ({error}).") from error
    header, body = rows[0][1], [(number, row) for number, row in rows[1:] if any(cell.strip() for cell in row)]
    columns = [_split_header(cell) for cell in header]
    for number, row in body:
        if len(row) > len(header) and any(cell.strip() for cell in row[len(header):]):
            raise InvalidInputError(f"Line {number} of {source} has {len(row)} cells but the header has {len(header)} columns.")
        if len(row) < len(header):
            raise InvalidInputError(
                f"Line {number} of {source} has {len(row)} cells but the header has {len(header)} columns; "
                "leave missing values as empty cells between delimiters."
            )
    cells = {position: [(number, row[position].strip()) for number, row in body] for position in range(len(header))}
    named = []
    for position, (column, unit) in enumerate(columns):
        if column:
            named.append((position, column, unit))
        elif any(cell for _, cell in cells[position]):
            raise InvalidInputError(
                f"Column {position + 1} of {source} has no name in the header; name every column (or remove an index column)."
            )
    roles = _column_roles(named, source)
    if not body:
        raise InvalidInputError(f"{source} has a header but no data rows.")
    return _rows_to_dataset(roles, cells, metadata, source), REPLICATE in roles


def _csv_rows(text: str, delimiter: str):
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for row in reader:
        yield reader.line_num, row


def _column_roles(named: list[tuple[int, str, str]], source: str) -> dict:
    seen: dict[str, int] = {}
    roles = {"outputs": [], "se": {}, "units": {}}
    for position, column, unit in named:
        key = column.lower() if column.lower() in (TIME, SPACE, REPLICATE, FORCE) else column
        if key in seen:
            raise InvalidInputError(
                f"Column name {column!r} appears twice in {source} (columns {seen[key] + 1} and {position + 1}); names must be unique."
            )
        seen[key] = position
        if key in (TIME, SPACE, REPLICATE, FORCE):
            roles[key] = (position, column)
            roles["units"][key] = unit
        elif column.endswith(SE_SUFFIX) and len(column) > len(SE_SUFFIX):
            roles["se"][column[: -len(SE_SUFFIX)]] = (position, column)
        else:
            roles["outputs"].append((position, column))
            roles["units"][column] = unit
    names = [column for _, column, _ in named]
    if TIME not in roles:
        raise InvalidInputError(
            f"{source} has no 'time' column (columns: {', '.join(names) or 'none'}); "
            "name the column of measurement times 'time', optionally with a unit as 'time [h]'."
        )
    if not roles["outputs"]:
        raise InvalidInputError(f"{source} has no output columns besides {', '.join(names)}; add one column per measured output.")
    outputs = {column for _, column in roles["outputs"]}
    for stem, (_, column) in roles["se"].items():
        if stem not in outputs:
            raise InvalidInputError(
                f"Column {column!r} of {source} is a measurement error of {stem!r}, which is not an output column."
            )
    return roles


def _parse_numbers(column: str, cells: list[tuple[int, str]], source: str, *, required: bool = False) -> np.ndarray:
    values = np.full(len(cells), np.nan)
    for index, (number, cell) in enumerate(cells):
        if cell.lower() in MISSING:
            if required:
                raise InvalidInputError(f"Column {column!r} of {source} is empty on line {number}; every row needs a {column}.")
            continue
        if INFINITY.fullmatch(cell):
            raise InvalidInputError(f"Column {column!r} of {source} has an infinite value {cell!r} on line {number}; values must be finite.")
        if not NUMBER.fullmatch(cell):
            raise InvalidInputError(
                f"Column {column!r} of {source} has a non-numeric value {cell[:MAX_SHOWN]!r} on line {number}; "
                "cells must be numbers, or empty or NA where not measured."
            )
        values[index] = float(cell)
        if not np.isfinite(values[index]):
            raise InvalidInputError(f"Column {column!r} of {source} has a value {cell!r} on line {number} that overflows to infinity.")
    return values


def _rows_to_dataset(roles: dict, cells: dict, metadata: dict, source: str) -> xr.Dataset:
    lines = np.array([number for number, _ in cells[roles[TIME][0]]])
    time_position, time_column = roles[TIME]
    time = _parse_numbers(time_column, cells[time_position], source, required=True)
    spatial = SPACE in roles
    space = _parse_numbers(roles[SPACE][1], cells[roles[SPACE][0]], source, required=True) if spatial else None
    if REPLICATE in roles:
        labels = [cell for _, cell in cells[roles[REPLICATE][0]]]
        for number, cell in cells[roles[REPLICATE][0]]:
            if not cell:
                raise InvalidInputError(f"Column {roles[REPLICATE][1]!r} of {source} is empty on line {number}; every row needs a replicate label.")
    else:
        labels = ["0"] * len(lines)
    positions_of = {label: index for index, label in enumerate(dict.fromkeys(labels))}
    order = list(positions_of)
    task_index = np.array([positions_of[label] for label in labels], dtype=np.int64)

    outputs = [column for _, column in roles["outputs"]]
    values = np.stack([_parse_numbers(column, cells[position], source) for position, column in roles["outputs"]])
    force = _parse_numbers(roles[FORCE][1], cells[roles[FORCE][0]], source) if FORCE in roles else None
    se = None
    if roles["se"]:
        se = np.full(values.shape, np.nan)
        for k, output in enumerate(outputs):
            if output in roles["se"]:
                position, column = roles["se"][output]
                se[k] = _parse_numbers(column, cells[position], source)
                negative = np.flatnonzero(se[k] < 0)
                if negative.size:
                    raise InvalidInputError(
                        f"Column {column!r} of {source} has a negative measurement error {se[k, negative[0]]:g} on line "
                        f"{lines[negative[0]]}; errors are standard deviations (>= 0)."
                    )

    seen: dict[tuple, int] = {}
    for row in range(len(lines)):
        key = (task_index[row], time[row]) + ((space[row],) if spatial else ())
        if key in seen:
            where = f" at space {space[row]:g}" if spatial else ""
            replicate = f" for replicate {labels[row]!r}" if REPLICATE in roles else ""
            raise InvalidInputError(
                f"Time {time[row]:g}{where} appears twice{replicate} in {source} (lines {seen[key]} and {lines[row]}); "
                "give one row per time (average technical repeats, or label them as replicates)."
            )
        seen[key] = lines[row]

    times = np.unique(time)
    mesh = (np.searchsorted(times, time),)
    coords = {"task": _task_labels(order), "output": outputs, "time": times}
    mesh_dims: tuple[str, ...] = ("time",)
    if spatial:
        positions = np.unique(space)
        mesh = (np.searchsorted(positions, space),) + mesh
        coords["space"] = positions
        mesh_dims = ("space", "time")
    shape = (len(order), len(outputs)) + tuple(len(coords[d]) for d in mesh_dims)

    def grid(columns: np.ndarray) -> np.ndarray:
        array = np.full(shape, np.nan)
        for k in range(len(outputs)):
            array[(task_index, k) + mesh] = columns[k]
        return array

    units = roles["units"]
    output_units = [units[output] for output in outputs]
    attrs = dict(metadata)
    attrs["time_unit"] = units[TIME]
    if spatial:
        attrs["space_unit"] = units[SPACE]
    attrs["output_unit"] = output_units[0] if len(set(output_units)) == 1 else ""
    if len(set(output_units)) > 1:
        attrs["output_units"] = json.dumps(output_units)
    variables = {"y": (("task", "output") + mesh_dims, grid(values), {"long_name": "observed outputs", "units": attrs["output_unit"]})}
    if force is not None:
        attrs["latent_unit"] = units[FORCE]
        f = np.full((shape[0],) + shape[2:], np.nan)
        f[(task_index,) + mesh] = force
        variables["f"] = (("task",) + mesh_dims, f, {"long_name": "known latent force", "units": units[FORCE]})
    if se is not None:
        variables["y_se"] = (("task", "output") + mesh_dims, grid(se), {"long_name": "measurement error (standard deviation)", "units": attrs["output_unit"]})
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _task_labels(order: list[str]) -> np.ndarray:
    if all(INTEGER.fullmatch(label) for label in order):
        return np.array([int(label) for label in order], dtype=np.int64)
    return np.array(order)


def _netcdf_dataset(data: bytes, source: str) -> xr.Dataset:
    engine = "scipy" if data.startswith(CLASSIC_NETCDF_MAGIC) else NETCDF_ENGINE
    try:
        dataset = xr.open_dataset(io.BytesIO(data), engine=engine).load()
    except Exception as error:  # the engines raise many unrelated types for a bad file
        raise InvalidInputError(f"{source} is not a readable netCDF file ({type(error).__name__}: {error}).") from error
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


def _check_values(dataset: xr.Dataset, source: str, *, output_word: str, task_word: str | None) -> xr.Dataset:
    y = dataset["y"].values
    mesh_axes = tuple(range(2, y.ndim))
    observed_output = np.isfinite(y).any(axis=(0,) + mesh_axes)
    for name, observed in zip(dataset["output"].values, observed_output):
        if not observed:
            raise InvalidInputError(f"{output_word} {str(name)!r} of {source} has no values (every entry is missing); remove it or fill it in.")
    if "f" in dataset and not np.isfinite(dataset["f"].values).any():
        raise InvalidInputError(f"The force of {source} has no values (every entry is missing); remove it or fill it in.")
    points = np.isfinite(y).any(axis=1).reshape(y.shape[0], -1).sum(axis=1)
    for label, count in zip(dataset["task"].values, points):
        if count < MIN_POINTS:
            which = f"{task_word} {_label(label)!r} of {source} has" if task_word else f"{source} has"
            raise InvalidInputError(f"{which} {count} measured point(s); at least {MIN_POINTS} are needed to infer a force.")
    return dataset


def _match_outputs(dataset: xr.Dataset, expected: int | Sequence[str], source: str) -> xr.Dataset:
    names = [str(name) for name in dataset["output"].values]
    if isinstance(expected, str):
        expected = [expected]
    if isinstance(expected, (int, np.integer)):
        if len(names) != expected:
            raise InvalidInputError(
                f"{source} has {len(names)} output(s) ({', '.join(names)}) but the model expects {int(expected)}."
            )
        return dataset
    expected = [str(name) for name in expected]
    missing = [name for name in expected if name not in names]
    extra = [name for name in names if name not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks the output(s) {', '.join(missing)}")
        if extra:
            parts.append(f"has output(s) the model does not know: {', '.join(extra)}")
        raise InvalidInputError(f"{source} {' and '.join(parts)}; the model expects {', '.join(expected)}.")
    return dataset.sel(output=expected)


def _apply_system(dataset: xr.Dataset, spec, source: str) -> xr.Dataset:
    spatial = "space" in dataset["y"].dims
    if spatial != spec.is_spatial:
        needs = "a 'space' column" if spec.is_spatial else "no 'space' column"
        raise InvalidInputError(f"System {spec.name!r} is {'space x time' if spec.is_spatial else 'time only'}, so {source} needs {needs}.")
    dataset.attrs["system"] = spec.name
    defaults = {"time_unit": spec.time_unit, "output_unit": spec.output_unit}
    if spatial:
        defaults["space_unit"] = spec.space_unit
    if "f" in dataset:
        defaults["latent_unit"] = spec.latent_unit
    for key, unit in defaults.items():
        if not dataset.attrs.get(key) and not (key == "output_unit" and dataset.attrs.get("output_units")):
            dataset.attrs[key] = unit
    return dataset


def _output_units(attrs: dict, n_outputs: int) -> list[str]:
    if attrs.get("output_units"):
        units = json.loads(attrs["output_units"])
        if len(units) == n_outputs:
            return [str(unit) for unit in units]
    return [str(attrs.get("output_unit", ""))] * n_outputs


def _with_unit(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit else name


def _label(label) -> str:
    return str(label.item() if hasattr(label, "item") else label)


def _round_significant(values: np.ndarray) -> np.ndarray:
    return np.array([float(f"{value:.{EXAMPLE_DIGITS}g}") for value in values.ravel()]).reshape(values.shape)


def _format(value) -> str:
    value = float(value)
    if not np.isfinite(value):
        return ""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text
