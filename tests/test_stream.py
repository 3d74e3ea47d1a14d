"""Streamed inference: a netCDF task set read, conditioned and written a chunk of tasks at a time."""

import warnings

import numpy as np
import pytest
import xarray as xr

from dklfm_explore import simulate
from dklfm_explore.cli import main
from dklfm_explore.config import TrainingConfig
from dklfm_explore.errors import InvalidInputError, OutOfDistributionWarning
from dklfm_explore.io import load_measurements, write_result
from dklfm_explore.model.dklfm import ModelConfig
from dklfm_explore.spec import SimulationSpec
from dklfm_explore.standardise import pooled_stats
from dklfm_explore.stream import TaskChunks, infer_chunks
from dklfm_explore.train import train

CHUNK = 7
"""Tasks per chunk: 50 tasks make 7 full chunks and a short one."""
N_TASKS = 50
SMALL = ModelConfig(embedding_dim=8, fno_width=8, fno_modes=4, fno_layers=1, mlp_width=16, mlp_depth=1, feature_dim=8)
OUTPUT_TOLERANCE = 1e-5
"""Relative to the outputs' spread: the feature network is float32, and a chunk of 7 tasks is conditioned in other
batches than 50 at once (measured 1e-6)."""


@pytest.fixture(scope="module")
def model():
    """A model with an out-of-distribution reference (60 validation tasks), trained for two steps: enough to infer."""
    config = TrainingConfig(max_steps=2, validation_tasks=60, epoch_tasks=32, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(SimulationSpec("transcription", n_points=10), config, model_config=SMALL)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A simulated task set (scaled by the training statistics) and the same tasks as measurements (scaled by their own)."""
    folder = tmp_path_factory.mktemp("stream")
    simulated = simulate("transcription", N_TASKS, n_points=10, seed=5, out=folder / "simulated.nc")
    measured = simulated.dataset.load().drop_vars("y_clean")
    measured.attrs.pop("system")
    measured["y"][3, 1, 4] = np.nan
    measured.to_netcdf(folder / "measured.nc", engine="h5netcdf")
    return {"training": folder / "simulated.nc", "self": folder / "measured.nc"}


def _quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


@pytest.mark.parametrize("scaling", ["training", "self"])
def test_streamed_result_is_the_whole_file_result(model, files, scaling, tmp_path):
    query = np.linspace(0, 12, 30)
    chunks = TaskChunks(files[scaling], expected_outputs=model.output_names, chunk_tasks=CHUNK)
    assert chunks.n_chunks == 8
    summary = _quietly(infer_chunks, model, chunks, tmp_path / "streamed.nc", time=query)
    whole = _quietly(model.infer, load_measurements(files[scaling], expected_outputs=model.output_names), time=query)
    write_result(whole, tmp_path / "whole.nc")
    streamed = xr.open_dataset(tmp_path / "streamed.nc", engine="h5netcdf").load()
    expected = xr.open_dataset(tmp_path / "whole.nc", engine="h5netcdf").load()
    assert streamed.attrs["output_scaling"] == scaling and summary.n_tasks == N_TASKS and summary.n_time == 30
    assert list(streamed.data_vars) == list(expected.data_vars) and set(streamed.attrs) == set(expected.attrs)
    assert streamed["out_of_distribution"].dtype == bool
    np.testing.assert_array_equal(streamed["task"].values, expected["task"].values)
    np.testing.assert_array_equal(streamed["out_of_distribution"].values, expected["out_of_distribution"].values)
    spread = float(expected["output_mean"].std())
    for name in ("latent_mean", "latent_std", "output_mean", "output_std", "ood_score"):
        assert abs(streamed[name] - expected[name]).max() < OUTPUT_TOLERANCE * spread, name


def test_pooled_statistics_of_the_chunks_are_those_of_the_whole_file(files):
    chunks = TaskChunks(files["self"], chunk_tasks=CHUNK)
    mean, std = chunks.pooled_output_stats()
    expected_mean, expected_std, _ = pooled_stats(load_measurements(files["self"]).y())
    np.testing.assert_allclose(mean.numpy(), expected_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(std.numpy(), expected_std.numpy(), rtol=1e-12)


def test_out_of_distribution_tasks_of_the_file_are_counted_in_one_warning(model, files, tmp_path):
    chunks = TaskChunks(files["training"], expected_outputs=model.output_names, chunk_tasks=CHUNK)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = infer_chunks(model, chunks, tmp_path / "r.nc")
    flagged = [w for w in caught if issubclass(w.category, OutOfDistributionWarning)]
    result = xr.open_dataset(tmp_path / "r.nc", engine="h5netcdf")
    assert summary.n_flagged == int(result["out_of_distribution"].sum())
    assert len(flagged) == (1 if summary.n_flagged else 0)
    assert len(caught) == len({(w.category, str(w.message)) for w in caught})


def test_an_interrupted_inference_leaves_no_file(model, files, tmp_path):
    out = tmp_path / "result.nc"
    out.write_bytes(b"the previous result")
    chunks = TaskChunks(files["training"], expected_outputs=model.output_names, chunk_tasks=CHUNK)

    def interrupt(done, total):
        if done >= 3 * CHUNK:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _quietly(infer_chunks, model, chunks, out, progress=interrupt)
    assert out.read_bytes() == b"the previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nc"]


def test_a_bad_task_in_a_later_chunk_is_named_and_nothing_is_written(model, files, tmp_path):
    bad = xr.open_dataset(files["self"], engine="h5netcdf").load()
    bad["y"][40] = np.nan
    bad.to_netcdf(tmp_path / "bad.nc", engine="h5netcdf")
    chunks = TaskChunks(tmp_path / "bad.nc", expected_outputs=model.output_names, chunk_tasks=CHUNK)
    with pytest.raises(InvalidInputError, match="Task '40' of bad.nc has 0 measured point"):
        _quietly(infer_chunks, model, chunks, tmp_path / "r.nc")
    assert not (tmp_path / "r.nc").exists()


def test_dklfm_infer_streams_a_netcdf_task_set(model, files, tmp_path, capsys):
    model.save(tmp_path / "model.pt")
    out = tmp_path / "result.nc"
    assert _quietly(main, ["infer", str(tmp_path / "model.pt"), str(files["training"]), "--out", str(out), "--points", "25"]) == 0
    assert f"latent force of {N_TASKS} task(s) on 25 time point(s)" in capsys.readouterr().out
    result = xr.open_dataset(out, engine="h5netcdf")
    assert result.sizes == {"task": N_TASKS, "output": 5, "time": 25}
    assert np.isfinite(result["latent_mean"].values).all()
