"""Dynamical systems with one hidden force, and the registry that lists them.

Add your own ODE system in a few lines::

    from dklfm_explore.systems import ODESystem, ParameterSpec, register_system

    @register_system
    class Decay(ODESystem):
        name = "decay"
        parameters = (ParameterSpec("rate", "k", 0.5, 1.5, "1/s", "decay rate"),)
        def rhs(self, t, state, force, parameters):
            return force[:, None] - parameters["rate"][:, None] * state
"""

from .base import SYSTEMS, Force, ForcePrior, Mesh, ParameterSpec, System, get_system, register_system
from .forces import periodic_covariance, rbf_covariance, sample_force
from .lotka_volterra import LotkaVolterra
from .mesh import space_time_mesh, time_mesh
from .ode import ODESystem, PiecewiseLinearForce
from .reaction_diffusion import ReactionDiffusion
from .transcription import P53_GENE_ALIASES, P53_GENES, P53_KINETICS, LinearTranscription, Transcription

__all__ = [
    "SYSTEMS",
    "Force",
    "ForcePrior",
    "Mesh",
    "ParameterSpec",
    "System",
    "ODESystem",
    "PiecewiseLinearForce",
    "get_system",
    "register_system",
    "sample_force",
    "rbf_covariance",
    "periodic_covariance",
    "time_mesh",
    "space_time_mesh",
    "Transcription",
    "LinearTranscription",
    "LotkaVolterra",
    "ReactionDiffusion",
    "P53_GENES",
    "P53_GENE_ALIASES",
    "P53_KINETICS",
]
