"""Inference views: a held-out task's latent force, extrapolation in time, super-resolution in space-time."""

from __future__ import annotations

import warnings

from typing import Any, Callable

import numpy as np
import panel as pn
import param
import torch

from .. import plots
from ..data import TaskSet
from ..metrics import task_latent_mse
from ..errors import ExtrapolationWarning
from ..simulate import simulate
from .base import BackgroundJob, Section, Session
from .system import SystemView
from .training import TrainingView

__all__ = ["InferenceView", "ExtrapolationView", "SuperResolutionView", "latent_mse", "refine_mesh", "baseline_for", "EXACT_BASELINE_SYSTEMS"]

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
TIME_SUPER_RESOLUTION_FACTOR = 3
"""Time-only systems: the dense query mesh has this many times the intervals of the observed one."""
SUPER_RESOLUTION_TASKS = 3
FRESH_SEED_OFFSET = 10_000
"""Added to the task set's seed so the extrapolation / super-resolution tasks were never trained on."""


def latent_mse(result, tasks: TaskSet, task: int = 0, scale: float = 1.0) -> float:
    """:func:`~dklfm_explore.metrics.task_latent_mse` of one task, NaN when its force is unknown."""
    if not tasks.has_latent:
        return float("nan")
    return task_latent_mse(result, tasks.dataset["f"], task, scale)


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


class _ResultSection(_ModelSection):
    """A model section with one result, computed in two steps.

    :meth:`prepare` (UI thread: read settings and model) returns a computation, whose outcome
    :meth:`apply` (UI thread) keeps and draws.  A section built with ``shown=False`` (a tab not
    on screen yet) defers that work until :meth:`show`, which runs the computation on a worker thread.
    """

    shown = param.Boolean(default=True, doc="Whether the section has been on screen (hidden ones defer their work).")
    WORKING = "Computing..."

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self.first_job = BackgroundJob(self)

    def prepare(self) -> Callable[[], Any] | None:
        """On the UI thread: read the settings and return the computation of the section's result (None if it cannot run)."""
        raise NotImplementedError

    def apply(self, outcome: Any) -> None:
        """On the UI thread: keep and draw what :meth:`prepare`'s computation returned."""
        raise NotImplementedError

    def run(self) -> None:
        """Compute and draw the section's result on this thread (what its button does)."""
        compute = self.guard(self.prepare)
        if compute is not None:
            self.guard(lambda: self.apply(compute()))

    def show(self) -> None:
        """The section is on screen: if it has no result yet, compute it on a worker thread and draw it."""
        if self.shown and (self.result is not None or self.first_job.running):
            return
        self.shown = True
        compute = self.guard(self.prepare)
        if compute is None:
            return
        self.say(self.WORKING)
        self.first_job.start(lambda report, cancelled: compute(), on_progress=lambda _: None, on_done=self._first_done, on_finally=lambda: None)

    def _first_done(self, outcome) -> None:
        self.say("")
        self.apply(outcome)


class InferenceView(_ResultSection):
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

    WORKING = "Inferring the held-out task..."

    def refresh(self) -> None:
        """Infer the shown task with the current model (and baseline) and redraw (deferred while hidden)."""
        if self.shown:
            self.run()

    def prepare(self):
        test = self.session.test_tasks
        model = self.model_for(test)
        if model is None:
            self.result = self.baseline_result = None
            self._latent.object = self._outputs.object = None
            self._metrics.object = ""
            return None
        one = test.isel([self.task])
        return lambda: (one, model.infer(one))

    def apply(self, outcome) -> None:
        one, self.result = outcome
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
        scale = self.session.model.normaliser.f_std
        lines = [f"**DKLFM**: latent MSE {latent_mse(self.result, one, 0, scale):.4g} (standardised), inference {self.result.attrs.get('infer_ms_per_task', float('nan')):.1f} ms"]
        label = baseline_for(one.system_name)[0]
        if self.baseline_result is not None:
            lines.append(f"**{label}**: latent MSE {latent_mse(self.baseline_result, one, 0, scale):.4g}, "
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


class ExtrapolationView(_ResultSection):
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

    WORKING = "Simulating fresh tasks over the longer window and inferring them..."

    def prepare(self):
        """Simulate fresh tasks on the long window, keep the observations in the trained window, infer on all times."""
        tasks = self.session.tasks
        if tasks is not None and tasks.is_spatial:
            self.say("Extrapolation is shown for systems over time; use 'Super-resolution' for space-time systems.", "warning")
            return None
        model = self.model_for(tasks)
        if model is None:
            return None
        start, stop = float(tasks.time[0]), float(tasks.time[-1])
        step = (stop - start) / (tasks.n_time - 1)
        n_intervals = int(round((tasks.n_time - 1) * self.factor))
        kwargs = self.system.settings.simulate_kwargs()
        kwargs.update(n_points=n_intervals + 1, t_range=(start, start + n_intervals * step), seed=kwargs["seed"] + FRESH_SEED_OFFSET)
        name = tasks.system_name

        def compute():
            wide = simulate(name, EXTRAPOLATION_TASKS, **kwargs)
            observed = wide.window(start, stop + step / 2)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ExtrapolationWarning)
                result = model.infer(observed, time=wide.dataset["time"].values)
            note = " ".join(str(w.message) for w in caught if issubclass(w.category, ExtrapolationWarning))
            return wide, observed, result, (start, stop), note

        return compute

    def apply(self, outcome) -> None:
        self.tasks, self.observed, self.result, self.window, note = outcome
        self.say(note, "warning" if note else "info")
        self._draw()

    def _draw(self):
        if self.result is None:
            return
        shown = TaskSet(self.tasks.dataset.assign(y=self.observed.dataset["y"].reindex(time=self.tasks.dataset["time"])))
        self._plot.object = plots.extrapolation(self.result, self.task, shown, self.window)
        scale = self.session.model.normaliser.f_std
        times = self.tasks.dataset["time"].values
        parts = [TaskSet(self.tasks.dataset.isel(time=np.flatnonzero(keep))) for keep in (times <= self.window[1], times > self.window[1])]
        inside, beyond = (latent_mse(self.result, part, self.task, scale) if part.n_time else float("nan") for part in parts)
        self._metrics.object = f"standardised latent MSE inside the trained window {inside:.4g}, beyond it {beyond:.4g}"

    def __panel__(self):
        return pn.Column(
            self._alert, self._needs_model,
            pn.pane.Markdown("Fresh tasks are simulated over a longer window; the model sees their observations only "
                             "inside the trained window (shaded) and infers the force everywhere."),
            pn.Row(pn.widgets.FloatSlider.from_param(self.param.factor), pn.widgets.IntSlider.from_param(self.param.task), self._run),
            self._metrics, self._plot, sizing_mode="stretch_width",
        )


def refine_mesh(times: np.ndarray, factor: int) -> np.ndarray:
    """Split every interval of ``times (time,)`` into ``factor`` equal ones; the result contains ``times`` exactly."""
    times = np.asarray(times, dtype=np.float64)
    fractions = np.arange(factor) / factor
    inner = times[:-1, None] + np.diff(times)[:, None] * fractions[None, :]
    return np.append(inner.ravel(), times[-1])


SPACE_TIME_HELP = ("Fresh tasks are simulated on a finer grid; the model sees them coarsened to the training "
                   "grid and infers the force on the fine grid. Truth and prediction share a colour scale, "
                   "as do posterior std and absolute error.")
TIME_HELP = (f"Fresh tasks are simulated on a time mesh {TIME_SUPER_RESOLUTION_FACTOR}x denser than the training one; "
             "the model sees them only at the training times (orange ticks) and infers the force on the dense mesh, "
             "drawn against the truth simulated there.")


class SuperResolutionView(_ResultSection):
    """Observe fresh tasks on the coarse training mesh and infer their force on a finer one.

    Space x time systems: a grid :data:`SUPER_RESOLUTION_FACTOR` x finer in space and time.
    Time-only systems: a time mesh :data:`TIME_SUPER_RESOLUTION_FACTOR` x denser.
    """

    task = param.Integer(default=0, bounds=(0, SUPER_RESOLUTION_TASKS - 1), label="task")
    WORKING = "Simulating fresh tasks on the fine mesh and inferring them..."

    def __init__(self, session: Session, training: TrainingView, system: SystemView, **params):
        super().__init__(session, training, **params)
        self.system = system
        self._run = pn.widgets.Button(label="Infer on the fine mesh", color="primary", align="end")
        self._run.on_click(lambda _: self.run())
        self._help = pn.pane.Markdown(sizing_mode="stretch_width")
        self._grids = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self._detail_title = pn.pane.Markdown(sizing_mode="stretch_width")
        self._profiles = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False, widget_location="top")
        self.fine = self.coarse = self.result = None
        self.param.watch(lambda _: self._draw(), "task")
        session.param.watch(self._on_tasks, "tasks")
        self._on_tasks()

    def _on_tasks(self, *_):
        tasks = self.session.tasks
        self._help.object = SPACE_TIME_HELP if tasks is None or tasks.is_spatial else TIME_HELP

    def prepare(self):
        """Simulate fresh tasks on the union of the coarse and the fine mesh, observe them coarse, infer fine."""
        tasks = self.session.tasks
        model = self.model_for(tasks)
        if model is None:
            return None
        kwargs = self.system.settings.simulate_kwargs()
        kwargs["seed"] += FRESH_SEED_OFFSET
        kwargs.pop("n_points", None)
        name = tasks.system_name
        if tasks.is_spatial:
            factor = SUPER_RESOLUTION_FACTOR
            kwargs["grid"] = ((tasks.n_space - 1) * factor + 1, (tasks.n_time - 1) * factor + 1)

            def compute():
                fine = simulate(name, SUPER_RESOLUTION_TASKS, **kwargs)
                coarse = fine.coarsen(time=factor, space=factor)
                return fine, coarse, model.infer(coarse, time=fine.dataset["time"].values, space=fine.dataset["space"].values)

            return compute
        observed_time = tasks.dataset["time"].values
        dense = refine_mesh(observed_time, TIME_SUPER_RESOLUTION_FACTOR)

        def compute():
            fine = simulate(name, SUPER_RESOLUTION_TASKS, time=torch.as_tensor(dense), **kwargs)
            coarse = fine.select_mesh(time=observed_time)
            return fine, coarse, model.infer(coarse, time=dense)

        return compute

    def apply(self, outcome) -> None:
        self.fine, self.coarse, self.result = outcome
        mesh = (lambda t: f"{t.n_space} x {t.n_time}") if self.fine.is_spatial else (lambda t: f"{t.n_time} times")
        self.say(f"Observed on {mesh(self.coarse)}, inferred on {mesh(self.fine)}; "
                 f"standardised latent MSE {latent_mse(self.result, self.fine, self.task, self.session.model.normaliser.f_std):.4g} "
                 f"(task {self.task}).", "info")
        self._draw()

    def _draw(self):
        if self.result is None:
            return
        if self.fine.is_spatial:
            self._grids.object = plots.super_resolution(self.result, self.task, self.coarse, self.fine)
            self._detail_title.object = "**Profiles over space** (move the time slider):"
            self._profiles.object = plots.super_resolution_profiles(self.result, self.task, self.fine)
            return
        shown = TaskSet(self.fine.dataset.assign(y=self.coarse.dataset["y"].reindex(time=self.fine.dataset["time"])))
        self._grids.object = plots.latent_posterior(
            self.result, self.task, shown,
            title=f"latent force on {self.fine.n_time} times from {self.coarse.n_time} observed (task {self.task})",
        )
        self._detail_title.object = "**Outputs** on the dense mesh: posterior mean, 95% band and the observations."
        self._profiles.object = plots.output_posteriors(self.result, self.task, shown)

    def __panel__(self):
        return pn.Column(
            self._alert, self._needs_model, self._help,
            pn.Row(pn.widgets.IntSlider.from_param(self.param.task), self._run),
            self._grids, self._detail_title, self._profiles, sizing_mode="stretch_width",
        )
