"""'Your data': upload measurements, infer their hidden force with the current model, download the result."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import panel as pn
import param

from .. import plots
from ..data import NETCDF_ENGINE, TaskSet
from ..datasets import load_p53
from ..errors import InvalidInputError
from ..io import CSV_FORMAT, example_csv, file_stem, load_measurements, result_table
from ..ood import ood_sentence
from .base import BackgroundJob
from .next_measurements import DEFAULT_NEXT, MAX_NEXT, k_input, suggest, suggestions_text
from .panes import PlotPane
from .results import REFINE_HELP, latent_mse, latent_name, ood_badge, refine_mesh, refine_reason, show_refine
from .sections import ModelSection
from .session import Session
from .training import TrainingView

__all__ = ["YourDataView", "result_table", "FORMAT_HELP"]

ACCEPTED_SUFFIXES = (".csv", ".nc")
QUERY_REFINEMENT = 4
"""Time-only uploads are inferred at this many points per measured interval (the measured times included), so
the posterior between sparse measurements is drawn as the smooth curve it is, not as straight segments."""

FORMAT_HELP = """
**File format.** A CSV file, one row per measured point, with a header row:

* `time` (required): the measurement times, in the unit the model was trained with (any order, irregular spacing allowed);
* `space` (space-time systems only): the position of each measurement;
* one column per output, named as the model's outputs (for the p53 model: `DDB2`, `BIK`, `DR5`, `p21`, `SESN1`);
  an empty cell (or `NA`) is a missing value;
* optionally `replicate` (each replicate is inferred as its own series), `<output>_se` (known measurement error)
  and `force` (a known latent force, drawn as the truth). Units may follow a name in brackets: `time [h]`.

A netCDF task set (from *Save task set* or `dklfm simulate`) works too. The example file below is in this format.
"""


class YourDataView(ModelSection):
    """Upload a CSV or netCDF of measurements, infer their latent force, download the result.

    Time-only measurements are inferred at the measured times and :data:`QUERY_REFINEMENT` - 1 times between
    each pair of them; the downloads hold all of these.
    """

    tasks = param.Parameter(default=None, doc="The uploaded measurements as a TaskSet.")
    result = param.Parameter(default=None, doc="The inference result for the uploaded tasks.")
    task = param.Integer(default=0, bounds=(0, None), label="series", doc="Which uploaded series (replicate) to show.")
    next_k = param.Integer(default=DEFAULT_NEXT, bounds=(0, MAX_NEXT), label="where to measure next (K)", doc="How many next measurement times to suggest.")
    suggestions = param.DataFrame(default=None, allow_None=True, doc="Where to measure the shown series next (dklfm_explore.design.next_measurements), or None.")

    def __init__(self, session: Session, training: TrainingView, **params):
        super().__init__(session, training, **params)
        self.upload = pn.widgets.FileInput(accept=",".join(ACCEPTED_SUFFIXES), multiple=False)
        self.upload.param.watch(self._on_upload, ["value", "filename"])
        self.example = pn.widgets.FileDownload(callback=self._example_bytes, filename="example_measurements.csv", label="Download the example CSV", color="light")
        self.download_csv = pn.widgets.FileDownload(callback=self._csv_bytes, filename="latent_force.csv", label="Download result (CSV)", color="light", disabled=True)
        self.download_nc = pn.widgets.FileDownload(callback=self._netcdf_bytes, filename="latent_force.nc", label="Download result (netCDF)", color="light", disabled=True)
        self.p53_button = pn.widgets.Button(label="Try the bundled p53 data", color="light")
        self.p53_button.on_click(lambda _: self._replace("the bundled p53 data (5 Gy)", self.load_p53))
        self._task_widget = pn.widgets.IntSlider.from_param(self.param.task, visible=False, throttled=True)
        self._summary = pn.pane.Markdown(sizing_mode="stretch_width")
        self._all = PlotPane().follow(session)
        self._latent = PlotPane().follow(session)
        self._outputs = PlotPane().follow(session)
        self._next_text = pn.pane.Markdown(sizing_mode="stretch_width")
        self._next_k = k_input(self.param.next_k)
        self._next_k.visible = False
        self._source = "data"
        self.refine_job = BackgroundJob(self)
        self.refine_button = pn.widgets.Button(label="Refine", color="light", visible=False, description=REFINE_HELP)
        self.refine_button.on_click(lambda _: self.refine())
        self.param.watch(lambda *_: self._draw(), ["task", "next_k"])
        session.param.watch(lambda _: self.infer(), ["model"])

    def _system_name(self) -> str:
        model, tasks = self.session.model, self.session.train_tasks
        if model is not None:
            return model.system_name
        return tasks.system_name if tasks is not None and tasks.system_name else "transcription"

    def _example_bytes(self) -> io.BytesIO:
        system = self._system_name()
        self.example.filename = f"example_{system}.csv"
        return io.BytesIO(example_csv(system).encode())

    def load_p53(self) -> TaskSet:
        """Use the bundled p53 measurements (Barenco et al. 2006, 5 Gy: 3 replicates x 7 times)."""
        tasks = load_p53("5Gy")
        self._use(tasks, "the bundled p53 data (5 Gy)")
        return tasks

    def _on_upload(self, *_) -> None:
        """A file arrived (an empty one as a filename with no bytes): read it, then clear the widget.

        The browser sends only what changed, so a second upload of the same file (an empty one after
        "Keep", say) would never arrive: the widget is cleared here at once, and in the browser. The
        browser's clearing comes back as no filename, which is no upload.
        """
        if self.upload.filename is None:
            return
        content, filename = self.upload.value or b"", self.upload.filename
        with param.discard_events(self.upload):
            self.upload.param.update(value=None, filename=None, mime_type=None)
        self.upload.clear()
        self._replace(filename, lambda: self.load_bytes(content, filename))

    def _replace(self, new: str, load) -> None:
        """Run ``load`` at once when nothing is loaded, else after the user agrees to replace what is."""
        if self.tasks is None:
            self.guard(load)
            return
        self.confirm.ask(f"Replace {self._source} and its results with {new}?", "Replace",
                         lambda: self.guard(load), f"Keep {self._source}")

    def load_bytes(self, content: bytes, filename: str) -> TaskSet:
        """Validate an upload (CSV or netCDF bytes) into a TaskSet and infer it if a model is ready.

        Raises
        ------
        InvalidInputError
            With one sentence on what is wrong in the file.
        """
        self.tasks = self.result = None
        self._clear()
        self.say("")
        self._task_widget.visible = False
        if not content:
            raise InvalidInputError(f"{filename} is empty; upload a CSV with a header row and one row per measured point.")
        suffix = Path(filename).suffix.lower()
        if suffix not in ACCEPTED_SUFFIXES:
            raise InvalidInputError(f"{filename} is a {suffix or 'suffix-less'} file; upload a .csv or a .nc file.")
        expected = self.session.train_tasks.output_names if self.session.train_tasks is not None else None
        tasks = load_measurements(content, expected_outputs=expected, system=self._system_name(), name=filename)
        self._use(tasks, filename)
        return tasks

    def _use(self, tasks: TaskSet, source: str) -> None:
        self.result = None
        self._clear()
        self.tasks, self._source = tasks, source
        self.say(f"Read {source}: {tasks.n_tasks} series, {tasks.n_outputs} output(s) ({', '.join(tasks.output_names)}), {tasks.n_time} times.", "success")
        top = tasks.n_tasks - 1
        self.param.task.bounds = (0, top)
        self._task_widget.end = max(top, 1)
        self._task_widget.visible = top > 0
        self.task = 0
        self.infer()

    def infer(self) -> None:
        """Infer the uploaded tasks with the session's model (nothing if either is missing)."""
        if self.tasks is None:
            return
        model = self.model_for(self.tasks)
        if model is None:
            return
        self.guard(lambda: self._infer(model))

    def _infer(self, model) -> None:
        if self.tasks.is_spatial:
            self.result = model.infer(self.tasks)
        else:
            self.result = model.infer(self.tasks, time=refine_mesh(self.tasks.dataset["time"].values, QUERY_REFINEMENT))
        self.download_csv.disabled = self.download_nc.disabled = False
        show_refine(self.refine_button, model)
        self._draw()

    def refine(self) -> None:
        """Replace the first answer by a per-task fit started from it (``model.infer(..., refine=True)``), on a worker thread."""
        model, tasks = self.session.model, self.tasks
        if model is None or tasks is None or self.result is None or self.refine_job.running or refine_reason(model):
            return
        query = {} if tasks.is_spatial else {"time": refine_mesh(tasks.dataset["time"].values, QUERY_REFINEMENT)}
        self.say(f"Refining the {tasks.n_tasks} series by a per-task fit...")
        self.refine_button.disabled = True

        def work(report, cancelled):
            return model.infer(tasks, refine=True, **query)

        def done(result):
            if self.tasks is tasks:
                self.result = result
                self.say("Refined by a per-task fit; the plots and downloads show the refined answer.", "success")
                self._draw()

        self.refine_job.start(work, on_progress=lambda _: None, on_done=done, on_finally=lambda: setattr(self.refine_button, "disabled", bool(refine_reason(model))))

    def _clear(self):
        self._all.object = self._latent.object = self._outputs.object = None
        self._summary.object = self._next_text.object = ""
        self.suggestions = None
        self.download_csv.disabled = self.download_nc.disabled = True
        self.refine_button.visible = self._next_k.visible = False

    def _draw(self):
        if self.result is None or self.tasks is None:
            return
        k = min(self.task, self.tasks.n_tasks - 1)
        name = latent_name(self.tasks)
        line = (f"Inferred the {name} of {self.tasks.n_tasks} series: "
                f"{self.result.attrs.get('infer_ms_per_task', float('nan')):.1f} ms per series.")
        if self.tasks.has_latent:
            line += f" Latent MSE against the given `force`: {latent_mse(self.result, self.tasks, k):.4g} ({self.tasks.dataset.attrs.get('latent_unit') or 'force units'} squared)."
        warning = ood_sentence(self.result)
        badge = ood_badge(self.result, k)
        self._summary.object = line + (f" Series {self.result['task'].values[k]}: {badge}" if badge else "") + (f" **{warning}**" if warning else "")
        self.suggestions = self.guard(lambda: suggest(self.session.model, self.tasks, k, self.next_k))
        self._next_text.object = suggestions_text(self.suggestions, self.tasks)
        self._next_k.visible = True
        if self.tasks.is_spatial:
            self._all.object = None
            self._latent.object = plots.super_resolution(self.result, k, self.tasks, self.tasks if self.tasks.has_latent else None)
            self._outputs.object = None
        else:
            self._outputs.object = plots.output_posteriors(self.result, k, self.tasks)
            self._all.object = plots.latent_posteriors(self.result, self.tasks) if self.tasks.n_tasks > 1 else None
            series = f", series {self.result['task'].values[k]}" if self.tasks.n_tasks > 1 else ""
            self._latent.object = plots.latent_posterior(self.result, k, self.tasks, title=f"inferred {name}{series}",
                                                         suggestions=self.suggestions)

    def _units(self) -> dict[str, str]:
        attrs = self.tasks.dataset.attrs if self.tasks is not None else {}
        return {kind: str(attrs.get(f"{kind}_unit") or "") for kind in ("time", "space", "latent", "output")}

    def _download_name(self, suffix: str) -> str:
        stem = file_stem(Path(self._source).stem, "data")
        return f"{file_stem(latent_name(self.tasks), 'latent')}_{stem}_{self.session.model.system_name if self.session.model is not None else 'model'}{suffix}"

    def _csv_header(self) -> str:
        """``# key: value`` lines before the table: what was inferred, from what, with which model and query mesh."""
        model = self.session.model
        lines = {
            "latent": latent_name(self.tasks),
            "data": self._source,
            "model": f"{self.session.model_origin.replace('`', '')} ({model.system_name})" if model is not None else "",
            "query": ("the measured times and " f"{QUERY_REFINEMENT - 1} between each pair" if not self.tasks.is_spatial else "the measured mesh"),
            "refined": "yes (a per-task fit)" if self.result.attrs.get("refined") else "no",
            "numbers": "6 significant digits; *_std are posterior standard deviations",
        }
        return "".join(f"# {key}: {' '.join(str(value).split())}\n" for key, value in lines.items() if value)

    def _csv_bytes(self) -> io.BytesIO:
        self.download_csv.filename = self._download_name(".csv")
        table = result_table(self.result, self._units(), latent_name=latent_name(self.tasks))
        return io.BytesIO((self._csv_header() + table.to_csv(index=False, float_format=CSV_FORMAT)).encode())

    def _netcdf_bytes(self) -> io.BytesIO:
        self.download_nc.filename = self._download_name(".nc")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "latent_force.nc"
            self.result.to_netcdf(path, engine=NETCDF_ENGINE)
            return io.BytesIO(path.read_bytes())

    def __panel__(self):
        return pn.Column(
            pn.pane.Markdown(FORMAT_HELP, sizing_mode="stretch_width"),
            pn.FlexBox(self.example, self.p53_button, pn.Column(pn.pane.Markdown("Upload your measurements (.csv or .nc):", margin=(0, 10)), self.upload),
                       align_items="center", sizing_mode="stretch_width"),
            self._alert, self.confirm, self._needs_model,
            pn.Row(self._summary, self.refine_button, sizing_mode="stretch_width"), self._all,
            pn.Row(self._task_widget, self._next_k), self._latent, self._next_text, self._outputs,
            pn.Row(self.download_csv, self.download_nc),
            sizing_mode="stretch_width",
        )
