import math

import numpy as np
import pytest
import torch

from dklfm_explore.errors import InvalidInputError, UnknownNameError
from dklfm_explore.model import DKLFM, ModelConfig

LENGTHSCALE, SCALE = 0.3, 1.0
OUTPUT_NOISE = np.array([0.2, 0.35])
LATENT_NOISE = 0.25
MEANS = dict(latent=0.1, outputs=np.array([0.3, -0.2]))


def _plain_gp(seed) -> DKLFM:
    """A DKLFM that is a plain GP on time: identity features, no embedding, fixed hyperparameters."""
    config = ModelConfig(n_outputs=2, input_dim=1, use_embedding=False, identity_features=True, initial_lengthscale=LENGTHSCALE)
    model = DKLFM(config)
    with torch.no_grad():
        model.latent_mean.fill_(MEANS["latent"])
        model.output_mean.copy_(torch.as_tensor(MEANS["outputs"]))
        model.raw_output_noise.copy_(_raw(OUTPUT_NOISE))
        model.raw_latent_noise.copy_(_raw(np.array(LATENT_NOISE)))
    return model


def _raw(std):
    from dklfm_explore.model.dklfm import MIN_NOISE_STD

    shifted = torch.as_tensor(std, dtype=torch.float64) - MIN_NOISE_STD
    return shifted + torch.log(-torch.expm1(-shifted))


def _k(a, b):
    return SCALE * np.exp(-0.5 * (a[:, None] - b[None, :]) ** 2 / LENGTHSCALE**2)


def _textbook(time, y, query, observed=None):
    """NumPy GP posterior of h and of the outputs (both outputs share h's kernel; noise added)."""
    x_y = np.concatenate([time, time])
    mean_y = np.repeat(MEANS["outputs"], len(time))
    noise_y = np.repeat(OUTPUT_NOISE**2, len(time))
    flat = y.reshape(-1)
    keep = np.ones(flat.shape, bool) if observed is None else observed.reshape(-1)
    x_y, mean_y, noise_y, flat = x_y[keep], mean_y[keep], noise_y[keep], flat[keep]
    covariance = _k(x_y, x_y) + np.diag(noise_y)
    solve = lambda b: np.linalg.solve(covariance, b)
    cross_h = _k(query, x_y)
    latent_mean = MEANS["latent"] + cross_h @ solve(flat - mean_y)
    latent_cov = _k(query, query) - cross_h @ solve(cross_h.T) + LATENT_NOISE**2 * np.eye(len(query))
    x_q = np.concatenate([query, query])
    cross_y = _k(x_q, x_y)
    output_mean = np.repeat(MEANS["outputs"], len(query)) + cross_y @ solve(flat - mean_y)
    output_cov = _k(x_q, x_q) - cross_y @ solve(cross_y.T) + np.diag(np.repeat(OUTPUT_NOISE**2, len(query)))
    return latent_mean, latent_cov, output_mean, output_cov, covariance, mean_y, flat


def _data(seed, n_tasks=3, n_time=9):
    rng = np.random.default_rng(seed)
    time = np.linspace(0, 1, n_time)
    y = rng.standard_normal((n_tasks, 2, n_time))
    f = rng.standard_normal((n_tasks, n_time))
    return time, y, f


def test_conditional_equals_numpy_textbook_posterior(seed, device):
    time, y, _ = _data(seed)
    query = np.linspace(-0.1, 1.2, 13)
    model = _plain_gp(seed).to(device)
    tensors = (torch.as_tensor(a, device=device) for a in (time, y, query))
    post = model.posterior(*tensors, full_cov=True)
    post = type(post)(**{k: v.cpu() if torch.is_tensor(v) else v for k, v in vars(post).items()})
    for task in range(y.shape[0]):
        latent_mean, latent_cov, output_mean, output_cov, *_ = _textbook(time, y[task], query)
        np.testing.assert_allclose(post.latent_mean[task].detach().numpy(), latent_mean, atol=1e-8)
        np.testing.assert_allclose(post.latent_cov[task].detach().numpy(), latent_cov, atol=1e-8)
        np.testing.assert_allclose(post.latent_var[task].detach().numpy(), np.diag(latent_cov), atol=1e-8)
        np.testing.assert_allclose(post.output_mean[task].detach().numpy().reshape(-1), output_mean, atol=1e-8)
        np.testing.assert_allclose(post.output_cov[task].detach().numpy(), output_cov, atol=1e-8)
        np.testing.assert_allclose(post.output_var[task].detach().numpy().reshape(-1), np.diag(output_cov), atol=1e-8)


def test_missing_values_condition_on_observed_points_only(seed):
    time, y, _ = _data(seed, n_tasks=4)
    rng = np.random.default_rng(seed + 1)
    observed = rng.uniform(size=y.shape) > 0.3
    observed[2] = observed[0]
    y_missing = np.where(observed, y, np.nan)
    model = _plain_gp(seed)
    post = model.posterior(torch.as_tensor(time), torch.as_tensor(y_missing), full_cov=True)
    for task in range(4):
        latent_mean, latent_cov, *_ = _textbook(time, y[task], time, observed[task])
        np.testing.assert_allclose(post.latent_mean[task].detach().numpy(), latent_mean, atol=1e-8)
        np.testing.assert_allclose(post.latent_cov[task].detach().numpy(), latent_cov, atol=1e-8)


def test_loss_equals_weighted_per_point_negative_log_likelihoods(seed):
    time, y, f = _data(seed)
    model = _plain_gp(seed)
    weight = model.config.latent_weight
    expected = []
    for task in range(y.shape[0]):
        latent_mean, latent_cov, _, _, covariance, mean_y, flat = _textbook(time, y[task], time)
        nll = lambda v, m, c: 0.5 * (v - m) @ np.linalg.solve(c, v - m) + 0.5 * np.linalg.slogdet(c)[1] + 0.5 * len(v) * math.log(2 * math.pi)
        expected.append(weight * nll(f[task], latent_mean, latent_cov) / len(time) + nll(flat, mean_y, covariance) / flat.size)
    loss = model.loss(torch.as_tensor(time), torch.as_tensor(y), torch.as_tensor(f))
    assert abs(loss.item() - np.mean(expected)) < 1e-8


def test_batched_loss_with_mixed_masks_equals_loop_over_tasks(seed):
    time, y, f = _data(seed, n_tasks=4)
    y[1, 0, 3] = np.nan
    f[2, 5] = np.nan
    model = _plain_gp(seed)
    latent, output = model.loss_terms(torch.as_tensor(time), torch.as_tensor(y), torch.as_tensor(f))
    for task in range(4):
        one_latent, one_output = model.loss_terms(torch.as_tensor(time), torch.as_tensor(y[task : task + 1]), torch.as_tensor(f[task : task + 1]))
        assert abs(float(latent[task] - one_latent[0])) < 1e-10 and abs(float(output[task] - one_output[0])) < 1e-10


def test_deep_model_shapes_space_time_and_gradients(seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DKLFM(ModelConfig(n_outputs=1, input_dim=2, embedding_dim=4, fno_width=8, fno_modes=4, mlp_width=16, feature_dim=4))
    space, time = torch.linspace(0, 1, 7, dtype=torch.float64), torch.linspace(0, 1, 9, dtype=torch.float64)
    y = torch.randn(2, 1, 7, 9, dtype=torch.float64)
    f = torch.randn(2, 7, 9, dtype=torch.float64)
    loss = model.loss((space, time), y, f)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    post = model.posterior((space, time), y, (torch.linspace(0, 1, 13, dtype=torch.float64), torch.linspace(0, 1, 17, dtype=torch.float64)))
    assert post.latent_mean.shape == (2, 13, 17) and post.output_var.shape == (2, 1, 13, 17)
    assert bool(torch.all(post.latent_var > 0))


def test_shared_feature_map_makes_latent_and_output_covariance_agree_without_embedding(seed):
    # DESIGN.md pitfalls: one feature map for latent and output points, so K_hy = K_hh at initialisation.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DKLFM(ModelConfig(n_outputs=1, input_dim=1, use_embedding=False))
    time = torch.linspace(0, 1, 6, dtype=torch.float64)
    points = time[:, None]
    latent = model._latent_features(points)
    output = model._output_features(points, None, 1)
    torch.testing.assert_close(model.kernel(latent, output), model.kernel(latent, latent))
    assert abs(model.kernel.lengthscale.item() - 0.15) < 1e-12


def test_wrong_shapes_and_names_are_clear_errors():
    model = DKLFM(ModelConfig(n_outputs=2, input_dim=1, use_embedding=False))
    with pytest.raises(InvalidInputError, match=r"\(task, 2 outputs, mesh \(5,\)\)"):
        model.posterior(torch.linspace(0, 1, 5, dtype=torch.float64), torch.zeros(1, 3, 5, dtype=torch.float64))
    with pytest.raises(UnknownNameError, match="periodic, rbf"):
        DKLFM(ModelConfig(n_outputs=1, input_dim=1, base_kernel="matern"))
    with pytest.raises(InvalidInputError, match="input_dim"):
        DKLFM(ModelConfig(n_outputs=1, input_dim=3))
