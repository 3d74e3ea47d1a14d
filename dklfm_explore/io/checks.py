"""Checks every loaded dataset passes, whatever its format, and fitting it to a model or a system."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from .format import MIN_POINTS, listed, shown

__all__ = ["check_values", "match_outputs", "apply_system", "label_text"]


def check_values(dataset: xr.Dataset, source: str, *, output_word: str, task_word: str | None) -> xr.Dataset:
    """Refuse outputs without values, a force without values, replicates under :data:`MIN_POINTS` points
    and a mesh whose span overflows."""
    y = dataset["y"].values
    mesh_axes = tuple(range(2, y.ndim))
    observed_output = np.isfinite(y).any(axis=(0,) + mesh_axes)
    for name, observed in zip(dataset["output"].values, observed_output):
        if not observed:
            raise InvalidInputError(f"{output_word} {shown(name)} of {source} has no values (every entry is missing); remove it or fill it in.")
    if "f" in dataset and not np.isfinite(dataset["f"].values).any():
        raise InvalidInputError(f"The force of {source} has no values (every entry is missing); remove it or fill it in.")
    for dim in ("space", "time"):
        if dim in dataset.coords and dataset.sizes[dim] > 1:
            values = dataset[dim].values
            with np.errstate(over="ignore"):
                span = float(values.max()) - float(values.min())
            if not np.isfinite(span):
                raise InvalidInputError(f"The {dim}s of {source} span more than a float holds ({values.min():g} to {values.max():g}); use a smaller unit.")
    points = np.isfinite(y).any(axis=1).reshape(y.shape[0], -1).sum(axis=1)
    for label, count in zip(dataset["task"].values, points):
        if count < MIN_POINTS:
            which = f"{task_word} {shown(label_text(label))} of {source} has" if task_word else f"{source} has"
            raise InvalidInputError(f"{which} {count} measured point(s); at least {MIN_POINTS} are needed to infer a force.")
    return dataset


def match_outputs(
    dataset: xr.Dataset,
    expected: int | Sequence[str],
    source: str,
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
    in_order: bool = False,
) -> xr.Dataset:
    """Put the outputs in the order of ``expected``, keeping the names the file gives them.

    An output of the file matches an expected name when it is that name, else when it is the
    name or one of its ``aliases`` without regard to case (and no other output is).  With
    ``in_order`` and as many outputs as expected, the k-th output is taken as the k-th expected
    one whatever its name.  Where a name differs from the one expected, the attr ``output_match``
    records ``"file name -> expected name"`` pairs, separated by ``"; "``.
    """
    names = [str(name) for name in dataset["output"].values]
    if isinstance(expected, str):
        expected = [expected]
    if isinstance(expected, (int, np.integer)):
        if len(names) != expected:
            raise InvalidInputError(
                f"{source} has {len(names)} output(s) ({listed(names)}) but the model expects {int(expected)}."
            )
        return dataset
    expected = [str(name) for name in expected]
    if in_order:
        if len(names) != len(expected):
            raise InvalidInputError(
                f"{source} has {len(names)} output(s) ({listed(names)}) but the model expects {len(expected)} "
                f"({', '.join(expected)}), so they cannot be taken in order."
            )
        chosen = dict(zip(expected, names))
    else:
        chosen = _by_name(names, expected, aliases or {})
    missing = [name for name in expected if name not in chosen]
    extra = [name for name in names if name not in chosen.values()]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks the output(s) {listed(missing)}")
        if extra:
            parts.append(f"has output(s) the model does not know: {listed(extra)}")
        hint = "; to take the columns in the model's order, ask for outputs in order (--outputs-in-order)" if len(names) == len(expected) else ""
        raise InvalidInputError(f"{source} {' and '.join(parts)}; the model expects {', '.join(expected)}{hint}.")
    dataset = dataset.sel(output=[chosen[name] for name in expected])
    renamed = [f"{chosen[name]} -> {name}" for name in expected if chosen[name] != name]
    if renamed:
        dataset.attrs["output_match"] = "; ".join(renamed)
    return dataset


def _by_name(names: list[str], expected: list[str], aliases: Mapping[str, Sequence[str]]) -> dict[str, str]:
    chosen = {name: name for name in expected if name in names}
    free = [name for name in names if name not in chosen.values()]
    for name in expected:
        if name in chosen:
            continue
        known = {alias.casefold() for alias in (name, *aliases.get(name, ()))}
        candidates = [other for other in free if other.casefold() in known]
        if len(candidates) == 1:
            chosen[name] = candidates[0]
            free.remove(candidates[0])
    return chosen


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
