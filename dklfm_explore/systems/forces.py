"""Gaussian-process prior covariances and batched sampling of latent forces."""

from __future__ import annotations

import math

import torch

from ..linalg import cholesky
from ..errors import UnknownNameError
from ..quadrature import interpolate_linear
from .base import ForcePrior, Mesh

__all__ = ["rbf_covariance", "periodic_covariance", "periodic_series_draw", "prior_covariance", "sample_force", "SAMPLING_JITTER"]

SAMPLING_JITTER = 1e-6
"""Relative diagonal jitter for sampling: prior grids are far denser than a lengthscale."""

POINTS_PER_LENGTHSCALE = 8
"""Forces are drawn exactly at points this dense per shortest lengthscale and linear in between:
a linear interpolant at spacing l/8 departs from the GP draw by about 0.2% of its scale, while
drawing directly on a solver's stage grid (thousands of points) would cost a cubic Cholesky."""


def rbf_covariance(a: torch.Tensor, b: torch.Tensor, lengthscale: torch.Tensor, variance: float = 1.0) -> torch.Tensor:
    """RBF covariance ``variance * exp(-(a - b)^2 / (2 lengthscale^2))``.

    Parameters
    ----------
    a : Tensor ``(n,)``, b : Tensor ``(m,)``
    lengthscale : Tensor ``(task,)``

    Returns
    -------
    Tensor ``(task, n, m)``
    """
    difference = a[:, None] - b[None, :]
    return variance * torch.exp(-0.5 * (difference[None] / lengthscale[:, None, None]) ** 2)


def periodic_covariance(
    a: torch.Tensor, b: torch.Tensor, lengthscale: torch.Tensor, period: torch.Tensor, variance: float = 1.0
) -> torch.Tensor:
    """Periodic covariance ``variance * exp(-2 sin^2(pi |a - b| / period) / lengthscale^2)``.

    Parameters
    ----------
    a : Tensor ``(n,)``, b : Tensor ``(m,)``
    lengthscale, period : Tensor ``(task,)``

    Returns
    -------
    Tensor ``(task, n, m)``
    """
    difference = (a[:, None] - b[None, :]).abs()[None]
    sine = torch.sin(math.pi * difference / period[:, None, None])
    return variance * torch.exp(-2.0 * sine**2 / lengthscale[:, None, None] ** 2)


def prior_covariance(prior: ForcePrior, a: torch.Tensor, b: torch.Tensor, hyper: dict[str, torch.Tensor]) -> torch.Tensor:
    """Time covariance ``(task, n, m)`` of ``prior`` with per-task ``hyper`` (``force_lengthscale``, ``force_period``).

    Raises
    ------
    UnknownNameError
        If ``prior.kernel`` is not one this module implements (never silently an RBF).
    """
    if prior.kernel == "periodic":
        return periodic_covariance(a, b, hyper["force_lengthscale"], hyper["force_period"], prior.variance)
    if prior.kernel == "rbf":
        return rbf_covariance(a, b, hyper["force_lengthscale"], prior.variance)
    raise UnknownNameError("force kernel", prior.kernel, ("rbf", "periodic"))


def _uniform(bounds: tuple[float, float], n_tasks: int, generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n_tasks, generator=generator, dtype=torch.float64)


def sample_hyperparameters(prior: ForcePrior, n_tasks: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw each task's force lengthscale (and period, space lengthscale), float64 ``(task,)`` on the CPU."""
    hyper = {"force_lengthscale": _uniform(prior.lengthscale, n_tasks, generator)}
    if prior.kernel == "periodic":
        hyper["force_period"] = _uniform(prior.period, n_tasks, generator)
    if prior.space_lengthscale is not None:
        hyper["force_space_lengthscale"] = _uniform(prior.space_lengthscale, n_tasks, generator)
    return hyper


def _cholesky(covariance: torch.Tensor) -> torch.Tensor:
    return cholesky(covariance, floor=SAMPLING_JITTER, cap=SAMPLING_JITTER * 1e4)[0]


def sample_force(
    prior: ForcePrior,
    mesh: Mesh,
    n_tasks: int,
    generator: torch.Generator,
    *,
    hyper: dict[str, torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw latent forces from ``prior`` on the mesh's force grid.

    The standard normals come from ``generator`` on the CPU, so a seed gives the
    same forces on every device.  Space x time forces use the Kronecker structure
    ``K = K_space (x) K_time``: a draw is ``L_space Z L_time^T``.

    Returns
    -------
    draw : Tensor ``(task, force_time)`` or ``(task, force_space, force_time)``
    hyper : dict of Tensor ``(task,)``
        The lengthscales (and periods) each task was drawn with.
    """
    hyper = hyper if hyper is not None else sample_hyperparameters(prior, n_tasks, generator)
    on_device = {key: value.to(device=device, dtype=torch.float64) for key, value in hyper.items()}
    if prior.kernel == "periodic" and mesh.force_space is None:
        force_time = mesh.force_time.to(device=device, dtype=torch.float64)
        draw = prior.mean + periodic_series_draw(force_time, on_device["force_lengthscale"], on_device["force_period"],
                                                 prior.variance, generator)
        return draw.to(dtype), hyper
    times = _draw_grid(mesh.time, mesh.force_time, shortest_time_scale(prior)).to(device)
    time_factor = _cholesky(prior_covariance(prior, times, times, on_device))
    if mesh.force_space is None:
        normal = torch.randn(n_tasks, times.numel(), generator=generator, dtype=torch.float64).to(device)
        draw = prior.mean + (time_factor @ normal[..., None])[..., 0]
        draw = interpolate_linear(draw, times, mesh.force_time.to(draw))
    else:
        space = mesh.force_space.to(device=device, dtype=torch.float64)
        space_cov = rbf_covariance(space, space, on_device["force_space_lengthscale"], 1.0)
        space_factor = _cholesky(space_cov)
        normal = torch.randn(n_tasks, space.numel(), times.numel(), generator=generator, dtype=torch.float64).to(device)
        draw = prior.mean + space_factor @ normal @ time_factor.transpose(-1, -2)
        draw = interpolate_linear(draw, times, mesh.force_time.to(draw))
    return draw.to(dtype), hyper


def periodic_series_draw(time: torch.Tensor, lengthscale: torch.Tensor, period: torch.Tensor, variance: float,
                         generator: torch.Generator) -> torch.Tensor:
    r"""Zero-mean draws of the periodic GP on ``time (time,)`` from its Fourier series: exact at any time, no Cholesky.

    With ``z = 1 / lengthscale^2`` and ``theta = 2 pi (t - t') / period``,

    .. math::
        k = v\, e^{-z} e^{z \cos\theta} = v \Big(a_0 + \sum_{n \ge 1} a_n \cos n\theta\Big), \quad
        a_0 = e^{-z} I_0(z), \; a_n = 2 e^{-z} I_n(z)

    (the generating function of the modified Bessel functions ``I_n``), so
    ``g(t) = sqrt(v) sum_n sqrt(a_n) (xi_n cos(2 pi n t / p) + eta_n sin(2 pi n t / p))`` with standard
    normal ``xi, eta`` has covariance ``k``; the series stops where ``a_n`` falls below 1e-16 of ``a_0``.

    Parameters
    ----------
    time : Tensor (time,)
    lengthscale, period : Tensor (task,)
    variance : float
    generator : torch.Generator
        CPU generator of the standard normals ``(task, 2 * harmonics + 1)``.

    Returns
    -------
    Tensor (task, time) float64
    """
    z = 1.0 / lengthscale.to(torch.float64) ** 2
    largest = float(z.max())
    harmonics = int(math.ceil(largest + 10.0 * math.sqrt(largest) + 20.0))
    coefficients = _scaled_bessel_series(z, harmonics)
    normal = torch.randn(z.shape[0], 2 * harmonics + 1, generator=generator, dtype=torch.float64).to(z.device)
    orders = torch.arange(1, harmonics + 1, dtype=torch.float64, device=z.device)
    angle = 2.0 * math.pi * time[None, :, None] * orders / period.to(torch.float64)[:, None, None]
    scale = coefficients.sqrt()
    series = scale[:, :1] * normal[:, :1] + (scale[:, None, 1:] * (normal[:, None, 1 : harmonics + 1] * torch.cos(angle)
                                                                     + normal[:, None, harmonics + 1 :] * torch.sin(angle))).sum(-1)
    return math.sqrt(variance) * series


def _scaled_bessel_series(z: torch.Tensor, harmonics: int) -> torch.Tensor:
    """``(task, harmonics + 1)``: ``e^{-z} I_0(z)`` and ``2 e^{-z} I_n(z)`` for ``n = 1..harmonics``, by the power series in log space."""
    terms = harmonics + int(math.ceil(2.0 * float(z.max()))) + 40
    k = torch.arange(terms, dtype=torch.float64, device=z.device)[:, None]
    n = torch.arange(harmonics + 1, dtype=torch.float64, device=z.device)[None, :]
    log_half = torch.log(z / 2.0)[:, None, None]
    log_terms = (2 * k + n) * log_half - torch.lgamma(k + 1) - torch.lgamma(k + n + 1) - z[:, None, None]
    values = torch.logsumexp(log_terms, dim=1).exp()
    return torch.cat([values[:, :1], 2.0 * values[:, 1:]], dim=1)


def shortest_time_scale(prior: ForcePrior) -> float:
    """The shortest distance over which a draw from ``prior`` changes appreciably, in time units."""
    if prior.kernel == "periodic":
        return prior.lengthscale[0] * prior.period[0] / (2 * math.pi)
    return prior.lengthscale[0]


def _draw_grid(time: torch.Tensor, force_time: torch.Tensor, scale: float) -> torch.Tensor:
    """The output grid refined until its spacing is at most ``scale / POINTS_PER_LENGTHSCALE``, or the force grid if coarser."""
    spacing = scale / POINTS_PER_LENGTHSCALE
    pieces = torch.clamp(torch.ceil((time[1:] - time[:-1]) / spacing), min=1).long()
    if int(pieces.sum()) + 1 >= force_time.numel():
        return force_time.to(torch.float64)
    parts = [torch.linspace(float(a), float(b), int(n) + 1, dtype=torch.float64)[:-1] for a, b, n in zip(time[:-1], time[1:], pieces)]
    return torch.cat(parts + [time[-1:].to(torch.float64)])
