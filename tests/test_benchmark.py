"""The benchmark harness's quick smoke run: every family and method, the record's exact schema."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dklfm_explore.bench import FAMILIES, ROW_KEYS, main


@pytest.mark.slow
def test_quick_run_writes_the_record_other_tools_read(tmp_path):
    payload = main(["--quick", "--device", "cpu", "--out-dir", str(tmp_path)])
    assert not (tmp_path / "latest.json").exists(), "a quick run must never overwrite latest.json"
    record = json.loads((tmp_path / "quick.json").read_text())
    assert record["header"]["quick"] is True
    assert {"git_commit", "packages", "command", "date", "device"} <= set(record["header"])
    pairs = {(row["family"], row["method"]) for row in record["rows"]}
    assert pairs == {
        ("transcription", "dklfm"), ("transcription", "per-task-lfm"), ("transcription", "state-space-lfm"),
        ("transcription", "neural-process"),
        ("transcription-linear", "dklfm"), ("transcription-linear", "per-task-lfm"), ("transcription-linear", "exact-lfm"),
        ("transcription-linear", "state-space-lfm"), ("transcription-linear", "neural-process"),
        ("reaction-diffusion", "dklfm"), ("reaction-diffusion", "exact-lfm"), ("reaction-diffusion", "neural-process"),
        ("transcription", "dklfm-refined"), ("transcription-linear", "dklfm-refined"),
        ("lotka-volterra-extrapolation", "dklfm"), ("lotka-volterra-extrapolation", "per-task-lfm"),
        ("lotka-volterra-extrapolation", "neural-process"), ("lotka-volterra-extrapolation", "state-space-lfm"),
        ("paper-protocol", "dklfm"), ("paper-protocol", "per-task-lfm"),
    }
    assert {row["family"] for row in record["rows"]} == set(FAMILIES)
    for row in record["rows"]:
        assert tuple(row) == ROW_KEYS
        assert 0 <= row["coverage95"] <= 1 and math.isfinite(row["latent_mse"]) and math.isfinite(row["nlpd"])
    for row in (row for row in record["rows"] if row["method"] == "exact-lfm"):
        # Latent MSE is in units of the training latent variance, where the prior mean scores about 1;
        # the exact posterior with the true parameters measured 0.006 (linear transcription) and 0.045
        # (reaction-diffusion).  It is calibrated by construction: 3 smooth test latents are about 9
        # independent draws, so its coverage is 0.95 +- 3 x 0.073 (binomial SE at n=9); measured 0.87, 0.95.
        assert row["latent_mse"] < 0.5, row["family"]
        assert row["coverage95"] > 0.95 - 3 * 0.073, row["family"]
    for row in (row for row in record["rows"] if row["method"] == "neural-process"):
        assert row["n_train"] == 24 and row["train_s"] > 0, row["family"]
        assert record["timings"][f"{row['family']}/neural-process"]["train_steps"] == 100 * 2, row["family"]
    assert "PDE" in record["timings"]["reaction-diffusion/state-space-lfm"]["absent"]
    speed = record["timings"]["transcription/throughput"]
    assert speed["tasks"] == 64 and speed["matrix_size"] == 5 * 10
    assert speed["tasks_per_s"] == pytest.approx(64 / speed["infer_s"]) and speed["floor_s"] > 0
    fixed, streamed = record["learning_curve"][:-1], record["learning_curve"][-1]
    assert [point["n_train"] for point in fixed] == [8, 16] and not any(point.get("streamed") for point in fixed)
    assert streamed["streamed"] is True and streamed["n_train"] > 16
    table = (tmp_path / "quick.md").read_text()
    assert "| transcription | dklfm |" in table and "## Targets" in table and "## Rows not run" in table
    assert payload["rows"] == record["rows"]


@pytest.mark.slow
def test_tuning_script_runs_on_the_mesh_pair_of_the_benchmark(capsys):
    from benchmarks.tune import main as tune

    line = tune(["reaction-diffusion", "--quick", "--seconds", "20", "--n-test", "2", "--test-seed", "7"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == line
    assert line["family"] == "reaction-diffusion" and line["epochs"] >= 1
    assert math.isfinite(line["latent_mse"]) and 0 <= line["coverage95"] <= 1


def test_runs_of_separate_families_combine_into_one_record_with_every_header(tmp_path):
    from benchmarks.combine import combine, main as combine_main

    recorded = json.loads((Path(__file__).parents[1] / "benchmarks/results/2026-12-02-transcription.json").read_text())
    other = json.loads(json.dumps(recorded))
    other["header"]["command"] = "dklfm bench --families transcription-linear"
    for row in other["rows"]:
        row["family"] = "transcription-linear"
    other["timings"] = {key.replace("transcription/", "transcription-linear/"): value for key, value in other["timings"].items()}
    with pytest.raises(SystemExit, match="'transcription' is in two runs"):
        combine([recorded, recorded])
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(recorded))
    second.write_text(json.dumps(other))
    combine_main([str(first), str(second), "--out-dir", str(tmp_path)])
    joined = json.loads((tmp_path / "latest.json").read_text())
    assert len(joined["rows"]) == len(recorded["rows"]) * 2
    assert [part["command"] for part in joined["header"]["parts"]] == [recorded["header"]["command"], other["header"]["command"]]
    refined = {t["target"]: t for t in joined["targets"]}["transcription-linear: refined latent MSE <= per-task LFM's"]
    assert refined["met"] is True  # the relabelled rows are the transcription run's: 0.0968 vs 0.1090
    markdown = (tmp_path / "latest.md").read_text()
    assert "Combined from 2 runs" in markdown and other["header"]["command"] in markdown


def test_a_later_run_of_a_family_replaces_the_earlier_one_only_when_asked(tmp_path):
    from benchmarks.combine import combine

    earlier = json.loads((Path(__file__).parents[1] / "benchmarks/results/2026-12-02-transcription.json").read_text())
    later = json.loads(json.dumps(earlier))
    later["header"]["command"] = "dklfm bench --families transcription (rerun)"
    for row in later["rows"]:
        row["latent_mse"] = 0.5 * row["latent_mse"]
    with pytest.raises(SystemExit, match="--later-wins"):
        combine([earlier, later])
    joined = combine([earlier, later], later_wins=True)
    assert [row["latent_mse"] for row in joined["rows"]] == [row["latent_mse"] for row in later["rows"]]
    assert joined["header"]["parts"][0]["superseded"] == ["transcription"]
    assert "superseded" not in joined["header"]["parts"][1]
    assert joined["learning_curve"] == earlier["learning_curve"]


def test_extrapolation_is_scored_beyond_the_observed_window_only():
    from dklfm_explore.bench.harness import scored_from
    from dklfm_explore.metrics import latent_metrics
    from dklfm_explore.simulate import simulate

    tasks = simulate("lotka-volterra", 2, n_points=21, t_range=(0.0, 20.0), seed=3)
    beyond = scored_from(tasks, 10.0)
    time = tasks.dataset["time"].values
    assert np.isnan(beyond.dataset["f"].values[:, time < 10.0]).all()
    assert np.array_equal(beyond.dataset["f"].values[:, time >= 10.0], tasks.dataset["f"].values[:, time >= 10.0])
    assert np.isnan(beyond.dataset["y_clean"].values[..., time < 10.0]).all()
    assert np.array_equal(beyond.dataset["y"].values, tasks.dataset["y"].values, equal_nan=True)
    truth = tasks.dataset["f"]
    wrong_early = truth.copy(data=np.where(time < 10.0, truth.values + 5.0, truth.values))
    result = xr.Dataset({"latent_mean": wrong_early, "latent_std": xr.ones_like(truth)})
    assert latent_metrics(result, beyond.dataset["f"], 1.0)["latent_mse"] == 0.0
    assert latent_metrics(result, truth, 1.0)["latent_mse"] == pytest.approx(25.0 * (time < 10.0).mean())


def test_targets_say_met_missed_or_not_run_from_the_rows():
    from dklfm_explore.bench.report import check_targets

    def row(family, method, mse, coverage=0.95):
        return {"family": family, "method": method, "latent_mse": mse, "coverage95": coverage, "infer_ms_per_instance": 1.0}

    targets = {t["target"]: t for t in check_targets(
        [row("lotka-volterra-extrapolation", "dklfm", 0.499), row("transcription", "dklfm", 0.09, 0.80),
         row("transcription", "per-task-lfm", 0.1), row("reaction-diffusion", "dklfm", 0.2), row("reaction-diffusion", "exact-lfm", 0.03)], [])}
    assert targets["lotka-volterra-extrapolation: DKLFM latent MSE on [T, 2T] <= 0.5"]["met"] is True
    assert targets["transcription: DKLFM latent MSE <= 0.8 x per-task LFM"]["met"] is False
    assert targets["transcription: DKLFM 95% coverage in [0.85, 0.99]"]["met"] is False
    assert targets["reaction-diffusion: DKLFM latent MSE <= max(exact + 0.1, 2 x exact)"]["measured"] == "0.2000 vs bound 0.1300"
    assert targets["transcription-linear: DKLFM latent MSE <= max(exact + 0.05, 2 x exact)"]["met"] is None
    missed = check_targets([row("lotka-volterra-extrapolation", "dklfm", 0.51)], [])
    assert [t["met"] for t in missed if t["target"].startswith("lotka-volterra-extrapolation: DKLFM latent")] == [False]
