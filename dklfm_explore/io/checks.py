"""Checks every loaded dataset passes, whatever its format, and fitting it to a model or a system."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from .format import MIN_POINTS

__all__ = ["check_values", "match_outputs", "apply_system", "label_text"]


def check_values(dataset: xr.Dataset, source: str, *, output_word: str, task_word: str | None) -> xr.Dataset:
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
            which = f"{task_word} {label_text(label)!r} of {source} has" if task_word else f"{source} has"
            raise InvalidInputError(f"{which} {count} measured point(s); at least {MIN_POINTS} are needed to infer a force.")
    return dataset


def match_outputs(dataset: xr.Dataset, expected: int | Sequence[str], source: str) -> xr.Dataset:
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


def apply_system(dataset: xr.Dataset, spec, source: str) -> xr.Dataset:
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


def label_text(label) -> str:
    return str(label.item() if hasattr(label, "item") else label)
