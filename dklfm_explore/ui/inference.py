"""Inference views: a held-out task's latent force, extrapolation in time, super-resolution in space-time."""

from __future__ import annotations

import statistics
import time as clock
import warnings

from typing import Any, Callable

import numpy as np
import panel as pn
import param

from .. import plots
from ..data import TaskSet
from ..metrics import latent_metrics, task_latent_mse
from ..model.baselines import EXACT_SYSTEMS
from ..errors import ExtrapolationWarning, InvalidInputError
from ..refine import refinable_system
from .base import BackgroundJob, Section
from .session import Session, simulate_spec
from .training import STANDARDISED_HELP, TrainingView

__all__ = ["ModelSection", "ResultSection", "InferenceView", "ExtrapolationView", "SuperResolutionView", "latent_mse",
           "refine_mesh", "baseline_for", "timed_infer", "EXACT_BASELINE_SYSTEMS", "TIMING_REPEATS"]

STALE = {"opacity": "0.35"}
"""How a result being recomputed is shown: greyed out, so an old plot never reads as the new label's."""
FRESH = {"opacity": "1"}
"""A result that is current (an empty style would leave the browser's old opacity in place)."""
TIMING_REPEATS = 5
"""Inference is timed as the median of this many calls after a first (warm-up) call, whose cost is reported apart."""
REFINED_LABEL = "DKLFM refined"
REFINE_HELP = ("A short fit of this task alone, started from the first (amortised) answer: "
               "slower than the first answer, closer to a per-task fit.")
OOD_COLOURS = {True: "#b02a37", False: "#146c43"}
OOD_HELP = ("Out-of-distribution score: above 1, the data are unlike the central 99% of the tasks the model "
            "was validated on; treat its answer with care.")
NO_SPEC = ("The task set has no simulation settings (it was loaded from a file without them), so fresh tasks like it "
           "cannot be simulated; generate a task set on the 'Task set' tab.")


def timed_infer(model, tasks: TaskSet, repeats: int = TIMING_REPEATS, **query):
    """``(result, first call ms per task, median ms per task of ``repeats`` later calls)`` of ``model.infer(tasks, **query)``."""
    started = clock.perf_counter()
    result = model.infer(tasks, **query)
    first = (clock.perf_counter() - started) * 1e3 / tasks.n_tasks
    times = []
    for _ in range(repeats):
        started = clock.perf_counter()
        model.infer(tasks, **query)
        times.append((clock.perf_counter() - started) * 1e3 / tasks.n_tasks)
    return result, first, statistics.median(times)

EXACT_BASELINE_SYSTEMS = EXACT_SYSTEMS
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
        """The panes that show the result: greyed out while it is recomputed."""
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
            return
        self.say(self.WORKING)
        for pane in self.result_panes():
            pane.styles = STALE
        job = self.first_job = BackgroundJob(self)

        def done(outcome):
            if generation == self._generation:
                self.say("")
                self.apply(outcome)

        def finished():
            if generation == self._generation:
                for pane in self.result_panes():
                    pane.styles = FRESH

        job.start(lambda report, cancelled: compute(), on_progress=lambda _: None, on_done=done, on_finally=finished)

    def show(self) -> None:
        """The section is on screen: if it has no result yet, compute it on a worker thread and draw it."""
        if self.shown and (self.result is not None or self.first_job.running):
            return
        self.shown = True
        self.refresh()


def plot_pane(method) -> pn.Column:
    """A pane that redraws ``method`` (a ``@param.depends`` method returning a plots element, or None).

    Wrapped in a column, whose style greys it out while it is recomputed (a style set on the
    method's own pane would be passed on to the HoloViews pane inside, which refuses it).
    """
    return pn.Column(pn.param.ParamMethod(method, sizing_mode="stretch_width", linked_axes=False), sizing_mode="stretch_width")


def refine_reason(model) -> str:
    """Why refining does not apply to ``model`` ('' when it does): it needs a registered system with an ODE right-hand side."""
    try:
        refinable_system(model.system_name)
    except InvalidInputError as error:
        return str(error)
    return ""


def show_refine(button: pn.widgets.Button, model) -> None:
    """Show the Refine ``button`` for ``model``: enabled where refining applies, else greyed with the reason as its tooltip."""
    reason = "" if model is None else refine_reason(model)
    button.param.update(visible=model is not None, disabled=bool(reason), description=reason or REFINE_HELP)


def ood_badge(result, task: int = 0) -> str:
    """A coloured badge saying whether task ``task`` of ``result`` looks like the model's validation tasks ("" without a score)."""
    if result is None or "ood_score" not in result:
        return ""
    score = float(result["ood_score"].values[task])
    if bool(result["out_of_distribution"].values[task]):
        colour, text = OOD_COLOURS[True], f"out of distribution (score {score:.2g} > 1)"
    else:
        colour, text = OOD_COLOURS[False], f"in distribution (score {score:.2g} ≤ 1)"
    return (f"<span style='background:{colour};color:white;border-radius:4px;padding:1px 6px' "
            f"title='{OOD_HELP}'>{text}</span>")


class InferenceView(ResultSection):
    """Infer the latent force of a held-out test task; optionally a baseline beside it; a summary over all test tasks."""

    task = param.Integer(default=0, bounds=(0, None), label="test task", doc="Which held-out task to infer.")
    baseline = param.Boolean(default=False, label="baseline beside it", doc="Also run the exact LFM (linear systems) or the per-task LFM (slow, seconds per task).")
    baseline_result = param.Parameter(default=None, doc="The baseline result for the shown task, or None.")
    refined_result = param.Parameter(default=None, doc="The refined DKLFM result for the shown task (Refine), or None.")
    summary = param.List(default=[], doc="Rows of the summary over all test tasks: dicts of method, latent_mse, coverage95, ms_per_task.")

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self.one: TaskSet | None = None
        self.shown_task = 0
        self.first_ms = self.median_ms = self.baseline_ms = self.refined_ms = float("nan")
        self._task_widget = pn.widgets.IntSlider(label=self.param.task.label, start=0, end=1, value=0, sizing_mode="stretch_width")
        self._task_widget.param.watch(lambda event: setattr(self, "task", event.new), "value_throttled")
        self._baseline_widget = pn.widgets.Checkbox.from_param(self.param.baseline)
        self.job = BackgroundJob(self)
        self.summary_job = BackgroundJob(self)
        self.refine_job = BackgroundJob(self)
        self._summary_button = pn.widgets.Button(label="Summary over all test tasks", color="light")
        self._summary_button.on_click(lambda _: self.summarise())
        self.refine_button = pn.widgets.Button(label="Refine", color="light", visible=False, description=REFINE_HELP)
        self.refine_button.on_click(lambda _: self.refine())
        self._summary = pn.pane.Markdown(sizing_mode="stretch_width")
        self._metrics = pn.pane.Markdown(self.metrics_text, sizing_mode="stretch_width")
        self._latent = plot_pane(self.latent_plot)
        self._outputs = plot_pane(self.output_plot)
        self.param.watch(self._on_task, "task")
        self.param.watch(lambda _: self.refresh(), "baseline")
        session.param.watch(self._on_tasks, ["test_tasks"])
        session.param.watch(lambda _: self._new_model(), ["model"])
        self._on_tasks()
        self._new_model()

    def result_panes(self) -> list:
        return [self._latent, self._outputs, self._metrics]

    def key(self) -> tuple:
        return (id(self.session.model), id(self.session.test_tasks), self.task, self.baseline)

    def clear(self) -> None:
        self.param.update(result=None, baseline_result=None, refined_result=None)

    def _on_task(self, *_):
        self._task_widget.value = self.task
        self.refresh()

    def _new_model(self):
        self.summary = []
        self._summary.object = ""
        show_refine(self.refine_button, self.session.model)
        self.refresh()

    def _on_tasks(self, *_):
        test = self.session.test_tasks
        top = max(0, (test.n_tasks if test is not None else 1) - 1)
        self._task_widget.end = max(top, 1)
        self._task_widget.disabled = top == 0
        self.param.task.bounds = (0, top)
        self.summary = []
        self._summary.object = ""
        if self.task > top:
            self.task = 0
        else:
            self.refresh()
        if test is not None:
            self._baseline_widget.label = f"{baseline_for(test.system_name)[0]} beside it"

    WORKING = "Inferring the held-out task..."

    def prepare(self):
        test = self.session.test_tasks
        model = self.model_for(test)
        if model is None:
            self.clear()
            return None
        task = self.task
        one = test.isel([task])
        return lambda: (task, one, timed_infer(model, one))

    def apply(self, outcome) -> None:
        task, one, (result, self.first_ms, self.median_ms) = outcome
        self.one, self.shown_task = one, task
        self.param.update(result=result, baseline_result=None, refined_result=None)
        if self.baseline and one.system_name:
            self._run_baseline(task, one)

    def _run_baseline(self, task: int, one: TaskSet) -> None:
        label, name = baseline_for(one.system_name)
        self.say(f"Running the {label} on task {task}...")
        generation = self._generation

        def work(report, cancelled):
            from ..model.baselines import get_baseline

            started = clock.perf_counter()
            result = get_baseline(name)(one)
            return result, (clock.perf_counter() - started) * 1e3

        def done(outcome):
            if generation == self._generation and self.result is not None:
                result, self.baseline_ms = outcome
                self.baseline_result = result
            self.say("")

        self.job.start(work, on_progress=lambda _: None, on_done=done, on_finally=lambda: None)

    def refine(self) -> None:
        """Refine the shown task's posterior by a short fit of that task alone (``model.infer(..., refine=True)``), on a worker thread."""
        model, one, generation = self.session.model, self.one, self._generation
        if model is None or one is None or self.result is None or self.refine_job.running or refine_reason(model):
            return
        self.say(f"Refining test task {self.shown_task} by a per-task fit...")
        self.refine_button.disabled = True

        def work(report, cancelled):
            started = clock.perf_counter()
            result = model.infer(one, refine=True)
            return result, (clock.perf_counter() - started) * 1e3

        def done(outcome):
            if generation == self._generation and self.result is not None:
                result, self.refined_ms = outcome
                self.refined_result = result
            self.say("")

        self.refine_job.start(work, on_progress=lambda _: None, on_done=done, on_finally=lambda: setattr(self.refine_button, "disabled", bool(refine_reason(model))))

    def _others(self) -> dict:
        """The other results of the shown task beside the DKLFM's, by label."""
        others = {}
        if self.refined_result is not None:
            others[REFINED_LABEL] = self.refined_result
        if self.baseline_result is not None and self.one is not None:
            others[baseline_for(self.one.system_name)[0]] = self.baseline_result
        return others

    def _colours(self) -> dict:
        label = baseline_for(self.one.system_name)[0] if self.one is not None else ""
        return {REFINED_LABEL: plots.REFINED_COLOUR, label: plots.BASELINE_COLOUR}

    @param.depends("result", "baseline_result", "refined_result")
    def metrics_text(self) -> str:
        """The shown task's scores and timings in words, with its OOD badge."""
        if self.result is None or self.one is None or self.session.model is None:
            return ""
        one, task, scale = self.one, self.shown_task, self.session.model.normaliser.f_std
        lines = [f"**DKLFM** on test task {task}: standardised latent MSE {latent_mse(self.result, one, 0, scale):.3g}; "
                 f"inference {self.median_ms:.1f} ms per task (median of {TIMING_REPEATS} calls; the first call took {self.first_ms:.1f} ms) "
                 + ood_badge(self.result, 0)]
        if self.refined_result is not None:
            lines.append(f"**{REFINED_LABEL}**: standardised latent MSE {latent_mse(self.refined_result, one, 0, scale):.3g}; "
                         f"{self.refined_ms:.0f} ms for this task (first answer and per-task fit)")
        if self.baseline_result is not None:
            label = baseline_for(one.system_name)[0]
            lines.append(f"**{label}**: standardised latent MSE {latent_mse(self.baseline_result, one, 0, scale):.3g}; "
                         f"{self.baseline_ms:.0f} ms for this task (one call, fit included)")
        return "  \n".join(lines)

    @param.depends("result", "baseline_result", "refined_result")
    def latent_plot(self):
        """The shown task's latent posterior (space x time: images), with the other methods' beside it."""
        if self.result is None or self.one is None:
            return None
        one, task = self.one, self.shown_task
        if one.is_spatial:
            return plots.super_resolution(self.result, 0, one, one)
        latent = plots.latent_posterior(self.result, 0, one, title=f"DKLFM: latent force posterior (test task {task})")
        colours = self._colours()
        for label, other in self._others().items():
            side = plots.latent_posterior(other, 0, one, label=label, colour=colours[label], title=f"{label} posterior (test task {task})")
            latent = latent + side.opts(show_legend=False)
        return latent

    @param.depends("result", "baseline_result", "refined_result")
    def output_plot(self):
        """The shown task's output posteriors (time-only systems) with the other methods' fits."""
        if self.result is None or self.one is None or self.one.is_spatial:
            return None
        return plots.output_posteriors(self.result, 0, self.one, others=self._others(), colours=self._colours())

    def summarise(self) -> None:
        """Infer every test task with the DKLFM (batched) and the baseline (one at a time) on a worker thread; a table of both."""
        test = self.session.test_tasks
        model = self.model_for(test)
        if model is None or self.summary_job.running:
            return
        if not test.has_latent:
            self.say("The test tasks have no known latent force to score against.", "warning")
            return
        label, name = baseline_for(test.system_name)
        self.say(f"Inferring all {test.n_tasks} test tasks with the DKLFM and the {label}...")
        self._summary_button.disabled = True
        scale = model.normaliser.f_std

        def work(report, cancelled):
            from ..model.baselines import get_baseline

            result, first, median = timed_infer(model, test)
            rows = [dict(method="DKLFM", ms_per_task=median, **latent_metrics(result, test.dataset["f"], scale))]
            started = clock.perf_counter()
            baseline = get_baseline(name)(test)
            ms = (clock.perf_counter() - started) * 1e3 / test.n_tasks
            rows.append(dict(method=label, ms_per_task=ms, **latent_metrics(baseline, test.dataset["f"], scale)))
            return rows

        def done(rows):
            self.summary = rows
            header = f"**All {test.n_tasks} test tasks** (standardised latent MSE: 1 = the prior mean's level)\n\n| method | latent MSE | 95% coverage | ms per task |\n|---|---|---|---|\n"
            body = "\n".join(f"| {r['method']} | {r['latent_mse']:.3g} | {r['coverage95']:.2f} | {r['ms_per_task']:.1f} |" for r in rows)
            self._summary.object = header + body
            self.say("")

        def finished():
            self._summary_button.disabled = False

        self.summary_job.start(work, on_progress=lambda _: None, on_done=done, on_finally=finished)

    def __panel__(self):
        return pn.Column(
            self._alert, self._needs_model,
            pn.Row(self._task_widget, self._baseline_widget, self._summary_button, sizing_mode="stretch_width"),
            self._metrics, self._summary, self._latent,
            pn.pane.Markdown(f"**Outputs**: posterior mean, 95% band and the observations. {STANDARDISED_HELP}"),
            self._outputs, sizing_mode="stretch_width",
        )


class ExtrapolationView(ResultSection):
    """Observe fresh tasks over the trained window only and infer their force beyond it."""

    factor = param.Number(default=EXTRAPOLATION_FACTOR, bounds=(1.0, 4.0), step=0.1, label="query window (x trained length)")
    task = param.Integer(default=0, bounds=(0, EXTRAPOLATION_TASKS - 1), label="task")

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self._run = pn.widgets.Button(label="Extrapolate", color="primary")
        self._run.on_click(lambda _: self.refresh(force=True))
        self._plot = plot_pane(self.plot)
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
        model = self.model_for(tasks)
        if model is None:
            return None
        spec = self.session.spec
        if spec is None:
            self.say(NO_SPEC, "warning")
            return None
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


class SuperResolutionView(ResultSection):
    """Observe fresh tasks on the coarse training mesh and infer their force on a finer one.

    Space x time systems: a grid :data:`SUPER_RESOLUTION_FACTOR` x finer in space and time.
    Time-only systems: a time mesh :data:`TIME_SUPER_RESOLUTION_FACTOR` x denser.
    """

    task = param.Integer(default=0, bounds=(0, SUPER_RESOLUTION_TASKS - 1), label="task")
    time_index = param.Integer(default=0, bounds=(0, None), label="time step of the profile", doc="Which fine-grid time the profile over space shows.")
    WORKING = "Simulating fresh tasks on the fine mesh and inferring them..."

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self._run = pn.widgets.Button(label="Infer on the fine mesh", color="primary", align="end")
        self._run.on_click(lambda _: self.refresh(force=True))
        self._time_widget = pn.widgets.IntSlider(label=self.param.time_index.label, start=0, end=1, value=0, visible=False, sizing_mode="stretch_width")
        self._time_widget.param.watch(lambda event: setattr(self, "time_index", event.new), "value")
        self._help = pn.pane.Markdown(sizing_mode="stretch_width")
        self._grids = plot_pane(self.grids_plot)
        self._detail_title = pn.pane.Markdown(self.detail_title, sizing_mode="stretch_width")
        self._profiles = plot_pane(self.detail_plot)
        self.fine = self.coarse = None
        self.param.watch(self._on_result, "result")
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
        spec = self.session.spec
        if spec is None:
            self.say(NO_SPEC, "warning")
            return None
        seed = spec.seed + FRESH_SEED_OFFSET
        if tasks.is_spatial:
            factor = SUPER_RESOLUTION_FACTOR
            grid = ((tasks.n_space - 1) * factor + 1, (tasks.n_time - 1) * factor + 1)

            def compute():
                fine = simulate_spec(spec, SUPER_RESOLUTION_TASKS, grid=grid, seed=seed)
                coarse = fine.coarsen(time=factor, space=factor)
                return fine, coarse, model.infer(coarse, time=fine.dataset["time"].values, space=fine.dataset["space"].values)

            return compute
        observed_time = tasks.dataset["time"].values
        dense = refine_mesh(observed_time, TIME_SUPER_RESOLUTION_FACTOR)

        def compute():
            fine = simulate_spec(spec, SUPER_RESOLUTION_TASKS, n_points=None, time=tuple(dense.tolist()), seed=seed)
            coarse = fine.select_mesh(time=observed_time)
            return fine, coarse, model.infer(coarse, time=dense)

        return compute

    def result_panes(self) -> list:
        return [self._grids, self._profiles, self._detail_title]

    def apply(self, outcome) -> None:
        self.fine, self.coarse, result = outcome
        mesh = (lambda t: f"{t.n_space} x {t.n_time}") if self.fine.is_spatial else (lambda t: f"{t.n_time} times")
        self.say(f"Observed on {mesh(self.coarse)}, inferred on {mesh(self.fine)}; "
                 f"standardised latent MSE {latent_mse(result, self.fine, self.task, self.session.model.normaliser.f_std):.4g} "
                 f"(task {self.task}).", "info")
        self.result = result

    def _on_result(self, *_):
        spatial = self.result is not None and self.fine.is_spatial
        self._time_widget.visible = spatial
        if spatial:
            n_time = self.result.sizes["time"]
            self.param.time_index.bounds = (0, n_time - 1)
            self._time_widget.end = n_time - 1
            if self.time_index > n_time - 1:
                self.time_index = n_time - 1

    def _shown(self) -> TaskSet:
        """The fine tasks with only the coarse observations (time-only systems)."""
        return TaskSet(self.fine.dataset.assign(y=self.coarse.dataset["y"].reindex(time=self.fine.dataset["time"])))

    @param.depends("result", "task")
    def grids_plot(self):
        """Space x time: the images of observed, true, predicted, std and error; time-only: the latent posterior on the dense mesh."""
        if self.result is None:
            return None
        if self.fine.is_spatial:
            return plots.super_resolution(self.result, self.task, self.coarse, self.fine)
        return plots.latent_posterior(
            self.result, self.task, self._shown(),
            title=f"latent force on {self.fine.n_time} times from {self.coarse.n_time} observed (task {self.task})",
        )

    @param.depends("result")
    def detail_title(self) -> str:
        if self.result is None:
            return ""
        if self.fine.is_spatial:
            return "**Profile over space** at one time (move the time slider above it):"
        return "**Outputs** on the dense mesh: posterior mean, 95% band and the observations."

    @param.depends("result", "task", "time_index")
    def detail_plot(self):
        """Space x time: the latent profile over space at the chosen time; time-only: the outputs on the dense mesh."""
        if self.result is None:
            return None
        if self.fine.is_spatial:
            index = min(self.time_index, self.result.sizes["time"] - 1)
            return plots.super_resolution_profile(self.result, self.task, self.fine, index)
        return plots.output_posteriors(self.result, self.task, self._shown())

    def __panel__(self):
        return pn.Column(
            self._alert, self._needs_model, self._help,
            pn.Row(pn.widgets.IntSlider.from_param(self.param.task), self._run),
            self._grids, self._detail_title, self._time_widget, self._profiles, sizing_mode="stretch_width",
        )
