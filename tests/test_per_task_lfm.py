"""The per-task LFM: accuracy against the prior predictor, ranges, batching and bad input."""

import numpy as np
import pytest
import torch

from dklfm_explore.data import TaskSet
from dklfm_explore.errors import InvalidInputError
from dklfm_explore.model.baselines import _per_task_laplace, _per_task_model, per_task_lfm, per_task_posterior
from dklfm_explore.simulate import simulate
from dklfm_explore.systems import get_system

FIT = dict(iterations=150, n_samples=64, seed=0)
"""A short budget for tests: enough to beat the prior clearly (the default is 300 iterations)."""


@pytest.fixture(scope="module")
def transcription_tasks():
    return simulate("transcription", 4, seed=3)


@pytest.fixture(scope="module")
def fitted(transcription_tasks):
    return per_task_posterior(transcription_tasks, **FIT)


def test_latent_error_is_far_below_the_prior_predictor(fitted, transcription_tasks):
    truth = transcription_tasks.f().numpy()
    nmse = ((fitted["latent_mean"].values - truth) ** 2).mean() / truth.var()
    # the prior predictor: E[softplus(g)], g ~ N(0, 1), the same constant for every task
    draws = torch.nn.functional.softplus(torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    prior_nmse = ((float(draws.mean()) - truth) ** 2).mean() / truth.var()
    assert prior_nmse > 0.9
    assert nmse < 0.25 * prior_nmse  # measured 0.09 against 1.05 on these 4 tasks (150 iterations)
    z = np.abs(fitted["latent_mean"].values - truth) / fitted["latent_std"].values
    # The latent is smooth (lengthscale >= 1.5 h over 12 h), so the 4 x 30 points are about 24
    # independent draws: a calibrated 95% interval covers 0.95 +- 3 x 0.044 (binomial SE at n=24),
    # and |z| of a standard normal has mean 0.80 +- 3 x 0.12 (its SD 0.60 / sqrt(24)), which fails
    # for intervals that are far too wide as well as too narrow.  Measured: coverage 0.99, mean |z| 0.64.
    assert (z <= 1.959963984540054).mean() > 0.95 - 3 * 0.044
    assert 0.80 - 3 * 0.12 < z.mean() < 0.80 + 3 * 0.12
    clean = transcription_tasks.tensor("y_clean").numpy()
    assert ((fitted["output_mean"].values - clean) ** 2).mean() / clean.var() < 0.02


def test_result_has_the_inference_format(fitted):
    assert fitted["latent_mean"].dims == ("task", "time") and fitted["latent_mean"].shape == (4, 30)
    assert fitted["output_std"].dims == ("task", "output", "time") and fitted["output_std"].shape == (4, 5, 30)
    assert np.all(fitted["latent_std"].values > 0)
    assert np.all(fitted["latent_mean"].values > 0)  # softplus activity
    assert fitted.attrs["baseline"] == "per-task-lfm" and fitted.attrs["infer_ms_per_task"] > 0
    assert fitted.attrs["n_inducing"] == 21  # 2.5 per shortest lengthscale (1.5 h) over 12 h, plus one


def test_fitted_parameters_stay_in_their_ranges(fitted):
    system = get_system("transcription")
    for spec in system.parameters:
        low, high = (bound.numpy() for bound in spec.bounds(5))
        values = fitted[f"fitted_{spec.name}"].values
        assert np.all(values >= low) and np.all(values <= high), spec.name
    lengthscale = fitted["fitted_force_lengthscale"].values
    assert np.all(lengthscale >= 1.5) and np.all(lengthscale <= 4.0)


def test_a_violent_learning_rate_cannot_leave_the_ranges(transcription_tasks):
    result = per_task_posterior(transcription_tasks.isel([0]), iterations=15, learning_rate=5.0, n_samples=4)
    for spec in get_system("transcription").parameters:
        low, high = (bound.numpy() for bound in spec.bounds(5))
        values = result[f"fitted_{spec.name}"].values
        assert np.all(values >= low) and np.all(values <= high)


def test_tasks_are_fitted_independently(transcription_tasks):
    pair = per_task_posterior(transcription_tasks.isel([0, 1]), iterations=10, n_samples=4)
    alone = per_task_posterior(transcription_tasks.isel([1]), iterations=10, n_samples=4)
    assert np.allclose(pair["latent_mean"].values[1], alone["latent_mean"].values[0], rtol=0, atol=1e-8)


def test_query_times_and_the_linear_system():
    tasks = simulate("transcription-linear", 2, n_points=12, seed=1)
    result = per_task_posterior(tasks, time=np.linspace(0, 14, 29), iterations=5, n_samples=4)
    assert result["latent_mean"].shape == (2, 29) and result["output_mean"].shape == (2, 5, 29)
    with pytest.raises(InvalidInputError, match="precedes"):
        per_task_posterior(tasks, time=[-2.0, 3.0], iterations=1)


def test_lotka_volterra_runs_with_a_positive_predator():
    tasks = simulate("lotka-volterra", 2, n_points=15, t_range=(0.0, 8.0), seed=0)
    result = per_task_posterior(tasks, iterations=3, n_samples=4)
    assert result["latent_mean"].shape == (2, 15)
    assert np.all(result["latent_mean"].values > 0)
    assert "fitted_force_period" in result


def test_bad_input_raises_clear_errors(transcription_tasks):
    empty = transcription_tasks.dataset.copy(deep=True)
    empty["y"][1] = np.nan
    with pytest.raises(InvalidInputError, match="Task 1 has 0 observed"):
        per_task_posterior(TaskSet(empty), iterations=1)
    sparse = transcription_tasks.dataset.copy(deep=True)
    sparse["y"][0] = np.nan
    sparse["y"][0, 0, :2] = 1.0
    with pytest.raises(InvalidInputError, match="at least 3"):
        per_task_posterior(TaskSet(sparse), iterations=1)
    with pytest.raises(InvalidInputError, match="ODE system"):
        per_task_posterior(simulate("reaction-diffusion", 1, grid=(5, 5), seed=0), iterations=1)
    with pytest.raises(InvalidInputError, match="iterations"):
        per_task_posterior(transcription_tasks, iterations=-1)
    with pytest.raises(InvalidInputError, match="over time only"):
        per_task_posterior(transcription_tasks, space=[0.5], iterations=1)


@pytest.fixture(scope="module")
def lotka_volterra_extrapolation():
    full = simulate("lotka-volterra", 2, n_points=21, t_range=(0.0, 16.0), seed=5)
    return full.window(t_max=8.0), full.dataset["time"].values


def test_lotka_volterra_fit_uses_the_rule_step_and_matches_a_fine_step_fit(lotka_volterra_extrapolation, monkeypatch):
    observed, query = lotka_volterra_extrapolation
    fit = dict(time=query, iterations=15, n_samples=16)
    result = per_task_posterior(observed, **fit)
    prior = get_system("lotka-volterra").force_prior
    step = per_task_lfm.fit_step(prior)
    assert step == pytest.approx(0.8 * 5.0 / (2 * np.pi) / 4)  # a quarter of the shortest time scale
    assert result.attrs["solver_step"] == step and result.attrs["solver_error"] <= per_task_lfm.SOLVER_TOLERANCE
    # only the observed window [0, 8] is integrated in the fit: 10 intervals of 0.8, 6 steps each
    assert result.attrs["solver_steps"] == 10 * int(np.ceil(0.8 / step)) == 60
    monkeypatch.setattr(per_task_lfm, "SOLVER_STEPS_PER_TIME_SCALE", 8)
    fine = per_task_posterior(observed, **fit)
    assert fine.attrs["solver_steps"] == 110  # 11 steps of at most 0.08 per interval
    for name in ("latent_mean", "latent_std", "output_mean", "output_std"):
        scale = np.abs(fine[name].values).max()
        # measured at most 2e-7 of the scale (latent and output, mean and std)
        assert np.abs(result[name].values - fine[name].values).max() < 1e-4 * scale, name


def test_laplace_chunks_do_not_change_the_result(lotka_volterra_extrapolation, monkeypatch):
    observed, query = lotka_volterra_extrapolation
    whole = per_task_posterior(observed, time=query, iterations=3, n_samples=8)
    monkeypatch.setattr(_per_task_laplace, "LAPLACE_CHUNK_BYTES", 1)  # one task a chunk
    chunked = per_task_posterior(observed, time=query, iterations=3, n_samples=8)
    for name in ("latent_mean", "latent_std", "output_mean", "output_std"):
        assert np.allclose(whole[name].values, chunked[name].values, rtol=1e-10, atol=1e-12), name


def test_inducing_extension_is_the_conditional_of_the_fitted_grid():
    system = get_system("lotka-volterra")
    z = torch.linspace(0.0, 8.0, 33, dtype=torch.float64)
    model = per_task_lfm.PerTaskLFM(system, 2, 1, z, system.force_prior, torch.ones(2, 1, dtype=torch.float64))
    extension = per_task_lfm._extension_grid(8.0, 9.1, 0.25)
    assert torch.allclose(extension, torch.tensor([8.25, 8.5, 8.75, 9.0, 9.25], dtype=torch.float64))
    with torch.no_grad():
        factor = model.inducing_factor()
        joint_time, joint = _per_task_laplace._joint_inducing(model, factor, extension)
        covariance = model.kernel(joint_time, joint_time)
    assert torch.equal(joint[:, :33, :33], factor) and torch.all(joint[:, :33, 33:] == 0)
    jitter = _per_task_model.INDUCING_JITTER * system.force_prior.variance
    assert (joint @ joint.transpose(-1, -2) - covariance).abs().max() <= 2 * jitter
