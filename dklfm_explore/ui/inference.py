"""The Inference tab: a held-out test task's latent force, the baseline and the refined answer beside it, a summary over all."""

from __future__ import annotations

import time as clock

import panel as pn
import param

from .. import plots
from ..data import TaskSet
from ..metrics import latent_metrics
from .base import BackgroundJob
from .next_measurements import DEFAULT_NEXT, MAX_NEXT, k_input, suggest, suggestions_text
from .results import (REFINED_LABEL, REFINE_HELP, TIMING_REPEATS, baseline_for, latent_mse, latent_name, ood_badge,
                      refine_reason, show_refine, timed_infer)
from .sections import ResultSection, plot_pane
from .session import Session
from .training import STANDARDISED_HELP, TrainingView

__all__ = ["InferenceView"]


class InferenceView(ResultSection):
    """Infer the latent force of a held-out test task; optionally a baseline beside it; a summary over all test tasks."""

    task = param.Integer(default=0, bounds=(0, None), label="test task", doc="Which held-out task to infer.")
    baseline = param.Boolean(default=False, label="baseline beside it", doc="Also run the exact LFM (linear systems) or the per-task LFM (slow, seconds per task).")
    baseline_result = param.Parameter(default=None, doc="The baseline result for the shown task, or None.")
    refined_result = param.Parameter(default=None, doc="The refined DKLFM result for the shown task (Refine), or None.")
    summary = param.List(default=[], doc="Rows of the summary over all test tasks: dicts of method, latent_mse, coverage95, ms_per_task.")
    next_k = param.Integer(default=DEFAULT_NEXT, bounds=(0, MAX_NEXT), label="where to measure next (K)", doc="How many next measurement times to suggest.")
    suggestions = param.DataFrame(default=None, allow_None=True, doc="Where to measure the shown task next (dklfm_explore.design.next_measurements), or None.")

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self.one: TaskSet | None = None
        self.shown_task = 0
        self.first_ms = self.median_ms = self.baseline_ms = self.refined_ms = float("nan")
        self._task_widget = pn.widgets.IntSlider(label=self.param.task.label, start=0, end=1, value=0, width=300)
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
        self._outputs = plot_pane(self.output_plot)
        self._latent = plot_pane(self.latent_plot)
        self._next_text = pn.pane.Markdown(self.next_text, sizing_mode="stretch_width")
        self.param.watch(self._suggest, ["result", "next_k"])
        self.param.watch(self._on_task, "task")
        self.param.watch(lambda _: self.refresh(), "baseline")
        session.param.watch(self._on_tasks, ["test_tasks"])
        session.param.watch(lambda _: self._new_model(), ["model"])
        self._on_tasks()
        self._new_model()

    def result_panes(self) -> list:
        return [self._latent, self._outputs, self._metrics, self._next_text]

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

    def _suggest(self, *_):
        model = self.session.model if self.result is not None else None
        self.suggestions = self.guard(lambda: suggest(model, self.one, 0, self.next_k))

    @param.depends("suggestions")
    def next_text(self) -> str:
        """Where to measure the shown task next, in words (space x time systems: here only, not on the images)."""
        return suggestions_text(self.suggestions, self.one)

    @param.depends("result", "baseline_result", "refined_result", "suggestions")
    def latent_plot(self):
        """The shown task's latent posterior (space x time: images), with the other methods' beside it.

        Time-only tasks: the suggested next measurement times are marked on the DKLFM's posterior.
        """
        if self.result is None or self.one is None:
            return None
        one, task = self.one, self.shown_task
        if one.is_spatial:
            return plots.super_resolution(self.result, 0, one, one)
        latent = plots.latent_posterior(self.result, 0, one, title=f"DKLFM: {latent_name(one)} (test task {task})",
                                        suggestions=self.suggestions)
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
            pn.FlexBox(self._task_widget, k_input(self.param.next_k), self._baseline_widget, self.refine_button, self._summary_button,
                       align_items="center", sizing_mode="stretch_width"),
            self._metrics, self._summary, self._latent, self._next_text,
            pn.pane.Markdown(f"**Outputs**: posterior mean, 95% band and the observations. {STANDARDISED_HELP}"),
            self._outputs, sizing_mode="stretch_width",
        )
