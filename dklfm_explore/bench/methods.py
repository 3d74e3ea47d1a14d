"""One function per method of the benchmark: fit or infer on a task set, timed, with its peak memory.

Each returns what the family runners score: a result in ``TrainedModel.infer``'s format
(``latent_mean``, ``latent_std`` ``(task, [space,] time)``, ``output_mean``, ``output_std``), the
seconds it took and the peak memory in MB.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from ..data import TaskSet
from .measure import PeakMemory, timed
from .settings import TRAIN_SEED, Settings

__all__ = ["scales", "train_dklfm", "tasks_trained_on", "infer_dklfm", "refine_dklfm", "per_task", "exact", "state_space", "neural_process",
           "throughput"]


def scales(train: TaskSet) -> tuple[float, np.ndarray]:
    """The training set's latent std and each output's std ``(output,)``: the benchmark's units."""
    reduce = [d for d in train.dataset["y"].dims if d != "output"]
    return float(train.dataset["f"].std()), train.dataset["y_clean"].std(reduce).values


def train_dklfm(source, settings: Settings, device, seconds=None, model_config=None):
    """``(model, train_s, peak_mb)`` of DKLFM trained within the settings' budget.

    ``source`` is a fixed ``TaskSet`` or a ``SimulationSpec`` to draw fresh tasks from at every step.
    """
    from ..train import TrainingConfig, train

    config = TrainingConfig(epochs=settings.epochs, max_seconds=seconds or settings.max_train_seconds,
                            seed=TRAIN_SEED, device=str(device))
    with PeakMemory(device) as memory:
        model, train_s = timed(lambda: train(source, config=config, model_config=model_config), device)
    return model, train_s, memory.peak_mb


def tasks_trained_on(model) -> int:
    """How many tasks ``model`` was trained on: the task set's size, or the fresh tasks drawn from a spec."""
    provenance = model.provenance or {}
    if provenance.get("source") == "spec":
        return int(provenance.get("tasks_seen", 0))
    return int(provenance.get("training_tasks", 0)) + int(provenance.get("validation_tasks", 0))


def infer_dklfm(model, observed: TaskSet, device, **query) -> tuple[xr.Dataset, float, float, float]:
    """``(result, batched_s, mean one-at-a-time s, peak_mb)`` after a warm-up call."""
    model.infer(observed.isel([0]), **query)
    with PeakMemory(device) as memory:
        result, batched_s = timed(lambda: model.infer(observed, **query), device)
    one_by_one = []
    for k in range(observed.n_tasks):
        _, seconds = timed(lambda: model.infer(observed.isel([k]), **query), device)
        one_by_one.append(seconds)
    return result, batched_s, float(np.mean(one_by_one)), memory.peak_mb


def refine_dklfm(model, observed: TaskSet, amortised: xr.Dataset, device, **query):
    """``(result, seconds, peak_mb)`` of DKLFM's answer refined per task (:func:`~dklfm_explore.refine.refine`);
    ``seconds`` counts the refinement only (the first answer, ``amortised``, is timed by :func:`infer_dklfm`)."""
    from ..refine import refine

    with PeakMemory(device) as memory:
        result, seconds = timed(lambda: refine(model, observed, amortised, **query), device)
    return result, seconds, memory.peak_mb


def per_task(observed: TaskSet, settings: Settings, device, **query):
    """``(result, seconds, peak_mb)`` of the per-task LFM fitted to every task."""
    from ..model.baselines import per_task_posterior

    options = {} if settings.per_task_iterations is None else {"iterations": settings.per_task_iterations}
    with PeakMemory(device) as memory:
        result, seconds = timed(lambda: per_task_posterior(observed, device=device, **options, **query), device)
    return result, seconds, memory.peak_mb


def exact(observed: TaskSet, device, **query):
    """``(result, seconds, peak_mb)`` of the exact LFM with each task's true parameters."""
    from ..model.baselines import exact_posterior

    with PeakMemory(device) as memory:
        result, seconds = timed(lambda: exact_posterior(observed, **query), device)
    return result, seconds, memory.peak_mb


def state_space(observed: TaskSet, settings: Settings, device, **query):
    """``(result, seconds, peak_mb)`` of the state-space LFM, its hyperparameters fitted to every task."""
    from ..model.baselines import state_space_posterior

    options = {} if settings.state_space_iterations is None else {"iterations": settings.state_space_iterations}
    with PeakMemory(device) as memory:
        result, seconds = timed(lambda: state_space_posterior(observed, device=device, **options, **query), device)
    return result, seconds, memory.peak_mb


def neural_process(train_tasks: TaskSet, observed: TaskSet, settings: Settings, device, **query):
    """``(result, train_s, steps, batched_s, one-at-a-time s, peak_mb)`` of a transformer neural process meta-trained
    on DKLFM's training tasks with DKLFM's batch size and budget (see ``Settings.neural_process_epochs``)."""
    from ..config import TrainingConfig
    from ..model.baselines import train_neural_process

    if settings.neural_process_epochs is None:
        budget = {"epochs": settings.epochs, "max_seconds": settings.max_train_seconds}
    else:
        budget = {"epochs": settings.neural_process_epochs}
    with PeakMemory(device) as memory:
        model, train_s = timed(lambda: train_neural_process(train_tasks, batch_size=TrainingConfig.batch_size, seed=TRAIN_SEED,
                                                            device=device, **budget), device)
        result, batched_s, single_s, _ = infer_dklfm(model, observed, device, **query)
    return result, train_s, model.steps, batched_s, single_s, memory.peak_mb


def throughput(model, settings: Settings, device) -> dict:
    """DKLFM's batched inference rate on ``settings.throughput_tasks`` transcription tasks against the algebra's floor.

    The floor is one batched Cholesky factorisation and solve of the same size, ``(task, output x time,
    output x time)`` in the model's dtype, timed in the same run: the ratio is the distance to the compute limit.
    """
    from ..simulate import simulate

    tasks = simulate("transcription", settings.throughput_tasks, n_points=settings.n_points, seed=TRAIN_SEED + 2,
                     device=device)
    model.infer(tasks.isel(slice(0, 2)))
    _, infer_s = timed(lambda: model.infer(tasks), device)
    size = tasks.n_outputs * tasks.dataset["time"].size
    dtype = next(model.module.parameters()).dtype
    generator = torch.Generator(device="cpu").manual_seed(0)
    factor = torch.randn(size, size, generator=generator, dtype=dtype).to(device) / size**0.5
    gram = (factor @ factor.T + torch.eye(size, dtype=dtype, device=device)).expand(tasks.n_tasks, size, size).clone()
    rhs = torch.ones(tasks.n_tasks, size, 1, dtype=dtype, device=device)
    _, floor_s = timed(lambda: torch.cholesky_solve(rhs, torch.linalg.cholesky(gram)), device)
    return {"tasks": tasks.n_tasks, "matrix_size": size, "dtype": str(dtype).replace("torch.", ""),
            "infer_s": infer_s, "tasks_per_s": tasks.n_tasks / infer_s,
            "floor_s": floor_s, "floor_tasks_per_s": tasks.n_tasks / floor_s, "ratio_to_floor": infer_s / floor_s}
