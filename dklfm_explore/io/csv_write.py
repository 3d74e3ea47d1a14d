"""Write a task set in the CSV upload format, so that reading it back gives bit-identical values."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from ..data import TaskSet
from ..atomic import atomic_write
from .checks import label_text
from .format import FORCE, METADATA_KEY, REPLICATE, SE_SUFFIX, SPACE, TIME, UNIT_ATTRS

__all__ = ["measurements_to_csv"]


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
                writer.writerow(mesh + [label_text(label)] + [_format(v) for v in values])
    text = buffer.getvalue()
    if path is None:
        return text
    path = Path(path)
    with atomic_write(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return path


def _output_units(attrs: dict, n_outputs: int) -> list[str]:
    if attrs.get("output_units"):
        units = json.loads(attrs["output_units"])
        if len(units) == n_outputs:
            return [str(unit) for unit in units]
    return [str(attrs.get("output_unit", ""))] * n_outputs


def _with_unit(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit else name


def _format(value) -> str:
    value = float(value)
    if not np.isfinite(value):
        return ""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text
