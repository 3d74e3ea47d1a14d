"""The exact linear LFM: closed-form kernels against integrals and simulations, and its posterior."""

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate

from dklfm_explore.errors import InvalidInputError, UnknownNameError
from dklfm_explore.model.baselines import BASELINES, SineBasis, exact_posterior, get_baseline, per_task_posterior
from dklfm_explore.model.baselines.exact_linear_lfm import (
    log_diff_erf,
    rd_cross_covariance,
    rd_output_covariance,
    sim_cross_covariance,
    sim_joint_covariance,
    sim_output_covariance,
)
from dklfm_explore.model.baselines.exact_linear_lfm import _simulation_force_space
from dklfm_explore.simulate import simulate
from dklfm_explore.systems import get_system

QUAD_TOLERANCE = 1e-6
"""Brute-force nested quadrature (scipy, epsabs 1e-12) agrees with mpmath to ~1e-8; the closed form to 1e-15."""
MC_Z_LIMIT = 4.5
"""Largest standardised Monte Carlo deviation allowed over a few hundred covariance entries (Gaussian SE)."""
MC_DISCRETISATION = 0.01
"""Relative slack for the simulator's piecewise-linear force (drawn at l/8 spacing, error ~0.2%)."""


def _sim_parameters():
    sensitivity = torch.tensor([[0.9, 1.2]], dtype=torch.float64)
    decay = torch.tensor([[0.3, 1.1]], dtype=torch.float64)
    lengthscale = torch.tensor([2.0], dtype=torch.float64)
    return sensitivity, decay, lengthscale


def test_log_diff_erf_agrees_with_high_precision():
    a = torch.tensor([0.3, 5.0, -6.0, 27.0, -0.2, 2.0, 8.0], dtype=torch.float64)
    b = torch.tensor([-0.4, 5.001, -6.2, 26.5, 0.1, 2.0, 3.0], dtype=torch.float64)
    value, sign = log_diff_erf(a, b)
    mpmath.mp.dps = 400  # erf(27) - erf(26.5) ~ exp(-702) needs ~310 digits
    for k in range(a.numel()):
        difference = mpmath.erf(mpmath.mpf(a[k].item())) - mpmath.erf(mpmath.mpf(b[k].item()))
        if difference == 0:
            assert value[k].item() == -math.inf
            continue
        assert sign[k].item() == (1.0 if difference > 0 else -1.0)
        assert value[k].item() == pytest.approx(float(mpmath.log(abs(difference))), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("i, t_a, j, t_b", [(0, 0.5, 1, 3.0), (1, 3.0, 0, 11.0), (0, 11.0, 0, 11.0), (1, 11.0, 1, 3.0)])
def test_sim_output_covariance_matches_double_integral(i, t_a, j, t_b):
    sensitivity, decay, lengthscale = _sim_parameters()
    times = torch.tensor([t_a, t_b], dtype=torch.float64)
    kernel = sim_output_covariance(times, times, sensitivity, decay, lengthscale)[0, i, 0, j, 1].item()
    s, d, l = sensitivity[0], decay[0], lengthscale.item()

    def integrand(tau_b, tau_a):
        return math.exp(-d[i].item() * (t_a - tau_a) - d[j].item() * (t_b - tau_b) - (tau_a - tau_b) ** 2 / (2 * l * l))

    brute = s[i].item() * s[j].item() * integrate.dblquad(integrand, 0, t_a, 0, t_b, epsabs=1e-12, epsrel=1e-12)[0]
    assert kernel == pytest.approx(brute, abs=QUAD_TOLERANCE)


@pytest.mark.parametrize("t_force, j, t_output", [(0.5, 0, 3.0), (11.0, 1, 3.0), (0.0, 1, 11.0), (3.0, 0, 0.5)])
def test_sim_cross_covariance_matches_integral(t_force, j, t_output):
    sensitivity, decay, lengthscale = _sim_parameters()
    kernel = sim_cross_covariance(
        torch.tensor([t_force], dtype=torch.float64), torch.tensor([t_output], dtype=torch.float64), sensitivity, decay, lengthscale
    )[0, 0, j, 0].item()
    l, d = lengthscale.item(), decay[0, j].item()
    brute = integrate.quad(lambda tau: math.exp(-d * (t_output - tau) - (t_force - tau) ** 2 / (2 * l * l)), 0, t_output, epsabs=1e-13)[0]
    assert kernel == pytest.approx(sensitivity[0, j].item() * brute, abs=QUAD_TOLERANCE)


def test_sim_kernel_stays_finite_for_fast_decay_and_short_lengthscale():
    times = torch.linspace(0, 12, 7, dtype=torch.float64)
    decay = torch.tensor([[300.0, 0.01]], dtype=torch.float64)
    kernel = sim_output_covariance(times, times, torch.ones(1, 2, dtype=torch.float64), decay, torch.tensor([0.2], dtype=torch.float64))
    assert torch.all(torch.isfinite(kernel))
    # a decay of 300 follows the force: variance -> (sqrt(pi) sigma / 2) / d * ... ~ 1 / d^2 for t >> 1/d
    assert kernel[0, 0, 3, 0, 3].item() == pytest.approx(1 / 300.0**2, rel=0.01)


def test_joint_covariance_is_symmetric_and_positive_definite():
    sensitivity, decay, lengthscale = _sim_parameters()
    joint = sim_joint_covariance(torch.linspace(0.5, 12, 8, dtype=torch.float64), sensitivity, decay, lengthscale)[0]
    assert torch.allclose(joint, joint.T, atol=1e-14)
    eigenvalues = torch.linalg.eigvalsh(joint)
    assert eigenvalues.min() > -1e-13 * eigenvalues.max()  # smooth kernels: the smallest are ~1e-16, rounding-level
    _, info = torch.linalg.cholesky_ex(joint + 1e-10 * joint.diagonal().mean() * torch.eye(joint.shape[0], dtype=joint.dtype))
    assert info.item() == 0


def test_rd_output_covariance_is_symmetric_and_positive_semidefinite():
    space, time = torch.linspace(0, 1, 5, dtype=torch.float64), torch.linspace(0, 1, 4, dtype=torch.float64)
    one = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    basis = SineBasis.continuous(0.2)
    kernel = rd_output_covariance(space, time, space, time, one(0.5), one(0.2), one(0.01), one(0.3), one(0.2), basis)[0].reshape(20, 20)
    assert torch.allclose(kernel, kernel.T, atol=1e-14)
    eigenvalues = torch.linalg.eigvalsh(kernel)
    assert eigenvalues.min() > -1e-12 * eigenvalues.max()
    diagonal = rd_output_covariance(space, time, space, time, one(0.5), one(0.2), one(0.01), one(0.3), one(0.2), basis, diagonal=True)
    assert torch.allclose(diagonal[0].reshape(-1), kernel.diagonal(), rtol=1e-12, atol=1e-16)


def _assert_matches_monte_carlo(samples: torch.Tensor, kernel: torch.Tensor):
    empirical = torch.cov(samples.T)
    n = samples.shape[0]
    standard_error = torch.sqrt((kernel**2 + torch.outer(kernel.diagonal(), kernel.diagonal())) / n)
    allowed = MC_Z_LIMIT * standard_error + MC_DISCRETISATION * kernel.abs().max()
    assert torch.all((empirical - kernel).abs() <= allowed), float(((empirical - kernel).abs() / allowed).max())


def test_sim_kernel_matches_monte_carlo_of_the_simulator():
    system = get_system("transcription-linear")
    tasks = simulate(
        system, 4000, n_points=7, n_outputs=2, seed=1, noise_level=0.0,
        parameter_ranges={"basal_rate": (0.05, 0.05), "sensitivity": (0.9, 0.9), "decay_rate": (0.4, 0.4)},
        force_prior=system.force_prior.with_(lengthscale=(2.0, 2.0)),
    )
    samples = torch.cat([tasks.f(), tasks.y().flatten(1)], dim=1)
    kernel = sim_joint_covariance(tasks.time, tasks.tensor("sensitivity")[:1], tasks.tensor("decay_rate")[:1], tasks.tensor("force_lengthscale")[:1])[0]
    _assert_matches_monte_carlo(samples, kernel)
    assert torch.allclose(tasks.y().mean(0)[:, 0], torch.tensor(0.05 / 0.4, dtype=torch.float64))


def test_rd_kernel_matches_monte_carlo_of_the_simulator():
    system = get_system("reaction-diffusion")
    tasks = simulate(
        system, 4000, grid=(6, 6), seed=2, noise_level=0.0,
        parameter_ranges={"sensitivity": (0.5, 0.5), "decay_rate": (0.2, 0.2), "diffusion": (0.01, 0.01)},
        force_prior=system.force_prior.with_(lengthscale=(0.3, 0.3), space_lengthscale=(0.25, 0.25)),
    )
    basis = SineBasis.simulator(_simulation_force_space(tasks, system))
    names = ("sensitivity", "decay_rate", "diffusion", "force_lengthscale", "force_space_lengthscale")
    parameters = [tasks.tensor(name)[:1] for name in names] + [basis]
    space, time = tasks.space, tasks.time
    k_yy = rd_output_covariance(space, time, space, time, *parameters)[0].reshape(36, 36)
    k_uy = rd_cross_covariance(space, time, space, time, *parameters)[0].reshape(36, 36)
    k_uu = (torch.exp(-0.5 * ((space[:, None] - space[None]) / 0.25) ** 2)[:, None, :, None]
            * torch.exp(-0.5 * ((time[:, None] - time[None]) / 0.3) ** 2)[None, :, None, :]).reshape(36, 36)
    kernel = torch.cat([torch.cat([k_uu, k_uy], 1), torch.cat([k_uy.T, k_yy], 1)], 0)
    samples = torch.cat([tasks.f().flatten(1), tasks.y()[:, 0].flatten(1)], dim=1)
    _assert_matches_monte_carlo(samples, kernel)


@pytest.fixture(scope="module")
def linear_tasks():
    return simulate("transcription-linear", 20, seed=3, noise_level=0.1)


def _scores(result, tasks):
    truth = tasks.f().numpy()
    mean, std = result["latent_mean"].values, result["latent_std"].values
    nmse = float(((mean - truth) ** 2).mean() / truth.var())
    coverage = float((np.abs(mean - truth) <= 1.96 * std).mean())
    return nmse, coverage


def test_exact_posterior_recovers_linear_transcription_force(linear_tasks):
    result = exact_posterior(linear_tasks)
    nmse, coverage = _scores(result, linear_tasks)
    assert nmse < 0.01  # measured 0.0018 on these 20 tasks; the prior predictor's is ~1
    assert 0.85 <= coverage <= 0.99  # measured 0.97
    assert result["latent_mean"].dims == ("task", "time")
    assert result["output_std"].dims == ("task", "output", "time")
    assert result.attrs["infer_ms_per_task"] > 0
    truth_noise = 0.1 * linear_tasks.tensor("y_clean").transpose(0, 1).reshape(5, -1).std(1)
    assert np.allclose(result["noise_std"].values, truth_noise.numpy())


def test_exact_posterior_recovers_reaction_diffusion_force():
    tasks = simulate("reaction-diffusion", 6, seed=3, noise_level=0.1)
    result = exact_posterior(tasks)
    nmse, coverage = _scores(result, tasks)
    assert nmse < 0.08  # measured 0.03 on 10 tasks: the force at the walls and at t=0 is unseen
    assert 0.85 <= coverage <= 0.99
    assert result["latent_mean"].dims == ("task", "space", "time")
    assert result.attrs["n_modes"] == 20  # 0.5 modes per point of the 41-point force grid


def test_exact_posterior_batched_equals_one_task_at_a_time(linear_tasks):
    subset = linear_tasks.isel([0, 1, 2])
    batched = exact_posterior(subset, noise_std=0.02)
    for k in range(3):
        single = exact_posterior(subset.isel([k]), noise_std=0.02)
        # batched and single BLAS calls round differently on a covariance with condition number ~1e8
        assert np.allclose(batched["latent_mean"].values[k], single["latent_mean"].values[0], rtol=0, atol=1e-9)
        assert np.allclose(batched["output_std"].values[k], single["output_std"].values[0], rtol=0, atol=1e-9)


def test_missing_values_are_the_same_as_fewer_points(linear_tasks):
    subset = linear_tasks.isel([0])
    gappy = subset.dataset.copy(deep=True)
    keep = np.arange(subset.n_time) % 3 != 1
    gappy["y"][:, :, ~keep] = np.nan
    from dklfm_explore.data import TaskSet

    with_nans = exact_posterior(TaskSet(gappy), noise_std=0.02, time=subset.time.numpy())
    fewer = exact_posterior(TaskSet(subset.dataset.isel(time=np.flatnonzero(keep))), noise_std=0.02, time=subset.time.numpy())
    assert np.allclose(with_nans["latent_mean"].values, fewer["latent_mean"].values, rtol=1e-9, atol=1e-12)


def test_query_times_and_space_give_the_requested_mesh(linear_tasks):
    result = exact_posterior(linear_tasks.isel([0, 1]), time=np.linspace(0, 14, 57))
    assert result["latent_mean"].shape == (2, 57) and result["output_mean"].shape == (2, 5, 57)
    on_mesh = exact_posterior(linear_tasks.isel([0, 1]), time=linear_tasks.time.numpy())
    default = exact_posterior(linear_tasks.isel([0, 1]))
    assert np.allclose(on_mesh["latent_mean"].values, default["latent_mean"].values)
    rd = simulate("reaction-diffusion", 2, grid=(6, 6), seed=0)
    dense = exact_posterior(rd, time=np.linspace(0, 1, 9), space=np.linspace(0, 1, 11))
    assert dense["latent_std"].dims == ("task", "space", "time") and dense["latent_std"].shape == (2, 11, 9)
    assert np.allclose(dense["output_std"].values[:, 0, [0, -1], :], 0.0, atol=1e-12)  # zero boundary values


def test_bad_input_raises_clear_errors(linear_tasks):
    with pytest.raises(InvalidInputError, match="exact linear LFM covers"):
        exact_posterior(simulate("transcription", 2, seed=0))
    with pytest.raises(InvalidInputError, match="precedes"):
        exact_posterior(linear_tasks, time=[-1.0, 2.0])
    with pytest.raises(InvalidInputError, match="noise_std"):
        exact_posterior(linear_tasks, noise_std=[0.1, 0.2])
    with pytest.raises(InvalidInputError, match="y_clean"):
        from dklfm_explore.data import TaskSet

        exact_posterior(TaskSet(linear_tasks.dataset.drop_vars(["y_clean", "noise_std"])))
    empty = linear_tasks.dataset.copy(deep=True)
    empty["y"][0] = np.nan
    with pytest.raises(InvalidInputError, match="Task 0 has 0 observed"):
        from dklfm_explore.data import TaskSet

        exact_posterior(TaskSet(empty))


def test_registry_names_every_baseline():
    assert get_baseline("exact-lfm") is exact_posterior
    assert get_baseline("per-task-lfm") is per_task_posterior
    assert set(BASELINES) == {"exact-lfm", "per-task-lfm", "state-space-lfm"}
    with pytest.raises(UnknownNameError, match="exact-lfm, per-task-lfm, state-space-lfm"):
        get_baseline("alfi")
