"""A trained DKLFM with its normalisation: inference on new tasks, checkpoints.

Inference takes a :class:`~dklfm_explore.data.TaskSet` (simulated or uploaded,
``f`` ignored), maps its time axis onto the training window, standardises its
outputs, conditions the joint GP on the observed points and returns the latent
force and the outputs with their standard deviations, in the user's units and
on the user's time axis.
"""

from __future__ import annotations

import os
import time as clock
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .atomic import atomic_write
from .data import MIN_STD, Normaliser, TaskSet
from .devices import resolve_device
from .errors import CheckpointError, ExtrapolationWarning, InvalidInputError
from .model.dklfm import DKLFM, ModelConfig
from .ood import annotate as annotate_ood
from .train import TrainingConfig

__all__ = ["TrainedModel", "load_model", "CHECKPOINT_FORMAT_VERSION", "TIME_MAPPINGS", "OUTPUT_SCALINGS"]

CHECKPOINT_FORMAT_VERSION = 2
"""Version of the checkpoint layout; bump it when keys or their meaning change (2: ``latent_std_scale``)."""
READABLE_FORMAT_VERSIONS = (1, 2)
"""Versions :func:`load_model` reads; version 1 has no calibration and loads with ``latent_std_scale`` 1."""
CHECKPOINT_KEYS = (
    "format_version", "package_version", "state_dict", "model_config", "training_config", "normaliser",
    "system_name", "output_names", "time_window", "space_window", "history",
)
EXTRAPOLATION_MARGIN = 0.1
"""Queries further than this fraction of the training window outside it trigger an ExtrapolationWarning."""
INFER_CHUNK = 256
"""Tasks conditioned at once during inference (bounds memory of the batched factors)."""
TIME_MAPPINGS = ("shift", "scale", "none")
OUTPUT_SCALINGS = ("auto", "training", "self")


def _package_version() -> str:
    from .simulate import package_version

    return package_version()


class TrainedModel:
    """A meta-trained DKLFM, the normaliser of its training set and its provenance.

    Attributes
    ----------
    module : DKLFM
    normaliser : Normaliser
        Fitted on the training tasks only.
    system_name : str
    output_names : list of str
    config : TrainingConfig
    model_config : ModelConfig
    history : list of dict
        One :class:`~dklfm_explore.train.TrainingProgress` per epoch, the last one with ``stopped_reason``.
    time_window : (float, float)
        Training time range, in the system's time unit.
    space_window : (float, float) or None
    ood_reference : dict or None
        The out-of-distribution score's distribution over the validation tasks
        (:func:`~dklfm_explore.ood.ood_reference`); None for models trained with fewer than 50 validation tasks (then no score).
    latent_std_scale : float
        Post-hoc calibration: :meth:`infer` multiplies the GP's latent predictive std by it (chosen
        on the validation tasks by :func:`~dklfm_explore.train.latent_std_calibration`; 1 = none).
    device : torch.device
    """

    def __init__(self, module: DKLFM, normaliser: Normaliser, system_name: str, output_names, config: TrainingConfig,
                 model_config: ModelConfig, history: list[dict], time_window, space_window=None,
                 latent_std_scale: float = 1.0, ood_reference: dict | None = None):
        if not float(latent_std_scale) > 0:
            raise InvalidInputError(f"latent_std_scale must be positive, got {latent_std_scale}.")
        self.module = module.eval()
        self.normaliser = normaliser
        self.system_name = system_name
        self.output_names = list(output_names)
        self.config = config
        self.model_config = model_config
        self.history = history
        self.time_window = tuple(float(v) for v in time_window)
        self.space_window = None if space_window is None else tuple(float(v) for v in space_window)
        self.latent_std_scale = float(latent_std_scale)
        self.ood_reference = ood_reference

    def __repr__(self) -> str:
        return (f"<TrainedModel {self.system_name or 'custom'}: {len(self.output_names)} outputs, "
                f"stopped {self.stopped_reason!r}, device {self.device}>")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def stopped_reason(self) -> str | None:
        return self.history[-1].get("stopped_reason") if self.history else None

    def to(self, device) -> "TrainedModel":
        """Move the model to ``device`` (resolved with :func:`resolve_device`) and return self."""
        self.module.to(resolve_device(device))
        return self

    def infer(self, tasks: TaskSet, *, time=None, space=None, time_mapping: str = "shift", output_scaling: str = "auto") -> xr.Dataset:
        """Infer the latent force (and denoised outputs) of each task from its outputs.

        Parameters
        ----------
        tasks : TaskSet
            ``y (task, output, [space,] time)``, NaN = missing; ``f`` is ignored.
        time, space : array-like (query,), optional
            Query coordinates in the user's units; default the tasks' own mesh.  Denser =
            super-resolution; wider = extrapolation.
        time_mapping : {"shift", "scale", "none"}
            How the user's time axis is placed on the training window: ``"shift"`` moves the
            first measured time to the window start (same time unit), ``"scale"`` maps the
            measured range onto the window, ``"none"`` uses the times as given.  Results are
            always on the user's axis.
        output_scaling : {"auto", "training", "self"}
            How outputs are brought into the model's standardised space.  ``"training"`` uses the
            training set's per-output mean/std (right for data simulated from the same system);
            ``"self"`` standardises each output by the uploaded data's own pooled mean/std (over
            all its tasks/replicates and mesh points), for measurements on another scale (e.g.
            hundreds of expression units); outputs are mapped back with the same statistics.
            ``"auto"`` picks ``"training"`` when the tasks are a simulation (they carry ``y_clean``) of the
            model's system, else ``"self"``: measurements are never assumed to share the simulation's scale.
            The latent force is always returned in the training set's latent units.

        Returns
        -------
        xarray.Dataset
            ``latent_mean``, ``latent_std`` ``(task, [space,] time)``; ``output_mean``, ``output_std``
            ``(task, output, [space,] time)``.  Standard deviations are predictive (they include the
            learned noise ``sigma_f``, ``sigma_y``); the latent one is multiplied by ``latent_std_scale``.  attrs: ``infer_ms_per_task``, ``device``,
            ``time_mapping``, ``output_scaling``, ``system``.  With the model's ``ood_reference``, also
            ``ood_score`` and ``out_of_distribution`` ``(task,)`` (:mod:`dklfm_explore.ood`).

        Raises
        ------
        InvalidInputError
            Output count or mesh dimension differs from the model's, unknown mapping, an output
            with no observed value.

        Warns
        -----
        ExtrapolationWarning
            If the query leaves the training window by more than 10% of its length.
        OutOfDistributionWarning
            Naming the tasks whose outputs are unlike the validation tasks'.
        """
        if not isinstance(tasks, TaskSet):
            raise InvalidInputError(f"infer() needs a TaskSet, got {type(tasks).__name__}.")
        if tasks.n_outputs != len(self.output_names):
            raise InvalidInputError(
                f"The tasks have {tasks.n_outputs} output(s) but the model was trained on {len(self.output_names)} "
                f"({', '.join(self.output_names)})."
            )
        if tasks.is_spatial != (self.space_window is not None):
            kind = "space x time" if self.space_window is not None else "time-only"
            raise InvalidInputError(f"The tasks' mesh is {'space x time' if tasks.is_spatial else 'time-only'} but the model is {kind}.")
        if time_mapping not in TIME_MAPPINGS:
            raise InvalidInputError(f"time_mapping {time_mapping!r} is not one of {', '.join(TIME_MAPPINGS)}.")
        if output_scaling not in OUTPUT_SCALINGS:
            raise InvalidInputError(f"output_scaling {output_scaling!r} is not one of {', '.join(OUTPUT_SCALINGS)}.")
        if output_scaling == "auto":
            simulated = "y_clean" in tasks.dataset and tasks.system_name == self.system_name
            output_scaling = "training" if simulated else "self"

        device = self.device
        user_time = tasks.time
        query_time = user_time if time is None else _coordinate(time, "time")
        to_training_time = self._time_map(user_time, time_mapping)
        coords = (self.normaliser.transform_time(to_training_time(user_time)),)
        query = (self.normaliser.transform_time(to_training_time(query_time)),)
        query_space = None
        if tasks.is_spatial:
            query_space = tasks.space if space is None else _coordinate(space, "space")
            coords = (self.normaliser.transform_space(tasks.space),) + coords
            query = (self.normaliser.transform_space(query_space),) + query
        elif space is not None:
            raise InvalidInputError("A space query was given but the tasks are over time only.")
        slope = float(to_training_time(torch.tensor(1.0, dtype=torch.float64)) - to_training_time(torch.tensor(0.0, dtype=torch.float64)))
        offset = float(to_training_time(torch.tensor(0.0, dtype=torch.float64)))
        trained_on = {"time": tuple((bound - offset) / slope for bound in self.time_window), "space": self.space_window}
        for name, values, user in zip(("space", "time")[-len(query):], query, (query_space, query_time)[-len(query):]):
            _warn_if_outside(values, name, user, trained_on[name])

        y = tasks.y()
        if output_scaling == "training":
            mean, std = self.normaliser.y_stats(y)
        else:
            mean, std = _pooled_stats(y)
        y_standard = ((y - mean) / std).to(device)
        coords = tuple(c.to(device) for c in coords)
        query = tuple(c.to(device) for c in query)

        parts = []
        started = clock.perf_counter()
        with torch.no_grad():
            for start in range(0, tasks.n_tasks, INFER_CHUNK):
                parts.append(self.module.posterior(coords, y_standard[start : start + INFER_CHUNK], query))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        elapsed_ms = (clock.perf_counter() - started) * 1e3
        latent_mean = torch.cat([p.latent_mean for p in parts]).cpu()
        latent_var = torch.cat([p.latent_var for p in parts]).cpu() * self.latent_std_scale**2
        output_mean = torch.cat([p.output_mean for p in parts]).cpu()
        output_var = torch.cat([p.output_var for p in parts]).cpu()

        mesh_dims = ("space", "time") if tasks.is_spatial else ("time",)
        output_shape = (1, -1) + (1,) * len(mesh_dims)
        mean_out, std_out = mean.reshape(output_shape), std.reshape(output_shape)
        coords_out = {
            "task": tasks.dataset["task"].values,
            "output": tasks.dataset["output"].values,
            "time": query_time.numpy(),
        }
        if tasks.is_spatial:
            coords_out["space"] = query_space.numpy()
        latent_unit = tasks.dataset.attrs.get("latent_unit", "")
        output_unit = tasks.dataset.attrs.get("output_unit", "")
        result = xr.Dataset(
            {
                "latent_mean": (("task",) + mesh_dims, self.normaliser.inverse_f(latent_mean).numpy(), {"units": latent_unit}),
                "latent_std": (("task",) + mesh_dims, self.normaliser.inverse_f(latent_var, variance=True).sqrt().numpy(), {"units": latent_unit}),
                "output_mean": (("task", "output") + mesh_dims, (output_mean * std_out + mean_out).numpy(), {"units": output_unit}),
                "output_std": (("task", "output") + mesh_dims, (output_var.sqrt() * std_out).numpy(), {"units": output_unit}),
            },
            coords=coords_out,
            attrs={
                "infer_ms_per_task": elapsed_ms / tasks.n_tasks,
                "device": str(device),
                "time_mapping": time_mapping,
                "output_scaling": output_scaling,
                "system": self.system_name,
            },
        )
        return annotate_ood(result, self.module, self.ood_reference, coords, y_standard, output_scaling)

    def _time_map(self, user_time: torch.Tensor, mapping: str):
        """Affine map from the user's time axis to the training time axis (system units)."""
        start, stop = self.time_window
        first, last = float(user_time[0]), float(user_time[-1])
        if mapping == "shift":
            return lambda t: t - first + start
        if mapping == "scale":
            if last <= first:
                raise InvalidInputError(f"time_mapping='scale' needs at least two distinct times, got range [{first}, {last}].")
            return lambda t: start + (t - first) * (stop - start) / (last - first)
        return lambda t: t

    def save(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write a checkpoint (weights, configs, normaliser, provenance), atomically.

        ``overwrite=False`` refuses an existing ``path`` (:func:`~dklfm_explore.atomic.atomic_write`).
        """
        path = Path(path)
        payload = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "package_version": _package_version(),
            "state_dict": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "model_config": self.model_config.to_dict(),
            "training_config": self.config.to_dict(),
            "normaliser": self.normaliser.to_dict(),
            "system_name": self.system_name,
            "output_names": list(self.output_names),
            "time_window": list(self.time_window),
            "space_window": None if self.space_window is None else list(self.space_window),
            "history": self.history,
            "latent_std_scale": self.latent_std_scale,
            "ood_reference": self.ood_reference,
        }
        with atomic_write(path, overwrite=overwrite) as partial:
            torch.save(payload, partial)
        return path


def load_model(path: str | os.PathLike, device=None) -> TrainedModel:
    """Load a checkpoint written by :meth:`TrainedModel.save`.

    Parameters
    ----------
    device : str or None
        ``None``/``"auto"``: CUDA if available, else CPU.

    Raises
    ------
    CheckpointError
        If the file is missing, corrupted, of another format version, lacks keys or its weights
        do not fit its model configuration.
    """
    path = Path(path)
    device = resolve_device(device)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint file at {str(path)!r}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many unrelated types for a damaged or foreign file
        raise CheckpointError(f"{path.name} is not a readable DKLFM checkpoint (corrupted or another format: {type(error).__name__}).") from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path.name} is not a DKLFM checkpoint (it holds a {type(payload).__name__}, not a dict).")
    if payload.get("format_version") not in READABLE_FORMAT_VERSIONS and "format_version" in payload:
        raise CheckpointError(
            f"{path.name} has checkpoint format version {payload['format_version']!r} but this package reads version "
            f"{CHECKPOINT_FORMAT_VERSION}; retrain or load it with package version {payload.get('package_version', 'unknown')}."
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path.name} is missing checkpoint key(s) {', '.join(missing)}.")
    try:
        model_config = ModelConfig.from_dict(payload["model_config"])
        module = DKLFM(model_config)
        module.load_state_dict(payload["state_dict"])
        normaliser = Normaliser.from_dict(payload["normaliser"])
        config = TrainingConfig.from_dict(payload["training_config"])
    except (RuntimeError, TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path.name} has weights or settings that do not fit its model configuration ({error}).") from error
    return TrainedModel(
        module=module.to(device),
        normaliser=normaliser,
        system_name=payload["system_name"],
        output_names=payload["output_names"],
        config=config,
        model_config=model_config,
        history=payload["history"],
        time_window=payload["time_window"],
        space_window=payload["space_window"],
        latent_std_scale=payload.get("latent_std_scale", 1.0),
        ood_reference=payload.get("ood_reference"),
    )


def _coordinate(values, name: str) -> torch.Tensor:
    tensor = torch.tensor(np.asarray(values, dtype=np.float64))
    if tensor.ndim != 1 or tensor.numel() < 1 or not bool(torch.all(torch.isfinite(tensor))):
        raise InvalidInputError(f"The {name} query must be a 1-D array of finite numbers, got shape {tuple(tensor.shape)}.")
    if tensor.numel() > 1 and not bool(torch.all(torch.diff(tensor) > 0)):
        raise InvalidInputError(f"The {name} query must be strictly increasing.")
    return tensor


def _warn_if_outside(normalised: torch.Tensor, name: str, user: torch.Tensor, trained_on) -> None:
    """Warn when a query (normalised: the training window is [0, 1]) leaves the window by more than the margin."""
    low, high = float(normalised.min()), float(normalised.max())
    if low < -EXTRAPOLATION_MARGIN or high > 1 + EXTRAPOLATION_MARGIN:
        warnings.warn(
            ExtrapolationWarning(
                f"The {name} query spans {float(user.min()):g} to {float(user.max()):g} but the model was trained on "
                f"{trained_on[0]:g} to {trained_on[1]:g} (on this axis); predictions beyond that are extrapolations."
            ),
            stacklevel=3,
        )


def _pooled_stats(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output mean and std of ``y (task, output, *mesh)`` pooled over tasks and mesh, NaN ignored.

    Returns tensors shaped ``(output, 1[, 1])`` to broadcast against ``y``.
    """
    per_output = y.transpose(0, 1).reshape(y.shape[1], -1)
    observed = ~torch.isnan(per_output)
    count = observed.sum(-1).clamp_min(1)
    mean = torch.nan_to_num(per_output).sum(-1) / count
    centred = torch.where(observed, per_output - mean[:, None], torch.zeros_like(per_output))
    std = (centred.pow(2).sum(-1) / (count - 1).clamp_min(1)).sqrt().clamp_min(MIN_STD)
    shape = (-1,) + (1,) * (y.ndim - 2)
    return mean.reshape(shape), std.reshape(shape)
