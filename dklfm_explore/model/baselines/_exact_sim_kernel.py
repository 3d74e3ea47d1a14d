r"""The exact LFM's kernel of linear transcription (the SIM kernel of Lawrence et al. 2006), in closed form.

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
"""

from __future__ import annotations

import math

import torch

from ...errors import InvalidInputError
from ...systems.forces import rbf_covariance

__all__ = [
    "log_diff_erf",
    "sim_cross_covariance",
    "sim_output_covariance",
    "sim_joint_covariance",
    "unit_cross_covariance",
    "unit_output_covariance",
    "check_times",
]


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


def unit_cross_covariance(force_time: torch.Tensor, output_time: torch.Tensor, decay: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``int_0^t' exp(-decay (t' - tau)) exp(-(t - tau)^2 / sigma^2) dtau`` as Tensor ``(..., n, m)``."""
    decay, sigma = (x[..., None, None] for x in torch.broadcast_tensors(decay, sigma))
    t, t_out = force_time[:, None], output_time[None, :]
    gamma = 0.5 * sigma * decay
    log_part, sign = log_diff_erf(gamma + t / sigma, gamma - (t_out - t) / sigma)
    return 0.5 * math.sqrt(math.pi) * sigma * sign * torch.exp(gamma**2 - decay * (t_out - t) + log_part)


def unit_output_covariance(time_a: torch.Tensor, time_b: torch.Tensor, decay_a: torch.Tensor, decay_b: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Covariance ``(..., n, m)`` of two unit-sensitivity SIM outputs with decays ``decay_a``, ``decay_b``."""
    forward = _sim_h(time_a, time_b, decay_a, decay_b, sigma)
    backward = _sim_h(time_b, time_a, decay_b, decay_a, sigma).transpose(-1, -2)
    return 0.5 * math.sqrt(math.pi) * sigma[..., None, None] * (forward + backward)


def check_times(*times: torch.Tensor) -> None:
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
    check_times(force_time, output_time)
    sigma = math.sqrt(2.0) * lengthscale[:, None]
    cross = unit_cross_covariance(force_time, output_time, decay, sigma)
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
    check_times(time_a, time_b)
    sigma = math.sqrt(2.0) * lengthscale[:, None, None]
    pair = unit_output_covariance(time_a, time_b, decay[:, :, None], decay[:, None, :], sigma)
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
