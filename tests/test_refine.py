"""Refining per task: the warm-started per-task LFM improves a weak amortised answer, on any ODE, and says where it cannot."""

import warnings

import numpy as np
import pytest
import torch

from dklfm_explore import load_pretrained, simulate
from dklfm_explore.errors import InvalidInputError
from dklfm_explore.model import ModelConfig
from dklfm_explore.systems import ODESystem, ParameterSpec, SYSTEMS, register_system
from dklfm_explore.train import TrainingConfig, train

SMALL_MODEL = ModelConfig(embedding_dim=4, fno_width=8, fno_modes=4, mlp_width=16, feature_dim=4)


def _quiet_infer(model, tasks, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.infer(tasks, **kwargs)


def _mse(latent_mean, tasks) -> float:
    """Latent MSE of ``latent_mean (task, time)`` in units of the tasks' latent std."""
    truth = tasks.dataset["f"]
    return float((((latent_mean - truth) / float(truth.std())) ** 2).mean())


@pytest.fixture(scope="module")
def transcription():
    model = load_pretrained("transcription", device="cpu")
    tasks = simulate("transcription", 3, n_points=30, seed=1)
    return model, tasks, _quiet_infer(model, tasks, refine=True)


@pytest.fixture(scope="module")
def weak_start():
    """A small model trained for seconds, whose first answer is far from what a per-task fit reaches."""
    model = train(simulate("transcription", 64, n_points=30, seed=0), TrainingConfig(epochs=4, batch_size=16, seed=0), SMALL_MODEL)
    tasks = simulate("transcription", 3, n_points=30, seed=1)
    return tasks, _quiet_infer(model, tasks, refine=True)


def test_refining_improves_a_weak_first_answer(weak_start):
    tasks, refined = weak_start
    first, after = _mse(refined["amortised_latent_mean"], tasks), _mse(refined["latent_mean"], tasks)
    # Measured 0.178 -> 0.013 on these 3 tasks; asking for half the first answer's error leaves a wide margin yet
    # fails a fit that stayed at, or drifted away from, its warm start.  The bundled model's first answer is
    # already at the per-task LFM's level (0.090 against 0.109 on the benchmark's 20 tasks, refined 0.099:
    # docs/beyond.md), so it cannot show what refining adds.
    assert after <= 0.5 * first
    assert refined.attrs["refined"] == 1 and refined.attrs["first_answer_ms_per_task"] > 0


def test_refined_result_keeps_the_first_answer_and_its_format(transcription):
    model, tasks, refined = transcription
    first = _quiet_infer(model, tasks)
    np.testing.assert_allclose(refined["amortised_latent_mean"].values, first["latent_mean"].values, rtol=1e-12)
    assert refined["latent_mean"].dims == ("task", "time") and refined["output_mean"].dims == ("task", "output", "time")
    assert (refined["latent_std"].values > 0).all() and np.isfinite(refined["output_mean"].values).all()
    assert refined.attrs["infer_ms_per_task"] == pytest.approx(refined.attrs["first_answer_ms_per_task"] + refined.attrs["refine_ms_per_task"])


def test_data_in_other_units_is_refined_in_the_training_units_and_answered_in_its_own(transcription):
    """A microarray's thousands: with ``output_scaling="self"`` the fit runs on the outputs mapped onto the
    training scale, so scaling a task's outputs by 500 and shifting them by 1000 scales the refined outputs the
    same way and leaves the refined force as it was (before, the fit ran on the raw thousands and came back flat)."""
    from dklfm_explore import TaskSet

    model, tasks, _ = transcription
    one = tasks.isel([0])
    scaled = TaskSet(one.dataset.assign(y=one.dataset["y"] * 500.0 + 1000.0))
    plain = _quiet_infer(model, one, refine=True, output_scaling="self")
    big = _quiet_infer(model, scaled, refine=True, output_scaling="self")
    # Same fit on the same mapped numbers; the tolerance covers rounding through the affine maps and the solver.
    np.testing.assert_allclose(big["latent_mean"].values, plain["latent_mean"].values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(big["output_mean"].values, plain["output_mean"].values * 500.0 + 1000.0, rtol=1e-5)
    np.testing.assert_allclose(big["output_std"].values, plain["output_std"].values * 500.0, rtol=1e-5)
    # and the refined outputs follow the data: within 10% of the outputs' spread (10% observation noise)
    error = np.abs(big["output_mean"].values - scaled.dataset["y_clean"].values * 500.0 - 1000.0).mean()
    assert error < 0.1 * float(scaled.dataset["y"].std())


def test_zero_iterations_reproduce_the_warm_start(transcription):
    """The warm start maps the amortised latent mean exactly onto the per-task LFM's force at its inducing points."""
    from dklfm_explore.refine import refine

    model, tasks, _ = transcription
    first = _quiet_infer(model, tasks)
    start = refine(model, tasks, first, iterations=0, gauss_newton_steps=0, n_samples=4)
    # Equal at the inducing points; between them the per-task force is the GP interpolant of those values, the
    # amortised mean the DKLFM's own curve: measured 0.0056 apart at most, 1% of the latent's std; 2% is the bound.
    gap = np.abs(start["latent_mean"].values - first["latent_mean"].values).max()
    assert gap <= 0.02 * float(tasks.dataset["f"].std())


class _Decay(ODESystem):
    name = "test-refine-decay"
    output_names = ("x", "y")
    parameters = (ParameterSpec("rate", "k", 0.5, 1.5, "1/h", "decay rate", per_output=True),)
    time_range = (0.0, 10.0)
    default_points = 25

    def rhs(self, t, state, force, parameters):
        return torch.nn.functional.softplus(force)[:, None] - parameters["rate"] * state


def test_refine_works_on_a_user_defined_ode():
    register_system(_Decay)
    try:
        tasks = simulate("test-refine-decay", 64, seed=0)
        model = train(tasks, TrainingConfig(epochs=6, batch_size=16, seed=0), SMALL_MODEL)
        test = simulate("test-refine-decay", 3, seed=1)
        refined = _quiet_infer(model, test, refine=True)
    finally:
        SYSTEMS.pop("test-refine-decay")
    assert refined["latent_mean"].shape == (3, test.dataset["time"].size)
    assert "fitted_rate" in refined and refined["fitted_rate"].dims == ("task", "output")
    rates = refined["fitted_rate"].values
    assert ((rates >= 0.5) & (rates <= 1.5)).all()
    clean = test.dataset["y_clean"]
    output_error = float((((refined["output_mean"] - clean) / clean.std()) ** 2).mean())
    # Measured 0.005: the fit follows the noise-free outputs to within the noise (std 0.1 of the output's, so
    # variance 0.01); 0.05 leaves room for other BLAS, and a fit that failed to move the outputs scores ~1.
    assert output_error < 0.05


def test_reaction_diffusion_says_why_it_cannot_be_refined():
    tasks = simulate("reaction-diffusion", 8, grid=(9, 9), seed=0)
    model = train(tasks, TrainingConfig(epochs=1, batch_size=8, seed=0), SMALL_MODEL)
    with pytest.raises(InvalidInputError, match=r"^Refining does not apply to 'reaction-diffusion': .*space x time PDE.*\.$"):
        model.infer(tasks, refine=True)


def test_cli_refine_writes_the_refined_result_and_both_times(tmp_path, capsys):
    import xarray as xr

    from dklfm_explore.cli import main
    from dklfm_explore.datasets import pretrained_path

    measurements = tmp_path / "tasks.nc"
    simulate("transcription", 2, n_points=30, seed=1).save(measurements)
    assert main(["infer", str(pretrained_path("transcription")), str(measurements), "--out", str(tmp_path / "r.nc"), "--refine"]) == 0
    assert "first answer" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "r.nc") as result:
        assert result.attrs["refined"] == 1 and "amortised_latent_mean" in result
