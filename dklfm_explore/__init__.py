"""DKLFM Explorer: simulate dynamical systems with hidden forces, meta-learn a deep-kernel
latent force model over many tasks, and infer the hidden force of new instances.

The public surface: :func:`simulate` and its :class:`SimulationSpec`, :class:`TaskSet`,
:func:`open_taskset`, :class:`Normaliser`, :func:`train` with :class:`TrainingConfig` and
:class:`ModelConfig`, :class:`TrainedModel`, :func:`load_model`, :class:`Verdict`,
:func:`load_measurements`, :func:`get_baseline`, :func:`load_dataset`, :func:`load_pretrained`, the system
registry (:data:`SYSTEMS`, :func:`get_system`, :func:`register_system`), and the errors in
:mod:`dklfm_explore.errors`.
"""

from .data import Normaliser, TaskSet, open_taskset
from .devices import resolve_device
from .datasets import load_dataset, load_pretrained
from .errors import (
    CancelledError,
    CheckpointError,
    CholeskyError,
    DeviceError,
    DKLFMError,
    ExtrapolationWarning,
    InvalidInputError,
    TrainingDivergedError,
    UnknownNameError,
)
from .io import example_csv, load_measurements, measurements_to_csv
from .simulate import make_mesh, package_version, simulate
from .spec import SimulationSpec
from .config import TrainingConfig
from .verdict import Verdict
from .systems import SYSTEMS, ForcePrior, ODESystem, ParameterSpec, System, get_system, register_system
from .model import ModelConfig
from .model.baselines import get_baseline
from .train import train
from .trained import TrainedModel, load_model

__version__ = package_version()

__all__ = [
    "simulate",
    "SimulationSpec",
    "train",
    "TrainedModel",
    "load_model",
    "ModelConfig",
    "TrainingConfig",
    "Verdict",
    "load_measurements",
    "get_baseline",
    "load_dataset",
    "load_pretrained",
    "make_mesh",
    "TaskSet",
    "open_taskset",
    "Normaliser",
    "resolve_device",
    "measurements_to_csv",
    "example_csv",
    "SYSTEMS",
    "ForcePrior",
    "ODESystem",
    "ParameterSpec",
    "System",
    "get_system",
    "register_system",
    "DKLFMError",
    "InvalidInputError",
    "UnknownNameError",
    "CheckpointError",
    "CholeskyError",
    "TrainingDivergedError",
    "DeviceError",
    "CancelledError",
    "ExtrapolationWarning",
    "__version__",
]
