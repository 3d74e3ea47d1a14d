"""Each task's period, estimated from its outputs by harmonic regression.

A system whose force is periodic (Lotka–Volterra's predator) makes periodic outputs with the same
period.  The period of a task is the one whose truncated Fourier series fits its observed outputs
best in least squares, summed over outputs:

.. math::
    \\hat p = \\arg\\min_p \\sum_j \\min_{c} \\sum_t w_{jt}
        \\Big(y_{jt} - c_0 - \\sum_{k=1}^{K} c_{k} \\cos\\frac{2\\pi k t}{p} + c'_{k} \\sin\\frac{2\\pi k t}{p}\\Big)^2

searched first with one harmonic on a log grid from four sample spacings to the observed span (one
harmonic has no aliases at multiples of the period, as more harmonics would), then with
:data:`HARMONICS` harmonics on a fine grid around that period, and around its multiples with as many more
harmonics (nested series, compared by an F test).
"""

from __future__ import annotations

import math

import torch

__all__ = ["estimate_periods", "HARMONICS"]

HARMONICS = 3
"""Harmonics of the series of half the one-harmonic period (6 and 12 for once and twice that period)."""

COARSE_CANDIDATES = 256
FINE_CANDIDATES = 97
FINE_SPREAD = 1.08
"""The refining search spans the one-harmonic estimate / 1.08 to x 1.08 (that estimate was off by up to 5%
on Lotka–Volterra prey, whose cycle is not a sinusoid)."""
MULTIPLES = (0.5, 1.0, 2.0)
F_CRITICAL = 4.0
"""The one-harmonic search can find half the period (a cycle with two bumps: its second harmonic outweighs
the first) or twice it.  So half, once and twice that estimate are fitted by nested series (the longer
period with proportionally more harmonics, so its series contains the shorter one's), and a longer period
replaces a shorter one only where it explains significantly more: an F statistic above 4 (about the 1% level
for these degrees of freedom)."""
MIN_SPACINGS = 4.0


def _design(time: torch.Tensor, periods: torch.Tensor, harmonics: int) -> torch.Tensor:
    """``[1, cos(2 pi k t / p), sin(2 pi k t / p)]`` for ``k = 1..harmonics``, transposed: ``(task, candidate, 1 + 2 harmonics, time)``.

    The higher harmonics come from the first by the angle-addition recurrence (two trigonometric calls instead of
    ``2 harmonics``; its rounding error grows as ``k`` times the double epsilon).
    """
    angle = 2.0 * math.pi * time[None, None, :] / periods[:, :, None]
    design = angle.new_empty(*angle.shape[:2], 1 + 2 * harmonics, angle.shape[-1])
    design[:, :, 0] = 1.0
    cosine, sine = design[:, :, 1], design[:, :, 1 + harmonics]
    torch.cos(angle, out=cosine)
    torch.sin(angle, out=sine)
    for k in range(1, harmonics):
        torch.sub(design[:, :, k] * cosine, design[:, :, harmonics + k] * sine, out=design[:, :, k + 1])
        torch.add(design[:, :, harmonics + k] * cosine, design[:, :, k] * sine, out=design[:, :, harmonics + k + 1])
    return design


def _residuals(time: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, periods: torch.Tensor, harmonics: int,
               complete: bool = False) -> torch.Tensor:
    """Weighted least-squares residual of each task's outputs for each candidate period.

    ``time (time,)``, ``y`` and ``weight`` ``(task, output, time)``, ``periods (task, candidate)``;
    returns ``(task, candidate)``, summed over outputs.  ``complete``: every weight is 1 (nothing missing), so
    the outputs of a task share one Gram matrix.
    """
    design = _design(time, periods, harmonics)
    if complete:
        gram = (design @ design.transpose(-1, -2))[:, None]
        weighted = design[:, None]
    else:
        weighted = design[:, None] * weight[:, :, None, None, :]
        gram = weighted @ design[:, None].transpose(-1, -2)
    moment = (weighted @ y[:, :, None, :, None]).squeeze(-1)
    ridge = 1e-9 * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device) * gram.diagonal(dim1=-2, dim2=-1).amax(-1)[..., None, None]
    coefficients = torch.linalg.solve(gram + ridge, moment.unsqueeze(-1)).squeeze(-1)
    explained = (coefficients * moment).sum(-1)
    total = (weight * y**2).sum(-1)[:, :, None]
    return (total - explained).sum(1)


def estimate_periods(time: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float] | None = None, chunk: int = 64) -> torch.Tensor:
    """The period of each task's outputs.

    Parameters
    ----------
    time : Tensor (time,)
        Increasing times of ``y``.
    y : Tensor (task, output, time)
        Outputs; NaN = not observed.
    bounds : (float, float), optional
        Shortest and longest period searched (default: four median sample spacings and the span of ``time``);
        a model sets them from its training tasks' periods, which keeps noisy tasks off the aliases at half
        and twice their period.
    chunk : int
        Tasks searched at once (memory grows with it).

    Returns
    -------
    Tensor (task,)
        Periods in the units of ``time``, within ``bounds``.
    """
    time = time.to(torch.float64)
    if y.shape[0] > chunk:
        return torch.cat([estimate_periods(time, y[start : start + chunk], bounds, chunk) for start in range(0, y.shape[0], chunk)])
    observed = ~torch.isnan(y)
    weight = observed.to(torch.float64)
    values = torch.where(observed, y.to(torch.float64), torch.zeros((), dtype=torch.float64, device=y.device))
    span = float(time[-1] - time[0])
    spacing = float(torch.median(torch.diff(time))) if time.numel() > 1 else span
    low, high = min(MIN_SPACINGS * spacing, span), max(span, 1e-12)
    if bounds is not None:
        low, high = float(bounds[0]), float(bounds[1])
    grid = lambda a, b, n: torch.logspace(math.log10(a), math.log10(b), n, dtype=torch.float64, device=y.device)  # noqa: E731
    coarse = grid(low, high, COARSE_CANDIDATES).expand(y.shape[0], -1)
    complete = bool(observed.all())
    first = coarse.gather(1, _residuals(time, values, weight, coarse, 1, complete).argmin(1, keepdim=True))
    fine = grid(1.0 / FINE_SPREAD, FINE_SPREAD, FINE_CANDIDATES)
    n_values = weight.sum((1, 2))
    best_period = best_residual = best_parameters = None
    for multiple in MULTIPLES:
        harmonics = int(round(HARMONICS * multiple / MULTIPLES[0]))
        parameters = (1 + 2 * harmonics) * y.shape[1]
        candidates = (multiple * first * fine).clamp(low, high)
        residual, index = _residuals(time, values, weight, candidates, harmonics, complete).min(1)
        period = candidates.gather(1, index[:, None]).squeeze(1)
        if best_period is None:
            best_period, best_residual, best_parameters = period, residual, torch.full_like(residual, parameters)
            continue
        extra = parameters - best_parameters
        spare = (n_values - parameters).clamp_min(1.0)
        statistic = ((best_residual - residual) / extra) / (residual.clamp_min(1e-300) / spare)
        better = (statistic > F_CRITICAL) & (n_values > parameters)
        best_period = torch.where(better, period, best_period)
        best_residual = torch.where(better, residual, best_residual)
        best_parameters = torch.where(better, torch.full_like(residual, parameters), best_parameters)
    return best_period
