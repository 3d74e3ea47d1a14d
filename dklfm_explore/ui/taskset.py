"""The task set: generate it (off the UI thread, cancellable), save and load it as netCDF."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Callable

import panel as pn
import param

from .. import plots
from ..data import TaskSet, open_taskset
from ..errors import InvalidInputError
from .base import BackgroundJob, JobControls, Section
from .panes import PlotPane
from .session import Session, simulate_spec
from .system import SystemView

__all__ = ["TaskSetView", "split_tasks"]

TEST_FRACTION = 0.1
"""Share of the tasks held out for inference (the model never sees them)."""
MAX_TEST_TASKS = 50
"""Cap on held-out tasks: enough to browse, and inference over them stays instant."""
SHOWN_TASKS = 3
"""Tasks drawn in the task-set summary."""
PROGRESS_CHUNK = 64
"""Tasks simulated between progress reports and cancellation checks."""
REPLACE_QUESTION = ("The model in use was trained on this task set, and a new one replaces it (the model stays in the list). "
                    "To keep the task set, save it first with 'Save task set'.")


def split_tasks(tasks: TaskSet) -> tuple[TaskSet, TaskSet]:
    """Split into (train, test): about :data:`TEST_FRACTION` held out, at least one, at most :data:`MAX_TEST_TASKS`."""
    if tasks.n_tasks < 2:
        raise InvalidInputError(f"A task set needs at least 2 tasks to split into training and test tasks, got {tasks.n_tasks}.")
    n_test = min(MAX_TEST_TASKS, max(1, round(TEST_FRACTION * tasks.n_tasks)))
    return tasks.split(n_test, seed=0)


class TaskSetView(Section):
    """Generate the task set with the system's settings, or save / load it."""

    def __init__(self, session: Session, system: SystemView, **params):
        super().__init__(session, **params)
        self.system = system
        self.job = BackgroundJob(self)
        self.controls = JobControls(self.job, self.generate, start_label="Generate task set", stop_label="Cancel")
        self.generate_button, self.cancel_button = self.controls.start_button, self.controls.stop_button
        self.download = pn.widgets.FileDownload(callback=self._netcdf_bytes, filename="tasks.nc", label="Save task set (netCDF)", color="light")
        self.upload = pn.widgets.FileInput(accept=".nc", multiple=False)
        self.upload.param.watch(self._on_upload, "value")
        self._summary = pn.pane.Markdown(sizing_mode="stretch_width")
        self._plot = PlotPane(by_column=True).follow(session)
        session.param.watch(self._draw, "tasks")

    @property
    def running(self) -> bool:
        return self.controls.running

    def generate_now(self) -> None:
        """Simulate the task set on this thread (used for the fast default at start)."""
        def run():
            spec = self.system.settings.spec()
            self.use(simulate_spec(spec, self.system.settings.n_tasks), spec)
        self.guard(run)

    def generate(self, then: Callable[[], None] | None = None, *, confirmed: bool = False) -> None:
        """Simulate the task set on a worker thread, reporting progress; Cancel keeps nothing; ``then()`` runs after success.

        When the model in use was trained on the current task set, it asks first (unless ``confirmed``).
        """
        if self.job.running:
            return
        if not confirmed and self.session.trained_current_model():
            self.confirm.ask(REPLACE_QUESTION, "Generate a new task set", lambda: self.generate(then, confirmed=True), "Keep this task set")
            return
        settings = self.system.settings
        spec = self.guard(settings.spec)
        if spec is None:
            return
        n_tasks = settings.n_tasks
        self.say(f"Simulating {n_tasks} tasks of {spec.system}...")
        self.controls.param.update(progress=0, running=True)
        self._plot.loading = True

        def work(report, cancelled):
            return simulate_spec(spec, n_tasks, chunk_size=PROGRESS_CHUNK, progress=lambda done, total: report(int(100 * done / total)), cancel=cancelled)

        def done(tasks):
            self.use(tasks, spec)
            self.say(f"Generated {tasks.n_tasks} tasks of {tasks.system_name}.", "success")
            if then is not None:
                then()

        self.job.start(work, on_progress=self._set_progress, on_done=done, on_finally=self._finished)

    def _set_progress(self, value: int) -> None:
        self.controls.progress = value

    def _finished(self) -> None:
        self.controls.running = False
        self._plot.loading = False

    def use(self, tasks: TaskSet, spec=None) -> None:
        """Make ``tasks`` (made by ``spec``; None when unknown) the session's task set, split into training and test tasks."""
        train, test = split_tasks(tasks)
        self.session.use_tasks(tasks, train, test, spec)

    def _netcdf_bytes(self) -> io.BytesIO:
        tasks = self.session.tasks
        with tempfile.TemporaryDirectory() as folder:
            path = tasks.save(Path(folder) / "tasks.nc")
            return io.BytesIO(path.read_bytes())

    def _on_upload(self, event) -> None:
        if not event.new:
            return
        content, filename = event.new, self.upload.filename or "upload.nc"
        load = lambda: self.guard(lambda: self.load_bytes(content, filename))  # noqa: E731
        if self.session.trained_current_model():
            self.confirm.ask(REPLACE_QUESTION.replace("a new one", filename), f"Load {filename}", load, "Keep this task set")
        else:
            load()

    def load_bytes(self, content: bytes, filename: str) -> TaskSet:
        """Load a task set saved as netCDF from the bytes of an upload."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(filename).name
            path.write_bytes(content)
            tasks = open_taskset(path, lazy=False)
        if not tasks.has_latent:
            raise InvalidInputError(f"{filename} has no latent force `f`; a task set for training needs it (upload measurements under 'Your data').")
        self.use(tasks, getattr(tasks, "spec", None))
        self.say(f"Loaded {tasks.n_tasks} tasks from {filename}.", "success")
        return tasks

    def _draw(self, *_):
        tasks = self.session.tasks
        if tasks is None:
            self._summary.object = "No task set yet."
            return
        mesh = f"{tasks.n_space} space x {tasks.n_time} time points" if tasks.is_spatial else f"{tasks.n_time} time points"
        train, test = self.session.train_tasks, self.session.test_tasks
        self._summary.object = (
            f"**{tasks.n_tasks} tasks** of *{tasks.system_name or 'measurements'}*: {tasks.n_outputs} output(s) "
            f"({', '.join(tasks.output_names)}), {mesh}; {train.n_tasks} for training, {test.n_tasks} held out for inference."
        )
        self._plot.object = plots.sample_tasks(tasks, SHOWN_TASKS)

    def __panel__(self):
        return pn.Column(
            self._alert,
            self.confirm,
            self.controls,
            self._summary,
            self._plot,
            pn.layout.Divider(),
            pn.Row(self.download, pn.Column(pn.pane.Markdown("Load a task set (netCDF saved here or by `dklfm simulate`):", margin=(0, 10)), self.upload)),
            sizing_mode="stretch_width",
        )
