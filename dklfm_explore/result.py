"""The inference result: one format for the DKLFM and every baseline.

An :class:`xarray.Dataset` with ``latent_mean``, ``latent_std`` ``(task, [space,] time)`` in the
tasks' latent unit and ``output_mean``, ``output_std`` ``(task, output, [space,] time)`` in their
output unit, on the query mesh, with the tasks' ``task`` and ``output`` coordinates; attrs say
how it was made (method, device, timings).  Standard deviations are predictive.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import xarray as xr

from .data import TaskSet
from .errors import NonFiniteResultWarning
from .messages import listed, shown

__all__ = ["result_dataset", "warn_if_not_finite", "RESULT_VARIABLES"]

RESULT_VARIABLES = ("latent_mean", "latent_std", "output_mean", "output_std")


def result_dataset(
    tasks: TaskSet,
    time: torch.Tensor,
    space: torch.Tensor | None,
    latent_mean: torch.Tensor,
    latent_var: torch.Tensor,
    output_mean: torch.Tensor,
    output_var: torch.Tensor,
    attrs: dict,
    extra: dict | None = None,
) -> xr.Dataset:
    """Assemble an inference result (this module's format) from a posterior in the user's units.

    Parameters
    ----------
    tasks : TaskSet
        The conditioned tasks (their ``task``/``output`` coordinates and units are kept).
    time, space : Tensor ``(time,)``, ``(space,)`` or None
        The query mesh, in the user's units.
    latent_mean, latent_var : Tensor ``(task, [space,] time)``
    output_mean, output_var : Tensor ``(task, output, [space,] time)``
    attrs : dict
    extra : dict of name -> (dims, array), optional
        Further variables (fitted parameters, noise levels).
    """
    mesh_dims = ("space", "time") if space is not None else ("time",)
    coords = {"task": tasks.dataset["task"].values, "output": tasks.dataset["output"].values,
              "time": np.asarray(time.detach().cpu().numpy(), dtype=np.float64)}
    if space is not None:
        coords["space"] = np.asarray(space.detach().cpu().numpy(), dtype=np.float64)
    numpy = lambda value: value.detach().to(torch.float64).cpu().numpy()  # noqa: E731
    latent = {"units": tasks.dataset.attrs.get("latent_unit", "")}
    output = {"units": tasks.dataset.attrs.get("output_unit", "")}
    variables = {
        "latent_mean": (("task",) + mesh_dims, numpy(latent_mean), latent),
        "latent_std": (("task",) + mesh_dims, numpy(latent_var.clamp_min(0).sqrt()), latent),
        "output_mean": (("task", "output") + mesh_dims, numpy(output_mean), output),
        "output_std": (("task", "output") + mesh_dims, numpy(output_var.clamp_min(0).sqrt()), output),
    }
    for name, (dims, value) in (extra or {}).items():
        variables[name] = (dims, numpy(value) if isinstance(value, torch.Tensor) else value)
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def warn_if_not_finite(result: xr.Dataset, source: str) -> None:
    """Warn, naming the variable, output and tasks, where a result holds NaN or infinite values instead of numbers."""
    for name in RESULT_VARIABLES:
        values = result[name]
        bad = ~np.isfinite(values.values)
        if not bad.any():
            continue
        where = ""
        if "output" in values.dims:
            per_output = bad.any(axis=tuple(i for i, d in enumerate(values.dims) if d != "output"))
            where = f" of output(s) {listed(values['output'].values[per_output])}"
        per_task = bad.reshape(bad.shape[0], -1).any(axis=1)
        tasks = [shown(str(label)) for label in values["task"].values[per_task]]
        warnings.warn(
            NonFiniteResultWarning(
                f"The inferred {name}{where} of {source} is not a finite number at {int(bad.sum())} point(s) "
                f"(task(s) {listed(tasks)}); do not use those values."
            ),
            stacklevel=3,
        )
