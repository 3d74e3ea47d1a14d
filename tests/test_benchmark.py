"""The benchmark harness's quick smoke run: every family and method, the record's exact schema."""

import json

import pytest

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
        ("transcription-linear", "dklfm"), ("transcription-linear", "per-task-lfm"), ("transcription-linear", "exact-lfm"),
        ("transcription-linear", "state-space-lfm"),
        ("reaction-diffusion", "dklfm"), ("reaction-diffusion", "exact-lfm"),
        ("lotka-volterra-extrapolation", "dklfm"), ("lotka-volterra-extrapolation", "per-task-lfm"),
        ("paper-protocol", "dklfm"), ("paper-protocol", "per-task-lfm"),
    }
    assert {row["family"] for row in record["rows"]} == set(FAMILIES)
    for row in record["rows"]:
        assert tuple(row) == ROW_KEYS
        assert 0 <= row["coverage95"] <= 1 and row["latent_mse"] >= 0
    speed = record["timings"]["transcription/throughput"]
    assert speed["tasks"] == 64 and speed["matrix_size"] == 5 * 10
    assert speed["tasks_per_s"] == pytest.approx(64 / speed["infer_s"]) and speed["floor_s"] > 0
    assert len(record["learning_curve"]) == 2
    table = (tmp_path / "quick.md").read_text()
    assert "| transcription | dklfm |" in table and "## Targets" in table
    assert payload["rows"] == record["rows"]
