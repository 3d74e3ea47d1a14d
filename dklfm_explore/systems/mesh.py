"""Output and force grids for simulation."""

from __future__ import annotations

import torch

from ..errors import InvalidInputError
from .base import Mesh, System

__all__ = ["make_mesh", "time_mesh", "space_time_mesh", "RK4_STAGES"]

RK4_STAGES = 3
"""torchdiffeq's ``rk4`` is the 3/8 rule: stages at t, t + h/3, t + 2h/3, t + h."""


def _check_grid(values: torch.Tensor, name: str) -> torch.Tensor:
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if values.numel() < 2:
        raise InvalidInputError(f"The {name} grid needs at least 2 points, got {values.numel()}.")
    if not torch.all(torch.isfinite(values)) or torch.any(values[1:] <= values[:-1]):
        raise InvalidInputError(f"The {name} grid must be finite and strictly increasing.")
    return values


def _refine(grid: torch.Tensor, pieces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split interval ``i`` of ``grid`` into ``pieces[i]`` equal parts; return fine grid and indices of ``grid``."""
    parts, index, position = [], [0], 0
    for left, right, n in zip(grid[:-1], grid[1:], pieces.tolist()):
        parts.append(torch.linspace(float(left), float(right), n + 1, dtype=torch.float64)[:-1])
        position += n
        index.append(position)
    parts.append(grid[-1:])
    return torch.cat(parts), torch.tensor(index)


def time_mesh(time: torch.Tensor, max_step: float, stages: int = RK4_STAGES) -> Mesh:
    """Build the mesh of an ODE solve observed at ``time``.

    Each output interval is split into solver steps no longer than ``max_step``;
    each solver step into ``stages`` force intervals, so the force grid holds every
    stage time of the fixed-step solver.

    Parameters
    ----------
    time : Tensor ``(time,)``
        Strictly increasing output times.
    max_step : float
        Longest solver step, in the system's time unit.
    """
    time = _check_grid(time, "time")
    steps = torch.clamp(torch.ceil((time[1:] - time[:-1]) / max_step - 1e-9), min=1).long()
    solver_time, _ = _refine(time, steps)
    force_time, force_index = _refine(solver_time, torch.full((solver_time.numel() - 1,), stages))
    _, output_in_solver = _refine(time, steps)
    time_index = force_index[output_in_solver]
    return Mesh(time=time, force_time=force_time, time_index=time_index, solver_time=solver_time)


def space_time_mesh(space: torch.Tensor, time: torch.Tensor, space_refine: int = 2, time_refine: int = 2) -> Mesh:
    """Build the mesh of a space x time solve observed on ``space`` x ``time``.

    The force grid refines each output interval ``space_refine`` (``time_refine``)
    times; the spectral solver integrates the piecewise-linear force exactly in
    time and by the trapezoidal rule in space.
    """
    space = _check_grid(space, "space")
    time = _check_grid(time, "time")
    force_space, space_index = _refine(space, torch.full((space.numel() - 1,), space_refine))
    force_time, time_index = _refine(time, torch.full((time.numel() - 1,), time_refine))
    return Mesh(
        time=time,
        force_time=force_time,
        time_index=time_index,
        solver_time=force_time,
        space=space,
        force_space=force_space,
        space_index=space_index,
    )


def make_mesh(
    system: System,
    *,
    n_points: int | None = None,
    grid: tuple[int, int] | None = None,
    t_range: tuple[float, float] | None = None,
    time: torch.Tensor | None = None,
    space: torch.Tensor | None = None,
) -> Mesh:
    """Build a system's simulation mesh from a point count, a grid size or explicit coordinates.

    Parameters
    ----------
    n_points : int
        Time points (ODE systems); default ``system.default_points``.
    grid : (int, int)
        ``(n_space, n_time)`` for space x time systems; default ``system.default_grid``.
    t_range : (float, float)
        Time window; default ``system.time_range``.
    time, space : Tensor ``(time,)``, ``(space,)``
        Explicit coordinates, overriding the counts.
    """
    t_range = tuple(t_range or system.time_range)
    if system.is_spatial:
        n_space, n_time = grid or system.default_grid
        if n_points is not None and grid is None:
            n_time = n_points
        _at_least(n_space, 3, "space points")
        _at_least(n_time, 3, "time points")
        space = space if space is not None else torch.linspace(*system.space_range, n_space, dtype=torch.float64)
        time = time if time is not None else torch.linspace(*t_range, n_time, dtype=torch.float64)
        return space_time_mesh(space, time)
    if grid is not None:
        raise InvalidInputError(f"System {system.name!r} is over time only; give --points, not --grid.")
    n_points = n_points or system.default_points
    _at_least(n_points, 3, "time points")
    time = time if time is not None else torch.linspace(*t_range, n_points, dtype=torch.float64)
    return time_mesh(time, system.max_step)


def _at_least(value: int, minimum: int, what: str) -> None:
    if int(value) < minimum:
        raise InvalidInputError(f"Need at least {minimum} {what}, got {value}.")
