"""Training from the simulator and from streamed files; the verdict; checkpoints of every format version."""

import importlib

import numpy as np
import pytest
import torch

from dklfm_explore import SimulationSpec, TaskSet, TrainingConfig, load_model, open_taskset, simulate, train
from dklfm_explore.cli import EXIT_NOT_LEARNED, main
from dklfm_explore.errors import CheckpointError, NotLearnedWarning
from dklfm_explore.model import ModelConfig
from dklfm_explore.verdict import LEARNED_RATIO, Verdict
from dklfm_explore.train import RESTART_SEED_STRIDE, STUCK_RATIO

sources = importlib.import_module("dklfm_explore.sources")
training = importlib.import_module("dklfm_explore.train")  # the package's attribute `train` is the function

SMALL_MODEL = ModelConfig(embedding_dim=4, fno_width=8, fno_modes=4, mlp_width=16, feature_dim=4)
SPEC = SimulationSpec("transcription", n_points=10, seed=7)


def _recording(monkeypatch):
    """Record the outputs ``y`` of every training batch that train() computes a loss on."""
    seen = []
    original = training.batch_loss

    def record(model, coords, y, f, points):
        seen.append(y.detach().clone())
        return original(model, coords, y, f, points)

    monkeypatch.setattr(training, "batch_loss", record)
    return seen


def _rows(tensor: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in tensor.reshape(tensor.shape[0], -1)}


def test_training_from_a_spec_draws_fresh_tasks_every_step_and_a_fixed_disjoint_validation_set(monkeypatch):
    seen = _recording(monkeypatch)
    config = TrainingConfig(epochs=3, batch_size=8, epoch_tasks=40, validation_tasks=24, max_steps=12, seed=1)
    model = train(SPEC, config, SMALL_MODEL)
    assert len(seen) == 12 and all(batch.shape == (8, 5, 10) for batch in seen)
    training_rows = set().union(*(_rows(batch) for batch in seen))
    assert len(training_rows) == 12 * 8  # no task repeats
    validation = sources.spec_source(SPEC, config, torch.device("cpu")).validation
    assert validation.y.shape == (24, 5, 10)
    assert not (_rows(validation.y) & training_rows)  # validation tasks are never trained on
    again = sources.spec_source(SPEC, config, torch.device("cpu")).validation
    torch.testing.assert_close(again.y, validation.y, rtol=0, atol=0)  # drawn once, the same every run
    assert model.provenance["source"] == "spec" and model.provenance["steps"] == 12 and model.provenance["tasks_seen"] == 96
    assert SimulationSpec.from_dict(model.provenance["spec"]) == SPEC.resolved()
    assert model.history[-1]["stopped_reason"] == "step-limit" and model.verdict.n_tasks == 24


def test_training_from_a_spec_is_reproducible_and_follows_the_specs_seed():
    config = TrainingConfig(epochs=2, batch_size=8, epoch_tasks=16, validation_tasks=8, seed=0)
    runs = [[h["loss"] for h in train(spec, config, SMALL_MODEL).history] for spec in (SPEC, SPEC, SPEC.replace(seed=8))]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_lazily_opened_task_set_over_the_memory_limit_is_streamed_in_blocks(tmp_path, monkeypatch):
    simulate("transcription", 100, n_points=8, seed=2, out=tmp_path / "tasks.nc")
    tasks = open_taskset(tmp_path / "tasks.nc")
    monkeypatch.setattr(sources, "STREAM_BLOCK_TASKS", 32)
    reads = []
    original = TaskSet.tensor

    def tensor(self, name, tasks=None, **kwargs):
        values = original(self, name, tasks, **kwargs)
        reads.append((name, values.shape[0]))
        return values

    monkeypatch.setattr(TaskSet, "tensor", tensor)
    seen = _recording(monkeypatch)
    config = TrainingConfig(epochs=2, batch_size=8, validation=0.1, in_memory_limit_mb=1e-3, seed=0)
    model = train(tasks, config, SMALL_MODEL)
    assert model.provenance["streamed"] and model.provenance["file"] == str(tmp_path / "tasks.nc")
    training_reads = [count for name, count in reads if name == "y" and count != 10]
    assert training_reads and max(training_reads) <= 32  # never more than one block of the 90 training tasks
    per_epoch = sum(batch.shape[0] for batch in seen) / 2
    assert per_epoch == 90 and len(set().union(*(_rows(b) for b in seen))) == 90  # each training task once per epoch


@pytest.fixture(scope="module")
def transcription():
    return simulate("transcription", 96, n_points=20, seed=0).split(16, seed=1)


@pytest.mark.slow
def test_verdict_of_a_model_that_learned(transcription):
    # The settings of test_train's learning test (validation latent MSE 0.24 against a prior-mean 1.0 on
    # 8 validation tasks): 0.5 x the prior leaves a wide margin.
    train_tasks, _ = transcription
    records = []
    model = train(train_tasks, TrainingConfig(epochs=30, batch_size=8, patience=30, seed=0), ModelConfig(latent_weight=20),
                  progress=records.append)
    verdict = model.verdict
    assert verdict.learned and verdict.message.startswith("learned: latent MSE")
    assert verdict.latent_mse == pytest.approx(records[-1].best_validation_latent_mse, rel=1e-12)
    assert verdict.latent_mse <= LEARNED_RATIO * verdict.prior_mse and verdict.n_tasks == 8
    # Calibration puts the 0.95 quantile of 8 x 20 standardised errors on the interval's edge:
    # coverage is 0.95 within one point in 160.
    assert abs(verdict.coverage95 - 0.95) <= 1 / 160 + 1e-12
    assert 0 < verdict.latent_mse_se < verdict.latent_mse


def _stuck_at_the_prior(monkeypatch):
    """Make train() build models whose latent prediction is the prior mean (0 in standardised units) everywhere."""
    original = training.initialise_model

    def stuck(model_config, config, coords, device):
        model = original(model_config, config, coords, device)
        posterior = model.posterior

        def at_the_prior(*args, **kwargs):
            result = posterior(*args, **kwargs)
            result.latent_mean = torch.zeros_like(result.latent_mean)
            return result

        model.posterior = at_the_prior
        return model

    monkeypatch.setattr(training, "initialise_model", stuck)


def test_verdict_of_a_model_forced_to_stay_at_the_prior(transcription, monkeypatch):
    _stuck_at_the_prior(monkeypatch)
    train_tasks, test_tasks = transcription
    model = train(train_tasks, TrainingConfig(epochs=1, seed=0), SMALL_MODEL)
    verdict = model.verdict
    # The latent mean is the prior-mean predictor itself: the same squared errors, summed in the same order.
    assert not verdict.learned
    assert verdict.latent_mse == pytest.approx(verdict.prior_mse, rel=1e-12)
    assert "no better than predicting the prior mean" in verdict.message
    with pytest.warns(NotLearnedWarning, match="did not learn"):
        result = model.infer(test_tasks)
    np.testing.assert_allclose(result.latent_mean.values, model.normaliser.f_mean, rtol=1e-12)


def test_a_start_stuck_at_the_prior_restarts_from_other_seeds_within_one_step_budget(transcription, monkeypatch):
    _stuck_at_the_prior(monkeypatch)
    seeds = []
    original = training.initialise_model
    monkeypatch.setattr(training, "initialise_model", lambda mc, config, *rest: seeds.append(config.seed) or original(mc, config, *rest))
    train_tasks, _ = transcription
    # 80 training tasks in batches of 16: 5 steps per epoch; each stuck start is stopped after its first epoch.
    model = train(train_tasks, TrainingConfig(epochs=3, batch_size=16, seed=4, max_steps=12, restarts=2), SMALL_MODEL)
    assert seeds == [4, 4 + RESTART_SEED_STRIDE, 4 + 2 * RESTART_SEED_STRIDE]
    assert model.provenance["restarts"] == 2 and model.provenance["seed_used"] == 4 + 2 * RESTART_SEED_STRIDE
    assert model.provenance["steps_before_restart"] == 10 and model.provenance["steps"] == 2  # 12 in all
    assert "Restarted 2 time(s)" in model.history[-1]["message"] and not model.verdict.learned


def test_the_command_line_says_when_training_restarted(tmp_path, monkeypatch, capsys):
    _stuck_at_the_prior(monkeypatch)
    tasks, out = tmp_path / "tasks.nc", tmp_path / "stuck.pt"
    assert main(["simulate", "transcription", "--tasks", "40", "--points", "10", "--out", str(tasks)]) == 0
    assert main(["train", str(tasks), "--out", str(out), "--epochs", "2"]) == EXIT_NOT_LEARNED
    assert "restarted 2 time(s)" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    assert "after 2 restart(s) from starts stuck at the prior" in capsys.readouterr().out


def test_no_restart_when_turned_off_or_when_the_first_validation_beats_the_prior(transcription, monkeypatch):
    train_tasks, _ = transcription
    learning = train(train_tasks, TrainingConfig(epochs=2, batch_size=8, seed=0), ModelConfig(latent_weight=20))
    first = learning.history[0]
    # This start leaves the prior in its first epoch (measured 0.5 of the prior-mean MSE), so it is kept.
    assert first["validation_latent_mse"] < STUCK_RATIO * learning.verdict.prior_mse and "restarts" not in learning.provenance
    _stuck_at_the_prior(monkeypatch)
    kept = train(train_tasks, TrainingConfig(epochs=1, seed=0, restarts=0), SMALL_MODEL)
    assert "restarts" not in kept.provenance and not kept.verdict.learned


def test_the_command_line_exits_non_zero_for_a_model_that_did_not_learn_and_writes_it(tmp_path, monkeypatch, capsys):
    _stuck_at_the_prior(monkeypatch)
    tasks, out = tmp_path / "tasks.nc", tmp_path / "stuck.pt"
    assert main(["simulate", "transcription", "--tasks", "40", "--points", "10", "--out", str(tasks)]) == 0
    assert main(["train", str(tasks), "--out", str(out), "--epochs", "1"]) == EXIT_NOT_LEARNED
    printed = capsys.readouterr().out
    assert out.is_file() and "did not learn: latent MSE" in printed
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "verdict: did not learn" in info and f"the task set {tasks}" in info


def test_the_command_line_trains_from_a_system_name(tmp_path, capsys):
    out = tmp_path / "fresh.pt"
    status = main(["train", "transcription", "--points", "10", "--out", str(out), "--max-minutes", "0.05", "--seed", "3"])
    model = load_model(out)
    assert status == (0 if model.verdict.learned else EXIT_NOT_LEARNED)
    assert model.provenance["spec"]["n_points"] == 10 and model.provenance["spec"]["seed"] == 3
    assert model.verdict.n_tasks == 512 and model.history[-1]["stopped_reason"] == "time-limit"
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "fresh simulations of 'transcription'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "transcriptoin", "--out", "m.pt"], "Unknown system 'transcriptoin'"),
        (["train", "transcription", "--grid", "5", "5", "--out", "m.pt"], "--points"),
        (["train", "missing.nc", "--out", "m.pt"], "No task set file"),
    ],
)
def test_the_command_line_refuses_bad_training_sources(argv, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_checkpoints_of_every_format_version_load(transcription, tmp_path):
    train_tasks, test_tasks = transcription
    model = train(train_tasks, TrainingConfig(epochs=1, seed=0), SMALL_MODEL)
    path = model.save(tmp_path / "model.pt")
    loaded = load_model(path)
    assert loaded.verdict == model.verdict and loaded.provenance == model.provenance
    expected = loaded.infer(test_tasks).latent_mean.values
    payload = torch.load(path, weights_only=True)
    for version, dropped in ((2, ("verdict", "provenance")), (1, ("verdict", "provenance", "latent_std_scale"))):
        old = {key: value for key, value in payload.items() if key not in dropped}
        old["format_version"] = version
        torch.save(old, tmp_path / f"v{version}.pt")
        restored = load_model(tmp_path / f"v{version}.pt")
        assert restored.verdict is None and restored.provenance is None
        if version == 2:
            np.testing.assert_array_equal(restored.infer(test_tasks).latent_mean.values, expected)
    broken = dict(payload, verdict={"learned": "yes"})
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="verdict"):
        load_model(tmp_path / "broken.pt")


def test_verdict_round_trips_and_words_each_case():
    learned = Verdict.judge(0.11, 0.01, 1.0, 0.95, 512)
    assert learned.learned and learned.message.startswith("learned: latent MSE 0.11") and "9.09x better" in learned.message
    assert Verdict.from_dict(learned.to_dict()) == learned
    halfway = Verdict.judge(0.6, 0.02, 1.0, 0.95, 512)
    assert not halfway.learned and "only 1.67x better" in halfway.message
    assert not Verdict.judge(0.5 + 1e-9, 0.0, 1.0, 0.95, 10).learned and Verdict.judge(0.5, 0.0, 1.0, 0.95, 10).learned
    assert not Verdict.judge(0.1, 0.0, 1.0, float("nan"), 10).learned
    assert not Verdict.judge(float("nan"), 0.0, 1.0, 0.9, 10).learned
