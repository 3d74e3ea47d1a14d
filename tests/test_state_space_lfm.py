"""The state-space LFM against the dense Gaussian posterior of the same linear model, and its fit and errors."""

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from dklfm_explore import simulate
from dklfm_explore.errors import InvalidInputError
from dklfm_explore.metrics import latent_metrics
from dklfm_explore.model.baselines import get_baseline, state_space_posterior
from dklfm_explore.model.baselines.state_space_lfm import matern_state_space

KINETICS = ("basal_rate", "sensitivity", "decay_rate")
LENGTHSCALE, VARIANCE = 2.0, 1.0


@pytest.fixture(scope="module")
def tasks():
    return simulate("transcription-linear", 3, n_points=9, seed=4)


def dense_posterior(tasks, noise_std):
    """Exact posterior of y_j' = b_j + s_j f - d_j y_j, f Matern-3/2, from the joint covariance over all times.

    Moments of the linear SDE by the matrix exponential (Van Loan for the covariance), no recursion.
    """
    F, q, P_inf = (v[0].numpy() for v in matern_state_space(1.5, torch.tensor([LENGTHSCALE]), torch.tensor([VARIANCE])))
    times = tasks.time.numpy() - float(tasks.time[0])
    means, variances, outputs, output_vars = [], [], [], []
    for k in range(tasks.n_tasks):
        b, s, d = (tasks.dataset[name].values[k] for name in KINETICS)
        P = b.size
        n = P + 2
        A = np.zeros((n, n))
        A[:P, :P] = -np.diag(d)
        A[:P, P] = s
        A[P:, P:] = F
        c = np.concatenate([b, [0.0, 0.0]])
        Qc = np.zeros((n, n))
        Qc[-1, -1] = q
        m0 = np.concatenate([b / d, [0.0, 0.0]])
        P0 = np.zeros((n, n))
        P0[P:, P:] = P_inf

        def moments(t):
            augmented = np.zeros((n + 1, n + 1))
            augmented[:n, :n], augmented[:n, n] = A, c
            mean = (expm(augmented * t) @ np.append(m0, 1.0))[:n]
            block = expm(np.block([[-A, Qc], [np.zeros((n, n)), A.T]]) * t)
            phi = block[n:, n:].T
            return mean, phi @ P0 @ phi.T + phi @ block[:n, n:]

        stats = [moments(t) for t in times]
        joint = np.zeros((len(times) * n, len(times) * n))
        for i, ti in enumerate(times):
            for j, tj in enumerate(times[: i + 1]):
                block = expm(A * (ti - tj)) @ stats[j][1]
                joint[i * n:(i + 1) * n, j * n:(j + 1) * n] = block
                joint[j * n:(j + 1) * n, i * n:(i + 1) * n] = block.T
        mean = np.concatenate([m for m, _ in stats])
        y_index = np.array([i * n + j for i in range(len(times)) for j in range(P)])
        y = tasks.dataset["y"].values[k].T.reshape(-1)
        gram = joint[np.ix_(y_index, y_index)] + np.diag(np.tile(noise_std**2, len(times)))
        weights = np.linalg.solve(gram, y - mean[y_index])
        cross = joint[:, y_index]
        post_mean = mean + cross @ weights
        post_var = np.diag(joint) - np.einsum("ij,ji->i", cross, np.linalg.solve(gram, cross.T))
        f_index = np.arange(len(times)) * n + P
        means.append(post_mean[f_index])
        variances.append(post_var[f_index])
        outputs.append(post_mean[y_index].reshape(len(times), P).T)
        output_vars.append(post_var[y_index].reshape(len(times), P).T)
    return np.array(means), np.array(variances), np.array(outputs), np.array(output_vars)


def filtered(tasks, step, noise_std):
    truth = {name: tasks.dataset[name].values for name in KINETICS}
    return state_space_posterior(tasks, fit=False, parameters=truth, force_lengthscale=LENGTHSCALE,
                                 force_variance=VARIANCE, noise_std=noise_std, step=step)


def test_smoothed_posterior_matches_the_dense_gaussian_posterior_and_converges_with_the_step(tasks):
    noise_std = np.full(tasks.n_outputs, 0.05)
    reference = dense_posterior(tasks, noise_std)
    errors = []
    for step in (0.5, 0.25, 0.0625):
        result = filtered(tasks, step, noise_std)
        got = (result["latent_mean"].values, result["latent_std"].values ** 2,
               result["output_mean"].values, result["output_std"].values ** 2)
        errors.append(max(float(np.abs(a - b).max()) for a, b in zip(got, reference)))
    # measured max errors 0.10, 4.5e-3, 5.7e-5 (RK4 on the moments): each step's tolerance is ~2x its measured error
    for error, tolerance in zip(errors, (0.2, 1e-2, 1.2e-4)):
        assert error < tolerance
    assert errors[0] > errors[1] > errors[2]


def test_linear_transcription_true_parameters_beat_the_prior_mean_and_cover(tasks):
    noise = np.full(tasks.n_outputs, 0.05)
    result = filtered(tasks, None, noise)
    scores = latent_metrics(result, tasks.dataset["f"], float(tasks.dataset["f"].std()))
    # the prior mean (0) scores ~1 in these units; the outputs pin the force far better
    assert scores["latent_mse"] < 0.2
    assert result["latent_std"].shape == (3, 9) and np.all(result["latent_std"].values > 0)


def test_fit_raises_the_marginal_likelihood_and_stays_in_the_ranges():
    tasks = simulate("transcription", 2, n_points=12, seed=6)
    start = state_space_posterior(tasks, iterations=0)
    fitted = state_space_posterior(tasks, iterations=25)
    assert np.all(fitted["log_marginal_likelihood"].values > start["log_marginal_likelihood"].values)
    lengthscale = fitted["fitted_force_lengthscale"].values
    assert np.all((lengthscale >= 1.5) & (lengthscale <= 4.0))
    assert fitted.attrs["baseline"] == "state-space-lfm"
    assert get_baseline("state-space-lfm") is state_space_posterior


@pytest.mark.parametrize("name", ["transcription", "transcription-linear", "lotka-volterra"])
def test_closed_form_jacobian_equals_autodiff_of_the_rhs(name):
    from dklfm_explore.model.baselines.state_space_lfm import _Drift
    from dklfm_explore.systems import get_system

    system, n_tasks, generator = get_system(name), 3, torch.Generator().manual_seed(2)
    n_states = system.n_states(2 if name.startswith("transcription") else 1)
    parameters = {spec.name: 0.5 + torch.rand((n_tasks, n_states) if spec.per_output else (n_tasks,), generator=generator,
                                             dtype=torch.float64) for spec in system.parameters}
    F, _, _ = matern_state_space(1.5, torch.full((n_tasks,), 1.3, dtype=torch.float64), torch.ones(n_tasks, dtype=torch.float64))
    drift = _Drift(system, system.link, parameters, F, torch.full((n_tasks,), 0.2, dtype=torch.float64), n_states)
    x = torch.randn(n_tasks, n_states + 2, generator=generator, dtype=torch.float64)
    assert drift.closed_form is not None
    full = torch.autograd.functional.jacobian(lambda state: drift(0.0, state), x)
    autodiff = torch.stack([full[k, :, k] for k in range(n_tasks)])
    torch.testing.assert_close(drift.jacobian(0.0, x), autodiff, rtol=1e-12, atol=1e-12)


def test_bad_input_is_refused_with_one_sentence(tasks):
    with pytest.raises(InvalidInputError, match="Matern order"):
        state_space_posterior(tasks, nu=0.5, iterations=0)
    with pytest.raises(InvalidInputError, match="precedes"):
        state_space_posterior(tasks, time=[-1.0, 1.0], iterations=0)
    with pytest.raises(InvalidInputError, match="ODE systems"):
        state_space_posterior(simulate("reaction-diffusion", 1, grid=(5, 5), seed=0), iterations=0)
    with pytest.raises(InvalidInputError, match="Unknown kinetic"):
        state_space_posterior(tasks, parameters={"decay": 1.0}, iterations=0)

