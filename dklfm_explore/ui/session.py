"""The state one page works on: the simulation spec, the task set it made, the models and the current one.

Every view reads this state; none reads another view.  Models stay in :attr:`Session.models` with
their verdict and their scores on the session's held-out tasks, so that a worse model never silently
replaces a better one and one click brings any back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import param

from ..data import TaskSet
from ..metrics import latent_metrics
from ..simulate import simulate
from ..spec import SimulationSpec
from ..verdict import Verdict
from .panes import FIGURE_FORMATS

__all__ = ["Session", "ModelEntry", "simulate_spec", "evaluate", "verdict_of"]


def simulate_spec(spec: SimulationSpec, n_tasks: int, *, chunk_size: int | None = None, progress=None, cancel=None,
                  **changes) -> TaskSet:
    """Simulate ``n_tasks`` tasks of ``spec`` with some of its fields replaced (``changes``).

    ``chunk_size``, ``progress`` and ``cancel`` change how the simulation runs, not which tasks it draws.
    """
    return simulate(spec.replace(**changes) if changes else spec, n_tasks, chunk_size=chunk_size, progress=progress, cancel=cancel)


def evaluate(model, tasks: TaskSet) -> Verdict:
    """Judge ``model`` on ``tasks`` (their latent force must be known) in the model's standardised units.

    The latent MSE is the mean of the per-task MSEs, its standard error theirs; the prior-mean
    predictor predicts the training tasks' mean force everywhere (about 1 by construction).
    """
    result = model.infer(tasks)
    scale, centre = model.normaliser.f_std, model.normaliser.f_mean
    truth = tasks.dataset["f"]
    error = ((result["latent_mean"] - truth) / scale) ** 2
    per_task = error.mean([d for d in error.dims if d != "task"]).values
    prior = (((truth - centre) / scale) ** 2).mean().values
    coverage = latent_metrics(result, truth, scale)["coverage95"]
    n = len(per_task)
    se = float(np.std(per_task, ddof=1) / np.sqrt(n)) if n > 1 else math.nan
    return Verdict.judge(float(np.mean(per_task)), se, float(prior), float(coverage), n)


def verdict_of(model):
    """The model's own verdict from its training run (None for models without one)."""
    return getattr(model, "verdict", None)


@dataclass
class ModelEntry:
    """One model of the session with where it came from and its scores on the session's held-out tasks."""

    model: object
    origin: str
    trained_on: TaskSet | None = field(default=None, repr=False)
    evaluation: Verdict | None = None
    evaluated_on: object = field(default=None, repr=False)

    @property
    def system_name(self) -> str:
        return self.model.system_name


class Session(param.Parameterized):
    """The state one page load works on (every browser session builds its own).

    ``spec`` made ``tasks``; ``train_tasks`` and ``test_tasks`` split it; ``models`` lists every
    model of the session and ``model`` is the current one.
    """

    spec = param.ClassSelector(class_=SimulationSpec, default=None, doc="The SimulationSpec the task set was simulated with (None for a loaded one without).")
    tasks = param.Parameter(default=None, doc="The current TaskSet (all tasks).")
    train_tasks = param.Parameter(default=None, doc="Tasks the model is trained on.")
    test_tasks = param.Parameter(default=None, doc="Held-out tasks for inference.")
    models = param.List(default=[], doc="Every ModelEntry of the session, oldest first.")
    model = param.Parameter(default=None, doc="The current TrainedModel, or None.")
    model_origin = param.String(default="", doc="Where the current model came from (trained here, bundled, loaded).")
    sidebar_spec = param.ClassSelector(class_=SimulationSpec, default=None, doc="The SimulationSpec the sidebar's settings describe now.")
    figure_format = param.Selector(default="png", objects=list(FIGURE_FORMATS), doc="What the save tool of every plot of the session writes.")

    def use_tasks(self, tasks: TaskSet, train: TaskSet, test: TaskSet, spec) -> None:
        """Make ``tasks`` (split into ``train`` and ``test``) the task set, made by ``spec``."""
        with param.parameterized.batch_call_watchers(self):
            self.spec = spec
            self.train_tasks, self.test_tasks = train, test
            self.tasks = tasks

    def trained_current_model(self) -> bool:
        """Whether the model in use was trained on the session's training tasks."""
        entry = self.entry(self.model)
        return entry is not None and entry.trained_on is not None and entry.trained_on is self.train_tasks

    def entry(self, model) -> ModelEntry | None:
        return next((e for e in self.models if e.model is model), None)

    def evaluation(self, entry: ModelEntry) -> Verdict | None:
        """``entry``'s scores on the current held-out tasks (computed once per task set; None if they do not fit)."""
        test = self.test_tasks
        if test is None or not test.has_latent or test.system_name != entry.system_name:
            return None
        if entry.evaluated_on is not test:
            entry.evaluation, entry.evaluated_on = evaluate(entry.model, test), test
        return entry.evaluation

    def add_model(self, model, origin: str, *, current: bool | None = None, trained_on: TaskSet | None = None) -> str:
        """Keep ``model`` (trained on the task set ``trained_on``, if any); make it current if ``current`` is True,
        or (None) if it beats the current one on the held-out tasks.

        Returns one sentence saying which happened and why.
        """
        entry = ModelEntry(model, origin, trained_on)
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
