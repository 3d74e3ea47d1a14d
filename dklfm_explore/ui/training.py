"""Training: device, settings, Train / Stop off the UI thread with live curves, save and load models."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import tempfile
from functools import lru_cache
from pathlib import Path

import panel as pn
import param
import torch

from .. import plots
from ..data import TaskSet
from ..datasets import PRETRAINED_MODELS
from ..errors import InvalidInputError
from .base import BackgroundJob, JobControls, Section, eta_text
from .panes import PlotPane
from ..verdict import Verdict
from .session import Session, verdict_of

__all__ = ["TrainingView", "ModelList", "available_devices", "reference_levels", "STANDARDISED_HELP", "REASONS"]

BENCHMARK_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "latest.json"
"""The recorded benchmark (present in a checkout of the repository): its per-task and exact LFM rows give reference levels."""
STANDARDISED_HELP = ("*Standardised latent MSE*: mean squared error of the inferred force divided by the variance of the "
                     "force over the training tasks; 1 is what always predicting the mean force scores, 0 is perfect.")
REASONS = {"completed": "all epochs done", "early-stopping": "early stopping", "time-limit": "time limit reached",
           "cancelled": "stopped by you", "diverged": "diverged"}
"""How the dashboard says why a training run stopped."""


@lru_cache(maxsize=1)
def _benchmark_rows() -> tuple:
    try:
        return tuple(json.loads(BENCHMARK_RESULTS.read_text())["rows"])
    except (OSError, ValueError, KeyError):
        return ()


def reference_levels(system_name: str) -> dict[str, float]:
    """Reference lines for a validation curve in standardised latent MSE: the prior mean (1) and, where the
    recorded benchmark has them for this system, the per-task and exact LFMs' test latent MSE."""
    levels = {"prior mean": 1.0}
    labels = {"per-task-lfm": "per-task LFM (benchmark)", "exact-lfm": "exact LFM (benchmark)"}
    for row in _benchmark_rows():
        if row.get("family") == system_name and row.get("method") in labels:
            levels[labels[row["method"]]] = float(row["latent_mse"])
    return levels


DEFAULT_MAX_SECONDS = 60
"""Default time budget of a training run in the app: a first model in a minute on a laptop CPU."""
DEFAULT_EPOCHS = 30
DEFAULT_EPOCH_TASKS = 512
"""Fresh tasks per epoch when training from the simulator: an epoch (then a validation pass) every few seconds on a CPU."""
FROM_SIMULATOR = "fresh simulations (the task set's settings)"
FROM_TASK_SET = "the Task set tab's task set"
SOURCES = [FROM_SIMULATOR, FROM_TASK_SET]
"""What a training run draws its tasks from: new tasks every step from the session's simulation spec (default), or the task set."""


def available_devices() -> list[str]:
    """Devices this machine can train on: always ``cpu``, plus ``cuda`` when present."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class ModelList(pn.viewable.Viewer):
    """The session's models, newest first, each with its verdict and a button that makes it the current one."""

    def __init__(self, session: Session, **params):
        super().__init__(**params)
        self.session = session
        self._rows = pn.Column(sizing_mode="stretch_width")
        session.param.watch(self.refresh, ["models", "model", "test_tasks"])
        self.refresh()

    def refresh(self, *_):
        rows = []
        for number, entry in reversed(list(enumerate(self.session.models, start=1))):
            current = entry.model is self.session.model
            text, learned = describe(self.session, entry)
            colour = {True: "#146c43", False: "#b02a37", None: "#555555"}[learned]
            label = f"**#{number}{' (in use)' if current else ''}** {entry.origin}, *{entry.system_name}*: <span style='color:{colour}'>{text}</span>"
            button = pn.widgets.Button(label="In use" if current else f"Use #{number}", disabled=current, width=90, align="center")
            button.on_click(lambda _, entry=entry: self.session.choose(entry))
            rows.append(pn.Row(button, pn.pane.Markdown(label, sizing_mode="stretch_width", margin=(0, 5)), sizing_mode="stretch_width"))
        self._rows[:] = rows or [pn.pane.Markdown("No models yet.")]

    def __panel__(self):
        return pn.Column(pn.pane.Markdown("**Models of this session** (one click brings any back):"), self._rows, sizing_mode="stretch_width")


def held_out_text(verdict: Verdict) -> str:
    """A :class:`Verdict` on the session's held-out tasks in words."""
    ratio = verdict.prior_mse / verdict.latent_mse if verdict.latent_mse > 0 else math.inf
    head = "learned" if verdict.learned else "not learned"
    return (f"{head}: latent MSE {verdict.latent_mse:.2g} ± {verdict.latent_mse_se:.1g} on {verdict.n_tasks} held-out tasks, "
            f"{ratio:.1f}x better than the prior mean ({verdict.prior_mse:.2g}), 95% coverage {verdict.coverage95:.2f}")


def describe(session: Session, entry) -> tuple[str, bool | None]:
    """``(verdict in words, learned or None when unknown)`` of a session's model."""
    verdict = verdict_of(entry.model)
    evaluation = session.evaluation(entry)
    parts, learned = [], None
    if verdict is not None:
        parts.append(f"training verdict: {verdict.message}")
        learned = bool(verdict.learned)
    if evaluation is not None:
        parts.append(f"on this task set: {held_out_text(evaluation)}")
        learned = evaluation.learned if learned is None else learned and evaluation.learned
    return ("; ".join(parts) or "no verdict (the model has none and the held-out tasks are of another system)"), learned


class TrainingView(Section):
    """Train a DKLFM on the session's training tasks, watch it learn, stop it, save or load it.

    A model that arrives by any route (bundled, loaded, trained here) shows the curves of its own training run.
    """

    source = param.Selector(default=FROM_SIMULATOR, objects=SOURCES, label="train on",
                            doc="Fresh simulated tasks for every step (the settings that made the task set), or the task set itself.")
    device = param.Selector(default="cpu", objects=["cpu"], label="device", doc="Where to train and infer.")
    epochs = param.Integer(default=DEFAULT_EPOCHS, bounds=(1, 10_000), label="epochs",
                           doc="Passes over the task set, or epochs of 'tasks per epoch' fresh tasks; 20-50 is typical, the time limit usually ends the run first.")
    epoch_tasks = param.Integer(default=DEFAULT_EPOCH_TASKS, bounds=(16, 1_000_000), label="tasks per epoch",
                                doc="Training from fresh simulations: tasks drawn between two validation passes (256-2048).")
    validation_tasks = param.Integer(default=None, allow_None=True, bounds=(2, 100_000), label="validation tasks",
                                     doc="Training from fresh simulations: the fixed validation set (default 512 for systems over time, 64 over space and time).")
    batch_size = param.Integer(default=16, bounds=(1, 4096), label="batch size", doc="Tasks per gradient step.")
    learning_rate = param.Number(default=3e-3, bounds=(1e-5, 1.0), label="learning rate", doc="Adam learning rate.")
    max_seconds = param.Integer(default=DEFAULT_MAX_SECONDS, bounds=(1, None), label="time limit (s)",
                                doc="Training stops after this long and keeps the best model. On a laptop CPU a first model takes about 60 s "
                                    "(transcription), 2-3 min (Lotka-Volterra), 3-5 min (reaction-diffusion).")
    seed = param.Integer(default=0, bounds=(0, None), label="seed", doc="Seed of the initialisation and batch order.")
    history = param.List(default=[], doc="TrainingProgress records of the current run, as dicts.")
    history_system = param.String(default="", doc="The system the shown training run was for.")

    def __init__(self, session: Session, **params):
        super().__init__(session, **params)
        devices = available_devices()
        self.param.device.objects = devices
        self.device = "cuda" if "cuda" in devices else "cpu"
        self.job = BackgroundJob(self)
        self.controls = JobControls(self.job, self.train, start_label="Train", stop_label="Stop (keep best)")
        self.train_button, self.stop_button = self.controls.start_button, self.controls.stop_button
        self.models = ModelList(session)
        self._status = pn.pane.Markdown(sizing_mode="stretch_width")
        self._model_info = pn.pane.Markdown(sizing_mode="stretch_width")
        self._curves = PlotPane(plots.training_curves([])).follow(session)
        self.download = pn.widgets.FileDownload(callback=self._model_bytes, filename="dklfm.pt", label="Save model", color="light", disabled=True)
        self.upload = pn.widgets.FileInput(accept=".pt", multiple=False)
        self.upload.param.watch(self._on_upload, "value")
        self.param.watch(self._on_history, ["history", "history_system"])
        session.param.watch(self._on_model, ["model", "model_origin"])
        self._on_model()

    def time_hint(self) -> str:
        """'about N s on CPU' for the current time limit."""
        return f"up to {self.max_seconds} s on {self.device.upper()}"

    def load_bundled(self, system_name: str) -> bool:
        """Use the bundled pretrained model of ``system_name`` if the package ships one; False if not."""
        entry = PRETRAINED_MODELS.get(system_name)
        if entry is None or not entry.path.is_file():
            return False
        from ..trained import load_model

        existing = next((e for e in self.session.models if e.origin.startswith(f"bundled pretrained model `{entry.file}`")), None)
        if existing is not None:
            self.session.choose(existing)
            return True
        model = load_model(entry.path, device=self.device)
        self.session.add_model(model, f"bundled pretrained model `{entry.file}` ({entry.description})", current=True)
        return True

    @property
    def running(self) -> bool:
        return self.controls.running

    def _on_history(self, *_):
        self._curves.object = plots.training_curves(self.history, references=reference_levels(self.history_system))
        if self.history:
            last = self.history[-1]
            mse = last.get("validation_latent_mse")
            best = last.get("best_validation_latent_mse")
            run = "this run" if self.running else "the shown model's training run"
            parts = [f"{run}: epoch {last['epoch']} of {last['n_epochs']}", f"loss {last['loss']:.3g}"]
            if mse is not None:
                parts.append(f"validation latent MSE {mse:.3g} (best {best:.3g})" if best is not None else f"validation latent MSE {mse:.3g}")
            parts += [f"{last['elapsed_s']:.1f} s", eta_text(last.get("eta_s")) if self.running else "", f"device {last['device']}"]
            if last.get("stopped_reason"):
                parts.append(f"stopped: {REASONS.get(last['stopped_reason'], last['stopped_reason'])}")
            self._status.object = " · ".join(p for p in parts if p)

    def _on_model(self, *_):
        model = self.session.model
        self.download.disabled = model is None
        if model is None:
            self._model_info.object = f"No model yet. Press **Train** ({self.time_hint()})."
        else:
            self._model_info.object = f"Current model: {self.session.model_origin or 'trained'} — system *{model.system_name}*, device {model.device}."
            if not self.running and model.history:
                with param.parameterized.batch_call_watchers(self):
                    self.history_system = model.system_name
                    self.history = [dict(record) for record in model.history]

    def config(self):
        """The :class:`~dklfm_explore.train.TrainingConfig` for the current settings."""
        from ..train import TrainingConfig

        return TrainingConfig(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            seed=self.seed, device=self.device, max_seconds=self.max_seconds,
            epoch_tasks=self.epoch_tasks, validation_tasks=self.validation_tasks,
        )

    def train(self) -> None:
        """Train on a worker thread, from fresh simulations of the session's spec or on its training tasks; Stop keeps the best model so far."""
        if self.job.running:
            return
        train_tasks, spec = self.session.train_tasks, self.session.spec
        if train_tasks is None:
            self.say("There is no task set to train on or simulate like; generate one on the 'Task set' tab first.", "warning")
            return
        if self.source == FROM_SIMULATOR:
            if spec is None:
                self.say("The task set was loaded without its simulation settings, so there is nothing to simulate from; "
                         f"train on '{FROM_TASK_SET}' or generate a task set.", "warning")
                return
            data, what = spec, f"fresh {spec.system} tasks from the simulator ({self.epoch_tasks} per epoch)"
        else:
            if not train_tasks.has_latent:
                self.say("The task set has no latent force `f`, which training needs; generate or load a simulated task set.", "warning")
                return
            data, what = train_tasks, f"{train_tasks.n_tasks} tasks of {train_tasks.system_name}"
        config = self.guard(self.config)
        if config is None:
            return
        from ..train import train

        self.controls.param.update(progress=0, running=True)
        system = spec.system if data is spec else train_tasks.system_name
        self.history_system, self.history = system, []
        self.say(f"Training on {what} ({self.time_hint()})...")

        def work(report, cancelled):
            return train(data, config=config, progress=lambda record: report(dataclasses.asdict(record)), cancel=cancelled)

        self.job.start(work, on_progress=self._record, on_done=lambda model: self._trained(model, data), on_finally=self._finished)

    def _record(self, record: dict) -> None:
        self.history = self.history + [record]
        done = record["epoch"] / max(1, record["n_epochs"])
        if self.max_seconds:
            done = max(done, record.get("elapsed_s", 0.0) / self.max_seconds)
        self.controls.progress = min(100, int(100 * done))

    def _trained(self, model, data) -> None:
        last = self.history[-1] if self.history else {}
        reason = REASONS.get(last.get("stopped_reason"), last.get("stopped_reason"))
        epochs = last.get("epoch", 0)
        if isinstance(data, TaskSet):
            origin = f"trained here on the task set ({data.n_tasks} tasks, {epochs} epochs{', ' + reason if reason else ''})"
        else:
            seen = last.get("tasks_seen")
            origin = (f"trained here from the simulator ({seen if seen is not None else '?'} fresh tasks, {epochs} epochs"
                      f"{', ' + reason if reason else ''})")
        choice = self.session.add_model(model, origin, trained_on=data if isinstance(data, TaskSet) else None)
        text, learned = describe(self.session, self.session.models[-1])
        kind = {True: "success", False: "danger", None: "warning"}[learned]
        self.say(f"Training finished after {epochs} epoch(s){' (' + reason + ')' if reason else ''}. Verdict, {text}. {choice}", kind)

    def _finished(self) -> None:
        self.controls.running = False

    def _model_bytes(self) -> io.BytesIO:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "dklfm.pt"
            self.session.model.save(path)
            return io.BytesIO(path.read_bytes())

    def _on_upload(self, event) -> None:
        if event.new:
            self.guard(lambda: self.offer(self.read_bytes(event.new, self.upload.filename or "model.pt"), self.upload.filename or "model.pt"))

    def offer(self, model, filename: str) -> None:
        """Ask whether the loaded ``model`` replaces the one in use (either way both stay in the list)."""
        if self.session.model is None:
            self.use_loaded(model, filename, True)
            return
        self.confirm.ask(
            f"Use the model in `{filename}` (system *{model.system_name}*) instead of the one in use? Both stay in the list.",
            f"Use {filename}", lambda: self.use_loaded(model, filename, True),
            "Keep the model in use", lambda: self.use_loaded(model, filename, False))

    def use_loaded(self, model, filename: str, current: bool) -> None:
        """Add a loaded model to the session's list, in use if ``current``."""
        self.session.add_model(model, f"loaded from `{filename}`", current=current)
        where = "in use" if current else "in the list, not in use"
        self.say(f"Loaded the model in {filename} (system {model.system_name}): {where}.", "success")

    def load_bytes(self, content: bytes, filename: str):
        """Load a model from the bytes of an upload and use it (no question asked; the upload widget asks first)."""
        model = self.read_bytes(content, filename)
        self.use_loaded(model, filename, True)
        return model

    def read_bytes(self, content: bytes, filename: str):
        """Read a model saved with 'Save model' (or ``TrainedModel.save``) from the bytes of an upload."""
        if not filename.endswith(".pt"):
            raise InvalidInputError(f"{filename} is not a model file; upload a .pt file saved with 'Save model'.")
        from ..trained import load_model

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(filename).name
            path.write_bytes(content)
            return load_model(path, device=self.device)

    def settings(self) -> pn.viewable.Viewable:
        """The training settings, three to a row."""
        kinds = {"device": pn.widgets.Select, "learning_rate": pn.widgets.FloatInput}
        names = ["device", "epochs", "epoch_tasks", "batch_size", "learning_rate", "max_seconds", "seed"]
        widgets = {name: kinds.get(name, pn.widgets.IntInput).from_param(self.param[name], sizing_mode="stretch_width",
                                                                         description=self.param[name].doc)
                   for name in names}
        source = pn.widgets.RadioButtonGroup.from_param(self.param.source, color="primary", variant="outline")
        self.param.watch(lambda _: setattr(widgets["epoch_tasks"], "disabled", self.source != FROM_SIMULATOR), "source")
        return pn.Column(pn.Row(pn.pane.Markdown("**Train on**", margin=(8, 10)), source),
                         pn.GridBox(*widgets.values(), ncols=4, sizing_mode="stretch_width"), sizing_mode="stretch_width")

    def __panel__(self):
        return pn.Column(
            self._alert,
            self.confirm,
            self.settings(),
            self.controls,
            self._status,
            self._curves,
            pn.pane.Markdown(STANDARDISED_HELP, sizing_mode="stretch_width", styles={"font-size": "0.9em"}),
            self._model_info,
            self.models,
            pn.layout.Divider(),
            pn.Row(self.download, pn.Column(pn.pane.Markdown("Load a model (.pt):", margin=(0, 10)), self.upload)),
            sizing_mode="stretch_width",
        )
