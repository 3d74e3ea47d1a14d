"""Where to measure next: the rank-P update against brute-force conditioning, gaps, greedy plans, bad input."""

import numpy as np
import pytest
import torch

from dklfm_explore import simulate
from dklfm_explore.data import Normaliser, TaskSet
from dklfm_explore.design import measurement_gains, next_measurements
from dklfm_explore.errors import InvalidInputError
from dklfm_explore.model import ModelConfig
from dklfm_explore.model.dklfm import DKLFM
from dklfm_explore.train import TrainingConfig
from dklfm_explore.trained import TrainedModel


def _model(tasks: TaskSet, **config) -> TrainedModel:
    """An untrained DKLFM without embedding: the variance algebra does not need a trained one."""
    torch.manual_seed(0)
    model_config = ModelConfig(n_outputs=tasks.n_outputs, input_dim=1, use_embedding=False, mlp_width=16, feature_dim=4, **config)
    module = DKLFM(model_config)
    module.set_lengthscale(0.5)
    window = (float(tasks.time[0]), float(tasks.time[-1]))
    return TrainedModel(module, Normaliser.fit(tasks), tasks.system_name, tasks.output_names, TrainingConfig(),
                        model_config, [], window, latent_std_scale=1.3)


def _with_missing(tasks: TaskSet, missing) -> TaskSet:
    dataset = tasks.dataset.copy(deep=True)
    y = dataset["y"].values
    y[:, :, missing] = np.nan
    dataset["y"] = (dataset["y"].dims, y)
    return TaskSet(dataset)


@pytest.fixture(scope="module")
def series():
    return simulate("transcription", 1, n_points=16, seed=3)


def _mean_latent_variance(model: TrainedModel, tasks: TaskSet) -> float:
    """Brute force: condition from scratch on every observed point (NaN = not) with the model's own posterior."""
    time = model.normaliser.transform_time(tasks.time)
    y = (tasks.y() - torch.tensor(model.normaliser.y_mean)[:, None]) / torch.tensor(model.normaliser.y_std)[:, None]
    with torch.no_grad():
        variance = model.module.posterior((time,), y, include_noise=False).latent_var
    return float(variance.mean()) * model.normaliser.f_std**2 * model.latent_std_scale**2


def test_gains_equal_brute_force_recomputation(series):
    missing = [2, 5, 6, 11]
    tasks = _with_missing(series, missing)
    model = _model(tasks)
    before = _mean_latent_variance(model, tasks)
    gains = measurement_gains(model, tasks, tasks.time.numpy()[missing], time_mapping="none", output_scaling="training")
    for gain, index in zip(gains, missing):
        observed = _with_missing(series, [m for m in missing if m != index])
        assert float(gain) == pytest.approx(before - _mean_latent_variance(model, observed), rel=1e-6, abs=1e-12)
    assert float(gains.min()) > 0


def test_conditioning_on_chosen_points_equals_measuring_them(series):
    missing = [3, 4, 9, 10, 13]
    tasks = _with_missing(series, missing)
    model = _model(tasks)
    candidates = tasks.time.numpy()[missing]
    gains = measurement_gains(model, tasks, candidates, chosen=[0], time_mapping="none", output_scaling="training")
    measured = _with_missing(series, missing[1:])
    direct = measurement_gains(model, measured, candidates[1:], time_mapping="none", output_scaling="training")
    torch.testing.assert_close(gains[1:], direct, rtol=1e-6, atol=1e-12)


def test_first_suggestion_falls_in_a_long_gap(series):
    gap = list(range(5, 11))
    tasks = _with_missing(series, gap)
    model = _model(tasks)
    plan = next_measurements(model, tasks, 1, time_mapping="none", output_scaling="training")
    time = tasks.time.numpy()
    assert time[gap[0] - 1] < plan["time"].iloc[0] < time[gap[-1] + 1]


def test_greedy_plan_never_repeats_a_point_and_shrinks_the_variance(series):
    model = _model(series)
    candidates = np.linspace(float(series.time[0]), float(series.time[-1]), 8)
    plan = next_measurements(model, series, 8, candidates, time_mapping="none", output_scaling="training")
    assert len(set(plan["time"])) == 8
    assert (np.diff(plan["remaining_variance"]) < 0).all()
    assert (plan["variance_reduction"] > 0).all()


def test_bad_input_is_refused(series):
    model = _model(series)
    with pytest.raises(InvalidInputError, match="--next"):
        next_measurements(model, series, 0)
    with pytest.raises(InvalidInputError, match="between 1 and the number of candidates"):
        next_measurements(model, series, 3, [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="finite"):
        measurement_gains(model, series, [1.0, float("nan")])
    with pytest.raises(InvalidInputError, match="out of range"):
        measurement_gains(model, series, [1.0], task=4)
