"""A trained DKLFM with its normalisation: inference on new tasks, checkpoints.

Inference takes a :class:`~dklfm_explore.data.TaskSet` (simulated or uploaded,
``f`` ignored), maps its time axis onto the training window, standardises its
outputs (:func:`~dklfm_explore.standardise.standardise`), conditions the joint GP on
the observed points and returns the latent force and the outputs with their standard
deviations, in the user's units and on the user's time axis
(:func:`~dklfm_explore.result.result_dataset`).
"""

from __future__ import annotations

import os
import time as clock
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .checkpoint import CHECKPOINT_FORMAT_VERSION, read_checkpoint, write_checkpoint
from .config import TrainingConfig
from .data import Normaliser, TaskSet
from .devices import resolve_device
from .errors import CheckpointError, ExtrapolationWarning, InvalidInputError, NotLearnedWarning
from .model.dklfm import DKLFM, ModelConfig
from .ood import annotate as annotate_ood
from .refine import refinable_system
from .refine import refine as refine_answer
from .result import result_dataset, warn_if_not_finite
from .task_checks import check_observed
from .standardise import TIME_MAPPINGS, Standardised, TimeMap, check_reach, span_text, standardise, standardise_coords, unstandardise
from .verdict import Verdict
from .version import package_version

__all__ = ["TrainedModel", "load_model", "CHECKPOINT_FORMAT_VERSION", "TIME_MAPPINGS", "OUTPUT_SCALINGS"]

EXTRAPOLATION_MARGIN = 0.1
"""Queries further than this fraction of the training window outside it trigger an ExtrapolationWarning."""
INFER_CHUNK = 256
"""Tasks conditioned at once during inference (bounds memory of the batched factors)."""
OUTPUT_SCALINGS = ("auto", "training", "self")


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
    verdict : Verdict or None
        Whether training learned, on its validation tasks (None: checkpoints older than the verdict,
        or training without validation tasks).
    provenance : dict or None
        How it was trained: ``source`` ("spec", "file" or "task set"), ``spec`` (dict or None),
        ``file`` (path or None), ``steps``, ``tasks_seen``.
    device : torch.device
    """

    def __init__(self, module: DKLFM, normaliser: Normaliser, system_name: str, output_names, config: TrainingConfig,
                 model_config: ModelConfig, history: list[dict], time_window, space_window=None,
                 latent_std_scale: float = 1.0, verdict: Verdict | None = None, provenance: dict | None = None,
                 ood_reference: dict | None = None):
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
        self.verdict = verdict
        self.provenance = provenance

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

    @property
    def learned(self) -> bool | None:
        """The verdict's ``learned`` (None without a verdict)."""
        return None if self.verdict is None else self.verdict.learned

    def infer(self, tasks: TaskSet, *, time=None, space=None, time_mapping: str = "shift", output_scaling: str = "auto",
              self_stats: tuple[torch.Tensor, torch.Tensor] | None = None, refine: bool = False) -> xr.Dataset:
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
        self_stats : (Tensor, Tensor), optional
            Per-output ``(mean, std)`` ``(output, 1[, 1])`` for ``"self"`` scaling instead of these tasks' own:
            those of a whole file whose tasks are inferred a chunk at a time (:mod:`dklfm_explore.stream`).
        refine : bool
            Refine each task's answer by a short per-task LFM fit warm-started from it
            (:func:`~dklfm_explore.refine.refine`: ODE systems only; seconds instead of milliseconds).

        Returns
        -------
        xarray.Dataset
            ``latent_mean``, ``latent_std`` ``(task, [space,] time)``; ``output_mean``, ``output_std``
            ``(task, output, [space,] time)``.  Standard deviations are predictive (they include the
            learned noise ``sigma_f``, ``sigma_y``); the latent one is multiplied by ``latent_std_scale``.  attrs: ``infer_ms_per_task``, ``device``,
            ``time_mapping``, ``output_scaling``, ``system``.  With the model's ``ood_reference``, also
            ``ood_score`` and ``out_of_distribution`` ``(task,)`` (:mod:`dklfm_explore.ood`).  With
            ``refine=True``, the refined posterior in the same format, plus the first answer
            (:func:`~dklfm_explore.refine.refine`).

        Raises
        ------
        InvalidInputError
            Output count or mesh dimension differs from the model's, unknown mapping, an output
            with no observed value in a task, an output beyond 1e150
            (:func:`~dklfm_explore.standardise.standardise`); ``refine=True`` for a system without an ODE right-hand side.

        Warns
        -----
        ExtrapolationWarning
            If the query leaves the training window by more than 10% of its length.
        OutOfDistributionWarning
            Naming the tasks whose outputs are unlike the validation tasks'.
        NotLearnedWarning
            If the model's verdict says it did not learn.
        ConstantOutputWarning
            Naming the outputs that do not vary (with ``output_scaling="self"``).
        NonFiniteResultWarning
            Naming the variables and tasks of the result that are not finite numbers.
        """
        self._check_tasks(tasks)
        if refine:
            refinable_system(self.system_name)
        if self.verdict is not None and not self.verdict.learned:
            warnings.warn(NotLearnedWarning(f"Inferring with a model that {self.verdict.message}."), stacklevel=2)
        output_scaling = self._output_scaling(tasks, output_scaling)
        standardised = standardise(tasks, self.normaliser, time_mapping=time_mapping, output_scaling=output_scaling,
                                   latent=False, window=self.time_window, device=self.device, self_stats=self_stats)
        source = str(tasks.dataset.attrs.get("source") or "the tasks")
        check_reach(standardised.coords, source, self.time_window)
        query_time, query_space, query = self._query(tasks, time, space, standardised.time_map)
        posterior, output_nll, elapsed_ms = self._condition(standardised, query)
        latent_mean, latent_var, output_mean, output_var = unstandardise(self.normaliser, standardised, *posterior)
        latent_var = latent_var * self.latent_std_scale**2
        attrs = {"infer_ms_per_task": elapsed_ms / tasks.n_tasks, "device": str(self.device), "time_mapping": time_mapping,
                 "output_scaling": output_scaling, "system": self.system_name}
        result = result_dataset(tasks, query_time, query_space, latent_mean, latent_var, output_mean, output_var, attrs)
        warn_if_not_finite(result, source)
        result = annotate_ood(result, self.module, self.ood_reference, standardised.coords, standardised.y, output_scaling,
                              output_nll=output_nll)
        if refine:
            return refine_answer(self, tasks, result, time=time, time_mapping=time_mapping, output_scaling=output_scaling)
        return result

    def _check_tasks(self, tasks: TaskSet) -> None:
        """Raise InvalidInputError unless ``tasks`` have this model's outputs and mesh dimension."""
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
        check_observed(tasks, str(tasks.dataset.attrs.get("source") or "the tasks"))

    def _output_scaling(self, tasks: TaskSet, output_scaling: str) -> str:
        """``"training"`` or ``"self"`` for a requested scaling (``"auto"`` resolved as :meth:`infer` says)."""
        if output_scaling not in OUTPUT_SCALINGS:
            raise InvalidInputError(f"output_scaling {output_scaling!r} is not one of {', '.join(OUTPUT_SCALINGS)}.")
        if output_scaling == "auto":
            simulated = "y_clean" in tasks.dataset and tasks.system_name == self.system_name
            return "training" if simulated else "self"
        return output_scaling

    def _query(self, tasks: TaskSet, time, space, time_map: TimeMap):
        """The query mesh in user units ``(time,)``, ``(space,)`` or None, and standardised on the device; warns on extrapolation."""
        query_time = tasks.time if time is None else _coordinate(time, "time")
        query_space = None
        if tasks.is_spatial:
            query_space = tasks.space if space is None else _coordinate(space, "space")
        elif space is not None:
            raise InvalidInputError("A space query was given but the tasks are over time only.")
        query = standardise_coords(self.normaliser, query_time, query_space, time_map)
        check_reach(query, "the query", self.time_window)
        trained_on = {"time": tuple(time_map.inverse(bound) for bound in self.time_window), "space": self.space_window}
        for name, values, user in zip(("space", "time")[-len(query):], query, (query_space, query_time)[-len(query):]):
            _warn_if_outside(values, name, user, trained_on[name])
        return query_time, query_space, tuple(c.to(self.device) for c in query)

    def _condition(self, standardised: Standardised, query) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, float]:
        """Posterior ``(latent_mean, latent_var, output_mean, output_var)`` in standardised units, the outputs'
        negative log marginal likelihood per point ``(task,)`` (CPU), and the milliseconds taken."""
        parts = []
        started = clock.perf_counter()
        with torch.no_grad():
            for start in range(0, standardised.y.shape[0], INFER_CHUNK):
                parts.append(self.module.posterior(standardised.coords, standardised.y[start : start + INFER_CHUNK], query))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        elapsed_ms = (clock.perf_counter() - started) * 1e3
        joined = tuple(torch.cat([getattr(p, name) for p in parts]) for name in ("latent_mean", "latent_var", "output_mean", "output_var"))
        return joined, torch.cat([p.output_nll for p in parts]).cpu(), elapsed_ms

    def save(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write a checkpoint (weights, configs, normaliser, verdict, provenance), atomically.

        ``overwrite=False`` refuses an existing ``path`` (:func:`~dklfm_explore.atomic.atomic_write`).
        """
        payload = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "package_version": package_version(),
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
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "provenance": self.provenance,
        }
        return write_checkpoint(payload, path, overwrite=overwrite)


def load_model(path: str | os.PathLike, device=None) -> TrainedModel:
    """Load a checkpoint written by :meth:`TrainedModel.save` (format versions 1 to 3).

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
    payload = read_checkpoint(path)
    try:
        model_config = ModelConfig.from_dict(payload["model_config"])
        module = DKLFM(model_config)
        module.load_state_dict(payload["state_dict"])
        normaliser = Normaliser.from_dict(payload["normaliser"])
        config = TrainingConfig.from_dict(payload["training_config"])
        verdict = None if payload.get("verdict") is None else Verdict.from_dict(payload["verdict"])
        if len(payload["output_names"]) != model_config.n_outputs or len(normaliser.y_mean) != model_config.n_outputs:
            raise ValueError(f"{len(payload['output_names'])} output names and {len(normaliser.y_mean)} output means for a model of "
                             f"{model_config.n_outputs} outputs")
        provenance = payload.get("provenance")
        if provenance is not None and not isinstance(provenance, dict):
            raise TypeError(f"provenance must be a dict, got {type(provenance).__name__}")
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
        verdict=verdict,
        provenance=provenance,
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
                f"The {name} query spans {span_text(float(user.min()), float(user.max()))} but the model was trained on "
                f"{span_text(*trained_on)} (on this axis); predictions beyond that are extrapolations."
            ),
            stacklevel=3,
        )

