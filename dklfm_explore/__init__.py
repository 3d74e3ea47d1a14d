"""DKLFM Explorer: simulate dynamical systems with hidden forces, meta-learn a deep-kernel
latent force model over many tasks, and infer the hidden force of new instances.

The public surface::

    from dklfm_explore import simulate, train, TrainedModel, load_model, load_measurements
    from dklfm_explore import get_baseline, load_dataset, load_pretrained, ModelConfig, TrainingConfig

plus :class:`TaskSet`, :func:`open_taskset`, :class:`Normaliser`, the system registry
(:data:`SYSTEMS`, :func:`get_system`, :func:`register_system`) and the errors of
:mod:`dklfm_explore.errors`.  Everything else is internal.
"""

from .data import Normaliser, TaskSet, open_taskset
from .datasets import load_dataset, load_pretrained
from .devices import resolve_device
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
from .model import ModelConfig
from .model.baselines import get_baseline
from .simulate import make_mesh, package_version, simulate
from .systems import SYSTEMS, ForcePrior, ODESystem, ParameterSpec, System, get_system, register_system
from .train import TrainingConfig, train
from .trained import TrainedModel, load_model

__version__ = package_version()

__all__ = [
    "simulate",
    "train",
    "TrainedModel",
    "load_model",
    "load_measurements",
    "get_baseline",
    "load_dataset",
    "load_pretrained",
    "ModelConfig",
    "TrainingConfig",
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
