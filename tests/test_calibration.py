"""Post-hoc calibration of the latent predictive std and the time-budgeted learning-rate schedule."""

import math

import numpy as np
import pytest
import torch

from dklfm_explore import simulate
from dklfm_explore.errors import InvalidInputError
from dklfm_explore.metrics import COVERAGE_Z, latent_metrics
from dklfm_explore.model import ModelConfig
from dklfm_explore.model.dklfm import RELATIVE_LENGTHSCALE
from dklfm_explore.train import (
    FINAL_LEARNING_RATE_RATIO, TrainingConfig, _progress, _set_learning_rate, latent_std_calibration, prepare, train,
)
from dklfm_explore.trained import TrainedModel, load_model

SMALL_MODEL = ModelConfig(embedding_dim=4, fno_width=8, fno_modes=4, mlp_width=16, feature_dim=4)


@pytest.fixture(scope="module")
def fitted():
    train_tasks, test_tasks = simulate("transcription", 48, n_points=12, seed=0).split(8, seed=1)
    return train(train_tasks, TrainingConfig(epochs=2, batch_size=16), SMALL_MODEL), test_tasks


def _rescaled(model: TrainedModel, factor: float) -> TrainedModel:
    return TrainedModel(model.module, model.normaliser, model.system_name, model.output_names, model.config,
                        model.model_config, model.history, model.time_window, latent_std_scale=factor)


def test_factor_scales_only_the_latent_std(fitted):
    model, test_tasks = fitted
    plain, scaled = _rescaled(model, 1.0).infer(test_tasks), _rescaled(model, 2.5).infer(test_tasks)
    np.testing.assert_allclose(scaled.latent_std.values, 2.5 * plain.latent_std.values, rtol=1e-12)
    for name in ("latent_mean", "output_mean", "output_std"):
        np.testing.assert_array_equal(scaled[name].values, plain[name].values)


def test_coverage_of_scaled_std_matches_a_hand_count(fitted):
    model, test_tasks = fitted
    plain = _rescaled(model, 1.0).infer(test_tasks)
    factor = 1.7
    scaled = _rescaled(model, factor).infer(test_tasks)
    truth = test_tasks.dataset["f"].values
    z = np.abs(plain.latent_mean.values - truth) / plain.latent_std.values
    by_hand = float(np.mean(z <= factor * COVERAGE_Z))
    scale = float(model.normaliser.f_std)
    assert latent_metrics(scaled, test_tasks.dataset["f"], scale)["coverage95"] == pytest.approx(by_hand, abs=1e-12)


def test_calibration_factor_is_the_95_percent_quantile_of_the_standardised_errors(fitted):
    model, test_tasks = fitted
    data = prepare(test_tasks, model.normaliser, torch.device("cpu"))
    factor = latent_std_calibration(model.module, data)
    with torch.no_grad():
        post = model.module.posterior(data.coords, data.y)
    z = ((post.latent_mean - data.f).abs() / post.latent_var.sqrt()).numpy().ravel()
    assert factor == pytest.approx(np.quantile(z, 0.95) / COVERAGE_Z, rel=1e-10)
    calibrated = _rescaled(model, factor).infer(test_tasks)
    coverage = latent_metrics(calibrated, test_tasks.dataset["f"], float(model.normaliser.f_std))["coverage95"]
    assert abs(coverage - 0.95) <= 1 / z.size  # the quantile interpolates between two neighbouring errors


def test_training_stores_the_validation_factor_and_checkpoints_keep_it(fitted, tmp_path):
    model, test_tasks = fitted
    assert model.latent_std_scale > 0 and model.latent_std_scale != 1.0
    loaded = load_model(model.save(tmp_path / "model.pt"), device="cpu")
    assert loaded.latent_std_scale == model.latent_std_scale
    np.testing.assert_array_equal(loaded.infer(test_tasks).latent_std.values, model.infer(test_tasks).latent_std.values)
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload.pop("latent_std_scale")
    payload["format_version"] = 1
    torch.save(payload, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").latent_std_scale == 1.0


def test_calibration_off_or_without_validation_leaves_factor_one(fitted):
    model, _ = fitted
    tasks = simulate("transcription", 16, n_points=12, seed=2)
    assert train(tasks, TrainingConfig(epochs=1, calibrate=False), SMALL_MODEL).latent_std_scale == 1.0
    assert train(tasks, TrainingConfig(epochs=1, validation=0), SMALL_MODEL).latent_std_scale == 1.0
    with pytest.raises(InvalidInputError, match="latent_std_scale must be positive"):
        _rescaled(model, 0.0)


def test_schedule_follows_steps_or_the_time_budget_whichever_ends_first():
    assert _progress(5, 10, elapsed=1.0, max_seconds=None) == 0.5
    assert _progress(5, 10, elapsed=8.0, max_seconds=10.0) == 0.8
    assert _progress(2, 10, elapsed=30.0, max_seconds=10.0) == 1.0
    config = TrainingConfig(learning_rate=0.01)
    optimiser = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    rates = []
    for progress in (0.0, 0.5, 1.0):
        _set_learning_rate(optimiser, config, progress)
        rates.append(optimiser.param_groups[0]["lr"])
    floor = FINAL_LEARNING_RATE_RATIO * 0.01
    assert rates == pytest.approx([0.01, (0.01 + floor) / 2, floor], rel=1e-12)


def test_latent_feature_span_and_relative_initial_lengthscale():
    from dklfm_explore.model import DKLFM

    identity = dict(use_embedding=False, identity_features=True)
    line = torch.linspace(0, 1, 7, dtype=torch.float64)
    assert DKLFM(ModelConfig(n_outputs=1, input_dim=1, **identity)).latent_feature_span(line) == pytest.approx(1.0)
    assert DKLFM(ModelConfig(n_outputs=1, input_dim=2, **identity)).latent_feature_span((line, line)) == pytest.approx(math.sqrt(2))
    tasks = simulate("transcription", 16, n_points=12, seed=2)
    frozen = TrainingConfig(epochs=1, learning_rate=1e-12)
    model = train(tasks, frozen, ModelConfig(relative_lengthscale=0.25, **identity))
    assert model.module.kernel.lengthscale.item() == pytest.approx(0.25, rel=1e-6)  # identity features span the window [0, 1]
    automatic = train(tasks, frozen, ModelConfig(**identity))
    assert automatic.module.kernel.lengthscale.item() == pytest.approx(RELATIVE_LENGTHSCALE[1], rel=1e-6)
    with pytest.raises(InvalidInputError, match="relative_lengthscale"):
        ModelConfig(n_outputs=1, input_dim=1, relative_lengthscale=0.0).validate()


def test_loss_on_a_point_subset_equals_the_loss_with_the_rest_missing():
    from dklfm_explore.model import DKLFM
    from dklfm_explore.train import _subset

    generator = torch.Generator().manual_seed(0)
    time = torch.linspace(0, 1, 9, dtype=torch.float64)
    y = torch.randn(3, 2, 9, generator=generator, dtype=torch.float64)
    f = torch.randn(3, 9, generator=generator, dtype=torch.float64)
    plain = DKLFM(ModelConfig(n_outputs=2, input_dim=1, use_embedding=False, identity_features=True))
    subset = torch.tensor([0, 2, 3, 7])
    missing = torch.ones(9, dtype=torch.bool)
    missing[subset] = False
    expected = plain.loss(time, y.masked_fill(missing, float("nan")), f.masked_fill(missing, float("nan")))
    assert plain.loss(time, y, f, points=subset).item() == pytest.approx(expected.item(), rel=1e-12)
    embedded = DKLFM(ModelConfig(n_outputs=2, input_dim=1, **{k: v for k, v in vars(SMALL_MODEL).items() if v is not None}))
    everything = torch.arange(9)
    assert embedded.loss(time, y, f, points=everything).item() == pytest.approx(embedded.loss(time, y, f).item(), rel=1e-12)
    assert _subset(9, 9, generator, "cpu") is None and _subset(9, None, generator, "cpu") is None
    drawn = _subset(441, 128, generator, "cpu")
    assert drawn.numel() == 128 and drawn.unique().numel() == 128 and int(drawn.max()) < 441
    with pytest.raises(InvalidInputError, match="max_points"):
        TrainingConfig(max_points=1).validate()
