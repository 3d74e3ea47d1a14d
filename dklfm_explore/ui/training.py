"""Training: device, settings, Train / Stop off the UI thread with live curves, save and load models."""

from __future__ import annotations

import dataclasses
import io
import tempfile
from pathlib import Path

import panel as pn
import param
import torch

from .. import plots
from ..datasets import PRETRAINED_MODELS
from ..errors import InvalidInputError
from .base import BackgroundJob, Section, Session, eta_text

__all__ = ["TrainingView", "available_devices"]


DEFAULT_MAX_SECONDS = 60
"""Default time budget of a training run in the app: a first model in a minute on a laptop CPU."""
DEFAULT_EPOCHS = 30


def available_devices() -> list[str]:
    """Devices this machine can train on: always ``cpu``, plus ``cuda`` when present."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class TrainingView(Section):
    """Train a DKLFM on the session's training tasks, watch it learn, stop it, save or load it.

    A model that arrives by any route (bundled, loaded, trained here) shows the curves of its own training run.
    """

    device = param.Selector(default="cpu", objects=["cpu"], doc="Where to train and infer.")
    epochs = param.Integer(default=DEFAULT_EPOCHS, bounds=(1, 10_000), doc="Passes over the training tasks.")
    batch_size = param.Integer(default=16, bounds=(1, 4096), label="batch size", doc="Tasks per gradient step.")
    learning_rate = param.Number(default=3e-3, bounds=(1e-5, 1.0), label="learning rate", doc="Adam learning rate.")
    max_seconds = param.Integer(default=DEFAULT_MAX_SECONDS, bounds=(1, None), label="time limit (s)", doc="Training stops after this long and keeps the best model.")
    seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the initialisation and batch order.")
    history = param.List(default=[], doc="TrainingProgress records of the current run, as dicts.")
    running = param.Boolean(default=False)
    progress = param.Integer(default=0, bounds=(0, 100))

    def __init__(self, session: Session, **params):
        super().__init__(session, **params)
        devices = available_devices()
        self.param.device.objects = devices
        self.device = "cuda" if "cuda" in devices else "cpu"
        self.job = BackgroundJob(self)
        self.train_button = pn.widgets.Button(label="Train", color="primary")
        self.stop_button = pn.widgets.Button(label="Stop (keep best)", color="warning", disabled=True)
        self.train_button.on_click(lambda _: self.train())
        self.stop_button.on_click(lambda _: self.job.cancel())
        self._progress = pn.indicators.Progress(value=0, max=100, visible=False, sizing_mode="stretch_width", bar_color="primary")
        self._status = pn.pane.Markdown(sizing_mode="stretch_width")
        self._model_info = pn.pane.Markdown(sizing_mode="stretch_width")
        self._curves = pn.pane.HoloViews(plots.training_curves([]), sizing_mode="stretch_width", linked_axes=False)
        self.download = pn.widgets.FileDownload(callback=self._model_bytes, filename="dklfm.pt", label="Save model", color="light", disabled=True)
        self.upload = pn.widgets.FileInput(accept=".pt", multiple=False)
        self.upload.param.watch(self._on_upload, "value")
        self.param.watch(self._on_running, ["running", "progress"])
        self.param.watch(self._on_history, "history")
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

        model = load_model(entry.path, device=self.device)
        self.session.model_origin = f"bundled pretrained model `{entry.file}` ({entry.description})"
        self.session.model = model
        return True

    def _on_running(self, *_):
        self.train_button.disabled = self.running
        self.stop_button.disabled = not self.running
        self._progress.visible = self.running
        self._progress.value = self.progress

    def _on_history(self, *_):
        self._curves.object = plots.training_curves(self.history)
        if self.history:
            last = self.history[-1]
            mse = last.get("validation_latent_mse")
            best = last.get("best_validation_latent_mse")
            parts = [f"epoch {last['epoch']}/{last['n_epochs']}", f"loss {last['loss']:.4g}"]
            if mse is not None:
                parts.append(f"validation latent MSE {mse:.4g} (best {best:.4g})" if best is not None else f"validation latent MSE {mse:.4g}")
            parts += [f"{last['elapsed_s']:.1f} s", eta_text(last.get("eta_s")), f"device {last['device']}"]
            if last.get("stopped_reason"):
                parts.append(f"stopped: {last['stopped_reason']}")
            self._status.object = " · ".join(p for p in parts if p)

    def _on_model(self, *_):
        model = self.session.model
        self.download.disabled = model is None
        if model is None:
            self._model_info.object = f"No model yet. Press **Train** ({self.time_hint()})."
        else:
            self._model_info.object = f"Current model: {self.session.model_origin or 'trained'} — system *{model.system_name}*, device {model.device}."
            if not self.running and model.history:
                self.history = [dict(record) for record in model.history]

    def config(self):
        """The :class:`~dklfm_explore.train.TrainingConfig` for the current settings."""
        from ..train import TrainingConfig

        return TrainingConfig(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
            seed=self.seed, device=self.device, max_seconds=self.max_seconds,
        )

    def train(self) -> None:
        """Train on the session's training tasks on a worker thread; Stop keeps the best model so far."""
        if self.job.running:
            return
        train_tasks = self.session.train_tasks
        if train_tasks is None:
            self.say("There is no task set to train on; generate one on the 'Task set' tab first.", "warning")
            return
        if not train_tasks.has_latent:
            self.say("The task set has no latent force `f`, which training needs; generate or load a simulated task set.", "warning")
            return
        config = self.guard(self.config)
        if config is None:
            return
        from ..train import train

        self.history, self.progress, self.running = [], 0, True
        self.say(f"Training on {train_tasks.n_tasks} tasks ({self.time_hint()})...")

        def work(report, cancelled):
            return train(train_tasks, config=config, progress=lambda record: report(dataclasses.asdict(record)), cancel=cancelled)

        self.job.start(work, on_progress=self._record, on_done=self._trained, on_finally=self._finished)

    def _record(self, record: dict) -> None:
        self.history = self.history + [record]
        self.progress = int(100 * record["epoch"] / max(1, record["n_epochs"]))

    def _trained(self, model) -> None:
        reason = self.history[-1].get("stopped_reason") if self.history else None
        epochs = self.history[-1]["epoch"] if self.history else 0
        self.session.model_origin = f"trained here ({self.session.train_tasks.n_tasks} tasks, {epochs} epochs{', ' + reason if reason else ''})"
        self.session.model = model
        self.say(f"Training finished after {epochs} epoch(s){' (' + reason + ')' if reason else ''}; the best model is in use.", "success")

    def _finished(self) -> None:
        self.running = False

    def _model_bytes(self) -> io.BytesIO:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "dklfm.pt"
            self.session.model.save(path)
            return io.BytesIO(path.read_bytes())

    def _on_upload(self, event) -> None:
        if event.new:
            self.guard(lambda: self.load_bytes(event.new, self.upload.filename or "model.pt"))

    def load_bytes(self, content: bytes, filename: str):
        """Load a model saved with 'Save model' (or ``TrainedModel.save``) from the bytes of an upload."""
        if not filename.endswith(".pt"):
            raise InvalidInputError(f"{filename} is not a model file; upload a .pt file saved with 'Save model'.")
        from ..trained import load_model

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(filename).name
            path.write_bytes(content)
            model = load_model(path, device=self.device)
        self.session.model_origin = f"loaded from `{filename}`"
        self.session.model = model
        self.say(f"Loaded the model in {filename} (system {model.system_name}).", "success")
        return model

    def controls(self) -> pn.viewable.Viewable:
        """The training settings, three to a row."""
        kinds = {"device": pn.widgets.Select, "learning_rate": pn.widgets.FloatInput}
        names = ["device", "epochs", "batch_size", "learning_rate", "max_seconds", "seed"]
        widgets = [kinds.get(name, pn.widgets.IntInput).from_param(self.param[name], sizing_mode="stretch_width") for name in names]
        return pn.GridBox(*widgets, ncols=3, sizing_mode="stretch_width")

    def __panel__(self):
        return pn.Column(
            self._alert,
            self.controls(),
            pn.Row(self.train_button, self.stop_button),
            self._progress,
            self._status,
            self._curves,
            self._model_info,
            pn.layout.Divider(),
            pn.Row(self.download, pn.Column(pn.pane.Markdown("Load a model (.pt):", margin=(0, 10)), self.upload)),
            sizing_mode="stretch_width",
        )
