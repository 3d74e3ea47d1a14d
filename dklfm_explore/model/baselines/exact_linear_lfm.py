r"""The exact latent force model of the linear systems, with the true parameters: the accuracy ceiling.

For a linear system the latent force and the outputs are jointly Gaussian, so
conditioning on the observed outputs gives the Bayes-optimal posterior of the
force.  Two systems are covered.

**Linear transcription** (``transcription-linear``, Lawrence et al. 2006):
``dy_j/dt = b_j + s_j f(t) - d_j y_j`` with an RBF force; the kernel is closed form
(:mod:`~dklfm_explore.model.baselines._exact_sim_kernel`).

**Linear reaction-diffusion** (``reaction-diffusion``, Lopez-Lopera et al. 2019):
``dy/dt = S u - lambda y + D y_xx`` on ``[0, 1]`` with a space x time RBF force; the
kernel is a sine series in space over SIM kernels in time, its space integrals by
quadrature (:mod:`~dklfm_explore.model.baselines._exact_rd_kernel`), either the
simulator's own (``basis="simulator"``, the default for simulated task sets) or the
continuous model's (``basis="continuous"``).

Here: the Gaussian conditioning of the force and the outputs on the observed
outputs, batched over tasks with masks for missing values.
"""

from __future__ import annotations

import time as timer

import numpy as np
import torch
import xarray as xr

from ...data import TaskSet
from ...errors import InvalidInputError
from ...linalg import cholesky_solve, solve_lower
from ...simulate import observation_noise_std
from ...systems.base import System
from ._common import (
    check_observed,
    cholesky,
    force_prior_of,
    query_axis,
    result_dataset,
    start_time_of,
    system_of,
)
from ._exact_rd_kernel import SineBasis, rd_cross_covariance, rd_output_covariance, rd_prior_mean
from ._exact_sim_kernel import log_diff_erf, sim_cross_covariance, sim_joint_covariance, sim_output_covariance

__all__ = [
    "log_diff_erf",
    "sim_cross_covariance",
    "sim_output_covariance",
    "sim_joint_covariance",
    "SineBasis",
    "rd_cross_covariance",
    "rd_output_covariance",
    "exact_posterior",
    "EXACT_SYSTEMS",
]

EXACT_SYSTEMS = ("transcription-linear", "reaction-diffusion")
"""Systems with a closed-form joint Gaussian of force and outputs."""

MIN_OBSERVED = 1
"""Observed values a task needs for conditioning."""


def _condition(
    y: torch.Tensor,
    observed: torch.Tensor,
    prior_mean: torch.Tensor,
    k_yy: torch.Tensor,
    noise_var: torch.Tensor,
    queries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Gaussian conditioning on the observed entries, batched over tasks with masks.

    Unobserved entries get unit variance, no correlation and zero residual, which
    is the same as leaving them out.

    Parameters
    ----------
    y, observed, prior_mean, noise_var : Tensor ``(task, obs)``
    k_yy : Tensor ``(task, obs, obs)``
    queries : list of ``(mean (task, q), cross (task, q, obs), variance (task, q))``

    Returns
    -------
    list of ``(mean (task, q), variance (task, q))``
    """
    mask = observed.to(k_yy)
    covariance = k_yy * mask[:, :, None] * mask[:, None, :] + torch.diag_embed(noise_var * mask + (1 - mask))
    factor = cholesky(covariance)
    residual = torch.where(observed, y - prior_mean, torch.zeros_like(y))
    weights = cholesky_solve(factor, residual[..., None])[..., 0]
    results = []
    for mean, cross, variance in queries:
        cross = cross * mask[:, None, :]
        whitened = solve_lower(factor, cross.transpose(-1, -2))
        results.append((mean + (cross @ weights[..., None])[..., 0], variance - (whitened**2).sum(-2)))
    return results


def _noise_std(tasks: TaskSet, noise_std) -> torch.Tensor:
    """Noise standard deviation per output ``(output,)``: given, recorded by the simulator, or its rule on ``y_clean``."""
    if noise_std is not None:
        values = torch.as_tensor(np.asarray(noise_std, dtype=np.float64)).reshape(-1)
        if values.numel() == 1:
            values = values.expand(tasks.n_outputs).clone()
        if values.numel() != tasks.n_outputs or torch.any(values < 0) or not torch.all(torch.isfinite(values)):
            raise InvalidInputError(
                f"noise_std needs one non-negative value or one per output ({tasks.n_outputs}), got {values.numel()} value(s)."
            )
        return values
    if "noise_std" in tasks.dataset and tasks.dataset["noise_std"].dims == ("output",):
        return torch.as_tensor(np.asarray(tasks.dataset["noise_std"].values, dtype=np.float64))
    if "y_clean" not in tasks.dataset:
        raise InvalidInputError("The task set has no `y_clean` to recompute the noise level from; pass noise_std (one value per output).")
    return observation_noise_std(tasks.tensor("y_clean"), float(tasks.dataset.attrs.get("noise_level", 0.0)))


NOISE_FLOOR = 1e-6
"""Relative noise floor for noise-free task sets, so the output covariance stays factorisable."""


def exact_posterior(
    tasks: TaskSet,
    *,
    time=None,
    space=None,
    noise_std=None,
    basis: str = "simulator",
    n_modes: int | None = None,
) -> xr.Dataset:
    """Posterior of the latent force (and outputs) under the exact linear LFM with each task's true parameters.

    Parameters
    ----------
    tasks : TaskSet
        Simulated by ``transcription-linear`` or ``reaction-diffusion``; carries the
        true parameters (``basal_rate``, ``sensitivity``, ``decay_rate`` (task, output)
        and ``force_lengthscale`` (task,); or ``sensitivity``, ``decay_rate``,
        ``diffusion``, ``force_lengthscale``, ``force_space_lengthscale`` (task,)).
        ``y`` may hold NaNs (missing values).
    time, space : array-like, optional
        Query coordinates in the tasks' units; default the tasks' own mesh.
        Times must not precede the simulation's start.
    noise_std : float or array ``(output,)``, optional
        Observation noise standard deviation.  Default: the simulator's rule,
        ``noise_level`` (attrs) times each output's standard deviation of
        ``y_clean`` over the given tasks and mesh (exact when the task set is the
        whole simulated set, a close estimate for a subset).
    basis : {"simulator", "continuous"}
        Reaction-diffusion only: the space quadrature (:class:`SineBasis`).
    n_modes : int, optional
        Reaction-diffusion, ``basis="continuous"``: number of sine modes.

    Returns
    -------
    xarray.Dataset
        ``latent_mean``, ``latent_std`` ``(task, [space,] time)``; ``output_mean``,
        ``output_std`` ``(task, output, [space,] time)`` (the noise-free output; add
        ``noise_std`` in quadrature for a new measurement); ``noise_std (output,)``;
        attrs ``infer_ms_per_task``, ``device``, ``baseline``.

    Raises
    ------
    InvalidInputError
        For another system, missing parameters, a task without observations or times before the start.
    """
    system = system_of(tasks)
    if system.name not in EXACT_SYSTEMS:
        raise InvalidInputError(
            f"The exact linear LFM covers {', '.join(EXACT_SYSTEMS)}, not {system.name!r}; use the per-task LFM instead."
        )
    started = timer.perf_counter()
    prior = force_prior_of(tasks, system)
    noise = _noise_std(tasks, noise_std)
    y = tasks.y()
    observed = check_observed(y, MIN_OBSERVED)
    scale = torch.nan_to_num(y, nan=0.0).flatten(2).abs().amax(dim=(0, 2)).clamp_min(1.0)
    noise_var = torch.maximum(noise, NOISE_FLOOR * scale) ** 2
    start = start_time_of(tasks, system)
    query_time = query_axis(time, tasks.time, "time")
    if torch.any(query_time < start):
        raise InvalidInputError(f"Query time {float(query_time.min()):g} precedes the simulation's start {start:g}.")
    if system.is_spatial:
        result = _posterior_rd(tasks, system, prior, noise_var, y, observed, start, query_time, query_axis(space, tasks.space, "space"), basis, n_modes)
    else:
        if space is not None:
            raise InvalidInputError(f"System {system.name!r} is over time only; do not give query space.")
        result = _posterior_sim(tasks, prior, noise_var, y, observed, start, query_time)
    latent_mean, latent_var, output_mean, output_var, query_space, extra_attrs = result
    elapsed_ms = 1000.0 * (timer.perf_counter() - started) / tasks.n_tasks
    attrs = {"baseline": "exact-lfm", "infer_ms_per_task": elapsed_ms, "device": "cpu", "system": system.name, **extra_attrs}
    extra = {"noise_std": (("output",), noise_var.sqrt())}
    return result_dataset(tasks, query_time, query_space, latent_mean, latent_var, output_mean, output_var, attrs, extra)


def _parameters(tasks: TaskSet, names: tuple[str, ...]) -> list[torch.Tensor]:
    missing = [name for name in names if name not in tasks.dataset]
    if missing:
        raise InvalidInputError(f"The task set lacks the true parameter(s) {missing}; the exact LFM needs {list(names)}.")
    return [tasks.tensor(name) for name in names]


def _posterior_sim(tasks: TaskSet, prior, noise_var, y, observed, start, query_time):
    basal, sensitivity, decay, lengthscale = _parameters(tasks, ("basal_rate", "sensitivity", "decay_rate", "force_lengthscale"))
    n_tasks, n_outputs, n_time = y.shape
    t_obs, t_query = tasks.time - start, query_time - start
    mu, variance = prior.mean, prior.variance

    def output_mean(times):
        growth = -torch.expm1(-decay[..., None] * times) / decay[..., None]
        return (basal / decay)[..., None] + mu * sensitivity[..., None] * growth

    k_yy = sim_output_covariance(t_obs, t_obs, sensitivity, decay, lengthscale, variance).reshape(n_tasks, n_outputs * n_time, -1)
    k_fy = sim_cross_covariance(t_query, t_obs, sensitivity, decay, lengthscale, variance).reshape(n_tasks, t_query.numel(), -1)
    k_qy = sim_output_covariance(t_query, t_obs, sensitivity, decay, lengthscale, variance).reshape(n_tasks, n_outputs * t_query.numel(), -1)
    k_qq = sim_output_covariance(t_query, t_query, sensitivity, decay, lengthscale, variance).reshape(n_tasks, n_outputs * t_query.numel(), -1)
    latent_prior_mean = torch.full((n_tasks, t_query.numel()), mu, dtype=torch.float64)
    latent_prior_var = torch.full_like(latent_prior_mean, variance)
    noise = noise_var[None, :, None].expand(n_tasks, n_outputs, n_time).reshape(n_tasks, -1)
    (latent_mean, latent_var), (out_mean, out_var) = _condition(
        y.reshape(n_tasks, -1),
        observed.reshape(n_tasks, -1),
        output_mean(t_obs).reshape(n_tasks, -1),
        k_yy,
        noise,
        [
            (latent_prior_mean, k_fy, latent_prior_var),
            (output_mean(t_query).reshape(n_tasks, -1), k_qy, k_qq.diagonal(dim1=-2, dim2=-1)),
        ],
    )
    shape = (n_tasks, n_outputs, t_query.numel())
    return latent_mean, latent_var, out_mean.reshape(shape), out_var.reshape(shape), None, {}


def _simulation_force_space(tasks: TaskSet, system: System) -> torch.Tensor | None:
    """The force-space grid the tasks were simulated on, from their spec (None for measurements)."""
    spec = tasks.spec
    if spec is None:
        return None
    return spec.mesh(system).force_space


def _posterior_rd(tasks, system, prior, noise_var, y, observed, start, query_time, query_space, basis_kind, n_modes):
    names = ("sensitivity", "decay_rate", "diffusion", "force_lengthscale", "force_space_lengthscale")
    sensitivity, decay, diffusion, lengthscale, space_lengthscale = _parameters(tasks, names)
    if basis_kind == "simulator":
        force_space = _simulation_force_space(tasks, system)
        if force_space is None:
            raise InvalidInputError("basis='simulator' needs a simulated task set (a spec in its attrs); use basis='continuous'.")
        basis = SineBasis.simulator(force_space)
    elif basis_kind == "continuous":
        basis = SineBasis.continuous(float(space_lengthscale.min()), n_modes)
    else:
        raise InvalidInputError(f"basis must be 'simulator' or 'continuous', got {basis_kind!r}.")
    n_tasks = y.shape[0]
    space, t_obs, t_query = tasks.space, tasks.time - start, query_time - start
    n_obs = space.numel() * t_obs.numel()
    n_query = query_space.numel() * t_query.numel()
    parameters = (sensitivity, decay, diffusion, lengthscale, space_lengthscale, basis, prior.variance)
    k_yy = rd_output_covariance(space, t_obs, space, t_obs, *parameters).reshape(n_tasks, n_obs, n_obs)
    k_uy = rd_cross_covariance(query_space, t_query, space, t_obs, *parameters).reshape(n_tasks, n_query, n_obs)
    k_qy = rd_output_covariance(query_space, t_query, space, t_obs, *parameters).reshape(n_tasks, n_query, n_obs)
    k_qq = rd_output_covariance(query_space, t_query, query_space, t_query, *parameters, diagonal=True).reshape(n_tasks, n_query)
    mean_obs = rd_prior_mean(space, t_obs, sensitivity, decay, diffusion, basis, prior.mean).reshape(n_tasks, n_obs)
    mean_query = rd_prior_mean(query_space, t_query, sensitivity, decay, diffusion, basis, prior.mean).reshape(n_tasks, n_query)
    latent_prior_mean = torch.full((n_tasks, n_query), prior.mean, dtype=torch.float64)
    (latent_mean, latent_var), (out_mean, out_var) = _condition(
        y[:, 0].reshape(n_tasks, -1),
        observed[:, 0].reshape(n_tasks, -1),
        mean_obs,
        k_yy,
        noise_var[0].expand(n_tasks, n_obs),
        [(latent_prior_mean, k_uy, torch.full_like(latent_prior_mean, prior.variance)), (mean_query, k_qy, k_qq)],
    )
    grid = (n_tasks, query_space.numel(), t_query.numel())
    attrs = {"basis": basis.kind, "n_modes": basis.n_modes}
    return latent_mean.reshape(grid), latent_var.reshape(grid), out_mean.reshape(grid)[:, None], out_var.reshape(grid)[:, None], query_space, attrs
