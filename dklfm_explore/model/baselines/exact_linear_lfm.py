r"""The exact latent force model of the linear systems, with the true parameters: the accuracy ceiling.

For a linear system the latent force and the outputs are jointly Gaussian, so
conditioning on the observed outputs gives the Bayes-optimal posterior of the
force.  Two systems are covered.

**Linear transcription** (``transcription-linear``, Lawrence et al. 2006):
``dy_j/dt = b_j + s_j f(t) - d_j y_j``, ``y_j(0) = b_j / d_j``, with
``f ~ GP(mu, v exp(-(t - t')^2 / (2 l^2)))``.  Writing ``sigma = sqrt(2) l``
and ``gamma_j = d_j sigma / 2`` (times measured from the start, where the
initial condition holds):

.. math::

    E[y_j(t)] &= b_j / d_j + s_j \mu (1 - e^{-d_j t}) / d_j \\
    \mathrm{cov}(f(t), y_j(t')) &= v s_j \tfrac{\sqrt\pi\sigma}{2} e^{\gamma_j^2 - d_j (t' - t)}
        [\mathrm{erf}(t/\sigma + \gamma_j) - \mathrm{erf}(\gamma_j - (t' - t)/\sigma)] \\
    \mathrm{cov}(y_i(t), y_j(t')) &= v s_i s_j \tfrac{\sqrt\pi\sigma}{2} [h_{ij}(t, t') + h_{ji}(t', t)] \\
    h_{ij}(t, t') &= \frac{e^{\gamma_i^2}}{d_i + d_j} \Big(e^{-d_i (t - t')}
        [\mathrm{erf}(\gamma_i + t'/\sigma) - \mathrm{erf}(\gamma_i - (t - t')/\sigma)]
        - e^{-d_i t - d_j t'} [\mathrm{erf}(\gamma_i) - \mathrm{erf}(\gamma_i - t/\sigma)]\Big)

every difference of error functions evaluated as ``log|erf(a) - erf(b)|`` with
scaled complementary error functions (:func:`log_diff_erf`) and combined with
its exponential prefactor in log space, so nothing overflows for decays up to
hundreds per time unit.  All of this is closed form.

**Linear reaction-diffusion** (``reaction-diffusion``, Lopez-Lopera et al. 2019):
``dy/dt = S u - lambda y + D y_xx`` on ``[0, 1]``, zero boundary and initial
values, ``u ~ GP(mu, v k_x(x, x') k_t(t, t'))`` with RBF ``k_x`` (``l_x``) and
``k_t`` (``l_t``).  In the sine basis ``y = sum_n sin(n pi x) y_n(t)`` each mode
obeys ``dy_n/dt = S u_n - a_n y_n`` with ``a_n = lambda + D n^2 pi^2`` and
``u_n(t) = 2 int_0^1 sin(n pi x) u(x, t) dx``, so

.. math::

    \mathrm{cov}(u(x, t), y(x', t')) &= v S \sum_m \sin(m\pi x') B_m(x) G_m(t, t') \\
    \mathrm{cov}(y(x, t), y(x', t')) &= v S^2 \sum_{n, m} \sin(n\pi x) \sin(m\pi x') C_{nm} H_{nm}(t, t')

with ``B_m(x) = 2 int sin(m pi z) k_x(x, z) dz``, ``C_nm = 2 int sin(n pi z) B_m(z) dz``,
``G_m`` the SIM cross covariance with decay ``a_m`` and ``H_nm`` the SIM output
covariance with decays ``a_n, a_m`` (both closed form, as above).  The space
integrals ``B`` and ``C`` are quadratures (:class:`SineBasis`):

* ``"simulator"`` (default for simulated task sets): the simulator's own
  truncation and projection -- ``SERIES_TERMS_PER_POINT`` (0.5) modes per point of
  its force-space grid (20 modes for the default 21-point grid) and the
  trapezoidal rule on that grid -- so the kernel is exactly the covariance of the
  simulated process (up to the simulator's piecewise-linear interpolation of the
  force in time);
* ``"continuous"``: the continuous model, Gauss-Legendre quadrature with
  ``QUADRATURE_NODES`` nodes (converged to machine precision for space
  lengthscales >= 0.05) and ``n_modes`` modes (default: enough that the force's
  spectrum has decayed below ``SPECTRAL_TOLERANCE``).
"""

from __future__ import annotations

import math
import time as timer
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from ...data import TaskSet
from ...errors import InvalidInputError
from ...quadrature import trapezoid_weights
from ...simulate import observation_noise_std
from ...systems.base import System
from ...systems.forces import rbf_covariance
from ...systems.reaction_diffusion import SERIES_TERMS_PER_POINT, sine_modes
from ._common import (
    check_observed,
    cholesky,
    force_prior_of,
    query_axis,
    result_dataset,
    start_time_of,
    system_of,
)

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

QUADRATURE_NODES = 256
"""Gauss-Legendre nodes on [0, 1]: exact to float64 for RBF lengthscales >= 0.05 and 60 modes."""
SPECTRAL_TOLERANCE = 1e-12
"""Continuous basis: keep modes until the RBF's spectral density exp(-(n pi l)^2 / 2) falls below this."""
MIN_MODES = 4
"""Fewest sine modes ever used (the force's mean profile needs a few)."""
MIN_OBSERVED = 1
"""Observed values a task needs for conditioning."""


def log_diff_erf(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(log|erf(a) - erf(b)|, sign(erf(a) - erf(b)))`` without cancellation.

    When ``a`` and ``b`` lie on the same side of zero the difference is written
    with the scaled complementary error function ``erfcx(x) = exp(x^2) erfc(x)``;
    a zero difference gives ``-inf``.

    Parameters
    ----------
    a, b : Tensor (...), float64, broadcastable
    """
    a, b = torch.broadcast_tensors(a, b)
    sign = torch.where(a >= b, 1.0, -1.0).to(a)
    high, low = torch.maximum(a, b), torch.minimum(a, b)
    erfcx = torch.special.erfcx
    both_positive = low > 0
    both_negative = high < 0
    positive = -low**2 + _log_clamped(erfcx(low.clamp_min(0)) - torch.exp(low**2 - high**2) * erfcx(high.clamp_min(0)))
    negative = -high**2 + _log_clamped(erfcx((-high).clamp_min(0)) - torch.exp(high**2 - low**2) * erfcx((-low).clamp_min(0)))
    straddle = _log_clamped(torch.erf(high) - torch.erf(low))
    value = torch.where(both_positive, positive, torch.where(both_negative, negative, straddle))
    return value, sign


def _log_clamped(x: torch.Tensor) -> torch.Tensor:
    """``log(x)`` with ``-inf`` for rounding-negative differences."""
    return torch.log(x.clamp_min(0.0))


def _sim_h(time_a: torch.Tensor, time_b: torch.Tensor, decay_a: torch.Tensor, decay_b: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Lawrence et al.'s ``h(t, t')`` for decays ``(decay_a, decay_b)`` and ``sigma = sqrt(2) l``.

    Parameters
    ----------
    time_a : Tensor ``(n,)``, time_b : Tensor ``(m,)``
        Times since the start (non-negative).
    decay_a, decay_b, sigma : Tensor (...), broadcastable

    Returns
    -------
    Tensor ``(..., n, m)``
    """
    decay_a, decay_b, sigma = (x[..., None, None] for x in torch.broadcast_tensors(decay_a, decay_b, sigma))
    t1, t2 = time_a[:, None], time_b[None, :]
    gamma = 0.5 * sigma * decay_a
    log_1, sign_1 = log_diff_erf(gamma + t2 / sigma, gamma - (t1 - t2) / sigma)
    log_2, sign_2 = log_diff_erf(gamma, gamma - t1 / sigma)
    log_sum = torch.log(decay_a + decay_b)
    first = sign_1 * torch.exp(gamma**2 - decay_a * (t1 - t2) + log_1 - log_sum)
    second = sign_2 * torch.exp(gamma**2 - decay_a * t1 - decay_b * t2 + log_2 - log_sum)
    return first - second


def _sim_cross(force_time: torch.Tensor, output_time: torch.Tensor, decay: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``int_0^t' exp(-decay (t' - tau)) exp(-(t - tau)^2 / sigma^2) dtau`` as Tensor ``(..., n, m)``."""
    decay, sigma = (x[..., None, None] for x in torch.broadcast_tensors(decay, sigma))
    t, t_out = force_time[:, None], output_time[None, :]
    gamma = 0.5 * sigma * decay
    log_part, sign = log_diff_erf(gamma + t / sigma, gamma - (t_out - t) / sigma)
    return 0.5 * math.sqrt(math.pi) * sigma * sign * torch.exp(gamma**2 - decay * (t_out - t) + log_part)


def _sim_pair(time_a: torch.Tensor, time_b: torch.Tensor, decay_a: torch.Tensor, decay_b: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Covariance ``(..., n, m)`` of two unit-sensitivity SIM outputs with decays ``decay_a``, ``decay_b``."""
    forward = _sim_h(time_a, time_b, decay_a, decay_b, sigma)
    backward = _sim_h(time_b, time_a, decay_b, decay_a, sigma).transpose(-1, -2)
    return 0.5 * math.sqrt(math.pi) * sigma[..., None, None] * (forward + backward)


def _check_times(*times: torch.Tensor) -> None:
    for values in times:
        if torch.any(values < 0):
            raise InvalidInputError(
                f"Times since the start must be non-negative, got a minimum of {float(values.min()):g}; the model starts at its initial condition."
            )


def sim_cross_covariance(
    force_time: torch.Tensor,
    output_time: torch.Tensor,
    sensitivity: torch.Tensor,
    decay: torch.Tensor,
    lengthscale: torch.Tensor,
    variance: float = 1.0,
) -> torch.Tensor:
    """Covariance of the force with the linear-transcription outputs, ``cov(f(t), y_j(t'))``.

    Parameters
    ----------
    force_time : Tensor ``(force_time,)``, output_time : Tensor ``(time,)``
        Times since the start of the integration (where ``y(0) = b / d``), float64.
    sensitivity, decay : Tensor ``(task, output)``
    lengthscale : Tensor ``(task,)``
        RBF lengthscale ``l`` of ``exp(-(t - t')^2 / (2 l^2))``.
    variance : float
        Prior variance of the force.

    Returns
    -------
    Tensor ``(task, force_time, output, time)`` float64
    """
    _check_times(force_time, output_time)
    sigma = math.sqrt(2.0) * lengthscale[:, None]
    cross = _sim_cross(force_time, output_time, decay, sigma)
    return (variance * sensitivity[..., None, None] * cross).permute(0, 2, 1, 3)


def sim_output_covariance(
    time_a: torch.Tensor,
    time_b: torch.Tensor,
    sensitivity: torch.Tensor,
    decay: torch.Tensor,
    lengthscale: torch.Tensor,
    variance: float = 1.0,
) -> torch.Tensor:
    """Covariance of the linear-transcription outputs, ``cov(y_i(t), y_j(t'))`` (the SIM kernel).

    Parameters
    ----------
    time_a : Tensor ``(time_a,)``, time_b : Tensor ``(time_b,)``
        Times since the start, float64.
    sensitivity, decay : Tensor ``(task, output)``
    lengthscale : Tensor ``(task,)``

    Returns
    -------
    Tensor ``(task, output, time_a, output, time_b)`` float64
    """
    _check_times(time_a, time_b)
    sigma = math.sqrt(2.0) * lengthscale[:, None, None]
    pair = _sim_pair(time_a, time_b, decay[:, :, None], decay[:, None, :], sigma)
    scale = variance * sensitivity[:, :, None] * sensitivity[:, None, :]
    return (scale[..., None, None] * pair).permute(0, 1, 3, 2, 4)


def sim_joint_covariance(
    time: torch.Tensor, sensitivity: torch.Tensor, decay: torch.Tensor, lengthscale: torch.Tensor, variance: float = 1.0
) -> torch.Tensor:
    """Joint covariance of ``[f; y_1; ...; y_P]`` on one time grid.

    Returns
    -------
    Tensor ``(task, (1 + output) * time, (1 + output) * time)`` float64, blocks in the order force, output 1, ...
    """
    n_tasks, n_outputs = sensitivity.shape
    n_time = time.numel()
    k_ff = rbf_covariance(time, time, lengthscale, variance)
    k_fy = sim_cross_covariance(time, time, sensitivity, decay, lengthscale, variance).reshape(n_tasks, n_time, -1)
    k_yy = sim_output_covariance(time, time, sensitivity, decay, lengthscale, variance).reshape(n_tasks, n_outputs * n_time, -1)
    top = torch.cat([k_ff, k_fy], dim=-1)
    bottom = torch.cat([k_fy.transpose(-1, -2), k_yy], dim=-1)
    return torch.cat([top, bottom], dim=-2)


@dataclass(frozen=True)
class SineBasis:
    """Sine modes and the space quadrature that projects onto them.

    Attributes
    ----------
    n_modes : int
    nodes, weights : Tensor ``(node,)`` float64
        Quadrature of ``int_0^1 g(z) dz ~ sum_q weights_q g(nodes_q)``.
    kind : str
        ``"simulator"`` (trapezoidal rule on the simulator's force grid) or ``"continuous"``.
    """

    n_modes: int
    nodes: torch.Tensor
    weights: torch.Tensor
    kind: str

    @classmethod
    def simulator(cls, force_space: torch.Tensor) -> "SineBasis":
        """The reaction-diffusion solver's own truncation and trapezoidal projection on ``force_space``."""
        grid = force_space.to(torch.float64)
        weights = trapezoid_weights(grid)
        n_modes = max(1, int(SERIES_TERMS_PER_POINT * grid.numel()))
        return cls(n_modes, grid, weights, "simulator")

    @classmethod
    def continuous(cls, space_lengthscale: float, n_modes: int | None = None) -> "SineBasis":
        """Gauss-Legendre quadrature and enough modes for an RBF of ``space_lengthscale``."""
        if n_modes is None:
            radius = math.sqrt(2.0 * math.log(1.0 / SPECTRAL_TOLERANCE))
            n_modes = max(MIN_MODES, math.ceil(radius / (math.pi * space_lengthscale)))
        nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
        return cls(int(n_modes), torch.as_tensor(0.5 * (nodes + 1.0)), torch.as_tensor(0.5 * weights), "continuous")

    def _projections(self, space: torch.Tensor, space_lengthscale: torch.Tensor):
        """``B (task, space, mode)`` at ``space`` and ``C (task, mode, mode)``."""
        wave = sine_modes(self.n_modes, space)
        nodes, weights = self.nodes.to(space), self.weights.to(space)
        project = 2.0 * weights[:, None] * torch.sin(nodes[:, None] * wave[None, :])
        kernel = rbf_covariance(space, nodes, space_lengthscale)
        along = kernel @ project
        node_kernel = rbf_covariance(nodes, nodes, space_lengthscale)
        modes = project.T @ node_kernel @ project
        return along, modes


def _mode_decays(basis: SineBasis, decay: torch.Tensor, diffusion: torch.Tensor) -> torch.Tensor:
    wave = sine_modes(basis.n_modes, decay)
    return decay[:, None] + diffusion[:, None] * wave[None, :] ** 2


def rd_cross_covariance(
    force_space: torch.Tensor,
    force_time: torch.Tensor,
    output_space: torch.Tensor,
    output_time: torch.Tensor,
    sensitivity: torch.Tensor,
    decay: torch.Tensor,
    diffusion: torch.Tensor,
    lengthscale: torch.Tensor,
    space_lengthscale: torch.Tensor,
    basis: SineBasis,
    variance: float = 1.0,
) -> torch.Tensor:
    """Covariance ``cov(u(x, t), y(x', t'))`` of the reaction-diffusion force and output.

    Parameters
    ----------
    force_space, force_time, output_space, output_time : Tensor (point,)
        Coordinates; times since the start (zero initial value), float64.
    sensitivity, decay, diffusion, lengthscale, space_lengthscale : Tensor ``(task,)``
    basis : SineBasis

    Returns
    -------
    Tensor ``(task, force_space, force_time, output_space, output_time)`` float64
    """
    _check_times(force_time, output_time)
    along, _ = basis._projections(force_space, space_lengthscale)
    rates = _mode_decays(basis, decay, diffusion)
    sigma = math.sqrt(2.0) * lengthscale[:, None]
    in_time = _sim_cross(force_time, output_time, rates, sigma)
    out_basis = torch.sin(output_space[:, None] * sine_modes(basis.n_modes, output_space)[None, :])
    scale = (variance * sensitivity)[:, None, None, None, None]
    return scale * torch.einsum("bxm,bmst,ym->bxsyt", along, in_time, out_basis)


def rd_output_covariance(
    space_a: torch.Tensor,
    time_a: torch.Tensor,
    space_b: torch.Tensor,
    time_b: torch.Tensor,
    sensitivity: torch.Tensor,
    decay: torch.Tensor,
    diffusion: torch.Tensor,
    lengthscale: torch.Tensor,
    space_lengthscale: torch.Tensor,
    basis: SineBasis,
    variance: float = 1.0,
    *,
    diagonal: bool = False,
) -> torch.Tensor:
    """Covariance ``cov(y(x, t), y(x', t'))`` of the reaction-diffusion output.

    Parameters
    ----------
    space_a, time_a, space_b, time_b : Tensor (point,)
        Coordinates; times since the start, float64.  With ``diagonal=True`` the
        ``a`` and ``b`` grids must be the same and only the variances are returned.
    sensitivity, decay, diffusion, lengthscale, space_lengthscale : Tensor ``(task,)``
    basis : SineBasis

    Returns
    -------
    Tensor ``(task, space_a, time_a, space_b, time_b)``, or ``(task, space, time)`` if ``diagonal``
    """
    _check_times(time_a, time_b)
    _, modes = basis._projections(space_a, space_lengthscale)
    rates = _mode_decays(basis, decay, diffusion)
    sigma = math.sqrt(2.0) * lengthscale[:, None, None]
    wave = sine_modes(basis.n_modes, space_a)
    basis_a = torch.sin(space_a[:, None] * wave[None, :])
    basis_b = torch.sin(space_b[:, None] * wave[None, :])
    scale = (variance * sensitivity**2)[:, None, None]
    if diagonal:
        in_time = _sim_pair(time_a, time_a, rates[:, :, None], rates[:, None, :], sigma).diagonal(dim1=-2, dim2=-1)
        weighted = (scale * modes)[..., None] * in_time
        return torch.einsum("xn,bnmt,xm->bxt", basis_a, weighted, basis_a)
    in_time = _sim_pair(time_a, time_b, rates[:, :, None], rates[:, None, :], sigma)
    weighted = (scale * modes)[..., None, None] * in_time
    half = torch.einsum("bnmst,ym->bnsyt", weighted, basis_b)
    return torch.einsum("xn,bnsyt->bxsyt", basis_a, half)


def _rd_mean(space: torch.Tensor, time: torch.Tensor, sensitivity, decay, diffusion, basis: SineBasis, mean: float) -> torch.Tensor:
    """Prior mean ``(task, space, time)`` of the output for a constant force mean."""
    wave = sine_modes(basis.n_modes, space)
    rates = _mode_decays(basis, decay, diffusion)
    nodes, weights = basis.nodes.to(space), basis.weights.to(space)
    coefficient = 2.0 * (weights[:, None] * torch.sin(nodes[:, None] * wave[None, :])).sum(0)
    growth = -torch.expm1(-rates[..., None] * time) / rates[..., None]
    modes = mean * sensitivity[:, None, None] * coefficient[None, :, None] * growth
    return torch.einsum("xm,bmt->bxt", torch.sin(space[:, None] * wave[None, :]), modes)


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
    weights = torch.cholesky_solve(residual[..., None], factor)[..., 0]
    results = []
    for mean, cross, variance in queries:
        cross = cross * mask[:, None, :]
        whitened = torch.linalg.solve_triangular(factor, cross.transpose(-1, -2), upper=False)
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
        Reaction-diffusion only: the sine basis (see the module docstring).
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
    mean_obs = _rd_mean(space, t_obs, sensitivity, decay, diffusion, basis, prior.mean).reshape(n_tasks, n_obs)
    mean_query = _rd_mean(query_space, t_query, sensitivity, decay, diffusion, basis, prior.mean).reshape(n_tasks, n_query)
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
