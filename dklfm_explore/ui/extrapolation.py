"""The Extrapolation tab: fresh tasks observed over the trained window only, their force inferred beyond it."""

from __future__ import annotations

import warnings

import numpy as np
import panel as pn
import param

from .. import plots
from ..data import TaskSet
from ..errors import ExtrapolationWarning
from .results import latent_mse, ood_badge
from .sections import FRESH_SEED_OFFSET, ResultSection, plot_pane
from .session import Session, simulate_spec
from .training import TrainingView

__all__ = ["ExtrapolationView", "EXTRAPOLATION_FACTOR", "EXTRAPOLATION_TASKS"]

EXTRAPOLATION_FACTOR = 1.5
"""The extrapolation view queries a window this many times as long as the trained one."""
EXTRAPOLATION_TASKS = 4


class ExtrapolationView(ResultSection):
    """Observe fresh tasks over the trained window only and infer their force beyond it."""

    factor = param.Number(default=EXTRAPOLATION_FACTOR, bounds=(1.0, 4.0), step=0.1, label="query window (x trained length)")
    task = param.Integer(default=0, bounds=(0, EXTRAPOLATION_TASKS - 1), label="task")

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self._run = pn.widgets.Button(label="Extrapolate", color="primary")
        self._run.on_click(lambda _: self.refresh(force=True))
        self._plot = plot_pane(self.plot)
        self._factor_widget = pn.widgets.FloatSlider.from_param(self.param.factor, throttled=True)
        self._task_widget = pn.widgets.IntSlider.from_param(self.param.task, throttled=True)
        self._metrics = pn.pane.Markdown(self.metrics_text, sizing_mode="stretch_width")
        self.tasks = self.observed = None
        self.window = (0.0, 1.0)

    WORKING = "Simulating fresh tasks over the longer window and inferring them..."

    def prepare(self):
        """Simulate fresh tasks on the long window, keep the observations in the trained window, infer on all times."""
        tasks = self.session.tasks
        if tasks is not None and tasks.is_spatial:
            self.say("Extrapolation is shown for systems over time; use 'Super-resolution' for space-time systems.", "warning")
            return None
        ready = self.model_and_spec(tasks)
        if ready is None:
            return None
        model, spec = ready
        start, stop = float(tasks.time[0]), float(tasks.time[-1])
        step = (stop - start) / (tasks.n_time - 1)
        n_intervals = int(round((tasks.n_time - 1) * self.factor))
        changes = dict(n_points=n_intervals + 1, time=None, t_range=(start, start + n_intervals * step), seed=spec.seed + FRESH_SEED_OFFSET)

        def compute():
            wide = simulate_spec(spec, EXTRAPOLATION_TASKS, **changes)
            observed = wide.window(start, stop + step / 2)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ExtrapolationWarning)
                result = model.infer(observed, time=wide.dataset["time"].values)
            note = " ".join(str(w.message) for w in caught if issubclass(w.category, ExtrapolationWarning))
            return wide, observed, result, (start, stop), note

        return compute

    def result_panes(self) -> list:
        return [self._plot, self._metrics]

    def apply(self, outcome) -> None:
        self.tasks, self.observed, result, self.window, note = outcome
        self.say(note, "warning" if note else "info")
        self.result = result

    @param.depends("result", "task")
    def plot(self):
        """The chosen task's latent posterior over the long window, the trained window shaded."""
        if self.result is None:
            return None
        shown = TaskSet(self.tasks.dataset.assign(y=self.observed.dataset["y"].reindex(time=self.tasks.dataset["time"])))
        return plots.extrapolation(self.result, self.task, shown, self.window)

    @param.depends("result", "task")
    def metrics_text(self) -> str:
        """The chosen task's standardised latent MSE inside and beyond the trained window."""
        if self.result is None or self.session.model is None:
            return ""
        scale = self.session.model.normaliser.f_std
        times = self.tasks.dataset["time"].values
        parts = [TaskSet(self.tasks.dataset.isel(time=np.flatnonzero(keep))) for keep in (times <= self.window[1], times > self.window[1])]
        inside, beyond = (latent_mse(self.result, part, self.task, scale) if part.n_time else float("nan") for part in parts)
        return f"standardised latent MSE inside the trained window {inside:.4g}, beyond it {beyond:.4g} " + ood_badge(self.result, self.task)

    def __panel__(self):
        return pn.Column(
            self._alert, self._needs_model,
            pn.pane.Markdown("Fresh tasks are simulated over a longer window; the model sees their observations only "
                             "inside the trained window (shaded) and infers the force everywhere."),
            pn.FlexBox(self._factor_widget, self._task_widget, self._run,
                       align_items="end", sizing_mode="stretch_width"),
            self._metrics, self._plot, sizing_mode="stretch_width",
        )
