"""Settings and progress records of training: plain dataclasses, importing nothing of the package but errors.

:class:`TrainingConfig` is what :func:`~dklfm_explore.train.train` is told, :class:`TrainingProgress`
what it reports after every epoch.  The model's own settings are
:class:`~dklfm_explore.model.dklfm.ModelConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import InvalidInputError

__all__ = ["TrainingConfig", "TrainingProgress", "STOP_REASONS", "config_from_dict"]

STOP_REASONS = ("early-stopping", "cancelled", "diverged", "time-limit", "step-limit", "completed")


def config_from_dict(cls, values: dict):
    """Build the dataclass ``cls`` from ``values``, naming any key that is not one of its fields."""
    if not isinstance(values, dict):
        raise InvalidInputError(f"{cls.__name__} must be read from a dict, got {type(values).__name__}.")
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise InvalidInputError(f"Unknown {cls.__name__} field(s) {sorted(unknown)}; valid fields are {sorted(known)}.")
    return cls(**values)


@dataclass
class TrainingConfig:
    """Settings of :func:`~dklfm_explore.train.train`; every field has a default sized for a few CPU minutes.

    Parameters
    ----------
    epochs : int
        Maximum epochs: passes over a task set, or ``epoch_tasks`` fresh tasks when training from a spec.
    batch_size : int
        Tasks per optimiser step (16: on a CPU the number of steps, not their size, limits progress;
        measured 256 transcription tasks x 20 points: held-out latent MSE 0.26 (standardised) in 80 s).
    learning_rate : float
        Initial Adam learning rate (cosine decay to 10% of it over the step or time budget).
    embedding_learning_rate_ratio : float
        The task embedding's learning rate as a fraction of ``learning_rate`` (the kernel, features and
        noises take the full rate).  1 (default): measured on transcription from the simulator, 300 steps,
        seeds 0-3, 0.05 gave held-out latent MSE 0.21/0.24/0.17/0.35 against 0.20/0.16/0.14/0.16 at 1
        (docs/tuning.md); a smaller ratio slows the embedding where a run needs it to move.
    weight_decay : float
        Adam weight decay.
    validation : float
        Fraction of a task set held out for model selection when no ``validation_tasks`` are
        given; 0 selects on the training loss instead (and gives no verdict).
    patience : int
        Epochs without a better validation error before stopping.
    seed : int
        Seeds the initial weights, the batch order and the mesh subsets (no global RNG is touched).
        The tasks drawn from a spec follow the spec's own seed.
    device : str or None
        ``None``/``"auto"``: CUDA if available, else CPU.
    max_seconds : float or None
        Wall-clock budget; the best model so far is returned when it runs out.
    max_steps : int or None
        Optimiser-step budget (whichever of it, ``max_seconds`` and ``epochs`` comes first).
    gradient_clip : float
        Maximum gradient norm per step (a bad batch cannot throw the model far).
    max_points : int or None
        Mesh points per task in each training step: on larger meshes every batch conditions on a
        fresh random subset of this many points (the embedding still sees whole curves), so a step
        costs O(max_points^3) per task instead of O(mesh^3).  None = always the whole mesh.
    calibrate : bool
        After training, scale the latent predictive standard deviation by one factor chosen on the
        validation tasks so that their 95% intervals hold 95% of the true latent values
        (:func:`~dklfm_explore.train.latent_std_calibration`); without validation tasks it stays 1.
    epoch_tasks : int
        Training from a spec: fresh tasks drawn per epoch (between two validations).
    validation_tasks : int or None
        Training from a spec: size of the fixed validation set; None = 512 for time-only systems,
        64 for space x time ones (there one validation pass costs far more; see benchmarks/README.md).
    in_memory_limit_mb : float
        A task set whose ``y`` and ``f`` take more than this is streamed from its file batch by
        batch (a block of tasks at a time) instead of loaded whole.
    restarts : int
        Fresh starts (other initial weights, seeded ``seed + k * RESTART_SEED_STRIDE``) when the first
        validation finds the model no better than the prior mean (:data:`~dklfm_explore.train.STUCK_RATIO`):
        a run that decoupled the latent from the outputs in its first epoch never recouples (DESIGN.md
        pitfalls), so the rest of the budget is better spent on another start.  The step and time budgets
        cover all starts together.  Needs validation tasks; 0 turns it off.
    """

    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 3e-3
    embedding_learning_rate_ratio: float = 1.0
    weight_decay: float = 0.0
    validation: float = 0.1
    patience: int = 20
    seed: int = 0
    device: str | None = None
    max_seconds: float | None = None
    max_steps: int | None = None
    gradient_clip: float = 10.0
    max_points: int | None = 128
    calibrate: bool = True
    epoch_tasks: int = 2048
    validation_tasks: int | None = None
    in_memory_limit_mb: float = 1024.0
    restarts: int = 2

    def validate(self) -> "TrainingConfig":
        """Return ``self`` after checking every field; raise :class:`InvalidInputError` otherwise."""
        if self.max_points is not None and int(self.max_points) < 2:
            raise InvalidInputError(f"TrainingConfig.max_points must be at least 2 or None, got {self.max_points}.")
        for name in ("epochs", "batch_size", "patience", "epoch_tasks"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"TrainingConfig.{name} must be at least 1, got {getattr(self, name)}.")
        if int(self.restarts) < 0:
            raise InvalidInputError(f"TrainingConfig.restarts must be 0 or more, got {self.restarts}.")
        for name in ("max_steps", "validation_tasks"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise InvalidInputError(f"TrainingConfig.{name} must be at least 1 or None, got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise InvalidInputError(f"TrainingConfig.learning_rate must be positive, got {self.learning_rate}.")
        if not 0 < self.embedding_learning_rate_ratio <= 1:
            raise InvalidInputError(
                f"TrainingConfig.embedding_learning_rate_ratio must be in (0, 1], got {self.embedding_learning_rate_ratio}."
            )
        if not 0 <= self.validation < 1:
            raise InvalidInputError(f"TrainingConfig.validation must be a fraction in [0, 1), got {self.validation}.")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InvalidInputError(f"TrainingConfig.max_seconds must be positive or None, got {self.max_seconds}.")
        if self.weight_decay < 0 or not self.gradient_clip > 0:
            raise InvalidInputError(
                f"TrainingConfig needs weight_decay >= 0 and gradient_clip > 0, got {self.weight_decay} and {self.gradient_clip}."
            )
        if not self.in_memory_limit_mb > 0:
            raise InvalidInputError(f"TrainingConfig.in_memory_limit_mb must be positive, got {self.in_memory_limit_mb}.")
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
    step : int
        Optimiser steps so far.
    tasks_seen : int
        Training tasks the steps so far conditioned on (with repeats for a task set).
    validation_latent_mse_se : float or None
        Standard error of ``validation_latent_mse`` over the validation tasks.
    validation_tasks : int or None
        Validation tasks with a finite latent value that ``validation_latent_mse`` rests on (in the
        final record: those of ``best_validation_latent_mse``).
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
    step: int = 0
    tasks_seen: int = 0
    validation_latent_mse_se: float | None = None
    validation_tasks: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)
