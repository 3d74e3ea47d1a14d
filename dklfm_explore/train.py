"""Meta-training of a :class:`~dklfm_explore.model.DKLFM` over a set of simulated tasks.

Adam with a cosine learning-rate schedule over batches of tasks (over the time budget when
``max_seconds`` ends training before the last epoch); after every
epoch the latent force of held-out validation tasks is predicted from their
outputs, and the model with the lowest validation latent MSE (standardised
units) is kept (DESIGN.md pitfalls: the marginal likelihood keeps improving
while the held-out latent error rises).  Training stops early after
``patience`` epochs without improvement, when ``max_seconds`` is reached, when
``cancel()`` returns True, or when the loss becomes NaN/infinite.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch

from .data import Normaliser, TaskSet
from .devices import resolve_device
from .ood import ood_reference
from .errors import CholeskyError, InvalidInputError, TrainingDivergedError
from .model.dklfm import RELATIVE_LENGTHSCALE, DKLFM, ModelConfig, config_from_dict
from .model.kernel import MIN_LENGTHSCALE

__all__ = ["train", "TrainingConfig", "TrainingProgress", "STOP_REASONS", "latent_std_calibration"]

logger = logging.getLogger(__name__)

STOP_REASONS = ("early-stopping", "cancelled", "diverged", "time-limit", "completed")
FINAL_LEARNING_RATE_RATIO = 0.1
"""The cosine schedule ends at this fraction of the initial learning rate (keeps late epochs useful)."""
VALIDATION_CHUNK = 256
"""Validation tasks conditioned at once (bounds the memory of the batched Cholesky factors)."""
CALIBRATION_LEVEL = 0.95
"""Central interval whose held-out coverage the latent-std calibration makes exact."""
CALIBRATION_Z = 1.959963984540054
"""Half-width of the central 95% Gaussian interval in standard deviations."""
MIN_CALIBRATION = 1e-2
"""Floor of the calibration factor: the std includes sigma_f, so a 100x too wide predictive std is not a case to fit."""


@dataclass
class TrainingConfig:
    """Settings of :func:`train`; every field has a default sized for a few CPU minutes.

    Parameters
    ----------
    epochs : int
        Maximum passes over the training tasks.
    batch_size : int
        Tasks per optimiser step (16: on a CPU the number of steps, not their size, limits progress;
        measured 256 transcription tasks x 20 points: held-out latent MSE 0.26 (standardised) in 80 s).
    learning_rate : float
        Initial Adam learning rate (cosine decay to 10% of it over ``epochs``).
    weight_decay : float
        Adam weight decay.
    validation : float
        Fraction of the training tasks held out for model selection when no
        ``validation_tasks`` are given; 0 selects on the training loss instead.
    patience : int
        Epochs without a better validation error before stopping.
    seed : int
        Seeds the initial weights and the batch order (no global RNG is touched).
    device : str or None
        ``None``/``"auto"``: CUDA if available, else CPU.
    max_seconds : float or None
        Wall-clock budget; the best model so far is returned when it runs out.
    gradient_clip : float
        Maximum gradient norm per step (a bad batch cannot throw the model far).
    max_points : int or None
        Mesh points per task in each training step: on larger meshes every batch conditions on a
        fresh random subset of this many points (the embedding still sees whole curves), so a step
        costs O(max_points^3) per task instead of O(mesh^3).  Measured: on 21 x 21 reaction-diffusion
        meshes a full-mesh epoch took 75 s on one core.  None = always the whole mesh.
    calibrate : bool
        After training, scale the latent predictive standard deviation by one factor chosen on the
        validation tasks so that their 95% intervals hold 95% of the true latent values
        (:func:`latent_std_calibration`); without validation tasks the factor stays 1.
    """

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    validation: float = 0.1
    patience: int = 20
    seed: int = 0
    device: str | None = None
    max_seconds: float | None = None
    gradient_clip: float = 10.0
    max_points: int | None = 128
    calibrate: bool = True

    def validate(self) -> "TrainingConfig":
        """Return ``self`` after checking every field; raise :class:`InvalidInputError` otherwise."""
        if self.max_points is not None and int(self.max_points) < 2:
            raise InvalidInputError(f"TrainingConfig.max_points must be at least 2 or None, got {self.max_points}.")
        for name in ("epochs", "batch_size", "patience"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"TrainingConfig.{name} must be at least 1, got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise InvalidInputError(f"TrainingConfig.learning_rate must be positive, got {self.learning_rate}.")
        if not 0 <= self.validation < 1:
            raise InvalidInputError(f"TrainingConfig.validation must be a fraction in [0, 1), got {self.validation}.")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InvalidInputError(f"TrainingConfig.max_seconds must be positive or None, got {self.max_seconds}.")
        if self.weight_decay < 0 or not self.gradient_clip > 0:
            raise InvalidInputError(
                f"TrainingConfig needs weight_decay >= 0 and gradient_clip > 0, got {self.weight_decay} and {self.gradient_clip}."
            )
        return self

    def to_dict(self) -> dict:
        values = asdict(self)
        values["device"] = None if self.device is None else str(self.device)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        return config_from_dict(cls, values)


@dataclass
class TrainingProgress:
    """State of a training run after an epoch (passed to the ``progress`` callback).

    Attributes
    ----------
    epoch, n_epochs : int
    loss : float
        Mean training loss of the epoch (per-point negative log likelihood, see :meth:`DKLFM.loss`).
    validation_latent_mse : float or None
        Held-out latent MSE in standardised units (None without validation tasks).
    best_validation_latent_mse : float or None
    elapsed_s, eta_s : float
        Seconds since the start; estimated seconds to the end (0 when stopped).
    device : str
    stopped_reason : str or None
        None while running, else one of :data:`STOP_REASONS`.
    message : str
        A sentence explaining the stop (empty while running).
    """

    epoch: int
    n_epochs: int
    loss: float
    validation_latent_mse: float | None
    best_validation_latent_mse: float | None
    elapsed_s: float
    eta_s: float
    device: str
    stopped_reason: str | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Prepared:
    """Tensors of a task set in the model's standardised units, on the training device."""

    coords: tuple[torch.Tensor, ...]
    y: torch.Tensor
    f: torch.Tensor


def prepare(tasks: TaskSet, normaliser: Normaliser, device: torch.device) -> _Prepared:
    """Standardise a task set's mesh, outputs and latent force with ``normaliser``."""
    coords = (normaliser.transform_time(tasks.time.clone()),)
    if tasks.is_spatial:
        coords = (normaliser.transform_space(tasks.space.clone()),) + coords
    y = normaliser.transform_y(tasks.y())
    f = normaliser.transform_f(tasks.f())
    return _Prepared(tuple(c.to(device) for c in coords), y.to(device), f.to(device))


def _check_tasks(tasks: TaskSet, what: str) -> None:
    if not isinstance(tasks, TaskSet):
        raise InvalidInputError(f"{what} must be a TaskSet, got {type(tasks).__name__}.")
    if not tasks.has_latent:
        raise InvalidInputError(f"{what} carry no latent force `f`; training needs simulated tasks with a known force.")
    for name in ("y", "f"):
        values = np.asarray(tasks.dataset[name].values)
        if np.isinf(values).any():
            raise InvalidInputError(f"{what} contain infinite values in `{name}`; use NaN for missing values.")


def latent_mse(model: DKLFM, data: _Prepared) -> float:
    """Mean squared error of the posterior latent mean at the tasks' mesh, standardised units, over observed f."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, data.y.shape[0], VALIDATION_CHUNK):
            y = data.y[start : start + VALIDATION_CHUNK]
            f = data.f[start : start + VALIDATION_CHUNK]
            mean = model.posterior(data.coords, y).latent_mean
            error = (mean - f)[~torch.isnan(f)]
            total += float(error.pow(2).sum())
            count += error.numel()
    return total / max(count, 1)


def latent_std_calibration(model: DKLFM, data: _Prepared) -> float:
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
        for start in range(0, data.y.shape[0], VALIDATION_CHUNK):
            f = data.f[start : start + VALIDATION_CHUNK]
            post = model.posterior(data.coords, data.y[start : start + VALIDATION_CHUNK])
            keep = ~torch.isnan(f)
            scores.append(((post.latent_mean - f).abs() / post.latent_var.sqrt())[keep])
    z = torch.cat(scores)
    if z.numel() == 0:
        return 1.0
    return max(float(torch.quantile(z, CALIBRATION_LEVEL)) / CALIBRATION_Z, MIN_CALIBRATION)


def train(
    train_tasks: TaskSet,
    config: TrainingConfig | None = None,
    model_config: ModelConfig | None = None,
    validation_tasks: TaskSet | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
):
    """Meta-train a DKLFM on simulated tasks and return the best model on held-out tasks.

    Parameters
    ----------
    train_tasks : TaskSet
        ``y (task, output, [space,] time)`` and ``f (task, [space,] time)``; NaN = missing.
    config : TrainingConfig, optional
    model_config : ModelConfig, optional
        ``n_outputs`` and ``input_dim`` are taken from the data when None.
    validation_tasks : TaskSet, optional
        Held-out tasks for model selection; default: ``config.validation`` of ``train_tasks``.
    progress : callable ``(TrainingProgress) -> None``, optional
        Called after every epoch and once at the end (with ``stopped_reason`` set).
    cancel : callable ``() -> bool``, optional
        Polled before every batch; when True, training stops and the best model so far is returned.

    Returns
    -------
    TrainedModel
        Normaliser fitted on the training tasks only (never the validation or test tasks).

    Raises
    ------
    InvalidInputError
        Bad tasks or configs (no latent force, infinite values, output count mismatch).
    TrainingDivergedError
        If the loss became NaN/infinite before any epoch finished with a finite validation error.
    """
    from .trained import TrainedModel

    config = (config or TrainingConfig()).validate()
    _check_tasks(train_tasks, "The training tasks")
    device = resolve_device(config.device)
    if validation_tasks is None and config.validation > 0:
        if train_tasks.n_tasks < 2:
            raise InvalidInputError(f"Training with validation needs at least 2 tasks, got {train_tasks.n_tasks}.")
        train_tasks, validation_tasks = train_tasks.split(max(config.validation, 1 / train_tasks.n_tasks), seed=config.seed)
    if validation_tasks is not None:
        _check_tasks(validation_tasks, "The validation tasks")
        if validation_tasks.n_outputs != train_tasks.n_outputs or validation_tasks.is_spatial != train_tasks.is_spatial:
            raise InvalidInputError(
                f"Validation tasks have {validation_tasks.n_outputs} outputs (spatial={validation_tasks.is_spatial}) "
                f"but training tasks have {train_tasks.n_outputs} (spatial={train_tasks.is_spatial})."
            )
    model_config = _complete(model_config, train_tasks)
    normaliser = Normaliser.fit(train_tasks)
    data = prepare(train_tasks, normaliser, device)
    validation = prepare(validation_tasks, normaliser, device) if validation_tasks is not None else None

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DKLFM(model_config).to(device)
    relative = model_config.relative_lengthscale or RELATIVE_LENGTHSCALE[model_config.input_dim]
    lengthscale = relative * model.latent_feature_span(data.coords)
    if lengthscale > MIN_LENGTHSCALE:
        model.set_lengthscale(lengthscale)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    n_batches = math.ceil(data.y.shape[0] / config.batch_size)
    total_steps = config.epochs * n_batches
    n_mesh = data.f.shape[1:].numel()
    generator = torch.Generator().manual_seed(config.seed)

    history: list[dict] = []
    best_state, best_score, best_validation = None, math.inf, None
    epochs_since_best = 0
    start_time = time.perf_counter()
    reason, message = "completed", f"Trained for the full {config.epochs} epochs."
    epoch, step = 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(data.y.shape[0], generator=generator).to(device)
        losses = []
        stop = None
        for batch in range(n_batches):
            if cancel is not None and cancel():
                stop = ("cancelled", f"Cancelled during epoch {epoch}.")
                break
            if config.max_seconds is not None and time.perf_counter() - start_time > config.max_seconds:
                stop = ("time-limit", f"Reached the time limit of {config.max_seconds:g} s during epoch {epoch}.")
                break
            index = order[batch * config.batch_size : (batch + 1) * config.batch_size]
            try:
                loss = model.loss(data.coords, data.y[index], data.f[index], _subset(n_mesh, config.max_points, generator, device))
            except CholeskyError as error:
                stop = ("diverged", f"Epoch {epoch}, batch {batch + 1}: {error}")
                break
            if not torch.isfinite(loss):
                stop = ("diverged", f"The training loss became {loss.item()} at epoch {epoch}, batch {batch + 1}.")
                break
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
            optimiser.step()
            step += 1
            _set_learning_rate(optimiser, config, _progress(step, total_steps, time.perf_counter() - start_time, config.max_seconds))
            losses.append(loss.item())
        epoch_loss = float(np.mean(losses)) if losses else math.nan
        elapsed = time.perf_counter() - start_time
        if stop is not None and (stop[0] == "diverged" or not losses):
            reason, message = stop
            if best_state is None and reason != "diverged":
                best_state = _snapshot(model)
            break
        model.eval()
        try:
            score = latent_mse(model, validation) if validation is not None else epoch_loss
        except CholeskyError as error:
            reason, message = "diverged", f"Validation after epoch {epoch} failed: {error}"
            break
        if not math.isfinite(score):
            reason, message = "diverged", f"The validation latent MSE became {score} after epoch {epoch}."
            break
        if score < best_score:
            best_score, best_state, epochs_since_best = score, _snapshot(model), 0
            best_validation = score if validation is not None else None
        else:
            epochs_since_best += 1
        eta = elapsed / epoch * (config.epochs - epoch)
        if config.max_seconds is not None:
            eta = min(eta, max(config.max_seconds - elapsed, 0.0))
        record = TrainingProgress(
            epoch=epoch, n_epochs=config.epochs, loss=epoch_loss,
            validation_latent_mse=score if validation is not None else None,
            best_validation_latent_mse=best_validation, elapsed_s=elapsed, eta_s=eta, device=str(device),
        )
        history.append(record.to_dict())
        logger.debug("epoch %d loss %.4f validation %s", epoch, epoch_loss, record.validation_latent_mse)
        if progress is not None:
            progress(record)
        if stop is not None:
            reason, message = stop
            break
        if epochs_since_best >= config.patience:
            reason, message = "early-stopping", f"No better validation error for {config.patience} epochs; kept epoch {epoch - config.patience}."
            break

    if best_state is None:
        raise TrainingDivergedError(f"Training stopped before any epoch finished with a finite error ({message})")
    model.load_state_dict(best_state)
    model.eval()
    std_scale = 1.0
    if config.calibrate and validation is not None:
        std_scale = latent_std_calibration(model, validation)
    final = TrainingProgress(
        epoch=epoch, n_epochs=config.epochs, loss=history[-1]["loss"] if history else math.nan,
        validation_latent_mse=history[-1]["validation_latent_mse"] if history else None,
        best_validation_latent_mse=best_validation, elapsed_s=time.perf_counter() - start_time, eta_s=0.0,
        device=str(device), stopped_reason=reason, message=message,
    )
    history.append(final.to_dict())
    if progress is not None:
        progress(final)
    return TrainedModel(
        module=model,
        normaliser=normaliser,
        system_name=train_tasks.system_name,
        output_names=train_tasks.output_names,
        config=config,
        model_config=model_config,
        history=history,
        time_window=(float(train_tasks.time[0]), float(train_tasks.time[-1])),
        space_window=(float(train_tasks.space[0]), float(train_tasks.space[-1])) if train_tasks.is_spatial else None,
        latent_std_scale=std_scale,
        ood_reference=None if validation_tasks is None else ood_reference(model, normaliser, validation_tasks),
    )


def _complete(model_config: ModelConfig | None, tasks: TaskSet) -> ModelConfig:
    """Fill ``n_outputs`` and ``input_dim`` from the data and check given values against it."""
    model_config = model_config or ModelConfig()
    input_dim = 2 if tasks.is_spatial else 1
    if model_config.n_outputs is not None and model_config.n_outputs != tasks.n_outputs:
        raise InvalidInputError(f"ModelConfig.n_outputs is {model_config.n_outputs} but the tasks have {tasks.n_outputs} outputs.")
    if model_config.input_dim is not None and model_config.input_dim != input_dim:
        raise InvalidInputError(f"ModelConfig.input_dim is {model_config.input_dim} but the tasks' mesh has {input_dim} dimension(s).")
    return replace(model_config, n_outputs=tasks.n_outputs, input_dim=input_dim).validate()


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
        group["lr"] = rate


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}
