import math

import numpy as np
import pytest
import torch

from dklfm_explore.errors import CholeskyError, InvalidInputError
from dklfm_explore.linalg import JITTER_CAP, JITTER_FLOOR, cholesky, cholesky_solve, gaussian_log_density, solve_lower


def _rbf(x, lengthscale=0.3):
    return torch.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / lengthscale**2)


def test_well_conditioned_matrix_needs_no_jitter(seed):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(3, 6, 6, generator=generator, dtype=torch.float64)
    matrix = a @ a.transpose(-1, -2) + 6 * torch.eye(6, dtype=torch.float64)
    factor, jitter = cholesky(matrix)
    assert jitter == 0.0
    torch.testing.assert_close(factor @ factor.transpose(-1, -2), matrix, atol=1e-12, rtol=0)


def test_duplicate_inputs_survive_with_reported_jitter():
    x = torch.tensor([0.0, 0.1, 0.1, 0.1, 0.5, 0.5], dtype=torch.float64)
    matrix = _rbf(x) + 1e-16 * torch.eye(6, dtype=torch.float64)
    assert torch.linalg.cholesky_ex(matrix).info.item() != 0
    factor, jitter = cholesky(matrix)
    assert JITTER_FLOOR <= jitter <= JITTER_CAP
    reconstructed = factor @ factor.T
    # only the jitter (relative to the mean diagonal, 1.0 here) separates the product from the matrix
    torch.testing.assert_close(reconstructed, matrix + jitter * torch.eye(6, dtype=torch.float64), atol=1e-12, rtol=0)


def test_indefinite_matrix_beyond_cap_raises_naming_jitter_and_size():
    matrix = torch.diag(torch.tensor([1.0, 1.0, -0.5], dtype=torch.float64))
    with pytest.raises(CholeskyError, match=r"3 x 3.*1e-03"):
        cholesky(matrix)


def test_float32_is_refused():
    with pytest.raises(InvalidInputError, match="float64"):
        cholesky(torch.eye(3))


def test_solves_match_numpy(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((5, 5))
    matrix = a @ a.T + 5 * np.eye(5)
    right = rng.standard_normal((5, 2))
    factor, _ = cholesky(torch.as_tensor(matrix))
    np.testing.assert_allclose(cholesky_solve(factor, torch.as_tensor(right)).numpy(), np.linalg.solve(matrix, right), atol=1e-12)
    np.testing.assert_allclose(solve_lower(factor, torch.as_tensor(right)).numpy(), np.linalg.solve(np.linalg.cholesky(matrix), right), atol=1e-12)


def test_log_density_matches_closed_form(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((4, 4))
    covariance = a @ a.T + np.eye(4)
    mean, value = rng.standard_normal(4), rng.standard_normal(4)
    expected = -0.5 * (value - mean) @ np.linalg.solve(covariance, value - mean) - 0.5 * np.linalg.slogdet(covariance)[1] - 2 * math.log(2 * math.pi)
    factor, _ = cholesky(torch.as_tensor(covariance))
    got = gaussian_log_density(torch.as_tensor(value), torch.as_tensor(mean), factor)
    assert abs(float(got) - expected) < 1e-10
