"""Task sets: netCDF round trips, streamed simulation, splits, re-meshing, normalisation."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from dklfm_explore import Normaliser, TaskSet, open_taskset, simulate
from dklfm_explore.errors import CancelledError, InvalidInputError


@pytest.fixture(scope="module")
def tasks():
    return simulate("transcription", 30, n_points=12, seed=4)


@pytest.fixture(scope="module")
def field():
    return simulate("reaction-diffusion", 6, grid=(41, 41), seed=4)


def test_netcdf_round_trip_is_exact(tasks, tmp_path):
    path = tasks.save(tmp_path / "tasks.nc")
    loaded = open_taskset(path, lazy=False)
    xr.testing.assert_identical(loaded.dataset, tasks.dataset)
    assert loaded.output_names == ["DDB2", "BIK", "DR5", "p21", "SESN1"]


def test_streamed_simulation_equals_in_memory_and_opens_lazily(tmp_path):
    in_memory = simulate("transcription", 50, n_points=10, seed=9, chunk_size=16)
    streamed = simulate("transcription", 50, n_points=10, seed=9, chunk_size=16, out=tmp_path / "big.nc")
    assert streamed.dataset["y"].chunks is not None
    assert np.array_equal(streamed.dataset["y"].values, in_memory.dataset["y"].values)
    assert np.array_equal(streamed.dataset["decay_rate"].values, in_memory.dataset["decay_rate"].values)
    assert streamed.dataset.attrs["system"] == "transcription"
    batch_index, y, f = next(streamed.batches(8, seed=0))
    assert y.shape == (8, 5, 10) and f.shape == (8, 10)
    assert torch.equal(y, in_memory.y(batch_index))


def test_cancelled_simulation_leaves_no_file(tmp_path):
    calls = []
    with pytest.raises(CancelledError):
        simulate("transcription", 40, n_points=8, chunk_size=10, out=tmp_path / "t.nc",
                 progress=lambda done, total: calls.append(done), cancel=lambda: len(calls) >= 2)
    assert calls == [10, 20]
    assert list(tmp_path.iterdir()) == []


def test_open_rejects_missing_and_non_netcdf_files(tmp_path):
    with pytest.raises(InvalidInputError, match="No task set file"):
        open_taskset(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("time,DDB2\n0,1\n")
    with pytest.raises(InvalidInputError, match="not a readable netCDF"):
        open_taskset(bad)


def test_task_set_rejects_wrong_dims():
    with pytest.raises(InvalidInputError, match="needs"):
        TaskSet(xr.Dataset({"y": (("time", "task"), np.zeros((3, 2)))}))


def test_split_is_reproducible_and_disjoint(tasks):
    train, test = tasks.split(0.2, seed=1)
    again_train, again_test = tasks.split(0.2, seed=1)
    assert test.n_tasks == 6 and train.n_tasks == 24
    assert set(train.dataset.task.values).isdisjoint(test.dataset.task.values)
    assert np.array_equal(test.dataset.task.values, again_test.dataset.task.values)
    with pytest.raises(InvalidInputError):
        tasks.split(30)


def test_coarsen_41_to_21_keeps_every_other_point(field):
    coarse = field.coarsen(time=2, space=2)
    assert coarse.dataset["y"].shape == (6, 1, 21, 21)
    assert np.array_equal(coarse.dataset["y"].values, field.dataset["y"].values[:, :, ::2, ::2])
    assert coarse.space[-1] == 1.0 and coarse.time[-1] == 1.0


def test_window_cuts_time(tasks):
    early = tasks.window(t_max=6.0)
    assert float(early.time.max()) <= 6.0 and early.n_time == 6
    with pytest.raises(InvalidInputError, match="at least 2"):
        tasks.window(t_min=11.9)


def test_normaliser_is_invertible_and_uses_only_the_fitted_tasks(tasks):
    train, test = tasks.split(10, seed=0)
    normaliser = Normaliser.fit(train)
    y = test.y()
    standard = normaliser.transform_y(y)
    assert torch.allclose(normaliser.inverse_y(standard), y, atol=1e-12)
    f = test.f()
    assert torch.allclose(normaliser.inverse_f(normaliser.transform_f(f)), f, atol=1e-12)
    train_standard = normaliser.transform_y(train.y())
    assert torch.allclose(train_standard.mean(dim=(0, 2)), torch.zeros(5, dtype=torch.float64), atol=1e-10)
    assert Normaliser.from_dict(normaliser.to_dict()) == normaliser
    assert normaliser.transform_time(train.time)[[0, -1]].tolist() == [0.0, 1.0]


def test_normaliser_on_space_time(field):
    normaliser = Normaliser.fit(field)
    y = field.y()
    assert torch.allclose(normaliser.inverse_y(normaliser.transform_y(y)), y)
    variance = torch.ones_like(y)
    assert torch.allclose(normaliser.inverse_y(variance, variance=True), torch.full_like(y, normaliser.y_std[0] ** 2))


def test_importing_the_package_does_not_load_the_ui():
    code = "import sys, dklfm_explore, dklfm_explore.simulate; print('panel' in sys.modules, 'holoviews' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_select_mesh_gives_the_same_tasks_on_two_grids():
    union = np.union1d(np.linspace(0, 1, 5), np.linspace(0, 1, 7))
    both = simulate("reaction-diffusion", 2, space=union, time=union, seed=0)
    coarse = both.select_mesh(time=np.linspace(0, 1, 5), space=np.linspace(0, 1, 5))
    fine = both.select_mesh(time=np.linspace(0, 1, 7), space=np.linspace(0, 1, 7))
    assert coarse.dataset["f"].shape == (2, 5, 5) and fine.dataset["f"].shape == (2, 7, 7)
    assert np.array_equal(coarse.dataset["f"].values[:, 0, -1], fine.dataset["f"].values[:, 0, -1])
    with pytest.raises(InvalidInputError, match="not on the"):
        both.select_mesh(time=[0.3])


def test_file_stem_keeps_letters_digits_dash_and_underscore_and_falls_back_when_nothing_is_left():
    from dklfm_explore.io import file_stem

    assert file_stem("p53 activity (a.u.)", "x") == "p53_activity_a_u"
    assert file_stem("  ..//  ", "plot") == "plot"
    assert file_stem("a" * 100, "x", max_length=5) == "aaaaa"
