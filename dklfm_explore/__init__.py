"""DKLFM Explorer: simulate dynamical systems with hidden forces, meta-learn a deep-kernel
latent force model over many tasks, and infer the hidden force of new instances.

The public surface: :func:`simulate`, :class:`TaskSet`, :func:`open_taskset`,
:class:`Normaliser`, the system registry (:data:`SYSTEMS`, :func:`get_system`,
:func:`register_system`), and the errors in :mod:`dklfm_explore.errors`.
"""

from .data import Normaliser, TaskSet, open_taskset
from .devices import resolve_device
from .measurements import example_csv, load_measurements, measurements_to_csv
from .simulate import make_mesh, package_version, simulate
from .spec import SimulationSpec
from .systems import SYSTEMS, ForcePrior, ODESystem, ParameterSpec, System, get_system, register_system

__version__ = package_version()

__all__ = [
    "simulate",
    "SimulationSpec",
    "make_mesh",
    "TaskSet",
    "open_taskset",
    "Normaliser",
    "resolve_device",
    "load_measurements",
    "measurements_to_csv",
    "example_csv",
    "SYSTEMS",
    "ForcePrior",
    "ODESystem",
    "ParameterSpec",
    "System",
    "get_system",
    "register_system",
    "__version__",
]
