"""Systems against independent closed forms, and the shared interface suite over every registered system."""

import math

import numpy as np
import pytest
import torch

from dklfm_explore import simulate
from dklfm_explore.errors import UnknownNameError
from dklfm_explore.systems import (
    SYSTEMS,
    ForcePrior,
    ODESystem,
    ParameterSpec,
    System,
    get_system,
    register_system,
    sample_force,
    space_time_mesh,
    time_mesh,
)
from dklfm_explore.systems.forces import periodic_covariance, rbf_covariance

LINEAR = get_system("transcription-linear")


def _params(**values):
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}


def _integrate(system, force, time, parameters, n_outputs):
    like = torch.zeros((), dtype=torch.float64)
    n_tasks = next(iter(parameters.values())).shape[0]
    return system.integrate(force, time, parameters, n_tasks, n_outputs, like)


def test_linear_transcription_constant_force_matches_closed_form():
    b, s, d, c = 0.2, 0.9, 0.4, 1.3
    p = _params(basal_rate=[[b]], sensitivity=[[s]], decay_rate=[[d]])
    time = torch.linspace(0, 12, 241, dtype=torch.float64)
    y = _integrate(LINEAR, lambda t: torch.full((1,), c, dtype=torch.float64), time, p, 1)[0, 0]
    exact = b / d + s * c / d * (1 - torch.exp(-d * time))
    # RK4 at h = 0.05 on a decay rate 0.4: local error ~ (h d)^5 / 120, far below 1e-9.
    assert torch.allclose(y, exact, atol=1e-9)


def test_linear_transcription_sinusoidal_force_matches_closed_form():
    b, s, d, w = 0.1, 1.1, 0.3, 1.7
    p = _params(basal_rate=[[b]], sensitivity=[[s]], decay_rate=[[d]])
    time = torch.linspace(0, 12, 481, dtype=torch.float64)
    y = _integrate(LINEAR, lambda t: torch.sin(w * t).reshape(1), time, p, 1)[0, 0]
    exact = b / d + s * (d * torch.sin(w * time) - w * torch.cos(w * time) + w * torch.exp(-d * time)) / (d**2 + w**2)
    assert torch.allclose(y, exact, atol=1e-7)


def test_rk4_converges_at_fourth_order():
    b, s, d, w = 0.1, 1.1, 0.3, 2.5
    p = _params(basal_rate=[[b]], sensitivity=[[s]], decay_rate=[[d]])

    def error(n_steps):
        time = torch.linspace(0, 6, n_steps + 1, dtype=torch.float64)
        y = _integrate(LINEAR, lambda t: torch.sin(w * t).reshape(1), time, p, 1)[0, 0, -1]
        t = time[-1]
        exact = b / d + s * (d * math.sin(w * t) - w * math.cos(w * t) + w * math.exp(-d * t)) / (d**2 + w**2)
        return abs(float(y) - exact)

    errors = [error(n) for n in (20, 40, 80)]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(3.7 < order < 4.3 for order in orders), orders


def test_lotka_volterra_constant_predator_is_exponential():
    system = get_system("lotka-volterra")
    a, beta, u0, c = 0.8, 1.2, 1.1, 0.5
    p = _params(growth_rate=[a], predation_rate=[beta], initial_prey=[u0])
    time = torch.linspace(0, 5, 501, dtype=torch.float64)
    u = _integrate(system, lambda t: torch.full((1,), c, dtype=torch.float64), time, p, 1)[0, 0]
    assert torch.allclose(u, u0 * torch.exp((a - beta * c) * time), rtol=1e-9)


def test_lotka_volterra_prey_is_periodic():
    tasks = simulate("lotka-volterra", 8, seed=3, noise_level=0.0, t_range=(0, 30), n_points=301)
    period = tasks.dataset["force_period"].values
    y = tasks.dataset["y_clean"].values[:, 0]
    time = tasks.dataset["time"].values
    for k in range(8):
        later = int(round(period[k] / (time[1] - time[0])))
        # a whole period later the prey is back where it was (up to the one-period average's quadrature)
        assert abs(y[k, later] - y[k, 0]) < 0.02 * y[k].max()


@pytest.mark.parametrize("method", ["solve", "solve_method_of_lines"])
def test_reaction_diffusion_sine_profile_decays_exactly(method):
    system = get_system("reaction-diffusion")
    k, lam, diff = 2, 0.3, 0.05
    mesh = space_time_mesh(torch.linspace(0, 1, 21, dtype=torch.float64), torch.linspace(0, 1, 11, dtype=torch.float64), space_refine=4)
    force = torch.zeros(1, mesh.force_space.numel(), mesh.force_time.numel(), dtype=torch.float64)
    initial = torch.sin(k * math.pi * mesh.force_space)[None]
    p = _params(sensitivity=[0.5], decay_rate=[lam], diffusion=[diff])
    y = getattr(system, method)(mesh, force, p, initial=initial)[0, 0]
    exact = torch.sin(k * math.pi * mesh.space)[:, None] * torch.exp(-(lam + diff * (k * math.pi) ** 2) * mesh.time)[None]
    # the sine series is exact; finite differences carry an O(dx^2) error in the eigenvalue (dx = 1/80)
    tolerance = 1e-10 if method == "solve" else 2e-3
    assert torch.allclose(y, exact, atol=tolerance)


def test_reaction_diffusion_solvers_agree_on_random_forces(generator):
    system = get_system("reaction-diffusion")
    mesh = space_time_mesh(torch.linspace(0, 1, 11), torch.linspace(0, 1, 11), space_refine=8, time_refine=4)
    prior = system.force_prior
    draw, _ = sample_force(prior, mesh, 3, generator)
    p = system.sample_parameters(3, generator=generator)
    series = system.solve(mesh, draw, p)
    lines = system.solve_method_of_lines(mesh, draw, p)
    scale = series.abs().max()
    # both converge to the same solution; the gap is the finite-difference and boundary-layer error
    assert float((series - lines).abs().max() / scale) < 0.02


def test_rbf_prior_samples_have_the_prescribed_covariance(generator):
    prior = ForcePrior(kernel="rbf", lengthscale=(0.7, 0.7), variance=2.0)
    mesh = time_mesh(torch.linspace(0, 3, 7), max_step=10.0)
    draws, _ = sample_force(prior, mesh, 20000, generator)
    values = draws[:, mesh.time_index]
    empirical = torch.cov(values.T)
    analytic = rbf_covariance(mesh.time, mesh.time, torch.tensor([0.7], dtype=torch.float64), 2.0)[0]
    # standard error of a covariance estimate is about var * sqrt(2 / n) = 2 * 0.01
    assert torch.allclose(empirical, analytic, atol=0.06)


def test_periodic_prior_samples_have_the_prescribed_covariance(generator):
    prior = ForcePrior(kernel="periodic", lengthscale=(1.0, 1.0), period=(2.0, 2.0), variance=1.0)
    mesh = time_mesh(torch.linspace(0, 4, 9), max_step=10.0)
    draws, _ = sample_force(prior, mesh, 20000, generator)
    values = draws[:, mesh.time_index]
    one = torch.tensor([1.0], dtype=torch.float64)
    analytic = periodic_covariance(mesh.time, mesh.time, one, 2 * one, 1.0)[0]
    assert torch.allclose(torch.cov(values.T), analytic, atol=0.04)
    assert torch.allclose(values[:, 0], values[:, 4], atol=1e-2)  # t = 0 and t = 2, one period apart


def test_space_time_prior_is_separable(generator):
    system = get_system("reaction-diffusion")
    prior = system.force_prior.with_(lengthscale=(0.3, 0.3), space_lengthscale=(0.2, 0.2))
    mesh = space_time_mesh(torch.linspace(0, 1, 3), torch.linspace(0, 1, 3))
    draws, _ = sample_force(prior, mesh, 20000, generator)
    values = draws[:, mesh.space_index][..., mesh.time_index]
    pair = torch.stack([values[:, 0, 0], values[:, 1, 1]])
    expected = math.exp(-0.5 * (0.5 / 0.2) ** 2) * math.exp(-0.5 * (0.5 / 0.3) ** 2)
    assert abs(float(torch.cov(pair)[0, 1]) - expected) < 0.03


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_every_system_simulates_with_named_shapes(name, device):
    system = get_system(name)
    tasks = simulate(name, 6, seed=0, n_points=9, grid=(7, 9) if system.is_spatial else None, device=device)
    mesh = (7, 9) if system.is_spatial else (9,)
    n_out = len(system.output_names)
    assert tasks.dataset["y"].shape == (6, n_out, *mesh)
    assert tasks.dataset["f"].shape == (6, *mesh)
    assert tasks.dataset["y"].dims[:2] == ("task", "output")
    assert bool(tasks.dataset["y"].notnull().all())
    for spec in system.parameters:
        values = tasks.dataset[spec.name].values
        low, high = spec.bounds(n_out)
        assert (values >= low.numpy() - 1e-12).all() and (values <= high.numpy() + 1e-12).all()


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_simulation_is_reproducible_and_noise_is_as_requested(name):
    system = get_system(name)
    kwargs = dict(seed=5, noise_level=0.2, grid=(9, 9) if system.is_spatial else None, n_points=None if system.is_spatial else 15)
    first, second = simulate(name, 40, **kwargs), simulate(name, 40, **kwargs)
    assert (first.dataset["y"].values == second.dataset["y"].values).all()
    noise = first.dataset["y"] - first.dataset["y_clean"]
    reduce = [d for d in noise.dims if d != "output"]
    ratio = noise.std(reduce) / first.dataset["y_clean"].std(reduce)
    assert ((ratio > 0.17) & (ratio < 0.23)).all(), ratio.values
    clean_spread = first.dataset["y_clean"].std(reduce)
    assert np.allclose(first.dataset["noise_std"].values, 0.2 * clean_spread.values, rtol=0.02)


def test_user_registered_system_runs_through_simulation():
    @register_system
    class DampedOscillator(ODESystem):
        name = "test-damped-oscillator"
        title = "Damped oscillator"
        parameters = (
            ParameterSpec("stiffness", "k", 1.0, 2.0, "1/s^2", "spring stiffness"),
            ParameterSpec("damping", "c", 0.1, 0.5, "1/s", "damping"),
        )
        state_names = ("position", "velocity")
        output_names = ("position",)
        time_range = (0.0, 10.0)

        def rhs(self, t, state, force, p):
            x, v = state[:, 0], state[:, 1]
            return torch.stack([v, force - p["stiffness"] * x - p["damping"] * v], dim=1)

    try:
        tasks = simulate("test-damped-oscillator", 4, n_points=21, seed=0)
        assert tasks.dataset["y"].shape == (4, 1, 21)
        assert tasks.output_names == ["position"]
        assert float(abs(tasks.dataset["y_clean"]).max()) > 0
    finally:
        SYSTEMS.pop("test-damped-oscillator")


def test_unknown_system_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match="transcription"):
        simulate("no-such-system", 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_tasks=0), "at least 1"),
        (dict(n_tasks=3, n_points=2), "at least 3"),
        (dict(n_tasks=3, grid=(5, 5)), "--points"),
        (dict(n_tasks=3, noise_level=-1), "noise_level"),
        (dict(n_tasks=3, parameter_ranges={"nope": (0, 1)}), "nope"),
        (dict(n_tasks=3, parameter_ranges={"decay_rate": (0.5, 0.1)}), "low"),
    ],
)
def test_bad_simulation_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate("transcription", **kwargs)


def test_more_genes_than_the_published_five_cycle_the_kinetics():
    tasks = simulate("transcription", 3, n_outputs=7, n_points=10)
    assert tasks.output_names[:5] == ["DDB2", "BIK", "DR5", "p21", "SESN1"]
    assert tasks.dataset["y"].shape == (3, 7, 10)


def test_simulation_runs_in_float32_close_to_float64():
    a = simulate("transcription", 4, n_points=12, seed=2, noise_level=0.0)
    b = simulate("transcription", 4, n_points=12, seed=2, noise_level=0.0, dtype=torch.float32)
    assert abs(a.dataset["y"] - b.dataset["y"]).max() < 1e-4


def test_a_force_kernel_nobody_implements_is_an_error_not_an_rbf():
    from dklfm_explore.systems.forces import prior_covariance

    prior = ForcePrior(lengthscale=(1.0, 2.0))
    object.__setattr__(prior, "kernel", "matern")  # as a third ForcePrior.KERNELS entry would reach it
    times = torch.linspace(0, 1, 4, dtype=torch.float64)
    with pytest.raises(UnknownNameError, match="matern"):
        prior_covariance(prior, times, times, {"force_lengthscale": torch.ones(2, dtype=torch.float64)})


def test_each_system_links_a_gp_value_to_its_force():
    value = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    assert torch.equal(get_system("lotka-volterra").link(value), torch.exp(value))
    assert torch.equal(get_system("transcription").link(value), torch.nn.functional.softplus(value))
    assert torch.equal(get_system("transcription-linear").link(value), value)
    assert type(get_system("reaction-diffusion")).link is System.link


def test_periodic_series_coefficients_are_the_scaled_bessel_functions():
    from dklfm_explore.systems.forces import _scaled_bessel_series

    z = torch.tensor([0.5, 1.56, 10.0, 100.0], dtype=torch.float64)
    coefficients = _scaled_bessel_series(z, 300)
    # k(0) = v: the series' coefficients sum to 1; the first two are i0e and 2 i1e in closed form
    assert torch.allclose(coefficients.sum(1), torch.ones_like(z), atol=1e-12)
    assert torch.allclose(coefficients[:, 0], torch.special.i0e(z), rtol=1e-10)
    assert torch.allclose(coefficients[:, 1], 2 * torch.special.i1e(z), rtol=1e-10)
