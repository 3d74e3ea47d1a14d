"""Task sets from which nothing can be learned are refused in one sentence; validation figures say what they rest on."""

import numpy as np
import pytest
import torch

from dklfm_explore import simulate
from dklfm_explore.data import Normaliser, TaskSet
from dklfm_explore.errors import InvalidInputError
from dklfm_explore.model import ModelConfig
from dklfm_explore.standardise import Standardised, TimeMap
from dklfm_explore.task_checks import tasks_needed
from dklfm_explore.train import TrainingConfig, train, validate

SMALL_MODEL = ModelConfig(embedding_dim=4, fno_width=8, fno_modes=4, mlp_width=16, feature_dim=4)


@pytest.fixture(scope="module")
def tasks():
    return simulate("transcription", 12, n_points=8, seed=0).load()


def _doctored(tasks, change) -> TaskSet:
    dataset = tasks.dataset.copy(deep=True)
    return TaskSet(change(dataset) or dataset)


def _set(name, index, value):
    def change(dataset):
        dataset[name].values[index] = value
    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("f", ..., np.nan), "latent force `f` of the training tasks has no value"),
        (_set("f", ..., 1.5), "latent force `f` of the training tasks is constant (1.5 everywhere)"),
        (_set("f", (0, 0), np.inf), "contain infinite values in `f`"),
        (_set("y", (0, 0, 0), -np.inf), "contain infinite values in `y`"),
        (_set("y", ..., 3.0), "Output 'DDB2' of the training tasks is constant (3 in every task"),
        (_set("y", (slice(None), 2), 1 + 1e-15 * np.arange(8)), "Output 'DR5' of the training tasks is constant"),
        (_set("y", (slice(None), 1), np.nan), "Output 'BIK' of the training tasks has no value"),
        (_set("y", (3, 4), np.nan), "Output 'SESN1' of task '3' of the training tasks has no observed value"),
        (_set("f", (0, 0), 1e200), "reaches 1e+200, beyond the 1e+150"),
        (lambda d: d.assign_coords(time=d["time"].values[::-1].copy()), "time axis of the training tasks is not strictly increasing"),
    ],
)
def test_an_unusable_task_set_is_refused_in_one_sentence(tasks, change, message):
    with pytest.raises(InvalidInputError) as error:
        train(_doctored(tasks, change), TrainingConfig(epochs=1), SMALL_MODEL)
    assert message in str(error.value)
    assert str(error.value).count(". ") == 0 and "\n" not in str(error.value)


def test_a_validation_split_needs_enough_tasks_and_says_how_many(tasks):
    # round(0.9 * n) validation tasks leave one for training from n = 6 on (round(4.5) = 4 under
    # round-half-even, but round(4.95) = 5 and round(5.4) = 5 leave 0 and 1).
    assert tasks_needed(0.1) == 2 and tasks_needed(0.5) == 2 and tasks_needed(0.9) == 5
    with pytest.raises(InvalidInputError, match="so it needs at least 5 tasks, got 4"):
        train(tasks.isel([0, 1, 2, 3]), TrainingConfig(epochs=1, validation=0.9), SMALL_MODEL)
    with pytest.raises(InvalidInputError, match="needs at least 2 tasks, got 1"):
        train(tasks.isel([0]), TrainingConfig(epochs=1), SMALL_MODEL)


def test_validation_of_an_eight_task_set_says_it_rests_on_one_task(tasks):
    model = train(tasks.isel(list(range(8))), TrainingConfig(epochs=2, seed=0), SMALL_MODEL)
    assert [record["validation_tasks"] for record in model.history] == [1, 1, 1]
    assert model.verdict.n_tasks == 1 and "on 1 validation task;" in model.verdict.message


def test_validation_figures_use_finite_latent_values_only(tasks):
    model = train(tasks, TrainingConfig(epochs=1, seed=0), SMALL_MODEL).module
    normaliser = Normaliser.fit(tasks)
    y = normaliser.transform_y(tasks.y())
    f = normaliser.transform_f(tasks.f())
    coords = (normaliser.transform_time(tasks.time),)
    mean, std = normaliser.y_stats(y)
    full = validate(model, Standardised(coords, y, f, mean, std, TimeMap()))
    holed = f.clone()
    holed[:6] = np.nan
    half = validate(model, Standardised(coords, y, holed, mean, std, TimeMap()))
    assert (full.n_tasks, half.n_tasks) == (12, 6)
    last = validate(model, Standardised(coords, y[6:], f[6:], mean, std, TimeMap()))
    assert half.mse == pytest.approx(last.mse, rel=1e-6)
    empty = validate(model, Standardised(coords, y, torch.full_like(f, np.nan), mean, std, TimeMap()))
    assert empty.n_tasks == 0 and np.isnan(empty.mse)


@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_the_normaliser_is_exact_at_any_scale_and_a_constant_series_scales_by_one(tasks, scale):
    y = tasks.y() * scale
    fitted = Normaliser.fit_tensors(y, tasks.f() * scale, tasks.time)
    per_output = y.transpose(0, 1).reshape(5, -1) / scale
    np.testing.assert_allclose(np.array(fitted.y_std) / scale, per_output.std(-1, correction=0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(fitted.f_std / scale, float((tasks.f()).std(correction=0)), rtol=1e-12)
    constant = Normaliser.fit_tensors(torch.full_like(y, 7.0 * scale), torch.full_like(tasks.f(), scale), tasks.time)
    assert constant.y_std == (1.0,) * 5 and constant.f_std == 1.0
