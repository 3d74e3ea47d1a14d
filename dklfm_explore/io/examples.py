"""Example files of the upload format, simulated from a registered system."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..data import TaskSet
from ..simulate import simulate
from ..systems.base import get_system
from .csv_write import measurements_to_csv
from .format import UNIT_ATTRS

__all__ = ["example_csv"]

EXAMPLE_TIME_POINTS = 9
EXAMPLE_SPACE_POINTS = 5
EXAMPLE_DIGITS = 4
"""The example is small enough to read in a spreadsheet."""


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


def _round_significant(values: np.ndarray) -> np.ndarray:
    return np.array([float(f"{value:.{EXAMPLE_DIGITS}g}") for value in values.ravel()]).reshape(values.shape)
