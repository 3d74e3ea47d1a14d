"""Inference views: a held-out task's latent force, extrapolation in time, super-resolution in space-time."""

from __future__ import annotations

import warnings

import numpy as np
import panel as pn
import param

from .. import plots
from ..data import TaskSet
from ..errors import ExtrapolationWarning
from ..simulate import simulate
from .base import BackgroundJob, Section, Session
from .system import SystemView
from .training import TrainingView

__all__ = ["InferenceView", "ExtrapolationView", "SuperResolutionView", "latent_mse", "baseline_for", "EXACT_BASELINE_SYSTEMS"]

EXACT_BASELINE_SYSTEMS = ("transcription-linear", "reaction-diffusion")
"""Systems whose latent force model is linear, so the exact LFM posterior exists; the others get the per-task LFM."""


def baseline_for(system_name: str) -> tuple[str, str]:
    """``(label, name in BASELINES)`` of the reference method shown beside the DKLFM for a system."""
    if system_name in EXACT_BASELINE_SYSTEMS:
        return "exact LFM (true parameters)", "exact-lfm"
    return "per-task LFM", "per-task-lfm"
EXTRAPOLATION_FACTOR = 1.5
"""The extrapolation view queries a window this many times as long as the trained one."""
EXTRAPOLATION_TASKS = 4
SUPER_RESOLUTION_FACTOR = 2
"""The fine grid has this many times the intervals of the coarse (training) grid in space and in time."""
SUPER_RESOLUTION_TASKS = 3
FRESH_SEED_OFFSET = 10_000
"""Added to the task set's seed so the extrapolation / super-resolution tasks were never trained on."""


def latent_mse(result, tasks: TaskSet, task: int = 0) -> float:
    """Mean squared error of the latent mean against the true force of one task (NaN if unknown)."""
    if not tasks.has_latent:
        return float("nan")
    error = result["latent_mean"].isel(task=task).values - tasks.dataset["f"].isel(task=task).values
    return float(np.nanmean(error**2))


class _ModelSection(Section):
    """A section that needs a trained model compatible with some tasks."""

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, **params)
        self.training = training
        self._train_here = pn.widgets.Button(label="Train a model", color="primary")
        self._train_here.on_click(lambda _: self.training.train())
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
                      f"train a model ({self.training.time_hint()}) on this task set.")
        self._needs_model[0].object = reason
        self._needs_model.visible = bool(reason)
        return None if reason else model


class InferenceView(_ModelSection):
    """Infer the latent force of a held-out test task; optionally the exact-LFM baseline beside it."""

    task = param.Integer(default=0, bounds=(0, None), label="test task", doc="Which held-out task to infer.")
    baseline = param.Boolean(default=False, label="baseline beside it", doc="Also run the exact LFM (linear systems) or the per-task LFM (slow, seconds per task).")
    result = param.Parameter(default=None, doc="The DKLFM result for the shown task.")
    baseline_result = param.Parameter(default=None, doc="The baseline result for the shown task, or None.")

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self._task_widget = pn.widgets.IntSlider.from_param(self.param.task, sizing_mode="stretch_width")
        self._baseline_widget = pn.widgets.Checkbox.from_param(self.param.baseline)
        self.job = BackgroundJob(self)
        self._metrics = pn.pane.Markdown(sizing_mode="stretch_width")
        self._latent = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self._outputs = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self.param.watch(lambda _: self.refresh(), ["task", "baseline"])
        session.param.watch(self._on_tasks, ["test_tasks"])
        session.param.watch(lambda _: self.refresh(), ["model"])
        self._on_tasks()

    def _on_tasks(self, *_):
        test = self.session.test_tasks
        top = max(0, (test.n_tasks if test is not None else 1) - 1)
        self._task_widget.end = max(top, 1)
        self._task_widget.disabled = top == 0
        self.param.task.bounds = (0, top)
        if self.task > top:
            self.task = 0
        else:
            self.refresh()
        if test is not None:
            self._baseline_widget.label = f"{baseline_for(test.system_name)[0]} beside it"

    def refresh(self) -> None:
        """Infer the shown task with the current model (and baseline) and redraw."""
        test = self.session.test_tasks
        model = self.model_for(test)
        if model is None:
            self.result = self.baseline_result = None
            self._latent.object = self._outputs.object = None
            self._metrics.object = ""
            return
        self.guard(lambda: self._infer(model, test.isel([self.task])))

    def _infer(self, model, one: TaskSet) -> None:
        self.result = model.infer(one)
        self.baseline_result = None
        self._draw(one)
        if self.baseline and one.system_name:
            self._run_baseline(one)

    def _run_baseline(self, one: TaskSet) -> None:
        label, name = baseline_for(one.system_name)
        self.say(f"Running the {label} on task {self.task}...")
        task = self.task

        def work(report, cancelled):
            from ..model.baselines import get_baseline

            return get_baseline(name)(one)

        def done(result):
            if task == self.task and self.result is not None:
                self.baseline_result = result
                self._draw(one)
            self.say("")

        self.job.start(work, on_progress=lambda _: None, on_done=done, on_finally=lambda: None)

    def _draw(self, one: TaskSet) -> None:
        lines = [f"**DKLFM**: latent MSE {latent_mse(self.result, one):.4g}, inference {self.result.attrs.get('infer_ms_per_task', float('nan')):.1f} ms"]
        label = baseline_for(one.system_name)[0]
        if self.baseline_result is not None:
            lines.append(f"**{label}**: latent MSE {latent_mse(self.baseline_result, one):.4g}, "
                         f"inference {self.baseline_result.attrs.get('infer_ms_per_task', float('nan')):.1f} ms")
        self._metrics.object = "  \n".join(lines)
        if one.is_spatial:
            self._latent.object = plots.super_resolution(self.result, 0, one, one)
            self._outputs.object = None
            return
        latent = plots.latent_posterior(self.result, 0, one, title="DKLFM: latent force posterior")
        if self.baseline_result is not None:
            latent = latent + plots.latent_posterior(self.baseline_result, 0, one, label=label, colour=plots.BASELINE_COLOUR, title=f"{label} posterior")
        self._latent.object = latent
        self._outputs.object = plots.output_posteriors(self.result, 0, one)

    def __panel__(self):
        return pn.Column(
            self._alert, self._needs_model,
            pn.Row(self._task_widget, self._baseline_widget, sizing_mode="stretch_width"),
            self._metrics, self._latent,
            pn.pane.Markdown("**Outputs**: posterior mean, 95% band and the observations."),
            self._outputs, sizing_mode="stretch_width",
        )


class ExtrapolationView(_ModelSection):
    """Observe fresh tasks over the trained window only and infer their force beyond it."""

    factor = param.Number(default=EXTRAPOLATION_FACTOR, bounds=(1.0, 4.0), step=0.1, label="query window (x trained length)")
    task = param.Integer(default=0, bounds=(0, EXTRAPOLATION_TASKS - 1), label="task")

    def __init__(self, session: Session, training: TrainingView, system: SystemView, **params):
        super().__init__(session, training, **params)
        self.system = system
        self._run = pn.widgets.Button(label="Extrapolate", color="primary")
        self._run.on_click(lambda _: self.run())
        self._plot = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self._metrics = pn.pane.Markdown(sizing_mode="stretch_width")
        self.tasks = self.observed = self.result = None
        self.param.watch(lambda _: self._draw(), "task")

    def run(self) -> None:
        """Simulate fresh tasks on the long window, keep the observations in the trained window, infer on all times."""
        tasks = self.session.tasks
        model = self.model_for(tasks)
        if model is None or tasks.is_spatial:
            if tasks is not None and tasks.is_spatial:
                self.say("Extrapolation is shown for systems over time; use 'Super-resolution' for space-time systems.", "warning")
            return
        self.guard(lambda: self._extrapolate(model, tasks))

    def _extrapolate(self, model, tasks: TaskSet) -> None:
        start, stop = float(tasks.time[0]), float(tasks.time[-1])
        step = (stop - start) / (tasks.n_time - 1)
        n_intervals = int(round((tasks.n_time - 1) * self.factor))
        wide_stop, n_points = start + n_intervals * step, n_intervals + 1
        kwargs = self.system.settings.simulate_kwargs()
        kwargs.update(n_points=n_points, t_range=(start, wide_stop), seed=kwargs["seed"] + FRESH_SEED_OFFSET)
        self.tasks = simulate(tasks.system_name, EXTRAPOLATION_TASKS, **kwargs)
        self.observed = self.tasks.window(start, stop + step / 2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ExtrapolationWarning)
            self.result = model.infer(self.observed, time=self.tasks.dataset["time"].values)
        note = " ".join(str(w.message) for w in caught if issubclass(w.category, ExtrapolationWarning))
        self.window = (start, stop)
        self.say(note, "warning" if note else "info")
        self._draw()

    def _draw(self):
        if self.result is None:
            return
        shown = TaskSet(self.tasks.dataset.assign(y=self.observed.dataset["y"].reindex(time=self.tasks.dataset["time"])))
        self._plot.object = plots.extrapolation(self.result, self.task, shown, self.window)
        inside = self.tasks.dataset["time"].values <= self.window[1]
        error = (self.result["latent_mean"].isel(task=self.task).values - self.tasks.dataset["f"].isel(task=self.task).values) ** 2
        self._metrics.object = f"latent MSE inside the trained window {error[inside].mean():.4g}, beyond it {error[~inside].mean():.4g}"

    def __panel__(self):
        return pn.Column(
            self._alert, self._needs_model,
            pn.pane.Markdown("Fresh tasks are simulated over a longer window; the model sees their observations only "
                             "inside the trained window (shaded) and infers the force everywhere."),
            pn.Row(pn.widgets.FloatSlider.from_param(self.param.factor), pn.widgets.IntSlider.from_param(self.param.task), self._run),
            self._metrics, self._plot, sizing_mode="stretch_width",
        )


class SuperResolutionView(_ModelSection):
    """Observe fresh tasks on the coarse training grid and infer their force on a finer grid."""

    task = param.Integer(default=0, bounds=(0, SUPER_RESOLUTION_TASKS - 1), label="task")

    def __init__(self, session: Session, training: TrainingView, system: SystemView, **params):
        super().__init__(session, training, **params)
        self.system = system
        self._run = pn.widgets.Button(label="Infer on the fine grid", color="primary")
        self._run.on_click(lambda _: self.run())
        self._grids = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self._profiles = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False, widget_location="top")
        self.fine = self.coarse = self.result = None
        self.param.watch(lambda _: self._draw(), "task")

    def run(self) -> None:
        """Simulate fresh tasks on a grid :data:`SUPER_RESOLUTION_FACTOR` x finer, observe them coarsened, infer fine."""
        tasks = self.session.tasks
        if tasks is not None and not tasks.is_spatial:
            self.say("Super-resolution is for space-time systems: pick reaction-diffusion, generate and train.", "warning")
            return
        model = self.model_for(tasks)
        if model is None:
            return
        self.guard(lambda: self._infer(model, tasks))

    def _infer(self, model, tasks: TaskSet) -> None:
        factor = SUPER_RESOLUTION_FACTOR
        grid = ((tasks.n_space - 1) * factor + 1, (tasks.n_time - 1) * factor + 1)
        kwargs = self.system.settings.simulate_kwargs()
        kwargs.update(grid=grid, seed=kwargs["seed"] + FRESH_SEED_OFFSET)
        kwargs.pop("n_points", None)
        self.fine = simulate(tasks.system_name, SUPER_RESOLUTION_TASKS, **kwargs)
        self.coarse = self.fine.coarsen(time=factor, space=factor)
        self.result = model.infer(self.coarse, time=self.fine.dataset["time"].values, space=self.fine.dataset["space"].values)
        self.say(f"Observed on {self.coarse.n_space} x {self.coarse.n_time}, inferred on {self.fine.n_space} x {self.fine.n_time}; "
                 f"latent MSE {latent_mse(self.result, self.fine, self.task):.4g}.", "info")
        self._draw()

    def _draw(self):
        if self.result is None:
            return
        self._grids.object = plots.super_resolution(self.result, self.task, self.coarse, self.fine)
        self._profiles.object = plots.super_resolution_profiles(self.result, self.task, self.fine)

    def __panel__(self):
        return pn.Column(
            self._alert, self._needs_model,
            pn.pane.Markdown("Fresh tasks are simulated on a finer grid; the model sees them coarsened to the training "
                             "grid and infers the force on the fine grid. Truth and prediction share a colour scale, "
                             "as do posterior std and absolute error."),
            pn.Row(pn.widgets.IntSlider.from_param(self.param.task), self._run),
            self._grids,
            pn.pane.Markdown("**Profiles over space** (move the time slider):"),
            self._profiles, sizing_mode="stretch_width",
        )
