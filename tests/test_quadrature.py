"""Trapezoidal quadrature and linear interpolation against closed forms."""

import math

import torch

from dklfm_explore.quadrature import interpolate_linear, trapezoid_mean, trapezoid_weights


def test_trapezoid_weights_integrate_a_line_exactly_on_an_uneven_grid():
    grid = torch.tensor([0.0, 0.1, 0.5, 0.6, 2.0], dtype=torch.float64)
    weights = trapezoid_weights(grid)
    assert float(weights.sum()) == 2.0
    # the rule is exact for linear functions: int_0^2 (3x + 1) dx = 8
    assert abs(float((weights * (3 * grid + 1)).sum()) - 8.0) < 1e-14


def test_trapezoid_weights_converge_at_second_order():
    # int_0^pi sin = 2; halving the step quarters the error
    errors = []
    for n in (11, 21, 41):
        grid = torch.linspace(0, math.pi, n, dtype=torch.float64)
        errors.append(abs(float((trapezoid_weights(grid) * torch.sin(grid)).sum()) - 2.0))
    assert 3.9 < errors[0] / errors[1] < 4.1 and 3.9 < errors[1] / errors[2] < 4.1


def test_trapezoid_mean_keeps_only_intervals_with_both_ends_kept():
    grid = torch.tensor([0.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    values = torch.tensor([[0.0, 2.0, 4.0, 100.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    keep = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    mean = trapezoid_mean(values, grid, keep)
    # row 0: the line 2t over [0, 2] has mean 2; the dropped interval's 100 does not enter
    assert torch.equal(mean, torch.tensor([2.0, 1.0], dtype=torch.float64))


def test_interpolate_linear_is_exact_at_nodes_linear_between_and_constant_beyond():
    grid = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    values = torch.tensor([[[0.0, 2.0, 6.0]], [[1.0, -1.0, 3.0]]], dtype=torch.float64)
    target = torch.tensor([-1.0, 0.0, 0.5, 2.0, 3.0, 5.0], dtype=torch.float64)
    result = interpolate_linear(values, grid, target)
    assert result.shape == (2, 1, 6)
    assert torch.allclose(result[0, 0], torch.tensor([0.0, 0.0, 1.0, 4.0, 6.0, 6.0], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(result[1, 0], torch.tensor([1.0, 1.0, 0.0, 1.0, 3.0, 3.0], dtype=torch.float64), atol=1e-15)


def test_interpolate_linear_on_its_own_grid_returns_the_values():
    grid = torch.linspace(0, 1, 7, dtype=torch.float64)
    values = torch.randn(3, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert interpolate_linear(values, grid, grid.clone()) is values
