r"""The exact LFM's kernel of linear reaction-diffusion (Lopez-Lopera et al. 2019): sine modes in space, SIM in time.

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
covariance with decays ``a_n, a_m`` (both closed form:
:mod:`~dklfm_explore.model.baselines._exact_sim_kernel`).  The space
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
from dataclasses import dataclass

import numpy as np
import torch

from ...quadrature import trapezoid_weights
from ...systems.forces import rbf_covariance
from ...systems.reaction_diffusion import SERIES_TERMS_PER_POINT, sine_modes
from ._exact_sim_kernel import check_times, unit_cross_covariance, unit_output_covariance

__all__ = ["SineBasis", "rd_cross_covariance", "rd_output_covariance", "rd_prior_mean"]

QUADRATURE_NODES = 256
"""Gauss-Legendre nodes on [0, 1]: exact to float64 for RBF lengthscales >= 0.05 and 60 modes."""
SPECTRAL_TOLERANCE = 1e-12
"""Continuous basis: keep modes until the RBF's spectral density exp(-(n pi l)^2 / 2) falls below this."""
MIN_MODES = 4
"""Fewest sine modes ever used (the force's mean profile needs a few)."""


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
    check_times(force_time, output_time)
    along, _ = basis._projections(force_space, space_lengthscale)
    rates = _mode_decays(basis, decay, diffusion)
    sigma = math.sqrt(2.0) * lengthscale[:, None]
    in_time = unit_cross_covariance(force_time, output_time, rates, sigma)
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
    check_times(time_a, time_b)
    _, modes = basis._projections(space_a, space_lengthscale)
    rates = _mode_decays(basis, decay, diffusion)
    sigma = math.sqrt(2.0) * lengthscale[:, None, None]
    wave = sine_modes(basis.n_modes, space_a)
    basis_a = torch.sin(space_a[:, None] * wave[None, :])
    basis_b = torch.sin(space_b[:, None] * wave[None, :])
    scale = (variance * sensitivity**2)[:, None, None]
    if diagonal:
        in_time = unit_output_covariance(time_a, time_a, rates[:, :, None], rates[:, None, :], sigma).diagonal(dim1=-2, dim2=-1)
        weighted = (scale * modes)[..., None] * in_time
        return torch.einsum("xn,bnmt,xm->bxt", basis_a, weighted, basis_a)
    in_time = unit_output_covariance(time_a, time_b, rates[:, :, None], rates[:, None, :], sigma)
    weighted = (scale * modes)[..., None, None] * in_time
    half = torch.einsum("bnmst,ym->bnsyt", weighted, basis_b)
    return torch.einsum("xn,bnsyt->bxsyt", basis_a, half)


def rd_prior_mean(space: torch.Tensor, time: torch.Tensor, sensitivity, decay, diffusion, basis: SineBasis, mean: float) -> torch.Tensor:
    """Prior mean ``(task, space, time)`` of the output for a constant force mean."""
    wave = sine_modes(basis.n_modes, space)
    rates = _mode_decays(basis, decay, diffusion)
    nodes, weights = basis.nodes.to(space), basis.weights.to(space)
    coefficient = 2.0 * (weights[:, None] * torch.sin(nodes[:, None] * wave[None, :])).sum(0)
    growth = -torch.expm1(-rates[..., None] * time) / rates[..., None]
    modes = mean * sensitivity[:, None, None] * coefficient[None, :, None] * growth
    return torch.einsum("xm,bmt->bxt", torch.sin(space[:, None] * wave[None, :]), modes)
