"""Meta-training of a :class:`~dklfm_explore.model.DKLFM` on a task set or on fresh simulations.

:func:`train` takes a :class:`~dklfm_explore.data.TaskSet` (a fixed set; streamed from its file
when larger than ``TrainingConfig.in_memory_limit_mb``) or a
:class:`~dklfm_explore.spec.SimulationSpec` (fresh tasks every step, drawn on the training
device; see :mod:`dklfm_explore.sources`).  Adam with a cosine learning-rate schedule over the
step or time budget; after every epoch the latent force of the fixed validation tasks is
predicted from their outputs (:func:`validate`) and the model with the lowest validation latent
MSE (standardised units) is kept (DESIGN.md pitfalls: the marginal likelihood keeps improving
while the held-out latent error rises).  Training stops early after ``patience`` epochs without
improvement, at the epoch, step or time budget, when ``cancel()`` returns True, or when the loss
becomes NaN/infinite.  It ends with a :class:`~dklfm_explore.verdict.Verdict` on the validation tasks.

One step is :func:`batch_loss` then :func:`optimiser_step`; :func:`initialise_model` builds the
model before the first.  With ``parallel`` (:func:`~dklfm_explore.distributed.process_group`),
the same loop runs data-parallel in every process of a torchrun launch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from .config import STOP_REASONS, TrainingConfig, TrainingProgress
from .data import Normaliser, TaskSet
from .devices import resolve_device
from .distributed import DataParallel, SingleProcess
from .ood import reference_from_standardised
from .errors import CholeskyError, InvalidInputError, TrainingDivergedError, UnknownNameError
from .metrics import COVERAGE_Z
from .model.dklfm import RELATIVE_LENGTHSCALE, DKLFM, ModelConfig
from .model.kernel import MIN_LENGTHSCALE
from .sources import TrainingData, spec_source, task_set_source
from .spec import SimulationSpec
from .standardise import Standardised, standardise
from .trained import TrainedModel
from .verdict import Verdict

__all__ = ["train", "TrainingConfig", "TrainingProgress", "STOP_REASONS", "latent_std_calibration", "validate",
           "batch_loss", "optimiser_step", "initialise_model", "judge", "ValidationScore"]

logger = logging.getLogger(__name__)

FINAL_LEARNING_RATE_RATIO = 0.1
"""The cosine schedule ends at this fraction of the initial learning rate (keeps late epochs useful)."""
VALIDATION_CHUNK = 256
"""Validation tasks conditioned at once (bounds the memory of the batched Cholesky factors)."""
CALIBRATION_LEVEL = 0.95
"""Central interval whose held-out coverage the latent-std calibration makes exact."""
PERIOD_BOUND_MARGIN = 1.1
"""Factor by which the phase input's period search reaches beyond the training tasks' 5th-95th percentile periods."""
STUCK_RATIO = 0.95
"""A first validation latent MSE at or above this fraction of the prior-mean predictor's marks a start stuck at the prior."""
RESTART_SEED_STRIDE = 7919
"""Restart ``k`` initialises with ``seed + k * RESTART_SEED_STRIDE``."""
MIN_CALIBRATION = 1e-2
"""Floor of the calibration factor: the std includes sigma_f, so a 100x too wide predictive std is not a case to fit."""


def prepare(tasks: TaskSet, normaliser: Normaliser, device: torch.device) -> Standardised:
    """Standardise a task set's mesh, outputs and latent force with ``normaliser`` (see :func:`~dklfm_explore.standardise.standardise`)."""
    return standardise(tasks, normaliser, device=device)


@dataclass(frozen=True)
class ValidationScore:
    """Latent MSE on validation tasks (standardised units) with its standard error over tasks.

    Attributes
    ----------
    mse : float
        Pooled over every finite latent point (NaN when there is none).
    se : float
        Standard deviation of the per-task MSEs over ``sqrt(n_tasks)`` (0 for one task).
    n_tasks : int
        Tasks with at least one finite latent value: the tasks the figures rest on.
    """

    mse: float
    se: float
    n_tasks: int


def _chunked_posteriors(model: DKLFM, data: Standardised):
    """Yield ``(f, posterior)`` for each chunk of ``VALIDATION_CHUNK`` tasks of ``data`` (the caller holds ``torch.no_grad()``)."""
    for start in range(0, data.y.shape[0], VALIDATION_CHUNK):
        chunk = slice(start, start + VALIDATION_CHUNK)
        yield data.f[chunk], model.posterior(data.coords, data.y[chunk])


def _per_task_errors(model: DKLFM, data: Standardised, std_scale: float | None = None):
    """Per task: summed squared latent error, summed squared prior-mean error, observed count, points covered.

    Each a Tensor ``(task,)`` float64 on the CPU; coverage counts points inside ``mean +- 1.96 std_scale std``.
    """
    squared, prior, count, covered = [], [], [], []
    with torch.no_grad():
        for f, post in _chunked_posteriors(model, data):
            keep = torch.isfinite(f)
            error = torch.where(keep, post.latent_mean - f, torch.zeros_like(f)).flatten(1)
            squared.append(error.pow(2).sum(1).to(torch.float64).cpu())
            prior.append(torch.where(keep, f, torch.zeros_like(f)).flatten(1).pow(2).sum(1).to(torch.float64).cpu())
            count.append(keep.flatten(1).sum(1).cpu())
            if std_scale is not None:
                inside = (error.abs() <= COVERAGE_Z * std_scale * post.latent_var.sqrt().flatten(1)) & keep.flatten(1)
                covered.append(inside.sum(1).cpu())
    joined = [torch.cat(parts) for parts in (squared, prior, count)]
    return (*joined, torch.cat(covered) if covered else None)


def _score(squared: torch.Tensor, count: torch.Tensor) -> ValidationScore:
    used = count > 0
    total = int(count.sum())
    mse = float(squared.sum()) / total if total else math.nan
    per_task = squared[used] / count[used]
    se = float(per_task.std() / math.sqrt(per_task.numel())) if per_task.numel() > 1 else 0.0
    return ValidationScore(mse=mse, se=se, n_tasks=int(used.sum()))


def validate(model: DKLFM, data: Standardised) -> ValidationScore:
    """Latent MSE of the posterior mean at the tasks' mesh (standardised units, finite ``f`` only), its standard error and the tasks it rests on."""
    squared, _, count, _ = _per_task_errors(model, data)
    return _score(squared, count)


def latent_mse(model: DKLFM, data: Standardised) -> float:
    """Mean squared error of the posterior latent mean at the tasks' mesh, standardised units, over observed f."""
    return validate(model, data).mse


def judge(model: DKLFM, data: Standardised, std_scale: float) -> Verdict:
    """The :class:`Verdict` of ``model`` on validation tasks ``data``, its latent std scaled by ``std_scale``.

    The prior-mean predictor predicts the training tasks' mean latent value, 0 in standardised units.
    """
    squared, prior, count, covered = _per_task_errors(model, data, std_scale)
    score = _score(squared, count)
    total = max(int(count.sum()), 1)
    return Verdict.judge(score.mse, score.se, float(prior.sum()) / total, float(covered.sum()) / total, score.n_tasks)


def latent_std_calibration(model: DKLFM, data: Standardised) -> float:
    """Factor ``c`` for the latent predictive std that makes the held-out 95% coverage exact.

    With standardised errors ``z = |mean - f| / std`` over every observed latent point of the
    tasks in ``data``, ``c = quantile(z, 0.95) / 1.96``: intervals ``mean +- 1.96 c std`` then
    cover 95% of these points.  A quantile rather than the NLPD-optimal ``sqrt(mean z^2)``,
    because the errors are heavier-tailed than Gaussian and coverage is what users read.

    Returns
    -------
    float
        Positive; 1.0 if ``data`` has no observed latent value.
    """
    scores = []
    with torch.no_grad():
        for f, post in _chunked_posteriors(model, data):
            keep = torch.isfinite(f)
            scores.append(((post.latent_mean - f).abs() / post.latent_var.sqrt())[keep])
    z = torch.cat(scores)
    if z.numel() == 0:
        return 1.0
    return max(float(torch.quantile(z, CALIBRATION_LEVEL)) / COVERAGE_Z, MIN_CALIBRATION)


def initialise_model(model_config: ModelConfig, config: TrainingConfig, coords: tuple[torch.Tensor, ...], device) -> DKLFM:
    """A fresh model seeded by ``config.seed``, its base lengthscale set relative to the span of its latent features over ``coords``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DKLFM(model_config).to(device)
    relative = model_config.relative_lengthscale or RELATIVE_LENGTHSCALE[model_config.input_dim]
    lengthscale = relative * model.latent_feature_span(coords)
    if lengthscale > MIN_LENGTHSCALE:
        model.set_lengthscale(lengthscale)
    return model


def fit_period_bounds(model: DKLFM, coords: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
    """Bound the phase input's period search by the periods of the tasks ``y (task, output, time)``.

    The 5th and 95th percentiles, widened by :data:`PERIOD_BOUND_MARGIN`: a task of the training
    distribution is searched near its period, away from the aliases at half and twice it.
    """
    periods = model.task_periods(coords, y)
    low, high = torch.quantile(periods, torch.tensor([0.05, 0.95], dtype=periods.dtype, device=periods.device)).tolist()
    model.set_period_bounds(low / PERIOD_BOUND_MARGIN, high * PERIOD_BOUND_MARGIN)


def batch_loss(model: DKLFM, coords: tuple[torch.Tensor, ...], y: torch.Tensor, f: torch.Tensor,
               points: torch.Tensor | None) -> torch.Tensor:
    """The training loss of one batch ``y (task, output, *mesh)``, ``f (task, *mesh)`` on the mesh points ``points`` (None = all)."""
    return model.loss(coords, y, f, points)


def make_optimiser(model: DKLFM, config: TrainingConfig) -> torch.optim.Adam:
    """Adam over two parameter groups: the task embedding at ``embedding_learning_rate_ratio`` of the rate, the rest at the full rate."""
    embedding = [p for name, p in model.named_parameters() if name.startswith("embedding.")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("embedding.")]
    groups = [{"params": rest, "lr_ratio": 1.0}]
    if embedding:
        groups.append({"params": embedding, "lr_ratio": config.embedding_learning_rate_ratio})
    for group in groups:
        group["lr"] = config.learning_rate * group["lr_ratio"]
    return torch.optim.Adam(groups, weight_decay=config.weight_decay)


def optimiser_step(model: DKLFM, optimiser: torch.optim.Optimizer, loss: torch.Tensor, gradient_clip: float) -> None:
    """Back-propagate ``loss``, clip the gradient norm to ``gradient_clip`` and step."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), gradient_clip)
    optimiser.step()


@dataclass
class _Run:
    """Mutable state of a training loop."""

    step: int = 0
    tasks_seen: int = 0
    best_state: dict | None = None
    best_score: float = math.inf
    best_validation: float | None = None
    best_se: float | None = None
    best_tasks: int | None = None
    epochs_since_best: int = 0


def train(
    tasks: TaskSet | SimulationSpec,
    config: TrainingConfig | None = None,
    model_config: ModelConfig | None = None,
    validation_tasks: TaskSet | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    parallel: DataParallel | None = None,
) -> TrainedModel:
    """Meta-train a DKLFM on a task set or on fresh simulations, and return the best model on held-out tasks.

    Parameters
    ----------
    tasks : TaskSet or SimulationSpec
        A task set: ``y (task, output, [space,] time)`` and ``f (task, [space,] time)``; NaN =
        missing.  A spec: every step draws ``config.batch_size`` fresh tasks from it, and a fixed
        validation set of ``config.validation_tasks`` is drawn once from its own stream.
    config : TrainingConfig, optional
    model_config : ModelConfig, optional
        ``n_outputs`` and ``input_dim`` are taken from the data when None.
    validation_tasks : TaskSet, optional
        Held-out tasks for model selection (task-set training); default: ``config.validation`` of ``tasks``.
    progress : callable ``(TrainingProgress) -> None``, optional
        Called after every epoch and once at the end (with ``stopped_reason`` set).
    cancel : callable ``() -> bool``, optional
        Polled before every batch; when True, training stops and the best model so far is returned.
    parallel : DataParallel, optional
        This process's place in a data-parallel run (:mod:`dklfm_explore.distributed`): it takes
        its share of the batches (``config.batch_size`` is per process), process 0 alone
        validates and calls ``progress``, and every process stops at the same step.  Only process
        0's model has a verdict and a calibration.

    Returns
    -------
    TrainedModel
        Normaliser fitted on training tasks only (never the validation or test tasks); ``verdict``
        on the validation tasks (None without them); ``provenance``.

    Raises
    ------
    InvalidInputError
        Bad tasks or configs (no latent force, infinite values, output count mismatch).
    TrainingDivergedError
        If the loss became NaN/infinite before any epoch finished with a finite validation error.
    """
    config = (config or TrainingConfig()).validate()
    device = resolve_device(config.device)
    if isinstance(tasks, SimulationSpec):
        if validation_tasks is not None:
            raise InvalidInputError("Training from a SimulationSpec draws its own validation tasks; do not pass validation_tasks.")
        data = spec_source(tasks, config, device)
    else:
        data = task_set_source(tasks, config, validation_tasks, device)
    parallel = parallel or SingleProcess()
    held_out = data.validation
    data = parallel.share(data)
    model_config = _complete(model_config, data)
    model, run, history, (reason, message), epoch, restarts = _optimise_with_restarts(
        model_config, data, held_out, config, device, progress, cancel, parallel)

    model.load_state_dict(run.best_state)
    model.eval()
    std_scale, verdict = 1.0, None
    if data.validation is not None:
        if config.calibrate:
            std_scale = latent_std_calibration(model, data.validation)
        verdict = judge(model, data.validation, std_scale)
    final = TrainingProgress(
        epoch=epoch, n_epochs=config.epochs, loss=history[-1]["loss"] if history else math.nan,
        validation_latent_mse=history[-1]["validation_latent_mse"] if history else None,
        best_validation_latent_mse=run.best_validation, elapsed_s=history[-1]["elapsed_s"] if history else 0.0, eta_s=0.0,
        device=str(device), stopped_reason=reason, message=message, step=run.step, tasks_seen=run.tasks_seen,
        validation_latent_mse_se=run.best_se, validation_tasks=run.best_tasks,
    )
    history.append(final.to_dict())
    if progress is not None:
        progress(final)
    return TrainedModel(
        module=model, normaliser=data.normaliser, system_name=data.system_name, output_names=data.output_names,
        config=config, model_config=model_config, history=history, time_window=data.time_window,
        space_window=data.space_window, latent_std_scale=std_scale, verdict=verdict,
        ood_reference=None if data.validation is None else reference_from_standardised(model, data.validation.coords, data.validation.y),
        provenance=dict(data.provenance, steps=run.step, tasks_seen=run.tasks_seen, **restarts),
    )


def _optimise_with_restarts(model_config: ModelConfig, data: TrainingData, held_out: Standardised | None,
                            config: TrainingConfig, device, progress, cancel, parallel):
    """:func:`_optimise` from a fresh start, restarting from other initial weights while the first validation
    sits on the prior (``config.restarts`` times at most, within the one step and time budget).

    Returns ``_optimise``'s five values and the provenance of the restarts (empty when there was none).
    """
    started, steps, seeds = time.perf_counter(), 0, []
    for attempt in range(config.restarts + 1):
        seed = config.seed + attempt * RESTART_SEED_STRIDE
        elapsed = time.perf_counter() - started
        budget = replace(
            config, seed=seed,
            max_seconds=None if config.max_seconds is None else max(config.max_seconds - elapsed, 1e-3),
            max_steps=None if config.max_steps is None else max(config.max_steps - steps, 1),
        )
        model = initialise_model(model_config, budget, data.coords, device)
        if model.phase and held_out is not None:
            fit_period_bounds(model, data.coords, held_out.y)
        model, run, history, stop, epoch = _optimise(model, data, budget, device, progress, cancel, parallel,
                                                     check_stuck=attempt < config.restarts)
        if stop[0] != "stuck":
            break
        seeds.append(seed)
        steps += run.step
        logger.info("seed %d: %s; restarting", seed, stop[1])
    if not seeds:
        return model, run, history, stop, epoch, {}
    note = (f"Restarted {len(seeds)} time(s): the first validation of the start(s) with seed(s) "
            f"{', '.join(map(str, seeds))} was no better than the prior mean.")
    return model, run, history, (stop[0], f"{stop[1]} {note}"), epoch, {"restarts": len(seeds), "steps_before_restart": steps, "seed_used": seed}


def _optimise(model: DKLFM, data: TrainingData, config: TrainingConfig, device, progress, cancel, parallel: SingleProcess,
              check_stuck: bool = False):
    """The epoch loop: steps, validation, model selection, stopping.  Returns the model, run state, history, stop and last epoch.

    With ``check_stuck``, a first validation no better than the prior mean (:func:`_at_prior`) stops the loop
    with the reason ``"stuck"`` (for :func:`_optimise_with_restarts`; never a final reason).

    Every decision goes through ``parallel``, so that the processes of a data-parallel run take the same ones.
    """
    optimiser = make_optimiser(model, config)
    total_steps = config.epochs * data.source.steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    generator = torch.Generator().manual_seed(config.seed)
    run, history = _Run(), []
    start_time = time.perf_counter()
    reason, message = "completed", f"Trained for the full {config.epochs} epochs."
    epoch = 0
    loss_model = parallel.loss_model(model)
    for epoch in range(1, config.epochs + 1):
        model.train()
        losses, stop = [], None
        for batch, (y, f) in enumerate(data.source.epoch(generator)):
            stop = _step_stop(cancel, config, time.perf_counter() - start_time, epoch)
            points = _subset(data.n_mesh, config.max_points, generator, device)
            # every process of a data-parallel run calls the wrapped forward each step: it may hold a collective
            if stop is None or parallel.world_size > 1:
                loss, failure = _loss_or_failure(loss_model, data.coords, y, f, points, f"epoch {epoch}, batch {batch + 1}")
                stop = stop or failure
            stop, elapsed = parallel.agree(stop, time.perf_counter() - start_time)
            if stop is not None:
                break
            optimiser_step(model, optimiser, loss, config.gradient_clip)
            run.step += 1
            run.tasks_seen += int(y.shape[0]) * parallel.world_size
            _set_learning_rate(optimiser, config, _progress(run.step, total_steps, elapsed, config.max_seconds))
            losses.append(loss.item())
            if config.max_steps is not None and run.step >= config.max_steps:
                stop = ("step-limit", f"Reached the step limit of {config.max_steps} steps during epoch {epoch}.")
                break
        epoch_loss = parallel.mean(float(np.mean(losses))) if losses else math.nan
        elapsed = time.perf_counter() - start_time
        if stop is not None and (stop[0] == "diverged" or not losses):
            reason, message = stop
            if run.best_state is None and reason != "diverged":
                run.best_state = _snapshot(model)
            break
        model.eval()
        score, failure = parallel.from_main(_validation_score(model, data.validation, epoch))
        if failure is not None:
            reason, message = "diverged", failure
            break
        value = score.mse if score is not None else epoch_loss
        if not math.isfinite(value):
            reason, message = "diverged", f"The validation latent MSE became {value} after epoch {epoch}."
            break
        if check_stuck and epoch == 1 and stop is None and parallel.from_main(_at_prior(score, data.validation)):
            reason, message = "stuck", f"Validation latent MSE {score.mse:.3g} after the first epoch sits on the prior."
            run.best_state = _snapshot(model)
            break
        if value < run.best_score:
            run.best_score, run.best_state, run.epochs_since_best = value, _snapshot(model), 0
            run.best_validation = score.mse if score is not None else None
            run.best_se = score.se if score is not None else None
            run.best_tasks = score.n_tasks if score is not None else None
        else:
            run.epochs_since_best += 1
        eta = elapsed / epoch * (config.epochs - epoch)
        if config.max_seconds is not None:
            eta = min(eta, max(config.max_seconds - elapsed, 0.0))
        record = TrainingProgress(
            epoch=epoch, n_epochs=config.epochs, loss=epoch_loss,
            validation_latent_mse=score.mse if score is not None else None,
            best_validation_latent_mse=run.best_validation, elapsed_s=elapsed, eta_s=eta, device=str(device),
            step=run.step, tasks_seen=run.tasks_seen, validation_latent_mse_se=score.se if score is not None else None,
            validation_tasks=score.n_tasks if score is not None else None,
        )
        history.append(record.to_dict())
        logger.debug("epoch %d loss %.4f validation %s", epoch, epoch_loss, record.validation_latent_mse)
        if progress is not None:
            progress(record)
        if stop is not None:
            reason, message = stop
            break
        if run.epochs_since_best >= config.patience:
            reason, message = "early-stopping", f"No better validation error for {config.patience} epochs; kept epoch {epoch - config.patience}."
            break
    if run.best_state is None:
        raise TrainingDivergedError(f"Training stopped before any epoch finished with a finite error ({message})")
    return model, run, history, (reason, message), epoch


def _step_stop(cancel, config: TrainingConfig, elapsed: float, epoch: int) -> tuple[str, str] | None:
    """Why training must stop before this step's update (cancelled, out of time), or None."""
    if cancel is not None and cancel():
        return ("cancelled", f"Cancelled during epoch {epoch}.")
    if config.max_seconds is not None and elapsed > config.max_seconds:
        return ("time-limit", f"Reached the time limit of {config.max_seconds:g} s during epoch {epoch}.")
    return None


def _loss_or_failure(loss_model, coords, y: torch.Tensor, f: torch.Tensor, points, where: str):
    """The batch loss, or None and the ``("diverged", message)`` of a failed factorisation or a non-finite loss."""
    try:
        loss = batch_loss(loss_model, coords, y, f, points)
    except CholeskyError as error:
        return None, ("diverged", f"{where[0].upper()}{where[1:]}: {error}")
    if not torch.isfinite(loss):
        return loss, ("diverged", f"The training loss became {loss.item()} at {where}.")
    return loss, None


def _at_prior(score: ValidationScore | None, validation: Standardised | None) -> bool:
    """Whether ``score`` is at least :data:`STUCK_RATIO` times the prior-mean predictor's MSE on ``validation`` (False without them)."""
    if score is None or validation is None:
        return False
    finite = validation.f[torch.isfinite(validation.f)]
    return finite.numel() > 0 and score.mse >= STUCK_RATIO * float(finite.pow(2).mean())


def _validation_score(model: DKLFM, validation: Standardised | None, epoch: int) -> tuple[ValidationScore | None, str | None]:
    """The epoch's validation score (None without validation tasks) and the message of a failed validation (else None)."""
    if validation is None:
        return None, None
    try:
        return validate(model, validation), None
    except CholeskyError as error:
        return None, f"Validation after epoch {epoch} failed: {error}"


def default_time_input(data: TrainingData) -> str:
    """``"phase"`` for tasks over time only whose spec draws a periodic force, else ``"time"``.

    A periodic force makes periodic outputs: the phase input (:class:`~dklfm_explore.model.dklfm.ModelConfig`) lets
    features beyond the training window repeat those inside it, as the paper's periodic kernel for Lotka-Volterra did.
    Tasks without a spec (a file without one, a system not registered here) get ``"time"``.
    """
    spec = data.provenance.get("spec")
    if data.input_dim != 1 or spec is None:
        return "time"
    try:
        prior = SimulationSpec.from_dict(spec).resolved().force_prior
    except (InvalidInputError, UnknownNameError):
        return "time"
    return "phase" if prior is not None and prior.kernel == "periodic" else "time"


def _complete(model_config: ModelConfig | None, data: TrainingData) -> ModelConfig:
    """Fill ``n_outputs``, ``input_dim`` and an unset ``time_input`` (:func:`default_time_input`) from the data;
    raise InvalidInputError where a given value contradicts it."""
    model_config = model_config or ModelConfig()
    if model_config.time_input is None:
        model_config = replace(model_config, time_input=default_time_input(data))
    if model_config.n_outputs is not None and model_config.n_outputs != data.n_outputs:
        raise InvalidInputError(f"ModelConfig.n_outputs is {model_config.n_outputs} but the tasks have {data.n_outputs} outputs.")
    if model_config.input_dim is not None and model_config.input_dim != data.input_dim:
        raise InvalidInputError(f"ModelConfig.input_dim is {model_config.input_dim} but the tasks' mesh has {data.input_dim} dimension(s).")
    return replace(model_config, n_outputs=data.n_outputs, input_dim=data.input_dim).validate()


def _subset(n_mesh: int, max_points: int | None, generator: torch.Generator, device) -> torch.Tensor | None:
    """Random flat mesh indices for one training step, or None if the whole mesh fits in ``max_points``."""
    if max_points is None or n_mesh <= max_points:
        return None
    return torch.randperm(n_mesh, generator=generator)[:max_points].to(device)


def _progress(step: int, total_steps: int, elapsed: float, max_seconds: float | None) -> float:
    """Fraction of training done: of the steps, or of the time budget if that runs out first."""
    done = step / total_steps
    if max_seconds is not None:
        done = max(done, elapsed / max_seconds)
    return min(done, 1.0)


def _set_learning_rate(optimiser: torch.optim.Optimizer, config: TrainingConfig, progress: float) -> None:
    """Cosine decay from ``learning_rate`` to ``FINAL_LEARNING_RATE_RATIO`` of it as ``progress`` goes 0 -> 1."""
    floor = FINAL_LEARNING_RATE_RATIO * config.learning_rate
    rate = floor + 0.5 * (config.learning_rate - floor) * (1.0 + math.cos(math.pi * progress))
    for group in optimiser.param_groups:
        group["lr"] = rate * group.get("lr_ratio", 1.0)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}
