"""Files are never damaged by a write and damaged files never pass as data: atomic writes, concurrent
writers, byte-flipped and half-written netCDF."""

import gc
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from dklfm_explore import load_measurements, open_taskset, simulate
from dklfm_explore.atomic import atomic_write
from dklfm_explore.errors import InvalidInputError


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
