"""Data-parallel training: two gloo processes on this machine train the model one process trains with their global batch."""

import contextlib
import io
import itertools
import json
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dklfm_explore import open_taskset, simulate
from dklfm_explore.cli import main
from dklfm_explore.config import TrainingConfig
from dklfm_explore.distributed import process_group
from dklfm_explore.model.dklfm import ModelConfig
from dklfm_explore.sources import spec_source, task_set_source
from dklfm_explore.spec import SimulationSpec
from dklfm_explore.train import train
from dklfm_explore.trained import load_model

PROCESSES = 2
LOCAL_BATCH = 8
SHIFT_INVARIANT = ("features.network.4.bias",)
"""The last feature layer's bias shifts every feature alike, which the RBF kernel cannot see: its gradient is zero up
to rounding, and Adam's normalised step moves it by about the learning rate in the direction of that rounding noise."""
PARAMETER_TOLERANCE = 1e-2
"""Distance of the two runs' parameters over the distance training moved them.  The feature network is float32 and the
processes sum the batch's gradient in another order; Adam's normalised step amplifies that rounding where a gradient is
small: measured 1e-4 after 6 steps, against 0.085 for a run with half the global batch."""
LATENT_TOLERANCE = 1e-3
"""Largest difference of the two models' latent means (standardised force, spread about 1): measured 1e-5 after 6 steps,
far below the spread of the force."""
SMALL = ModelConfig(embedding_dim=8, fno_width=8, fno_modes=4, fno_layers=1, mlp_width=16, mlp_depth=1, feature_dim=8)


def _flat(model) -> torch.Tensor:
    return torch.cat([v.detach().flatten().to(torch.complex128) for k, v in model.module.named_parameters() if k not in SHIFT_INVARIANT])


@pytest.fixture(scope="module")
def task_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("distributed") / "tasks.nc"
    simulate("transcription", 120, n_points=10, seed=0, out=path)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process(rank: int, ports: tuple[int, int], task_file: str, folder: str) -> None:
    """One of the processes torchrun would start (same environment): ``dklfm train --distributed``, then a run
    that process 1 cancels at its third step."""
    torch.set_num_threads(1)
    environment = dict(RANK=str(rank), WORLD_SIZE=str(PROCESSES), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    os.environ.update(environment, MASTER_PORT=str(ports[0]))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["train", task_file, "--out", str(Path(folder, "model.pt")), "--distributed", "--device", "cpu",
                       "--epochs", "1", "--batch-size", str(LOCAL_BATCH), "--validation", "0.2"])
    os.environ["MASTER_PORT"] = str(ports[1])
    calls = itertools.count()
    cancel = (lambda: next(calls) >= 2) if rank == 1 else None
    with process_group("cpu") as parallel:
        model = train(open_taskset(task_file), TrainingConfig(epochs=3, batch_size=4, validation=0.2, device="cpu"),
                      model_config=SMALL, cancel=cancel, parallel=parallel)
    last = model.history[-1]
    record = {key: last[key] for key in ("stopped_reason", "message", "step")}
    Path(folder, f"{rank}.json").write_text(json.dumps(dict(record, status=status, printed=printed.getvalue())))


@pytest.fixture(scope="module")
def processes(task_file, tmp_path_factory):
    """What two gloo processes on this machine did: their records and the checkpoint process 0 wrote."""
    folder = tmp_path_factory.mktemp("processes")
    mp.spawn(_process, args=((_free_port(), _free_port()), str(task_file), str(folder)), nprocs=PROCESSES, join=True)
    return folder, [json.loads((folder / f"{rank}.json").read_text()) for rank in range(PROCESSES)]


def test_two_processes_train_the_model_one_process_trains_with_their_global_batch(task_file, processes):
    folder, records = processes
    assert [record["printed"].count("wrote ") for record in records] == [1, 0]
    assert "6 steps on 96 tasks" in records[0]["printed"]
    tasks = open_taskset(task_file).load()
    config = dict(epochs=1, validation=0.2, device="cpu")
    alone = train(tasks, TrainingConfig(batch_size=PROCESSES * LOCAL_BATCH, **config))
    smaller = train(tasks, TrainingConfig(batch_size=LOCAL_BATCH, max_steps=6, **config))
    start = train(tasks, TrainingConfig(batch_size=PROCESSES * LOCAL_BATCH, **config), cancel=lambda: True)
    together = load_model(folder / "model.pt", device="cpu")
    assert together.provenance["processes"] == PROCESSES and together.provenance["steps"] == 6
    moved = (_flat(alone) - _flat(start)).abs().norm()
    assert float((_flat(together) - _flat(alone)).abs().norm() / moved) < PARAMETER_TOLERANCE
    assert float((_flat(smaller) - _flat(alone)).abs().norm() / moved) > 4 * PARAMETER_TOLERANCE
    test = simulate("transcription", 20, n_points=10, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inferred, expected = together.infer(test), alone.infer(test)
    assert abs(inferred["latent_mean"].values - expected["latent_mean"].values).max() < LATENT_TOLERANCE
    assert together.latent_std_scale == pytest.approx(alone.latent_std_scale, rel=LATENT_TOLERANCE)


def test_a_stop_on_one_process_stops_every_process_at_the_same_step_with_one_message(processes):
    first, second = processes[1]
    assert first["stopped_reason"] == second["stopped_reason"] == "cancelled"
    assert first["step"] == second["step"] == 2
    assert first["message"] == f"Process 1 of {PROCESSES}: Cancelled during epoch 1."


def test_process_shares_of_a_task_set_partition_its_global_batches(task_file):
    config = TrainingConfig(batch_size=LOCAL_BATCH, validation=0.2, device="cpu")
    data = task_set_source(open_taskset(task_file), config, None, "cpu")
    shares = [data.source.rank_share(rank, PROCESSES) for rank in range(PROCESSES)]
    whole = task_set_source(open_taskset(task_file), TrainingConfig(batch_size=PROCESSES * LOCAL_BATCH, validation=0.2), None, "cpu")
    epochs = [list(share.epoch(torch.Generator().manual_seed(3))) for share in shares]
    expected = list(whole.source.epoch(torch.Generator().manual_seed(3)))
    assert len(expected) == len(epochs[0]) == len(epochs[1]) == 6
    for (y, f), *parts in zip(expected, *epochs):
        assert all(part[0].shape[0] == LOCAL_BATCH for part in parts)
        assert torch.equal(torch.cat([part[0] for part in parts]), y) and torch.equal(torch.cat([part[1] for part in parts]), f)


def test_each_process_draws_its_own_fresh_tasks():
    config = TrainingConfig(batch_size=4, validation=0, epoch_tasks=64, device="cpu")
    data = spec_source(SimulationSpec("transcription", n_points=10), config, "cpu")
    first, second = (next(data.source.rank_share(rank, PROCESSES).epoch(torch.Generator())) for rank in range(PROCESSES))
    alone = next(data.source.epoch(torch.Generator()))
    assert torch.equal(first[1], alone[1])
    assert (first[1][:, None] - second[1][None]).abs().amax(-1).min() > 1e-3
    assert data.source.rank_share(1, PROCESSES).steps_per_epoch == 8


def test_distributed_training_outside_a_launcher_is_refused_with_the_command_to_use(task_file, tmp_path, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert main(["train", str(task_file), "--out", str(tmp_path / "m.pt"), "--distributed"]) == 2
    assert "torchrun --nproc-per-node N -m dklfm_explore.cli train ... --distributed" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", str(task_file), "--out", str(tmp_path / "m.pt")]) == 2
    assert "add --distributed" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
