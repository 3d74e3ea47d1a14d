"""The deep kernel latent force model: FNO task embedding, deep kernel, joint GP (see DESIGN.md)."""

from .dklfm import DKLFM, ModelConfig, Posterior, mesh_points
from .embedding import TaskEmbedding
from .kernel import BASE_KERNELS, FeatureMap, PeriodicKernel, RBFKernel, make_base_kernel
from ..linalg import JITTER_CAP, JITTER_FLOOR, cholesky, cholesky_solve, gaussian_log_density, solve_lower

__all__ = [
    "DKLFM",
    "ModelConfig",
    "Posterior",
    "mesh_points",
    "TaskEmbedding",
    "BASE_KERNELS",
    "FeatureMap",
    "RBFKernel",
    "PeriodicKernel",
    "make_base_kernel",
    "JITTER_FLOOR",
    "JITTER_CAP",
    "cholesky",
    "cholesky_solve",
    "solve_lower",
    "gaussian_log_density",
]
