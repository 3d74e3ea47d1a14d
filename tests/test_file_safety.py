"""Files are never damaged by a write and damaged files never pass as data: atomic writes, concurrent
writers, byte-flipped and half-written netCDF; doctored checkpoints and hostile CSV cells are one sentence."""

import gc
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from dklfm_explore import load_measurements, open_taskset, simulate
from dklfm_explore.atomic import atomic_write
from dklfm_explore.datasets.registry import DATA_DIR
from dklfm_explore.errors import CheckpointError, InvalidInputError
from dklfm_explore.trained import load_model

PRETRAINED = DATA_DIR / "transcription_p53.pt"


def test_two_writers_of_one_target_get_two_temporary_files_and_the_target_is_whole(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_write(target) as first, atomic_write(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the writer that finished last
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_without_overwrite_the_second_writer_to_finish_fails_and_changes_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(InvalidInputError, match="out.txt was created by someone else while this run wrote it"):
        with atomic_write(target, overwrite=False) as slow:
            slow.write_text("slow")
            with atomic_write(target, overwrite=False) as fast:
                fast.write_text("fast")
    assert target.read_text() == "fast"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]
    with pytest.raises(InvalidInputError, match="out.txt exists already"):
        with atomic_write(target, overwrite=False):
            pass


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as partial:
            partial.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_concurrent_simulations_to_one_file_one_wins_whole_and_the_other_says_so(tmp_path):
    target = tmp_path / "tasks.nc"
    winner = {}

    def meanwhile(done, total):
        if not winner:
            winner["tasks"] = simulate("transcription", 4, n_points=6, seed=2, out=target, overwrite=False).load()

    with pytest.raises(InvalidInputError, match="tasks.nc was created by someone else"):
        simulate("transcription", 8, n_points=6, seed=1, chunk_size=4, out=target, overwrite=False, progress=meanwhile)
    kept = open_taskset(target, lazy=False)
    xr.testing.assert_identical(kept.dataset, winner["tasks"].dataset)
    assert sorted(os.listdir(tmp_path)) == ["tasks.nc"]


@pytest.fixture(scope="module")
def simulated_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("flip") / "tasks.nc"
    simulate("transcription", 4, n_points=6, seed=0, out=path)
    return path


def test_a_changed_byte_anywhere_is_refused_or_changes_nothing(simulated_file, tmp_path, monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    good = open_taskset(simulated_file, lazy=False).dataset
    data = simulated_file.read_bytes()
    refused = 0
    for position in range(0, len(data), 1999):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        path = tmp_path / f"flipped{position}.nc"
        path.write_bytes(bytes(flipped))
        for read in (lambda: load_measurements(path).dataset, lambda: open_taskset(path).load().dataset):
            try:
                loaded = read()
            except InvalidInputError as error:
                assert str(error).endswith(".") and "\n" not in str(error)
                refused += 1
                continue
            for name in ("y", "f", "y_clean"):
                np.testing.assert_array_equal(loaded[name].values, good[name].values)
        path.unlink()
    gc.collect()
    assert refused > 0
    assert unraisable == []


def test_a_file_left_by_a_killed_simulation_is_one_sentence_and_the_target_is_untouched(tmp_path):
    target = tmp_path / "tasks.nc"
    target.write_bytes(b"the old content")
    kill = (
        "import os, sys\nfrom dklfm_explore import simulate\n"
        "simulate('transcription', 64, n_points=6, chunk_size=8, out=sys.argv[1],"
        " progress=lambda done, total: done >= 16 and os._exit(9))\n"
    )
    subprocess.run([sys.executable, "-c", kill, str(target)], check=False, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert target.read_bytes() == b"the old content"
    (partial,) = [path for path in tmp_path.iterdir() if path.name.endswith(".partial")]
    assert partial.name.startswith(".tasks.nc.")
    for read in (load_measurements, lambda path: open_taskset(path).load()):
        with pytest.raises(InvalidInputError, match="is not a readable netCDF file"):
            read(partial)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("time_window", None, "malformed checkpoint field 'time_window' (NoneType None); it must be two finite increasing times"),
        ("time_window", [12.0, 0.0], "field 'time_window' (list [12.0, 0.0])"),
        ("latent_std_scale", "abc", "field 'latent_std_scale' (str 'abc'); it must be a positive finite number"),
        ("latent_std_scale", True, "field 'latent_std_scale' (bool True)"),
        ("history", "garbage", "field 'history' (str 'garbage'); it must be a list of per-epoch dicts"),
        ("format_version", True, "field 'format_version' (bool True); it must be an integer, one of 1, 2, 3"),
        ("format_version", "2", "field 'format_version' (str '2'); it must be an integer"),
        ("output_names", ["a", "b"], "2 output names and 5 output means for a model of 5 outputs"),
        ("output_names", "abc" * 1000, "field 'output_names' (str 'abcabcabcabcabcabcabcabcabcabcabcabcabc...); it must be a list"),
    ],
)
def test_a_doctored_checkpoint_field_is_named_in_one_sentence(key, value, message, tmp_path):
    payload = torch.load(PRETRAINED, weights_only=True)
    payload[key] = value
    torch.save(payload, tmp_path / "doctored.pt")
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "doctored.pt")
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "version '2' but" not in str(error.value)


def test_a_doctored_normaliser_is_refused(tmp_path):
    payload = torch.load(PRETRAINED, weights_only=True)
    payload["normaliser"] = dict(payload["normaliser"], y_std="abc")
    torch.save(payload, tmp_path / "doctored.pt")
    with pytest.raises(CheckpointError, match="normaliser's y_std is 'abc'; it must hold positive finite numbers"):
        load_model(tmp_path / "doctored.pt")


@pytest.mark.parametrize(
    "text, outputs",
    [
        ("time;level, total\n0;1\n1;2\n2;3\n", ["level, total"]),
        ("time;level, total;other\n0;1;5\n1;2;5\n2;3;4\n", ["level, total", "other"]),
    ],
)
def test_a_semicolon_file_with_a_comma_in_a_column_name_is_cut_at_the_semicolons(text, outputs):
    assert load_measurements(text.encode(), name="semi.csv").output_names == outputs
    with pytest.raises(InvalidInputError, match="non-numeric value '1,5' on line 2; cells must be numbers \\(write a decimal point"):
        load_measurements(b"time;level, total\n0;1,5\n1;2,5\n2;3,5\n", name="semi.csv")


def test_a_long_cell_is_cut_in_the_message():
    with pytest.raises(InvalidInputError) as error:
        load_measurements(f"time,A\n0,1\n1,{'x' * 100_000}\n2,3\n".encode(), name="long.csv")
    assert len(str(error.value)) < 300 and "(100000 characters)" in str(error.value)
