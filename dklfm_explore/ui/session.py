"""The state one page works on: the simulation spec, the task set it made, the models and the current one.

Every view reads this state; none reads another view.  Models stay in :attr:`Session.models` with
their verdict and their scores on the session's held-out tasks, so that a worse model never silently
replaces a better one and one click brings any back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import param

from ..data import TaskSet
from ..metrics import latent_metrics
from ..simulate import simulate

__all__ = ["Session", "ModelEntry", "Evaluation", "SimulationSpec", "simulate_spec", "verdict_of", "LEARNED_RATIO"]

LEARNED_RATIO = 0.5
"""A model has learned when its latent MSE is below this share of the prior mean's and, plus two standard errors, below the prior mean's."""


@dataclass(frozen=True)
class SimulationSpec:
    """What :func:`~dklfm_explore.simulate` needs besides the number of tasks.

    The dashboard's stand-in for the package's ``SimulationSpec``, with its field names:
    ``n_points`` | ``grid`` | explicit ``time``; ``None`` means the system's default.
    """

    system: str
    n_points: int | None = None
    grid: tuple | None = None
    time: tuple | None = None
    t_range: tuple | None = None
    noise_level: float | None = None
    parameter_ranges: tuple = ()
    force_prior: object = None
    seed: int = 0

    def simulate_kwargs(self) -> dict:
        """Keyword arguments of :func:`~dklfm_explore.simulate` (without the system and the number of tasks)."""
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "system"}
        kwargs["parameter_ranges"] = dict(self.parameter_ranges)
        if kwargs["time"] is not None:
            import torch

            kwargs["time"] = torch.as_tensor(np.asarray(self.time, dtype=np.float64))
        return {k: v for k, v in kwargs.items() if v is not None and v != {}}


def simulate_spec(spec: SimulationSpec, n_tasks: int, **changes) -> TaskSet:
    """Simulate ``n_tasks`` tasks of ``spec`` with some fields replaced (``changes``); progress/cancel pass through."""
    run = {k: changes.pop(k) for k in ("chunk_size", "progress", "cancel") if k in changes}
    spec = dataclasses.replace(spec, **changes)
    return simulate(spec.system, n_tasks, **spec.simulate_kwargs(), **run)


@dataclass(frozen=True)
class Evaluation:
    """A model's scores on a session's held-out tasks, standardised by the model's training-set latent std.

    ``prior_mse`` is the score of predicting the training set's mean force everywhere (about 1 by construction).
    """

    latent_mse: float
    latent_mse_se: float
    prior_mse: float
    coverage95: float
    n_tasks: int

    @property
    def learned(self) -> bool:
        se = 0.0 if math.isnan(self.latent_mse_se) else self.latent_mse_se
        return self.latent_mse < LEARNED_RATIO * self.prior_mse and self.latent_mse + 2 * se < self.prior_mse

    @property
    def message(self) -> str:
        ratio = self.prior_mse / self.latent_mse if self.latent_mse > 0 else math.inf
        head = "learned" if self.learned else "not learned"
        return (f"{head}: latent MSE {self.latent_mse:.2g} ± {self.latent_mse_se:.1g} on {self.n_tasks} held-out tasks, "
                f"{ratio:.1f}x better than the prior mean ({self.prior_mse:.2g}), 95% coverage {self.coverage95:.2f}")


def evaluate(model, tasks: TaskSet) -> Evaluation:
    """Score ``model`` on ``tasks`` (their latent force must be known): per-task MSEs, their mean and standard error."""
    result = model.infer(tasks)
    scale, centre = model.normaliser.f_std, model.normaliser.f_mean
    truth = tasks.dataset["f"]
    error = ((result["latent_mean"] - truth) / scale) ** 2
    per_task = error.mean([d for d in error.dims if d != "task"]).values
    prior = (((truth - centre) / scale) ** 2).mean().values
    coverage = latent_metrics(result, truth, scale)["coverage95"]
    n = len(per_task)
    se = float(np.std(per_task, ddof=1) / np.sqrt(n)) if n > 1 else math.nan
    return Evaluation(float(np.mean(per_task)), se, float(prior), float(coverage), n)


def verdict_of(model):
    """The model's own verdict from its training run (None for models without one)."""
    return getattr(model, "verdict", None)


@dataclass
class ModelEntry:
    """One model of the session with where it came from and its scores on the session's held-out tasks."""

    model: object
    origin: str
    evaluation: Evaluation | None = None
    evaluated_on: object = field(default=None, repr=False)

    @property
    def system_name(self) -> str:
        return self.model.system_name


class Session(param.Parameterized):
    """The state one page load works on (every browser session builds its own).

    ``spec`` made ``tasks``; ``train_tasks`` and ``test_tasks`` split it; ``models`` lists every
    model of the session and ``model`` is the current one.
    """

    spec = param.Parameter(default=None, doc="The SimulationSpec the task set was simulated with (None for a loaded one without).")
    tasks = param.Parameter(default=None, doc="The current TaskSet (all tasks).")
    train_tasks = param.Parameter(default=None, doc="Tasks the model is trained on.")
    test_tasks = param.Parameter(default=None, doc="Held-out tasks for inference.")
    models = param.List(default=[], doc="Every ModelEntry of the session, oldest first.")
    model = param.Parameter(default=None, doc="The current TrainedModel, or None.")
    model_origin = param.String(default="", doc="Where the current model came from (trained here, bundled, loaded).")
    sidebar_spec = param.Parameter(default=None, doc="The SimulationSpec the sidebar's settings describe now.")

    def use_tasks(self, tasks: TaskSet, train: TaskSet, test: TaskSet, spec) -> None:
        """Make ``tasks`` (split into ``train`` and ``test``) the task set, made by ``spec``."""
        with param.parameterized.batch_call_watchers(self):
            self.spec = spec
            self.train_tasks, self.test_tasks = train, test
            self.tasks = tasks

    def entry(self, model) -> ModelEntry | None:
        return next((e for e in self.models if e.model is model), None)

    def evaluation(self, entry: ModelEntry) -> Evaluation | None:
        """``entry``'s scores on the current held-out tasks (computed once per task set; None if they do not fit)."""
        test = self.test_tasks
        if test is None or not test.has_latent or test.system_name != entry.system_name:
            return None
        if entry.evaluated_on is not test:
            entry.evaluation, entry.evaluated_on = evaluate(entry.model, test), test
        return entry.evaluation

    def add_model(self, model, origin: str, *, current: bool | None = None) -> str:
        """Keep ``model``; make it current if ``current`` is True, or (None) if it beats the current one here.

        Returns one sentence saying which happened and why.
        """
        entry = ModelEntry(model, origin)
        self.models = self.models + [entry]
        previous = self.entry(self.model)
        if current is None:
            new, old = self.evaluation(entry), self.evaluation(previous) if previous is not None else None
            if previous is None:
                current, why = True, "it is the first model of this session"
            elif previous.system_name != (self.tasks.system_name if self.tasks is not None else None):
                current, why = True, f"the previous one is for {previous.system_name}"
            elif new is None or old is None:
                current, why = False, "the two cannot be compared on the held-out tasks"
            elif new.latent_mse < old.latent_mse:
                current, why = True, f"its held-out latent MSE {new.latent_mse:.2g} beats {old.latent_mse:.2g}"
            else:
                current, why = False, f"its held-out latent MSE {new.latent_mse:.2g} does not beat the current {old.latent_mse:.2g}"
        else:
            why = "you chose it" if current else "you kept the current one"
        if current:
            self.choose(entry)
            return f"The new model is in use: {why}."
        return f"The new model is kept in the list but not used: {why}; 'Use' it there to switch."

    def choose(self, entry: ModelEntry) -> None:
        """Make ``entry``'s model the current one."""
        with param.parameterized.batch_call_watchers(self):
            self.model_origin = entry.origin
            self.model = entry.model
