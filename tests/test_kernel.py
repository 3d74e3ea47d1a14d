import math

import numpy as np
import pytest
import torch

from dklfm_explore.errors import InvalidInputError, UnknownNameError
from dklfm_explore.model.kernel import BASE_KERNELS, FeatureMap, PeriodicKernel, RBFKernel, make_base_kernel


def _points(seed, n, features=3):
    return torch.randn(n, features, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_rbf_matches_formula(seed):
    a, b = _points(seed, 4), _points(seed + 1, 5)
    kernel = RBFKernel(scale=2.0, lengthscale=0.7)
    expected = 2.0 * np.exp(-((a.numpy()[:, None] - b.numpy()[None]) ** 2).sum(-1) / (2 * 0.7**2))
    np.testing.assert_allclose(kernel(a, b).detach().numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(kernel.diag(a).detach().numpy(), np.full(4, 2.0), atol=1e-12)


def test_rbf_gradients_match_the_closed_form_on_and_off_the_diagonal(seed):
    """dk/da_i = -k (a_i - b_j) / ell^2, dk/ds = k / s, dk/d ell = k |a - b|^2 / ell^3: the diagonal (a = b,
    where the distance is clamped against rounding) must still pass the scale's gradient."""
    a = _points(seed, 4).requires_grad_(True)
    b = torch.cat([a.detach()[:2], _points(seed + 1, 3)])
    kernel = RBFKernel(scale=2.0, lengthscale=0.7)
    raw = [kernel.raw_scale, kernel.raw_lengthscale]
    grad_a, grad_raw_scale, grad_raw_ell = torch.autograd.grad(kernel(a, b).sum(), [a, *raw])
    (scale_per_raw,) = torch.autograd.grad(kernel.scale, raw[0])
    (ell_per_raw,) = torch.autograd.grad(kernel.lengthscale, raw[1])
    grad_scale, grad_ell = grad_raw_scale / scale_per_raw, grad_raw_ell / ell_per_raw
    gram = kernel(a, b)
    k, diff = gram.detach().numpy(), a.detach().numpy()[:, None] - b.numpy()[None]
    np.testing.assert_allclose(grad_a.numpy(), -(k[..., None] * diff).sum(1) / 0.7**2, atol=1e-12)
    np.testing.assert_allclose(float(grad_scale), k.sum() / 2.0, rtol=1e-12)
    np.testing.assert_allclose(float(grad_ell), (k * (diff**2).sum(-1)).sum() / 0.7**3, rtol=1e-10)


def test_periodic_matches_formula(seed):
    a, b = _points(seed, 4), _points(seed + 1, 5)
    kernel = PeriodicKernel(scale=1.5, lengthscale=0.8, period=1.3)
    sin2 = np.sin(math.pi * np.abs(a.numpy()[:, None] - b.numpy()[None]) / 1.3) ** 2
    expected = 1.5 * np.exp(-2 * sin2.sum(-1) / 0.8**2)
    np.testing.assert_allclose(kernel(a, b).detach().numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("name", sorted(BASE_KERNELS))
def test_batched_gram_equals_loop_and_is_psd(name, seed, device):
    kernel = make_base_kernel(name, lengthscale=0.5).to(device)
    x = torch.randn(3, 7, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)
    batched = kernel(x, x).detach()
    for task in range(3):
        torch.testing.assert_close(batched[task], kernel(x[task], x[task]).detach(), atol=1e-14, rtol=0)
    torch.testing.assert_close(batched, batched.transpose(-1, -2), atol=1e-14, rtol=0)
    assert float(torch.linalg.eigvalsh(batched).min()) > -1e-10


def test_a_misspelt_hyperparameter_is_an_error_not_ignored():
    with pytest.raises(InvalidInputError, match="lenghtscale"):
        make_base_kernel("rbf", lenghtscale=0.5)
    with pytest.raises(TypeError):
        RBFKernel(lenghtscale=0.5)
    assert float(make_base_kernel("rbf", lengthscale=0.5, period=2.0).lengthscale) == pytest.approx(0.5)
    assert float(make_base_kernel("periodic", period=2.0).period) == pytest.approx(2.0)


def test_unknown_kernel_lists_valid_names():
    with pytest.raises(UnknownNameError, match="periodic, rbf"):
        make_base_kernel("matern")


def test_initial_hyperparameters_are_the_requested_values():
    kernel = RBFKernel(scale=1.0, lengthscale=0.15)
    assert abs(kernel.lengthscale.item() - 0.15) < 1e-12
    assert abs(kernel.scale.item() - 1.0) < 1e-12


def test_feature_map_returns_float64_features_of_requested_size(seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        features = FeatureMap(in_features=3, width=8, out_features=4)
    out = features(torch.zeros(2, 5, 3, dtype=torch.float64))
    assert out.shape == (2, 5, 4) and out.dtype == torch.float64
