"""The `dklfm` command line end to end on tiny settings, and its one-sentence errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from dklfm_explore import example_csv
from dklfm_explore import load_model
from dklfm_explore.cli import EXIT_NOT_LEARNED, main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    tasks, model = folder / "tasks.nc", folder / "model.pt"
    assert main(["simulate", "transcription", "--tasks", "24", "--points", "12", "--seed", "3", "--out", str(tasks)]) == 0
    status = main(["train", str(tasks), "--out", str(model), "--epochs", "2", "--device", "cpu"])
    assert status == (0 if load_model(model).verdict.learned else EXIT_NOT_LEARNED)
    return folder, model


def test_simulate_writes_a_task_set_and_info_describes_it(trained, capsys):
    folder, _ = trained
    data = xr.open_dataset(folder / "tasks.nc", engine="h5netcdf")
    assert data["y"].shape == (24, 5, 12) and data["f"].shape == (24, 12)
    assert main(["info", str(folder / "tasks.nc")]) == 0
    assert "24 tasks" in capsys.readouterr().out


def test_infer_on_a_csv_writes_the_documented_variables(trained, tmp_path):
    _, model = trained
    measurements = tmp_path / "genes.csv"
    measurements.write_text(example_csv("transcription"))
    out = tmp_path / "result.nc"
    assert main(["infer", str(model), str(measurements), "--out", str(out)]) == 0
    result = xr.open_dataset(out, engine="h5netcdf")
    n_replicates = result.sizes["task"]
    assert set(result.data_vars) >= {"latent_mean", "latent_std", "output_mean", "output_std"}
    assert result["latent_mean"].dims == ("task", "time") and n_replicates == 2
    assert result["output_mean"].dims == ("task", "output", "time") and result.sizes["output"] == 5
    assert np.isfinite(result["latent_mean"].values).all() and (result["latent_std"].values > 0).all()


def test_infer_super_resolution_and_extrapolation_to_csv(trained, tmp_path):
    _, model = trained
    measurements = tmp_path / "genes.csv"
    measurements.write_text(example_csv("transcription"))
    out = tmp_path / "result.csv"
    assert main(["infer", str(model), str(measurements), "--out", str(out), "--points", "50", "--t-max", "18"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 2 * 50
    assert table["time"].max() == pytest.approx(18.0)
    assert {"latent_mean", "latent_std", "DDB2_mean", "SESN1_std"} <= set(table.columns)
    first_row = out.read_text().splitlines()[1].split(",")
    assert max(len(value.lstrip("-").replace(".", "").lstrip("0")) for value in first_row[2:]) <= 6  # six significant digits


def test_model_info(trained, capsys):
    _, model = trained
    assert main(["info", str(model)]) == 0
    assert "transcription" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "no-such-system", "--tasks", "3", "--out", "x.nc"], "valid system names"),
        (["simulate", "transcription", "--tasks", "0", "--out", "x.nc"], "at least 1"),
        (["simulate", "transcription", "--tasks", "3", "--out", "x.txt"], "must end in .nc"),
        (["simulate", "reaction-diffusion", "--tasks", "3", "--points", "5", "--out", "x.nc"], None),
        (["train", "missing.nc", "--out", "m.pt"], "No task set file"),
        (["info", "nothing-here.pt"], "No file"),
    ],
)
def test_bad_arguments_end_with_one_sentence_and_nonzero_exit(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(argv)
    err = capsys.readouterr().err
    if message is None:
        assert status == 0
        return
    assert status == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_measurement_file_and_corrupt_model(trained, tmp_path, capsys):
    _, model = trained
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n")
    assert main(["infer", str(model), str(bad), "--out", str(tmp_path / "r.nc")]) == 2
    assert "time" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    good = tmp_path / "good.csv"
    good.write_text(example_csv("transcription"))
    assert main(["infer", str(corrupt), str(good), "--out", str(tmp_path / "r.nc")]) == 2
    assert not (tmp_path / "r.nc").exists()


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "dklfm_explore.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "simulate" in result.stdout


def test_bench_runs_the_packaged_harness_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--families", "nope"])
    assert exit_info.value.code == 2 and "unknown families ['nope']" in capsys.readouterr().err
    assert sys.path == path_before, "dklfm bench must not put the working directory on sys.path"
    assert "benchmarks.harness" not in sys.modules or sys.modules["benchmarks.harness"].main.__module__ == "dklfm_explore.bench.harness"


def test_design_prints_and_writes_distinct_next_times_within_the_candidates(trained, tmp_path, capsys):
    _, model = trained
    measurements = tmp_path / "genes.csv"
    measurements.write_text(example_csv("transcription"))
    out = tmp_path / "plan.csv"
    candidates = ["1.5", "2.5", "4.5", "7.5", "10.5"]
    assert main(["design", str(model), str(measurements), "--next", "3", "--candidates", *candidates, "--out", str(out)]) == 0
    plan = pd.read_csv(out)
    assert list(plan["rank"]) == [1, 2, 3] and len(set(plan["time"])) == 3
    assert set(plan["time"]) <= {float(c) for c in candidates}
    assert (plan["variance_reduction"] > 0).all() and "next measurements" in capsys.readouterr().out
    assert main(["design", str(model), str(measurements), "--next", "9", "--candidates", *candidates]) == 2
    assert "between 1 and the number of candidates" in capsys.readouterr().err
