"""Where to measure next: rank candidate measurements by how much they shrink the latent posterior variance.

A candidate is a mesh point (a time, or a ``(space, time)`` point) at which every output would be
measured once more.  Exact GP conditioning on that measurement lowers the latent force's posterior
covariance at the query points ``q`` by

.. math::
    \\Delta(c) = \\operatorname{tr} \\; \\Sigma_{qc} (\\Sigma_{cc} + \\operatorname{diag}(\\sigma_y^2))^{-1} \\Sigma_{cq} / Q

(a rank-one update per output, ``P`` at once), where the ``\\Sigma`` are the current posterior
covariances of the latent points ``x_q (+) 0`` and the candidate's output points ``x_c (+) e_p``.
The variance reduction does not depend on the value that will be measured, but the deep kernel's
features do depend on the task embedding ``e``: it is held at the current data's embedding (a
new measurement would also move ``e`` slightly; that second-order effect is ignored).

Reductions are reported in the latent force's units squared, averaged over the query mesh (the
integral over the window divided by its length), and multiplied by the model's
``latent_std_scale**2`` like :meth:`TrainedModel.infer`'s variances.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .data import TaskSet
from .errors import InvalidInputError
from .linalg import cholesky, solve_lower
from .model.dklfm import mesh_points
from .trained import TrainedModel
from .task_inputs import standardise_inputs

__all__ = ["measurement_gains", "next_measurements", "DEFAULT_CANDIDATES"]

DEFAULT_CANDIDATES = 101
"""Candidate times spread evenly over the task's time range when none are given (time-only systems)."""


def measurement_gains(model: TrainedModel, tasks: TaskSet, candidates, *, task: int = 0, chosen=(),
                      time_mapping: str = "shift", output_scaling: str = "auto") -> torch.Tensor:
    """Latent variance reduction of one more measurement at each candidate point.

    Parameters
    ----------
    candidates : array-like (candidate, mesh_dim)
        Points in the user's units: ``(time,)`` rows, or ``(space, time)`` rows for space x time systems.
    task : int
        Which task of ``tasks`` (the others are ignored).
    chosen : sequence of int
        Candidates already planned: the gains are conditioned on them as if measured.

    Returns
    -------
    Tensor (candidate,) float64
        Mean reduction of the latent posterior variance over the task's mesh, latent units squared.
    """
    state = _State(model, tasks, task, time_mapping, output_scaling)
    points = state.candidate_points(candidates)
    extra = state.output_features(points[list(chosen)]) if len(chosen) else None
    return state.gains(points, extra)


def next_measurements(model: TrainedModel, tasks: TaskSet, k: int, candidates=None, *, task: int = 0,
                      time_mapping: str = "shift", output_scaling: str = "auto") -> pd.DataFrame:
    """The ``k`` best next measurements of one task, chosen greedily one after another.

    Each pick is conditioned on the picks before it (exactly, as if they had been measured), and a
    candidate is never picked twice.

    Parameters
    ----------
    k : int
        At least 1 and at most the number of candidates.
    candidates : array-like (candidate,) or (candidate, 2), optional
        Times (time-only) or ``(space, time)`` rows; default :data:`DEFAULT_CANDIDATES` times over the
        task's time range (time-only) or the task's grid points (space x time).

    Returns
    -------
    pandas.DataFrame
        One row per pick, in order: ``rank``, ``time`` (and ``space``), ``variance_reduction`` (the pick's
        own reduction given the earlier picks) and ``remaining_variance`` (mean latent posterior
        variance over the mesh after it), latent units squared.
    """
    state = _State(model, tasks, task, time_mapping, output_scaling)
    if candidates is None:
        candidates = state.default_candidates()
    user = np.asarray(candidates, dtype=np.float64)
    user = user[:, None] if user.ndim == 1 else user
    points = state.candidate_points(user)
    if not 1 <= int(k) <= points.shape[0]:
        raise InvalidInputError(f"--next must be between 1 and the number of candidates ({points.shape[0]}), got {k}.")
    picked: list[int] = []
    rows = []
    remaining = state.mean_variance(None)
    for rank in range(int(k)):
        extra = state.output_features(points[picked]) if picked else None
        gains = state.gains(points, extra)
        gains[picked] = -float("inf")
        best = int(torch.argmax(gains))
        picked.append(best)
        remaining = remaining - float(gains[best])
        row = {"rank": rank + 1}
        if state.spatial:
            row["space"] = float(user[best, 0])
        row.update(time=float(user[best, -1]), variance_reduction=float(gains[best]), remaining_variance=remaining)
        rows.append(row)
    return pd.DataFrame(rows)


class _State:
    """One task's current conditioning: features of its observed outputs and of the latent query mesh."""

    def __init__(self, model: TrainedModel, tasks: TaskSet, task: int, time_mapping: str, output_scaling: str):
        if not isinstance(tasks, TaskSet):
            raise InvalidInputError(f"Measurement design needs a TaskSet, got {type(tasks).__name__}.")
        if not 0 <= int(task) < tasks.n_tasks:
            raise InvalidInputError(f"Task index {task} is out of range for {tasks.n_tasks} task(s).")
        self.model = model
        self.module = model.module
        self.tasks = tasks.isel([int(task)])
        self.spatial = self.tasks.is_spatial
        inputs = standardise_inputs(model, self.tasks, time_mapping, output_scaling)
        self.time_map = inputs.time_map
        module = self.module
        with torch.no_grad():
            self.embedding = module.embed(inputs.coords, inputs.y)
            self.periods = module.task_periods(inputs.coords, inputs.y)
            mesh = mesh_points(inputs.coords).to(inputs.y.device)
            observed = ~torch.isnan(inputs.y.reshape(-1))
            self.observed_features = module._output_features(mesh, self.embedding, 1, self.periods)[0][observed]
            n_points = mesh.shape[0]
            output_of = torch.arange(module.config.n_outputs, device=mesh.device).repeat_interleave(n_points)
            self.observed_noise = module.output_noise[output_of[observed]] ** 2
            self.latent_features = module._latent_features(mesh, self.periods)[0]
        self.variance_unit = model.normaliser.f_std**2 * model.latent_std_scale**2

    def default_candidates(self) -> np.ndarray:
        time = self.tasks.time.numpy()
        if not self.spatial:
            return np.linspace(time[0], time[-1], DEFAULT_CANDIDATES)
        space = self.tasks.space.numpy()
        return np.stack(np.meshgrid(space, time, indexing="ij"), -1).reshape(-1, 2)

    def candidate_points(self, candidates) -> torch.Tensor:
        """Candidates in user units ``(candidate, mesh_dim)`` -> normalised mesh points, same shape."""
        values = np.asarray(candidates, dtype=np.float64)
        values = values[:, None] if values.ndim == 1 else values
        width = 2 if self.spatial else 1
        if values.ndim != 2 or values.shape[1] != width or values.shape[0] < 1 or not np.isfinite(values).all():
            kind = "(space, time) rows" if self.spatial else "times"
            raise InvalidInputError(f"Candidates must be a non-empty list of finite {kind}, got shape {values.shape}.")
        tensor = torch.tensor(values)
        normaliser = self.model.normaliser
        time = normaliser.transform_time(self.time_map(tensor[:, -1]))
        columns = [time]
        if self.spatial:
            columns.insert(0, normaliser.transform_space(tensor[:, 0]))
        return torch.stack(columns, -1).to(self.observed_features.device)

    def output_features(self, points: torch.Tensor) -> torch.Tensor:
        """Features of every output at ``points (candidate, mesh_dim)``: Tensor ``(candidate, output, feature)``."""
        with torch.no_grad():
            phi = self.module._output_features(points, self.embedding, 1, self.periods)[0]
        n_outputs = self.module.config.n_outputs
        return phi.reshape(n_outputs, points.shape[0], -1).transpose(0, 1)

    def _factor(self, extra: torch.Tensor | None):
        phi = self.observed_features
        noise = self.observed_noise
        if extra is not None:
            phi = torch.cat([phi, extra.reshape(-1, phi.shape[-1])])
            noise = torch.cat([noise, (self.module.output_noise**2).repeat(extra.shape[0])])
        kernel = self.module.kernel
        factor, _ = cholesky(kernel(phi, phi) + torch.diag(noise))
        return phi, factor

    def mean_variance(self, extra: torch.Tensor | None) -> float:
        """Mean latent posterior variance (noise-free function) over the mesh, latent units squared."""
        with torch.no_grad():
            phi, factor = self._factor(extra)
            kernel = self.module.kernel
            cross = solve_lower(factor, kernel(phi, self.latent_features))
            variance = kernel.diag(self.latent_features) - cross.pow(2).sum(0)
        return float(variance.mean()) * self.variance_unit

    def gains(self, points: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            kernel = self.module.kernel
            phi, factor = self._factor(extra)
            candidate = self.output_features(points)
            n_candidates, n_outputs, n_features = candidate.shape
            flat = candidate.reshape(-1, n_features)
            cross_q = solve_lower(factor, kernel(phi, self.latent_features))
            cross_c = solve_lower(factor, kernel(phi, flat))
            latent_candidate = kernel(self.latent_features, flat) - cross_q.T @ cross_c
            latent_candidate = latent_candidate.reshape(-1, n_candidates, n_outputs).transpose(0, 1)
            blocks = kernel(candidate, candidate) - torch.einsum("nci,ncj->cij", cross_c.reshape(-1, n_candidates, n_outputs),
                                                                 cross_c.reshape(-1, n_candidates, n_outputs))
            blocks = blocks + torch.diag_embed(self.module.output_noise**2).expand(n_candidates, -1, -1)
            block_factor, _ = cholesky(blocks)
            whitened = torch.linalg.solve_triangular(block_factor, latent_candidate.transpose(-1, -2), upper=False)
            reduction = whitened.pow(2).sum((-1, -2)) / self.latent_features.shape[0]
        return reduction.cpu() * self.variance_unit
