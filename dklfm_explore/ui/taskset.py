"""The task set: generate it (off the UI thread, cancellable), save and load it as netCDF."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import panel as pn
import param

from .. import plots
from ..data import TaskSet, open_taskset
from ..errors import InvalidInputError
from ..simulate import simulate
from .base import BackgroundJob, Section, Session
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


def split_tasks(tasks: TaskSet) -> tuple[TaskSet, TaskSet]:
    """Split into (train, test): about :data:`TEST_FRACTION` held out, at least one, at most :data:`MAX_TEST_TASKS`."""
    if tasks.n_tasks < 2:
        raise InvalidInputError(f"A task set needs at least 2 tasks to split into training and test tasks, got {tasks.n_tasks}.")
    n_test = min(MAX_TEST_TASKS, max(1, round(TEST_FRACTION * tasks.n_tasks)))
    return tasks.split(n_test, seed=0)


class TaskSetView(Section):
    """Generate the task set with the system's settings, or save / load it."""

    progress = param.Integer(default=0, bounds=(0, 100), doc="Percent of the tasks simulated.")
    running = param.Boolean(default=False, doc="Whether a simulation is under way.")

    def __init__(self, session: Session, system: SystemView, **params):
        super().__init__(session, **params)
        self.system = system
        self.job = BackgroundJob(self)
        self.generate_button = pn.widgets.Button(label="Generate task set", color="primary")
        self.cancel_button = pn.widgets.Button(label="Cancel", color="warning", disabled=True)
        self.generate_button.on_click(lambda _: self.generate())
        self.cancel_button.on_click(lambda _: self.job.cancel())
        self._progress = pn.indicators.Progress(value=0, max=100, visible=False, sizing_mode="stretch_width", bar_color="primary")
        self.download = pn.widgets.FileDownload(callback=self._netcdf_bytes, filename="tasks.nc", label="Save task set (netCDF)", color="light")
        self.upload = pn.widgets.FileInput(accept=".nc", multiple=False)
        self.upload.param.watch(self._on_upload, "value")
        self._summary = pn.pane.Markdown(sizing_mode="stretch_width")
        self._plot = pn.pane.HoloViews(sizing_mode="stretch_width", linked_axes=False)
        self.param.watch(self._on_running, ["running", "progress"])
        session.param.watch(self._draw, "tasks")

    def _on_running(self, *_):
        self.generate_button.disabled = self.running
        self.cancel_button.disabled = not self.running
        self._progress.visible = self.running
        self._progress.value = self.progress

    def generate_now(self) -> None:
        """Simulate the task set on this thread (used for the fast default at start)."""
        self.guard(lambda: self.use(simulate(self.system.system, self.system.settings.n_tasks, **self.system.settings.simulate_kwargs())))

    def generate(self) -> None:
        """Simulate the task set on a worker thread, reporting progress; Cancel keeps nothing."""
        if self.job.running:
            return
        name, settings = self.system.system, self.system.settings
        kwargs, n_tasks = settings.simulate_kwargs(), settings.n_tasks
        self.say(f"Simulating {n_tasks} tasks of {name}...")
        self.progress, self.running = 0, True

        def work(report, cancelled):
            return simulate(name, n_tasks, chunk_size=PROGRESS_CHUNK, progress=lambda done, total: report(int(100 * done / total)), cancel=cancelled, **kwargs)

        self.job.start(work, on_progress=self._set_progress, on_done=self._generated, on_finally=self._finished)

    def _set_progress(self, value: int) -> None:
        self.progress = value

    def _generated(self, tasks: TaskSet) -> None:
        self.use(tasks)
        self.say(f"Generated {tasks.n_tasks} tasks of {tasks.system_name}.", "success")

    def _finished(self) -> None:
        self.running = False

    def use(self, tasks: TaskSet) -> None:
        """Make ``tasks`` the session's task set and split it into training and test tasks."""
        train, test = split_tasks(tasks)
        with param.parameterized.batch_call_watchers(self.session):
            self.session.train_tasks, self.session.test_tasks = train, test
            self.session.tasks = tasks

    def _netcdf_bytes(self) -> io.BytesIO:
        tasks = self.session.tasks
        with tempfile.TemporaryDirectory() as folder:
            path = tasks.save(Path(folder) / "tasks.nc")
            return io.BytesIO(path.read_bytes())

    def _on_upload(self, event) -> None:
        if event.new:
            self.guard(lambda: self.load_bytes(event.new, self.upload.filename or "upload.nc"))

    def load_bytes(self, content: bytes, filename: str) -> TaskSet:
        """Load a task set saved as netCDF from the bytes of an upload."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(filename).name
            path.write_bytes(content)
            tasks = open_taskset(path, lazy=False)
        if not tasks.has_latent:
            raise InvalidInputError(f"{filename} has no latent force `f`; a task set for training needs it (upload measurements under 'Your data').")
        self.use(tasks)
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
            pn.Row(self.generate_button, self.cancel_button),
            self._progress,
            self._summary,
            self._plot,
            pn.layout.Divider(),
            pn.Row(self.download, pn.Column(pn.pane.Markdown("Load a task set (netCDF saved here or by `dklfm simulate`):", margin=(0, 10)), self.upload)),
            sizing_mode="stretch_width",
        )
