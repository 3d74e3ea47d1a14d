"""Read CSV text in the upload format (:mod:`dklfm_explore.io.format`) into a dataset: header, columns, cells, grid."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from .format import FORCE, MISSING, REPLICATE, SE_SUFFIX, SPACE, TIME, listed, shown

__all__ = ["csv_dataset"]

NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
INFINITY = re.compile(r"[+-]?inf(?:inity)?", re.IGNORECASE)
METADATA = re.compile(r"#\s*(?P<key>[A-Za-z_][\w.-]*)\s*:\s*(?P<value>.*)")
DELIMITERS = (",", ";", "\t")
DELIMITER_SAMPLE_LINES = 20
"""The delimiter is chosen on the header and the lines after it, up to this many lines in all."""


def _split_header(cell: str) -> tuple[str, str]:
    """``"name [unit]"`` -> ``("name", "unit")``; a cell without a bracketed unit at its end -> ``(cell, "")``."""
    cell = cell.strip()
    if cell.endswith("]"):
        opening = cell.rfind("[")
        name, unit = cell[: max(opening, 0)].rstrip(), cell[opening + 1 : -1]
        if opening > 0 and name and "]" not in unit:
            return name, unit.strip()
    return cell, ""


def _delimiter(lines: list[str]) -> str:
    """The delimiter that cuts the header and the first data lines into equally many cells.

    Among several, the one that gives the header a ``time`` cell, then the one with the most
    cells (``time;level, total`` over ``0;1,5`` is cut in two by both, and only ``;`` yields
    ``time``).  Without such a delimiter, the one whose header has a ``time`` cell, then the one
    the header uses most.
    """
    sample = [line for line in lines[:DELIMITER_SAMPLE_LINES] if line.strip() and not line.lstrip().startswith("#")]
    consistent = {}
    for delimiter in DELIMITERS:
        try:
            counts = {len(row) for row in csv.reader(sample, delimiter=delimiter)}
        except csv.Error:
            continue
        if len(counts) == 1 and counts != {1}:
            consistent[delimiter] = counts.pop()
    if consistent:
        return max(consistent, key=lambda delimiter: (_names_time(sample[0], delimiter), consistent[delimiter]))
    return max(DELIMITERS, key=lambda delimiter: (_names_time(lines[0], delimiter), lines[0].count(delimiter)))


def _names_time(header: str, delimiter: str) -> bool:
    """Whether ``header`` cut at ``delimiter`` has a cell named ``time`` (with or without a unit)."""
    try:
        cells = next(csv.reader([header], delimiter=delimiter), [])
    except csv.Error:
        return False
    return any(_split_header(cell)[0].lower() == TIME for cell in cells)


def csv_dataset(text: str, source: str) -> tuple[xr.Dataset, bool]:
    """The dataset of CSV text (``y``, optionally ``f`` and ``y_se``) and whether it has a replicate column."""
    lines = io.StringIO(text, newline="").readlines()
    metadata, first = {}, 0
    while first < len(lines) and (not lines[first].strip() or lines[first].lstrip().startswith("#")):
        match = METADATA.fullmatch(lines[first].strip())
        if match:
            metadata[match["key"]] = match["value"].strip()
        first += 1
    if first == len(lines):
        raise InvalidInputError(f"{source} has no header row, only comments or blank lines.")
    delimiter = _delimiter(lines[first:])
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
                f"Column name {shown(column)} appears twice in {source} (columns {seen[key] + 1} and {position + 1}); names must be unique."
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
            f"{source} has no 'time' column (columns: {listed(names) if names else 'none'}); "
            "name the column of measurement times 'time', optionally with a unit as 'time [h]'."
        )
    if not roles["outputs"]:
        raise InvalidInputError(f"{source} has no output columns besides {listed(names)}; add one column per measured output.")
    outputs = {column for _, column in roles["outputs"]}
    for stem, (_, column) in roles["se"].items():
        if stem not in outputs:
            raise InvalidInputError(
                f"Column {shown(column)} of {source} is a measurement error of {shown(stem)}, which is not an output column."
            )
    return roles


def _parse_numbers(column: str, cells: list[tuple[int, str]], source: str, *, required: bool = False) -> np.ndarray:
    values = np.full(len(cells), np.nan)
    for index, (number, cell) in enumerate(cells):
        if cell.lower() in MISSING:
            if required:
                raise InvalidInputError(f"Column {shown(column)} of {source} is empty on line {number}; every row needs a {column}.")
            continue
        if INFINITY.fullmatch(cell):
            raise InvalidInputError(f"Column {shown(column)} of {source} has an infinite value {shown(cell)} on line {number}; values must be finite.")
        if not NUMBER.fullmatch(cell):
            hint = " (write a decimal point, not a comma)" if NUMBER.fullmatch(cell.replace(",", ".", 1)) else ""
            raise InvalidInputError(
                f"Column {shown(column)} of {source} has a non-numeric value {shown(cell)} on line {number}; "
                f"cells must be numbers{hint}, or empty or NA where not measured."
            )
        values[index] = float(cell)
        if not np.isfinite(values[index]):
            raise InvalidInputError(f"Column {shown(column)} of {source} has a value {shown(cell)} on line {number} that overflows to infinity.")
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
                raise InvalidInputError(f"Column {shown(roles[REPLICATE][1])} of {source} is empty on line {number}; every row needs a replicate label.")
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
                        f"Column {shown(column)} of {source} has a negative measurement error {se[k, negative[0]]:g} on line "
                        f"{lines[negative[0]]}; errors are standard deviations (>= 0)."
                    )

    seen: dict[tuple, int] = {}
    written = {number: cell for number, cell in cells[time_position]}
    for row in range(len(lines)):
        key = (task_index[row], time[row]) + ((space[row],) if spatial else ())
        if key in seen:
            where = f" at space {space[row]:g}" if spatial else ""
            replicate = f" for replicate {shown(labels[row])}" if REPLICATE in roles else ""
            first, second = written[seen[key]], written[lines[row]]
            if Decimal(first) != Decimal(second):
                raise InvalidInputError(
                    f"Times {shown(first)} and {shown(second)} on lines {seen[key]} and {lines[row]} of {source}{replicate} are the same "
                    f"number in double precision (it keeps about 16 significant digits); subtract the first time from every time "
                    "or use a coarser unit (nanosecond timestamps: seconds or hours)."
                )
            raise InvalidInputError(
                f"Time {time[row]:g}{where} appears twice{replicate} in {source} (lines {seen[key]} and {lines[row]}); "
                "give one row per time (average technical repeats, or label them as replicates)."
            )
        seen[key] = lines[row]

    times = np.unique(time)
    mesh = (np.searchsorted(times, time),)
    coords = {"task": np.array(order, dtype=str) if REPLICATE in roles else np.array([0]), "output": outputs, "time": times}
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
