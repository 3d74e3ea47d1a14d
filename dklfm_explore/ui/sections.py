"""Sections that need a model: the "Train a model" offer, and results computed off the UI thread and greyed while stale."""

from __future__ import annotations

from typing import Any, Callable

import panel as pn
import param

from ..data import TaskSet
from .base import BackgroundJob, Section
from .panes import PlotPane
from .session import Session
from .training import TrainingView

__all__ = ["ModelSection", "ResultSection", "plot_pane", "NO_SPEC", "FRESH_SEED_OFFSET"]

NO_SPEC = ("The task set has no simulation settings (it was loaded from a file without them), so fresh tasks like it "
           "cannot be simulated; generate a task set on the 'Task set' tab.")
FRESH_SEED_OFFSET = 10_000
"""Added to the task set's seed so the extrapolation / super-resolution tasks were never trained on."""


class ModelSection(Section):
    """A section that needs a trained model compatible with some tasks.

    Its "Train a model" button calls :attr:`train_for` with the system the tasks need (the dashboard
    brings the task set in line first); on its own the section trains on the session's training tasks.
    """

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, **params)
        self.training = training
        self.needed_system: str | None = None
        self.train_for: Callable[[str | None], None] = lambda system: self.training.train()
        self._train_here = pn.widgets.Button(label="Train a model", color="primary")
        self._train_here.on_click(lambda _: self.train_for(self.needed_system))
        self._needs_model = pn.Row(pn.pane.Markdown(sizing_mode="stretch_width"), self._train_here, visible=False, sizing_mode="stretch_width")

    def model_for(self, tasks: TaskSet | None):
        """The session's model if it can infer ``tasks``, else None (with the reason shown)."""
        model = self.session.model
        reason = ""
        if tasks is None:
            reason = "There is no task set yet; generate one on the 'Task set' tab."
        elif model is None:
            reason = f"No trained model yet: train a model ({self.training.time_hint()})."
        elif tasks.system_name and model.system_name != tasks.system_name:
            reason = (f"The model was trained on *{model.system_name}* but the tasks are *{tasks.system_name}*: "
                      f"train a model for {tasks.system_name} ({self.training.time_hint()}).")
        self.needed_system = tasks.system_name if tasks is not None else None
        self._needs_model[0].object = reason
        self._needs_model.visible = bool(reason)
        return None if reason else model

    def model_and_spec(self, tasks: TaskSet | None):
        """``(model, spec)`` to infer fresh tasks simulated like ``tasks``, else None (with the reason shown)."""
        model = self.model_for(tasks)
        if model is None:
            return None
        if self.session.spec is None:
            self.say(NO_SPEC, "warning")
            return None
        return model, self.session.spec


class ResultSection(ModelSection):
    """A model section with one result, computed in two steps.

    :meth:`prepare` (UI thread: read the session and settings) returns a computation, whose outcome
    :meth:`apply` (UI thread) keeps in the section's parameters; the plots are ``@param.depends``
    methods of those parameters.  :meth:`refresh` runs the computation on a worker thread with the
    result panes greyed out meanwhile; a refresh started later wins, so a drag of a slider never
    leaves an older result under a newer label.  A section built with ``shown=False`` (a tab not on
    screen yet) defers that work until :meth:`show`.
    """

    shown = param.Boolean(default=True, doc="Whether the section has been on screen (hidden ones defer their work).")
    result = param.Parameter(default=None, doc="The section's inference result (an xarray.Dataset), or None.")
    WORKING = "Computing..."

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self.first_job = BackgroundJob(self)
        self._generation = 0
        self._last_key = None
        session.param.watch(self._on_state, ["tasks", "model"])

    def _on_state(self, *_):
        """A new task set or model: the result shown belongs to the old one, so it goes, and comes back recomputed."""
        self.clear()
        self.refresh()

    def clear(self) -> None:
        """Forget the result (its plots and metrics go with it)."""
        self.result = None

    def result_panes(self) -> list:
        """The panes that show the result: marked ``loading`` (greyed, with a spinner) while it is recomputed."""
        return []

    def prepare(self) -> Callable[[], Any] | None:
        """On the UI thread: read the settings and return the computation of the section's result (None if it cannot run)."""
        raise NotImplementedError

    def apply(self, outcome: Any) -> None:
        """On the UI thread: keep what :meth:`prepare`'s computation returned."""
        raise NotImplementedError

    def run(self) -> None:
        """Compute and keep the section's result on this thread (notebooks and tests)."""
        self._generation += 1
        compute = self.guard(self.prepare)
        if compute is not None:
            self.guard(lambda: self.apply(compute()))

    def key(self) -> tuple:
        """What the result depends on; a refresh with the key of the last one computes nothing (a Run button forces it)."""
        return (id(self.session.model), id(self.session.tasks))

    def refresh(self, force: bool = False) -> None:
        """Recompute the result on a worker thread (deferred while the section has not been shown)."""
        if not self.shown:
            return
        key = self.key()
        if not force and key == self._last_key:
            return
        self._last_key = key
        self._generation += 1
        generation = self._generation
        compute = self.guard(self.prepare)
        if compute is None:
            self.clear()
            for pane in self.result_panes():
                pane.loading = False
            return
        self.say(self.WORKING)
        for pane in self.result_panes():
            pane.loading = True
        job = self.first_job = BackgroundJob(self)

        def done(outcome):
            if generation == self._generation:
                self.say("")
                self.apply(outcome)

        def finished():
            if generation == self._generation:
                for pane in self.result_panes():
                    pane.loading = False

        job.start(lambda report, cancelled: compute(), on_progress=lambda _: None, on_done=done, on_finally=finished)

    def show(self) -> None:
        """The section is on screen: if it has no result yet, compute it on a worker thread and draw it."""
        if self.shown and (self.result is not None or self.first_job.running):
            return
        self.shown = True
        self.refresh()


def plot_pane(method) -> pn.Column:
    """A pane that redraws ``method`` (a ``@param.depends`` method returning a plots element, or None) when what it depends on changes.

    A column around a :class:`~dklfm_explore.ui.panes.PlotPane`, which is marked ``loading`` while its result is recomputed.
    """
    owner = method.__self__
    plot = PlotPane(method()).follow(owner.session)

    def draw(*_):
        plot.object = method()

    names: dict = {}
    for dependency in owner.param.method_dependencies(method.__name__):
        names.setdefault(dependency.inst, []).append(dependency.name)
    for instance, watched in names.items():
        instance.param.watch(draw, watched)
    return pn.Column(plot, sizing_mode="stretch_width")
