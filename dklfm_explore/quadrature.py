"""Trapezoidal quadrature and linear interpolation on a sorted grid: the one copy of each rule."""

from __future__ import annotations

import torch

__all__ = ["trapezoid_weights", "trapezoid_mean", "interpolate_linear"]


def trapezoid_weights(grid: torch.Tensor) -> torch.Tensor:
    """Trapezoidal quadrature weights ``(point,)`` on a sorted grid ``(point,)``.

    ``sum(weights * values)`` approximates the integral of ``values`` over the
    grid: each interval contributes half its length to each of its two ends.
    """
    step = grid[1:] - grid[:-1]
    weights = torch.zeros_like(grid)
    weights[:-1] += 0.5 * step
    weights[1:] += 0.5 * step
    return weights


def trapezoid_mean(values: torch.Tensor, grid: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``values (task, point)`` over the part of ``grid (point,)`` where ``keep (task, point)`` is 1.

    The trapezoidal rule over the intervals whose two ends are both kept, divided
    by the kept length: ``sum 0.5 (v_i + v_{i+1}) h_i`` over ``sum h_i``.
    """
    step = (grid[1:] - grid[:-1])[None]
    inside = keep[:, 1:] * keep[:, :-1]
    area = (0.5 * (values[:, 1:] + values[:, :-1]) * step * inside).sum(-1)
    return area / (step * inside).sum(-1)


def interpolate_linear(values: torch.Tensor, grid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Interpolate ``values (..., point)``, known on the sorted ``grid (point,)``, linearly at ``target (query,)``.

    Returns ``(..., query)``; beyond the grid's ends the end values are repeated.
    A ``target`` equal to ``grid`` returns ``values`` itself.
    """
    if grid.numel() == target.numel() and torch.allclose(grid, target):
        return values
    right = torch.searchsorted(grid, target).clamp(1, grid.numel() - 1)
    left = right - 1
    weight = ((target - grid[left]) / (grid[right] - grid[left])).clamp(0, 1)
    return values[..., left] * (1 - weight) + values[..., right] * weight
