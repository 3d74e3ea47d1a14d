"""Float64 Cholesky factorisation with jitter escalation, triangular solves and Gaussian log densities.

Every covariance in the model is factorised here: ``torch.linalg.cholesky_ex``
is tried with no jitter, then with a diagonal jitter raised geometrically from
:data:`JITTER_FLOOR` to :data:`JITTER_CAP` (relative to the mean diagonal),
and :class:`~dklfm_explore.errors.CholeskyError` is raised if the matrix is
still not positive definite.  No explicit inverse is ever formed.
"""

from __future__ import annotations

import math

import torch

from .errors import CholeskyError, InvalidInputError

__all__ = [
    "JITTER_FLOOR",
    "JITTER_CAP",
    "JITTER_GROWTH",
    "cholesky",
    "solve_lower",
    "cholesky_solve",
    "gaussian_log_density",
]

JITTER_FLOOR = 1e-10
"""First relative jitter tried: ~1e6 float64 machine epsilons, invisible next to any noise variance the model learns."""
JITTER_CAP = 1e-3
"""Largest relative jitter: beyond 0.1% of the mean variance the factor no longer represents the kernel faithfully."""
JITTER_GROWTH = 10.0
"""Factor between successive jitters (7 attempts from floor to cap)."""

LOG_2PI = math.log(2.0 * math.pi)


def cholesky(matrix: torch.Tensor, *, floor: float = JITTER_FLOOR, cap: float = JITTER_CAP) -> tuple[torch.Tensor, float]:
    """Return the lower Cholesky factor of a batch of symmetric matrices, adding jitter if needed.

    Parameters
    ----------
    matrix : Tensor (..., n, n)
        Symmetric positive (semi-)definite matrices, float64.
    floor, cap : float
        First and last relative jitter tried (defaults :data:`JITTER_FLOOR`, :data:`JITTER_CAP`).

    Returns
    -------
    factor : Tensor (..., n, n)
        Lower triangular ``L`` with ``L L^T = matrix + jitter * mean_diag * I``.
    jitter : float
        The relative jitter that was added (0.0 if none was needed); the same for
        the whole batch.

    Raises
    ------
    InvalidInputError
        If the matrix is not float64 (float32 Cholesky is not accurate enough for GP algebra).
    CholeskyError
        If the matrix is not positive definite even with :data:`JITTER_CAP`.
    """
    if matrix.dtype != torch.float64:
        raise InvalidInputError(f"Cholesky needs a float64 matrix, got {matrix.dtype}; cast covariances to float64.")
    factor, info = torch.linalg.cholesky_ex(matrix)
    if not bool(torch.any(info)):
        return factor, 0.0
    size = matrix.shape[-1]
    scale = torch.diagonal(matrix, dim1=-2, dim2=-1).detach().abs().mean(dim=-1)
    scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))
    identity = torch.eye(size, dtype=matrix.dtype, device=matrix.device)
    for jitter in _jitters(floor, cap):
        shifted = matrix + (jitter * scale)[..., None, None] * identity
        factor, info = torch.linalg.cholesky_ex(shifted)
        if not bool(torch.any(info)):
            return factor, jitter
    raise CholeskyError(
        f"A {size} x {size} covariance matrix is not positive definite even with relative jitter "
        f"{jitter:.0e}; check for NaN inputs or a collapsed noise variance."
    )


def _jitters(floor: float = JITTER_FLOOR, cap: float = JITTER_CAP) -> list[float]:
    """The relative jitters tried in turn: floor, x JITTER_GROWTH, ..., cap."""
    count = int(round(math.log(cap / floor) / math.log(JITTER_GROWTH))) + 1
    return [floor * JITTER_GROWTH**k for k in range(max(count, 1))]


def solve_lower(factor: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Solve ``L X = right`` for ``X (..., n, k)``: ``factor`` is the lower triangular ``L (..., n, n)``, ``right (..., n, k)``."""
    return torch.linalg.solve_triangular(factor, right, upper=False)


def cholesky_solve(factor: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Solve ``L L^T X = right`` for ``X (..., n, k)``: ``factor`` is the lower Cholesky factor ``L (..., n, n)``, ``right (..., n, k)``."""
    return torch.cholesky_solve(right, factor, upper=False)


def gaussian_log_density(value: torch.Tensor, mean: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Return ``log N(value | mean, L L^T)`` for a batch of multivariate normals.

    .. math::
        \\log N = -\\tfrac12 \\|L^{-1}(v - m)\\|^2 - \\sum_i \\log L_{ii} - \\tfrac n2 \\log 2\\pi

    Parameters
    ----------
    value, mean : Tensor (..., n)
    factor : Tensor (..., n, n)
        Lower Cholesky factor of the covariance.

    Returns
    -------
    Tensor (...)
    """
    whitened = solve_lower(factor, (value - mean).unsqueeze(-1)).squeeze(-1)
    log_det_half = torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(dim=-1)
    size = value.shape[-1]
    return -0.5 * whitened.pow(2).sum(dim=-1) - log_det_half - 0.5 * size * LOG_2PI
