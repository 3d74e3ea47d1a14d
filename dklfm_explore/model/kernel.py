"""The deep kernel: an MLP feature map followed by a base kernel (DESIGN.md item 2).

``k(z, z') = base(NN(z), NN(z'))``.  Output points use ``z = x (+) e_p`` (mesh
coordinates concatenated with the output's task embedding); latent points use
``z = x (+) 0``.  The MLP may run in float32; features are cast to float64 at
the kernel boundary, so every covariance is float64.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn
from torch.nn.functional import softplus

from ..errors import InvalidInputError, UnknownNameError

__all__ = [
    "FeatureMap",
    "IdentityFeatures",
    "RBFKernel",
    "PeriodicKernel",
    "BASE_KERNELS",
    "make_base_kernel",
    "positive",
    "inverse_softplus",
]

MIN_SCALE = 1e-4
"""Floor of the kernel's output variance (standardised units): keeps K from collapsing to zero."""
MIN_LENGTHSCALE = 1e-3
"""Floor of lengthscales and periods in feature space: below it the Gram matrix is numerically the identity."""
LINEAR_INIT = 0.1
"""Initial size of the linear-part features relative to a default-initialised layer's."""


def positive(raw: torch.Tensor, floor: float) -> torch.Tensor:
    """Map an unconstrained parameter to ``floor + softplus(raw)``."""
    return floor + softplus(raw)


def inverse_softplus(value: float, floor: float = 0.0) -> float:
    """Return the raw value that :func:`positive` maps to ``value``."""
    shifted = value - floor
    return shifted + math.log(-math.expm1(-shifted))


class FeatureMap(nn.Module):
    """MLP from kernel inputs ``z`` to features, shared by output and latent points.

    Parameters
    ----------
    in_features : int
        Mesh dimension plus embedding dimension.
    width : int
        Hidden units per layer.
    out_features : int
        Features of the kernel's stationary part.
    depth : int
        Number of hidden layers.
    linear_features : int
        Features of the kernel's linear part, after the stationary ones; their last-layer weights start at
        :data:`LINEAR_INIT` of the default, so the kernel starts nearly stationary (not at 0: a product of two
        zero features has no gradient).
    amplitude : bool
        One more, last, feature: the log amplitude of the point (its last-layer weights start at 0: amplitude 1).

    Shapes: ``z : Tensor (..., point, in_features)`` -> ``Tensor (..., point, out_features + linear_features
    [+ 1])`` float64, the layout the base kernel built with the same ``linear_features`` and ``amplitude`` reads.
    """

    def __init__(self, in_features: int, width: int, out_features: int, depth: int = 2, linear_features: int = 0,
                 amplitude: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        size = in_features
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.Tanh()]
            size = width
        last = nn.Linear(size, out_features + linear_features + int(amplitude))
        with torch.no_grad():
            linear = slice(out_features, out_features + linear_features)
            last.weight[linear].mul_(LINEAR_INIT)
            last.bias[linear].mul_(LINEAR_INIT)
            if amplitude:
                last.weight[-1].zero_()
                last.bias[-1].zero_()
        layers.append(last)
        self.network = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        dtype = self.network[0].weight.dtype
        return self.network(z.to(dtype)).to(torch.float64)


class IdentityFeatures(nn.Module):
    """Features equal to the inputs (a plain GP on ``z``; used to test the GP algebra)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.to(torch.float64)


def _half_squared_distance(a: torch.Tensor, b: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """``-|a_i - b_j|^2 / (2 ell^2)`` for ``a (..., n, F)``, ``b (..., m, F)`` as one batched product.

    ``a`` is augmented to ``[a / ell, -|a / ell|^2 / 2, -1/2]`` and ``b`` to ``[b / ell, 1, |b / ell|^2]``, so the
    product's only ``(n, m)`` buffer is the result (clamped at 0 in place against rounding): no ``(n, m, F)``
    difference and none of the intermediates an expanded formula would keep for the backward pass.
    """
    a, b = a / lengthscale, b / lengthscale
    a_norm = a.pow(2).sum(-1, keepdim=True)
    b_norm = b.pow(2).sum(-1, keepdim=True)
    left = torch.cat([a, -0.5 * a_norm, torch.full_like(a_norm, -0.5)], dim=-1)
    right = torch.cat([b, torch.ones_like(b_norm), b_norm], dim=-1)
    return (left @ right.transpose(-1, -2)).clamp_max_(0.0)


class _ScaledKernel(nn.Module):
    r"""Learned output variance ``scale`` and ``lengthscale``, positive via softplus with floors, and the feature layout.

    With ``linear_features`` ``L`` and ``amplitude``, a feature vector is ``[s (stationary), l (L), g (1)]`` and

    .. math:: k(a, b) = e^{g_a + g_b} \left[k_0(s_a, s_b) + l_a \cdot l_b\right]

    with ``k_0`` the subclass's stationary kernel: a positive-definite kernel whose linear part lets a latent
    point covary with an output point with either sign (a force and the derivative-like response of an ODE
    or PDE to it), and whose amplitude lets the variance vary over the mesh (outputs that start at 0).
    """

    def __init__(self, scale: float = 1.0, lengthscale: float = 0.15, linear_features: int = 0, amplitude: bool = False):
        super().__init__()
        self.raw_scale = nn.Parameter(torch.tensor(inverse_softplus(scale, MIN_SCALE), dtype=torch.float64))
        self.raw_lengthscale = nn.Parameter(torch.tensor(inverse_softplus(lengthscale, MIN_LENGTHSCALE), dtype=torch.float64))
        self.linear_features = int(linear_features)
        self.amplitude = bool(amplitude)

    @property
    def scale(self) -> torch.Tensor:
        return positive(self.raw_scale, MIN_SCALE)

    @property
    def lengthscale(self) -> torch.Tensor:
        return positive(self.raw_lengthscale, MIN_LENGTHSCALE)

    def feature_parts(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(stationary (..., n, S), linear (..., n, L) or None, log amplitude (..., n) or None)`` of features ``a``."""
        end = a.shape[-1] - int(self.amplitude)
        start = end - self.linear_features
        return a[..., :start], (a[..., start:end] if self.linear_features else None), (a[..., -1] if self.amplitude else None)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Gram matrix ``Tensor (..., n, m)`` float64 of features ``a (..., n, F)`` and ``b (..., m, F)``."""
        (a_s, a_l, a_g), (b_s, b_l, b_g) = self.feature_parts(a), self.feature_parts(b)
        gram = self.stationary(a_s, b_s)
        if a_l is not None:
            gram = gram + a_l @ b_l.transpose(-1, -2)
        if a_g is not None:
            gram = gram * torch.exp(a_g.unsqueeze(-1) + b_g.unsqueeze(-2))
        return gram

    def diag(self, a: torch.Tensor) -> torch.Tensor:
        """``k(a_i, a_i)``, Tensor ``(..., n)`` float64."""
        _, linear, log_amplitude = self.feature_parts(a)
        value = self.scale.expand(a.shape[:-1]).clone()
        if linear is not None:
            value = value + linear.pow(2).sum(-1)
        if log_amplitude is not None:
            value = value * torch.exp(2.0 * log_amplitude)
        return value


class RBFKernel(_ScaledKernel):
    """Squared-exponential kernel on features.

    .. math:: k(a, b) = s \\exp\\left(-\\frac{\\|a - b\\|^2}{2 \\ell^2}\\right)

    Parameters
    ----------
    scale : float
        Initial output variance ``s``.
    lengthscale : float
        Initial lengthscale ``ell`` (feature units).
    """

    def stationary(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``s exp(-|a - b|^2 / 2 ell^2)``, Tensor ``(..., n, m)``, of stationary features ``a (..., n, S)``, ``b (..., m, S)``."""
        return torch.exp(_half_squared_distance(a, b, self.lengthscale)) * self.scale


class PeriodicKernel(_ScaledKernel):
    """Periodic kernel on features, summed over feature dimensions.

    .. math:: k(a, b) = s \\exp\\left(-\\frac{2}{\\ell^2} \\sum_d \\sin^2\\frac{\\pi (a_d - b_d)}{p}\\right)

    Parameters
    ----------
    scale, lengthscale, period : float
        Initial values (feature units for ``lengthscale`` and ``period``).
    """

    def __init__(self, scale: float = 1.0, lengthscale: float = 0.15, period: float = 1.0, linear_features: int = 0,
                 amplitude: bool = False):
        super().__init__(scale, lengthscale, linear_features, amplitude)
        self.raw_period = nn.Parameter(torch.tensor(inverse_softplus(period, MIN_LENGTHSCALE), dtype=torch.float64))

    @property
    def period(self) -> torch.Tensor:
        return positive(self.raw_period, MIN_LENGTHSCALE)

    def stationary(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Gram matrix ``Tensor (..., n, m)`` of stationary features; uses ``sin^2(u - v) = (1 - cos u cos v - sin u sin v) / 2``."""
        angle_a = 2.0 * math.pi * a / self.period
        angle_b = 2.0 * math.pi * b / self.period
        agreement = torch.cos(angle_a) @ torch.cos(angle_b).transpose(-1, -2) + torch.sin(angle_a) @ torch.sin(angle_b).transpose(-1, -2)
        sin_squared = (0.5 * (a.shape[-1] - agreement)).clamp_min(0.0)
        return self.scale * torch.exp(-2.0 * sin_squared / self.lengthscale**2)


BASE_KERNELS: dict[str, type[nn.Module]] = {"rbf": RBFKernel, "periodic": PeriodicKernel}
"""Base kernels by name."""


def _hyperparameters(kernel: type) -> set[str]:
    return set(inspect.signature(kernel).parameters)


def make_base_kernel(name: str, **initial) -> nn.Module:
    """Build the base kernel called ``name`` with initial hyperparameters.

    ``initial`` may hold the hyperparameters of any base kernel (one model config serves them all);
    those ``name`` does not have, such as ``period`` for ``"rbf"``, are not used.

    Raises
    ------
    UnknownNameError
        If ``name`` is not in :data:`BASE_KERNELS`.
    InvalidInputError
        If a key of ``initial`` is no base kernel's hyperparameter (a misspelt ``lenghtscale``).
    """
    if name not in BASE_KERNELS:
        raise UnknownNameError("base kernel", name, BASE_KERNELS)
    known = set().union(*map(_hyperparameters, BASE_KERNELS.values()))
    unknown = sorted(set(initial) - known)
    if unknown:
        raise InvalidInputError(f"Unknown base-kernel hyperparameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    own = _hyperparameters(BASE_KERNELS[name])
    return BASE_KERNELS[name](**{key: value for key, value in initial.items() if key in own})
