"""The Super-resolution tab: fresh tasks observed on the training mesh, their force inferred on a finer one."""

from __future__ import annotations

import panel as pn
import param

from .. import plots
from ..data import TaskSet
from .results import latent_mse, refine_mesh
from .sections import FRESH_SEED_OFFSET, ResultSection, plot_pane
from .session import Session, simulate_spec
from .training import TrainingView

__all__ = ["SuperResolutionView", "SUPER_RESOLUTION_FACTOR", "TIME_SUPER_RESOLUTION_FACTOR", "SUPER_RESOLUTION_TASKS"]

SUPER_RESOLUTION_FACTOR = 2
"""The fine grid has this many times the intervals of the coarse (training) grid in space and in time."""
TIME_SUPER_RESOLUTION_FACTOR = 3
"""Time-only systems: the dense query mesh has this many times the intervals of the observed one."""
SUPER_RESOLUTION_TASKS = 3
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
        self._time_widget.param.watch(lambda event: setattr(self, "time_index", event.new), "value_throttled")
        self._task_widget = pn.widgets.IntSlider.from_param(self.param.task, throttled=True)
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
        ready = self.model_and_spec(tasks)
        if ready is None:
            return None
        model, spec = ready
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
            title=f"task {self.task}: inferred on {self.fine.n_time} times from {self.coarse.n_time} observed",
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
            pn.Row(self._task_widget, self._run),
            self._grids, self._detail_title, self._time_widget, self._profiles, sizing_mode="stretch_width",
        )
