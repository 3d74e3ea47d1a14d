"""Reaction–diffusion of mRNA driven by a hidden space-time production rate."""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torchdiffeq import odeint

from ..errors import InvalidInputError
from ..quadrature import interpolate_linear, trapezoid_weights
from .base import ForcePrior, Mesh, ParameterSpec, System, register_system

__all__ = ["ReactionDiffusion", "sine_modes", "SERIES_TERMS_PER_POINT"]

SERIES_TERMS_PER_POINT = 0.5
"""Sine modes kept per force-grid point: beyond the grid's Nyquist rate the quadrature aliases."""


def sine_modes(n_modes: int, like: torch.Tensor) -> torch.Tensor:
    """Wavenumbers ``n pi`` for ``n = 1..n_modes`` on the unit interval, Tensor ``(mode,)``."""
    return math.pi * torch.arange(1, n_modes + 1, dtype=like.dtype, device=like.device)


@register_system
class ReactionDiffusion(System):
    """mRNA ``y(x, t)`` produced at rate ``S u(x, t)``, decaying and diffusing on ``[0, 1]``.

    .. math:: \\frac{\\partial y}{\\partial t} = S\\,u(x, t) - \\lambda\\,y + D\\,\\frac{\\partial^2 y}{\\partial x^2}

    with ``y = 0`` at ``x = 0, 1`` and at ``t = 0``.  The default solver is the
    Green's-function (sine-series) solution, exact in time for a force that is
    linear between grid times; :meth:`solve_method_of_lines` is an independent
    finite-difference solver used to validate it.
    """

    name = "reaction-diffusion"
    title = "Reaction–diffusion (gap genes)"
    equation = r"\frac{\partial y}{\partial t} = S\,u(x,t) - \lambda\,y + D\,\frac{\partial^2 y}{\partial x^2}"
    description = (
        "The output is an mRNA concentration along the embryo's axis over time; the hidden force is the "
        "space-time production rate u(x, t) set by the protein, as for the Drosophila gap genes. Zero boundary "
        "and initial values. The system for super-resolution: train on a coarse grid, infer on a fine one."
    )
    parameters = (
        ParameterSpec("sensitivity", "S", 0.2, 0.9, "1/time", "production per unit of force"),
        ParameterSpec("decay_rate", r"\lambda", 0.01, 0.4, "1/time", "mRNA decay rate"),
        ParameterSpec("diffusion", "D", 0.001, 0.1, "length^2/time", "diffusion coefficient"),
    )
    force_prior = ForcePrior(kernel="rbf", lengthscale=(0.1, 0.4), space_lengthscale=(0.1, 0.4), variance=1.0)
    output_names = ("mRNA",)
    time_range = (0.0, 1.0)
    space_range = (0.0, 1.0)
    default_grid = (21, 21)
    noise_level = 0.1
    time_unit = "time"
    space_unit = "length"
    output_unit = "concentration"
    latent_unit = "production rate"
    latent_name = "protein production rate u(x, t)"

    def solve(self, mesh: Mesh, force: torch.Tensor, parameters: Mapping[str, torch.Tensor], initial=None):
        """Solve by the sine series; returns ``(task, 1, space, time)`` on the mesh's output grid.

        Parameters
        ----------
        force : Tensor ``(task, force_space, force_time)``
        initial : Tensor ``(task, force_space)``, optional
            Initial profile (default zero).
        """
        _check_force(mesh, force)
        space, time = mesh.force_space.to(force), mesh.force_time.to(force)
        n_modes = max(1, int(SERIES_TERMS_PER_POINT * space.numel()))
        wave = sine_modes(n_modes, force)
        basis = torch.sin(space[:, None] * wave[None, :])
        weights = trapezoid_weights(space)
        project = 2.0 * weights[:, None] * basis
        force_modes = torch.einsum("bxt,xm->bmt", force, project)
        sensitivity, decay, diffusion = (parameters[k].to(force)[:, None] for k in ("sensitivity", "decay_rate", "diffusion"))
        rate = decay + diffusion * wave[None, :] ** 2
        modes = force.new_zeros(force.shape[0], n_modes)
        if initial is not None:
            modes = initial.to(force) @ project
        history = [modes]
        for k in range(time.numel() - 1):
            step = time[k + 1] - time[k]
            start, slope = force_modes[..., k], (force_modes[..., k + 1] - force_modes[..., k]) / step
            decay_factor = torch.exp(-rate * step)
            constant_part = -torch.expm1(-rate * step) / rate
            linear_part = (step - constant_part) / rate
            modes = decay_factor * modes + sensitivity * (start * constant_part + slope * linear_part)
            history.append(modes)
        series = torch.stack(history, dim=-1)[..., mesh.time_index]
        out_basis = torch.sin(mesh.space.to(force)[:, None] * wave[None, :])
        return torch.einsum("bmt,xm->bxt", series, out_basis)[:, None]

    def solve_method_of_lines(
        self,
        mesh: Mesh,
        force: torch.Tensor,
        parameters: Mapping[str, torch.Tensor],
        initial=None,
        max_step: float | None = None,
    ) -> torch.Tensor:
        """Solve by second-order finite differences on the force's space grid and RK4 in time.

        The force is linear in time between its grid times.  ``max_step`` defaults to
        a quarter of the explicit stability limit ``dx^2 / (2 D_max)``.  Returns
        ``(task, 1, space, time)`` on the mesh's output grid.
        """
        _check_force(mesh, force)
        space, time = mesh.force_space.to(force), mesh.force_time.to(force)
        dx = float(space[1] - space[0])
        sensitivity, decay, diffusion = (parameters[k].to(force)[:, None] for k in ("sensitivity", "decay_rate", "diffusion"))
        interior = force[:, 1:-1]
        state0 = force.new_zeros(interior.shape[:2]) if initial is None else initial.to(force)[:, 1:-1]
        limit = dx**2 / (2 * float(diffusion.max())) if float(diffusion.max()) > 0 else float(time[-1] - time[0])
        max_step = max_step or 0.25 * limit
        steps = max(1, math.ceil(float(time[1] - time[0]) / max_step))
        solver_time = torch.cat(
            [torch.linspace(float(a), float(b), steps + 1, dtype=force.dtype, device=force.device)[:-1] for a, b in zip(time[:-1], time[1:])]
            + [time[-1:]]
        )

        def rhs(t, state):
            production = interpolate_linear(interior, time, t.reshape(1))[..., 0]
            padded = torch.nn.functional.pad(state, (1, 1))
            laplacian = (padded[:, 2:] - 2 * state + padded[:, :-2]) / dx**2
            return sensitivity * production - decay * state + diffusion * laplacian

        solution = odeint(rhs, state0, solver_time, method="rk4").permute(1, 2, 0)
        full = torch.nn.functional.pad(solution, (0, 0, 1, 1))
        time_positions = torch.arange(0, solver_time.numel(), steps, device=force.device)[mesh.time_index]
        return full[:, mesh.space_index][..., time_positions][:, None]


def _check_force(mesh: Mesh, force: torch.Tensor) -> None:
    expected = (mesh.force_space.numel(), mesh.force_time.numel())
    if force.ndim != 3 or tuple(force.shape[1:]) != expected:
        raise InvalidInputError(f"force has shape {tuple(force.shape)} but needs (task, {expected[0]}, {expected[1]}).")

