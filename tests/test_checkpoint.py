import warnings

import numpy as np
import pytest
import torch

from dklfm_explore import TaskSet, simulate
from dklfm_explore.errors import CheckpointError, ExtrapolationWarning, InvalidInputError
from dklfm_explore.model import ModelConfig
from dklfm_explore.train import TrainingConfig, train
from dklfm_explore.trained import CHECKPOINT_FORMAT_VERSION, load_model

SMALL_MODEL = ModelConfig(embedding_dim=4, fno_width=8, fno_modes=4, mlp_width=16, feature_dim=4)


@pytest.fixture(scope="module")
def trained():
    tasks = simulate("transcription", 40, n_points=20, seed=0)
    train_tasks, test_tasks = tasks.split(8, seed=1)
    return train(train_tasks, TrainingConfig(epochs=2, batch_size=16), SMALL_MODEL), test_tasks


def test_round_trip_gives_bit_identical_predictions(trained, tmp_path):
    model, test_tasks = trained
    before = model.infer(test_tasks)
    loaded = load_model(model.save(tmp_path / "model.pt"), device="cpu")
    after = loaded.infer(test_tasks)
    for name in ("latent_mean", "latent_std", "output_mean", "output_std"):
        assert np.array_equal(before[name].values, after[name].values)
    assert loaded.normaliser == model.normaliser and loaded.model_config == model.model_config
    assert loaded.config == model.config and loaded.history == model.history
    assert loaded.system_name == "transcription" and loaded.output_names == model.output_names


def test_corrupted_checkpoint_is_a_checkpoint_error(trained, tmp_path):
    model, _ = trained
    path = model.save(tmp_path / "model.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable DKLFM checkpoint"):
        load_model(path)
    with pytest.raises(CheckpointError, match="No checkpoint file"):
        load_model(tmp_path / "missing.pt")


def _rewrite(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_other_format_version_missing_keys_and_mismatched_weights(trained, tmp_path):
    model, _ = trained
    path = model.save(tmp_path / "model.pt")
    _rewrite(path, lambda p: p.update(format_version=CHECKPOINT_FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=f"format version {CHECKPOINT_FORMAT_VERSION + 1}"):
        load_model(path)
    path = model.save(tmp_path / "model.pt")
    _rewrite(path, lambda p: p.pop("normaliser"))
    with pytest.raises(CheckpointError, match="missing checkpoint key.*normaliser"):
        load_model(path)
    path = model.save(tmp_path / "model.pt")
    _rewrite(path, lambda p: p["model_config"].update(mlp_width=32))
    with pytest.raises(CheckpointError, match="do not fit its model configuration"):
        load_model(path)


def test_infer_shapes_units_and_super_resolution(trained):
    model, test_tasks = trained
    result = model.infer(test_tasks)
    assert result["latent_mean"].dims == ("task", "time") and result["output_std"].dims == ("task", "output", "time")
    assert result.sizes == {"task": 8, "output": 5, "time": 20}
    np.testing.assert_array_equal(result["time"].values, test_tasks.dataset["time"].values)
    dense = np.linspace(float(test_tasks.time[0]), float(test_tasks.time[-1]), 77)
    fine = model.infer(test_tasks, time=dense)
    assert fine.sizes["time"] == 77 and np.isfinite(fine["latent_std"].values).all()
    # the query mesh does not change what the GP conditions on: shared points predict the same
    np.testing.assert_allclose(fine["latent_mean"].values[:, 0], result["latent_mean"].values[:, 0], atol=1e-10)
    assert result.attrs["infer_ms_per_task"] > 0 and result.attrs["device"] == "cpu"
    assert (result["latent_std"].values > 0).all()


def test_time_mapping_returns_results_on_the_users_axis(trained):
    model, test_tasks = trained
    shifted = TaskSet(test_tasks.dataset.assign_coords(time=test_tasks.dataset["time"].values + 100.0))
    as_is = model.infer(test_tasks, time_mapping="shift")
    moved = model.infer(shifted, time_mapping="shift")
    np.testing.assert_array_equal(moved["time"].values, shifted.dataset["time"].values)
    np.testing.assert_allclose(moved["latent_mean"].values, as_is["latent_mean"].values, atol=1e-9)
    stretched = TaskSet(test_tasks.dataset.assign_coords(time=test_tasks.dataset["time"].values * 60.0))
    scaled = model.infer(stretched, time_mapping="scale")
    np.testing.assert_allclose(scaled["latent_mean"].values, as_is["latent_mean"].values, atol=1e-9)
    with pytest.warns(ExtrapolationWarning):
        model.infer(shifted, time_mapping="none")


def test_self_scaling_makes_inference_invariant_to_output_units(trained):
    model, test_tasks = trained
    data = test_tasks.dataset.drop_vars(["f", "y_clean"])
    data.attrs["system"] = ""
    measured = TaskSet(data)
    rescaled = TaskSet(data.assign(y=data["y"] * 300.0 + 50.0))
    base, big = model.infer(measured), model.infer(rescaled)
    assert base.attrs["output_scaling"] == "self"
    np.testing.assert_allclose(big["latent_mean"].values, base["latent_mean"].values, atol=1e-8)
    np.testing.assert_allclose(big["output_mean"].values, base["output_mean"].values * 300.0 + 50.0, rtol=1e-9)


def test_extrapolation_warns_and_mismatches_raise(trained):
    model, test_tasks = trained
    t0, t1 = model.time_window
    with pytest.warns(ExtrapolationWarning, match="extrapolation"):
        model.infer(test_tasks, time=np.linspace(t0, t1 + 0.5 * (t1 - t0), 30))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        model.infer(test_tasks, time=np.linspace(t0, t1 + 0.05 * (t1 - t0), 30))
    fewer = test_tasks.dataset.isel(output=slice(0, 3))
    with pytest.raises(InvalidInputError, match="3 output.*trained on 5"):
        model.infer(TaskSet(fewer))
    with pytest.raises(InvalidInputError, match="time_mapping"):
        model.infer(test_tasks, time_mapping="stretch")


def test_gappy_measurements_condition_on_observed_points(trained):
    model, test_tasks = trained
    y = test_tasks.dataset["y"].values.copy()
    y[0, 1, 3:7] = np.nan
    y[2, 4, ::2] = np.nan
    result = model.infer(TaskSet(test_tasks.dataset.assign(y=(test_tasks.dataset["y"].dims, y))))
    assert np.isfinite(result["latent_mean"].values).all()


@pytest.mark.slow
def test_reaction_diffusion_trains_on_a_coarse_grid_and_infers_on_a_finer_one():
    tasks = simulate("reaction-diffusion", 24, grid=(9, 9), seed=0)
    train_tasks, test_tasks = tasks.split(4, seed=0)
    model = train(train_tasks, TrainingConfig(epochs=2, batch_size=8), SMALL_MODEL)
    space = np.linspace(float(test_tasks.space[0]), float(test_tasks.space[-1]), 17)
    time = np.linspace(float(test_tasks.time[0]), float(test_tasks.time[-1]), 17)
    result = model.infer(test_tasks, space=space, time=time)
    assert result["latent_mean"].dims == ("task", "space", "time")
    assert result["output_mean"].shape == (4, 1, 17, 17)
    assert np.isfinite(result["latent_std"].values).all()
