"""Inference results as files: one flat table for CSV, netCDF as it is, both written atomically."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import xarray as xr

from ..data import NETCDF_ENGINE
from ..atomic import atomic_write

__all__ = ["result_table", "write_result", "file_stem", "RESULT_SUFFIXES", "CSV_FORMAT"]

RESULT_SUFFIXES = (".nc", ".csv")


def file_stem(text: str, fallback: str, max_length: int = 80) -> str:
    """``text`` as a file-name stem: runs of anything but letters, digits, ``-`` and ``_`` become one ``_``
    (``"p53 activity"`` -> ``p53_activity``); ``fallback`` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:max_length] or fallback


UNITLESS = ("task", "ood_score", "out_of_distribution")
"""Result columns without a unit."""
CSV_FORMAT = "%.6g"
"""Numbers in CSV results: six significant digits, far finer than any posterior's spread."""


def result_table(result: xr.Dataset, units: dict[str, str] | None = None, *, latent_name: str | None = None) -> pd.DataFrame:
    """Flatten an inference result into one row per (task, [space,] time).

    Columns: ``task``, [``space``,] ``time``, ``latent_mean``, ``latent_std``,
    then ``<output>_mean`` and ``<output>_std`` for each output, then the task's ``ood_score`` and
    ``out_of_distribution`` when the result has them; with ``units`` (keys ``time``,
    ``space``, ``latent``, ``output``) a known unit follows each name in brackets, ``time [h]``;
    with ``latent_name`` the latent's columns take its name, ``p53 activity_mean``.
    """
    table = result[["latent_mean", "latent_std"]].to_dataframe()
    for name in result["output"].values:
        for stat in ("mean", "std"):
            column = result[f"output_{stat}"].sel(output=name, drop=True)
            table[f"{name}_{stat}"] = column.to_series().reindex(table.index).values
    table = table.reset_index()
    if latent_name:
        table = table.rename(columns={"latent_mean": f"{latent_name}_mean", "latent_std": f"{latent_name}_std"})
    for name in ("ood_score", "out_of_distribution"):
        if name in result:
            table[name] = table["task"].map(result[name].to_series())
    units = {k: v for k, v in (units or {}).items() if v}
    if units:
        def named(column: str) -> str:
            latent = column.startswith("latent_") or (latent_name and column in (f"{latent_name}_mean", f"{latent_name}_std"))
            kind = column if column in ("time", "space") else "latent" if latent else None if column in UNITLESS else "output"
            return f"{column} [{units[kind]}]" if kind in units else column
        table.columns = [named(c) for c in table.columns]
    return table


def write_result(result: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write an inference result as netCDF, or as CSV (:func:`result_table`, numbers as :data:`CSV_FORMAT`, as the
    dashboard's download) when ``path`` ends in ``.csv``.

    ``overwrite=False`` refuses an existing ``path`` (see :func:`~dklfm_explore.atomic.atomic_write`).
    """
    path = Path(path)
    with atomic_write(path, overwrite=overwrite) as partial:
        if path.suffix == ".csv":
            result_table(result).to_csv(partial, index=False, float_format=CSV_FORMAT)
        else:
            result.to_netcdf(partial, engine=NETCDF_ENGINE)
    return path
