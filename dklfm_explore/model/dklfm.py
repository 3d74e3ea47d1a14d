"""The deep kernel latent force model: joint GP of latent force and outputs, its loss and conditionals.

DESIGN.md items 1-5.  Per task, with mesh points ``x`` (flattened ``[space x] time``),
outputs ``y`` (``P`` curves) and latent force ``f``:

.. math::
    \\begin{bmatrix} h \\\\ y \\end{bmatrix} \\sim N\\left(
    \\begin{bmatrix} \\mu_h \\\\ \\mu_y \\end{bmatrix},
    \\begin{bmatrix} K_{hh} & K_{hy} \\\\ K_{yh} & K_{yy} + \\sigma_y^2 I \\end{bmatrix}\\right),
    \\qquad f \\sim N(h, \\sigma_f^2 I)

with ``K = base(NN(z), NN(z'))``, ``z = x (+) e_p`` for output points and ``z = x (+) 0``
for latent points.  All covariance algebra is float64 through :mod:`dklfm_explore.linalg`.

Mesh coordinates are passed as a tuple of 1-D tensors, one per mesh dim in the
order of the data: ``(time,)`` or ``(space, time)``; a bare 1-D tensor means
``(time,)``.  All values are in the normalised units of
:class:`~dklfm_explore.data.Normaliser`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..config import config_from_dict
from ..errors import InvalidInputError, UnknownNameError
from .embedding import TaskEmbedding
from .period import estimate_periods
from .kernel import BASE_KERNELS, MIN_LENGTHSCALE, FeatureMap, IdentityFeatures, inverse_softplus, make_base_kernel, positive
from ..linalg import LOG_2PI, cholesky, gaussian_log_density, solve_lower

__all__ = ["ModelConfig", "DKLFM", "Posterior", "mesh_points"]

MIN_NOISE_STD = 1e-3
"""Floor of the noise standard deviations (standardised units): 0.1% of a curve's spread keeps K_yy well conditioned."""

RELATIVE_LENGTHSCALE = {1: 0.5, 2: 0.3}
"""Default initial lengthscale / latent-feature span, by mesh dimension.  Measured (docs/tuning.md): on
transcription (time) 0.3 stuck at the prior, 0.5 and 0.8 left it; on reaction-diffusion (space x time,
span = the domain's diagonal) 0.5 and 0.8 stuck, 0.15 and 0.3 left it."""

Coords = tuple[torch.Tensor, ...]

BEFORE_FIELDS_EXISTED = {"linear_features": 0, "amplitude_head": False}
"""ModelConfig fields added after checkpoints were first written, at the values those checkpoints' models had."""


@dataclass
class ModelConfig:
    """Architecture and initialisation of a :class:`DKLFM`.

    Parameters
    ----------
    n_outputs : int or None
        Number of outputs ``P``; ``None`` lets :func:`~dklfm_explore.train.train` take it from the data.
    input_dim : int or None
        Mesh dimension: 1 (time) or 2 (space x time); ``None`` = from the data.
    embedding_dim : int
        ``E``, channels of the FNO task embedding.
    fno_width, fno_modes, fno_layers : int
        FNO hidden channels, Fourier modes per dim, Fourier layers.
    mlp_width, mlp_depth : int
        Hidden units and hidden layers of the feature MLP.
    feature_dim : int
        Features seen by the base kernel.
    base_kernel : {"rbf", "periodic"}
        Periodic for oscillating systems that must extrapolate.
    initial_lengthscale : float
        Base-kernel lengthscale at construction (feature units).  Small (0.15) so that fresh
        MLP features already vary across the time window (DESIGN.md pitfalls: stuck at the prior).
        :func:`~dklfm_explore.train.train` replaces it, see ``relative_lengthscale``.
    relative_lengthscale : float or None
        If set, :func:`~dklfm_explore.train.train` replaces ``initial_lengthscale`` by this multiple
        of the span of the freshly initialised latent features over the training mesh (their largest
        pairwise distance), whatever the architecture.  Measured: with the absolute 0.15, MLP 128 /
        embedding 32 features span only 0.09 (the default ones 0.19) and training stuck at the prior
        (DESIGN.md pitfalls).  ``None`` (default) picks :data:`RELATIVE_LENGTHSCALE` by mesh dimension.
    initial_period : float
        Periodic kernel's initial period (feature units).
    initial_noise : float
        Initial ``sigma_y`` (standardised units).
    initial_latent_noise : float
        Initial ``sigma_f`` (standardised units).  1, the latent's own spread: at construction latent and
        output points share their features (``K_hy = K_hh``), so the first conditional claims the force
        equals the outputs' interpolant; with a confident ``sigma_f`` (0.1) that error costs ~30 nats per
        point and the first ~20 Adam steps cut ``K_hy`` to 0, where no gradient brings it back (measured,
        docs/tuning.md: stuck at the prior).  With 1 the coupling survives (``K_hy/K_hh`` ~0.7 after 100 steps).
    latent_weight : float
        Weight of the latent term of the loss (each term is already divided by its number of points).
        20: measured (docs/tuning.md) 0.25 vs 0.32 held-out latent MSE at weight 5 in 120 s on transcription.
    time_input : {"time", "phase"} or None
        What the feature MLP sees of time.  ``"time"``: time itself.  ``"phase"``: each task's phase
        ``(cos, sin)(2 pi t / p)``, ``p`` that task's period estimated from its observed outputs
        (:func:`~dklfm_explore.model.period.estimate_periods`): a kernel periodic in time with a period of
        its own per task, so features beyond the training window repeat those inside it instead of
        saturating (for systems whose force is periodic; time-only meshes).  ``None`` (default): ``"phase"`` when
        the training tasks' spec draws a periodic force (Lotka-Volterra), else ``"time"``
        (:func:`~dklfm_explore.train.default_time_input`).  Measured on Lotka-Volterra with the linear kernel part
        (docs/tuning.md, seventh round, 360 s): the latent over [0, 2T] from the prey on [0, T] 0.52, 0.52, 0.50 on
        seeds 0-2 with the phase input against 0.96 (seed 0) with the time input, whose features saturate beyond T.
    linear_features : int
        Features of the kernel's linear part, ``k = e^{g + g'} [rbf(s, s') + l . l']`` (see
        :class:`~dklfm_explore.model.kernel.RBFKernel`): with it a latent and an output point may covary with either
        sign, as a force and an ODE's derivative-like response do.  16: measured (docs/tuning.md, sixth round) on
        transcription, validation latent MSE 0.080 against the stationary kernel's 0.097 in 300 s, and 0.33 against
        0.42 on reaction-diffusion in 360 s.  0 = the stationary kernel alone (checkpoints written before it existed).
    amplitude_head : bool
        A last feature ``g``, each point's log amplitude, so the variance can vary over the mesh (outputs that start at
        0); it starts at 0.  Checkpoints written before it existed have none.
    use_embedding : bool
        Feed the FNO embedding to the kernel (off = one kernel shared by all outputs).
    identity_features : bool
        Replace the MLP by the identity (a plain GP on ``z``; for tests).
    """

    n_outputs: int | None = None
    input_dim: int | None = None
    embedding_dim: int = 16
    fno_width: int = 32
    fno_modes: int = 8
    fno_layers: int = 2
    mlp_width: int = 64
    mlp_depth: int = 2
    feature_dim: int = 16
    base_kernel: str = "rbf"
    initial_lengthscale: float = 0.15
    relative_lengthscale: float | None = None
    initial_period: float = 1.0
    initial_noise: float = 0.1
    initial_latent_noise: float = 1.0
    latent_weight: float = 20.0
    time_input: str | None = None
    linear_features: int = 16
    amplitude_head: bool = True
    use_embedding: bool = True
    identity_features: bool = False

    def validate(self) -> "ModelConfig":
        """Return ``self`` after checking every field; raise :class:`InvalidInputError` otherwise."""
        if self.base_kernel not in BASE_KERNELS:
            raise UnknownNameError("base kernel", self.base_kernel, BASE_KERNELS)
        if self.n_outputs is None or int(self.n_outputs) < 1:
            raise InvalidInputError(f"ModelConfig.n_outputs must be a positive integer, got {self.n_outputs}.")
        if self.input_dim not in (1, 2):
            raise InvalidInputError(f"ModelConfig.input_dim must be 1 (time) or 2 (space x time), got {self.input_dim}.")
        if int(self.linear_features) < 0:
            raise InvalidInputError(f"ModelConfig.linear_features must be 0 or more, got {self.linear_features}.")
        for name in ("embedding_dim", "fno_width", "fno_modes", "fno_layers", "mlp_width", "mlp_depth", "feature_dim"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"ModelConfig.{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("initial_lengthscale", "initial_period", "initial_noise", "initial_latent_noise", "latent_weight"):
            if not float(getattr(self, name)) > 0:
                raise InvalidInputError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}.")
        if self.time_input not in (None, "time", "phase"):
            raise UnknownNameError("time input", self.time_input, ("time", "phase"))
        if self.time_input == "phase" and self.input_dim != 1:
            raise InvalidInputError("ModelConfig.time_input='phase' needs a time-only mesh (input_dim 1).")
        if self.relative_lengthscale is not None and not float(self.relative_lengthscale) > 0:
            raise InvalidInputError(f"ModelConfig.relative_lengthscale must be positive or None, got {self.relative_lengthscale}.")
        for name in ("initial_noise", "initial_latent_noise"):
            if float(getattr(self, name)) <= MIN_NOISE_STD:
                raise InvalidInputError(f"ModelConfig.{name} {getattr(self, name)} must exceed the noise floor {MIN_NOISE_STD}.")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Read a stored config; one stored before a field existed gets the value that reproduces its model."""
        return config_from_dict(cls, {**BEFORE_FIELDS_EXISTED, **values})


@dataclass
class Posterior:
    """GP conditional at query points, in standardised units.

    Attributes
    ----------
    latent_mean, latent_var : Tensor (task, *query_mesh)
    output_mean, output_var : Tensor (task, output, *query_mesh)
    latent_cov : Tensor (task, query_point, query_point) or None
        With ``full_cov=True``.
    output_cov : Tensor (task, output * query_point, output * query_point) or None
        With ``full_cov=True``; rows ordered output-major.
    output_nll : Tensor (task,) or None
        Negative log marginal likelihood of the observed outputs per observed point,
        ``-log N(y | mu_y, K_yy + sigma_y^2 I) / n``: the output term of :meth:`DKLFM.loss_terms`, a by-product
        of the conditioning.
    """

    latent_mean: torch.Tensor
    latent_var: torch.Tensor
    output_mean: torch.Tensor
    output_var: torch.Tensor
    latent_cov: torch.Tensor | None = None
    output_cov: torch.Tensor | None = None
    output_nll: torch.Tensor | None = None


def mesh_points(coords: Coords) -> torch.Tensor:
    """Flatten a tensor-product mesh to points.

    Parameters
    ----------
    coords : tuple of Tensor
        ``(time,)`` or ``(space, time)``.

    Returns
    -------
    Tensor (point, input) float64
        Points in row-major order, matching ``y.reshape(..., -1)`` over the mesh dims.
    """
    grids = torch.meshgrid(*[c.to(torch.float64) for c in coords], indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


def _rows(features: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
    """``features (1 or task, point, feature)`` for the tasks ``tasks``: shared features as they are, per-task ones picked."""
    return features if features.shape[0] == 1 else features[tasks]


def _output_nll(factor: torch.Tensor, whitened: torch.Tensor) -> torch.Tensor:
    """``-log N(y | mu_y, L L^T) / n`` per task from ``factor L (task, n, n)`` and ``whitened L^-1 (y - mu_y) (task, n, 1)``: Tensor ``(task,)``."""
    n_obs = factor.shape[-1]
    log_det_half = torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)
    return (0.5 * whitened.squeeze(-1).pow(2).sum(-1) + log_det_half + 0.5 * n_obs * LOG_2PI) / n_obs


def _as_coords(x) -> Coords:
    if isinstance(x, torch.Tensor):
        return (x,)
    return tuple(x)


class DKLFM(nn.Module):
    """Deep kernel latent force model (DESIGN.md items 1-5).

    Parameters
    ----------
    config : ModelConfig
        With ``n_outputs`` and ``input_dim`` set.

    Examples
    --------
    >>> model = DKLFM(ModelConfig(n_outputs=5, input_dim=1))
    >>> time = torch.linspace(0, 1, 20, dtype=torch.float64)
    >>> loss = model.loss(time, y, f)                     # y (task, 5, 20), f (task, 20)
    >>> post = model.posterior(time, y, torch.linspace(0, 1, 80))
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        mesh_dims = int(config.input_dim)
        self.embedding = (
            TaskEmbedding(mesh_dims, config.embedding_dim, config.fno_width, config.fno_modes, config.fno_layers)
            if config.use_embedding
            else None
        )
        self.phase = config.time_input == "phase"
        in_features = mesh_dims + int(self.phase) + (config.embedding_dim if config.use_embedding else 0)
        self.features = (
            IdentityFeatures()
            if config.identity_features
            else FeatureMap(in_features, config.mlp_width, config.feature_dim, config.mlp_depth,
                            linear_features=config.linear_features, amplitude=config.amplitude_head)
        )
        self.kernel = make_base_kernel(
            config.base_kernel, lengthscale=config.initial_lengthscale, period=config.initial_period,
            linear_features=0 if config.identity_features else config.linear_features,
            amplitude=config.amplitude_head and not config.identity_features,
        )
        raw_noise = inverse_softplus(config.initial_noise, MIN_NOISE_STD)
        self.latent_mean = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.output_mean = nn.Parameter(torch.zeros(config.n_outputs, dtype=torch.float64))
        self.raw_output_noise = nn.Parameter(torch.full((config.n_outputs,), raw_noise, dtype=torch.float64))
        self.raw_latent_noise = nn.Parameter(torch.tensor(inverse_softplus(config.initial_latent_noise, MIN_NOISE_STD), dtype=torch.float64))
        self.register_buffer("period_bounds", torch.tensor([math.nan, math.nan], dtype=torch.float64))

    def set_period_bounds(self, low: float, high: float) -> None:
        """Shortest and longest period the phase input searches (normalised time units)."""
        self.period_bounds.copy_(torch.tensor([low, high], dtype=torch.float64))

    def task_periods(self, x, y: torch.Tensor) -> torch.Tensor | None:
        """Each task's period ``Tensor (task,)`` from ``y (task, output, time)`` for the phase input, else None."""
        if not self.phase:
            return None
        bounds = None if torch.isnan(self.period_bounds).any() else tuple(float(v) for v in self.period_bounds)
        with torch.no_grad():
            return estimate_periods(_as_coords(x)[-1].to(y.device), y, bounds)

    def _inputs(self, points: torch.Tensor, periods: torch.Tensor | None) -> torch.Tensor:
        """What the MLP sees of the mesh: ``points (point, dim)`` as ``(1, point, dim)``, or each task's phase ``(task, point, 2)``."""
        if periods is None:
            return points[None]
        angle = 2.0 * math.pi * points[None, :, -1] / periods.to(points)[:, None]
        return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As :meth:`torch.nn.Module.load_state_dict`; weights saved before ``period_bounds`` existed load with it unset."""
        if "period_bounds" not in state_dict:
            state_dict = {**state_dict, "period_bounds": torch.full((2,), math.nan, dtype=torch.float64)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def state_dict(self, *args, **kwargs):
        """The weights only: drops the ``_metadata`` entry neuralop's FNO adds (its constructor arguments,
        which are not tensors and would break ``torch.load(weights_only=True)``)."""
        state = super().state_dict(*args, **kwargs)
        state.pop("_metadata", None)
        return state

    @property
    def output_noise(self) -> torch.Tensor:
        """``sigma_y``, Tensor ``(output,)`` float64 (standard deviation, standardised units)."""
        return positive(self.raw_output_noise, MIN_NOISE_STD)

    @property
    def latent_noise(self) -> torch.Tensor:
        """``sigma_f``, scalar Tensor float64."""
        return positive(self.raw_latent_noise, MIN_NOISE_STD)

    def embed(self, x, y: torch.Tensor) -> torch.Tensor | None:
        """Task embedding ``Tensor (task, output, embedding)`` of ``y (task, output, *mesh)``, or None if disabled."""
        if self.embedding is None:
            return None
        return self.embedding(y, _as_coords(x))

    def _output_features(self, points: torch.Tensor, embedding: torch.Tensor | None, n_tasks: int,
                         periods: torch.Tensor | None = None) -> torch.Tensor:
        """Features of output points ``z = x (+) e_p``: Tensor ``(task, output * point, feature)``, output-major."""
        n_points = points.shape[0]
        n_outputs = self.config.n_outputs
        inputs = self._inputs(points, periods)
        x = inputs[:, None].expand(n_tasks, n_outputs, n_points, inputs.shape[-1])
        if embedding is not None:
            e = embedding.to(points.dtype)[:, :, None, :].expand(n_tasks, n_outputs, n_points, embedding.shape[-1])
            x = torch.cat([x, e], dim=-1)
        return self.features(x.reshape(n_tasks, n_outputs * n_points, -1))

    def _latent_features(self, points: torch.Tensor, periods: torch.Tensor | None = None) -> torch.Tensor:
        """Features of latent points ``z = x (+) 0``: Tensor ``(1, point, feature)``, or ``(task, point, feature)`` with the phase input."""
        z = self._inputs(points, periods)
        if self.embedding is not None:
            z = torch.cat([z, z.new_zeros(*z.shape[:-1], self.config.embedding_dim)], dim=-1)
        return self.features(z)

    def latent_feature_span(self, x, max_points: int = 512) -> float:
        """Largest distance between latent features ``NN(x (+) 0)`` over the mesh ``x`` (at most ``max_points`` of it, evenly strided)."""
        points = mesh_points(_as_coords(x))
        stride = max(1, -(-points.shape[0] // max_points))
        points = torch.cat([points[::stride], points[-1:]]).to(self.latent_mean.device)
        periods = (points[-1:, -1] - points[:1, -1]) if self.phase else None
        with torch.no_grad():
            phi = self.kernel.feature_parts(self._latent_features(points, periods)[0])[0]
            return float(torch.cdist(phi, phi).max())

    def set_lengthscale(self, value: float) -> None:
        """Set the base kernel's lengthscale (feature units)."""
        with torch.no_grad():
            self.kernel.raw_lengthscale.fill_(inverse_softplus(value, MIN_LENGTHSCALE))

    def _check(self, x: Coords, y: torch.Tensor) -> None:
        shape = tuple(c.numel() for c in x)
        expected = (self.config.n_outputs,) + shape
        if y.ndim != 2 + len(x) or tuple(y.shape[1:]) != expected:
            raise InvalidInputError(
                f"`y` has shape {tuple(y.shape)} but the model needs (task, {self.config.n_outputs} outputs, mesh {shape})."
            )

    def _condition(self, x: Coords, y: torch.Tensor, embedding: torch.Tensor | None = None, periods: torch.Tensor | None = None):
        """Shared part of the loss and the conditionals: features, and the Cholesky factor per mask group.

        Yields ``(task_index, observed_index, factor, whitened_residual, output_features)`` per group of
        tasks with the same set of observed points; ``factor (group, n, n)`` is ``chol(K_yy + sigma_y^2 I)``.
        ``embedding`` (default: embed ``y``) and ``periods`` (default: from ``y``) let the loss embed the full
        curves but condition on a subset.
        """
        n_tasks = y.shape[0]
        points = mesh_points(x).to(y.device)
        if embedding is None:
            embedding = self.embed(x, y)
        if periods is None:
            periods = self.task_periods(x, y)
        phi_y = self._output_features(points, embedding, n_tasks, periods)
        flat = y.reshape(n_tasks, -1)
        observed = ~torch.isnan(flat)
        n_points = points.shape[0]
        output_of = torch.arange(self.config.n_outputs, device=y.device).repeat_interleave(n_points)
        masks, group_of = torch.unique(observed, dim=0, return_inverse=True)
        for group, mask in enumerate(masks):
            tasks = torch.nonzero(group_of == group).squeeze(-1)
            index = torch.nonzero(mask).squeeze(-1)
            if index.numel() == 0:
                raise InvalidInputError("A task has no observed output value; every task needs at least one.")
            phi = phi_y[tasks][:, index]
            noise = self.output_noise[output_of[index]] ** 2
            covariance = self.kernel(phi, phi) + torch.diag_embed(noise).expand(len(tasks), -1, -1)
            factor, _ = cholesky(covariance)
            residual = flat[tasks][:, index] - self.output_mean[output_of[index]]
            whitened = solve_lower(factor, residual.unsqueeze(-1))
            yield tasks, index, factor, whitened, phi

    def loss(self, x, y: torch.Tensor, f: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        """Negative joint log likelihood of a batch of training tasks (DESIGN.md item 4).

        .. math::
            \\ell = \\frac{w}{T_f} \\left[-\\log N(f \\mid \\mu_{h|y}, K_{h|y} + \\sigma_f^2 I)\\right]
                  + \\frac{1}{P T_y} \\left[-\\log N(y \\mid \\mu_y, K_{yy} + \\sigma_y^2 I)\\right]

        averaged over tasks, with ``w = config.latent_weight`` and each term divided by its
        number of observed points (DESIGN.md pitfalls: otherwise training sticks at the prior).

        Parameters
        ----------
        x : tuple of Tensor
            Mesh coordinates ``(time,)`` or ``(space, time)``, normalised.
        y : Tensor (task, output, *mesh)
            Standardised outputs; NaN = not observed (tasks are grouped by their NaN pattern).
        f : Tensor (task, *mesh)
            Standardised latent force; NaN = not observed.
        points : Tensor (subset,) of int, optional
            Flat mesh indices: the GP terms use only these points (cost O(subset^3) instead of
            O(mesh^3) per task), while the task embedding still sees the whole curves.

        Returns
        -------
        Tensor () float64
        """
        latent, output = self.loss_terms(x, y, f, points)
        return (self.config.latent_weight * latent + output).mean()

    def loss_terms(self, x, y: torch.Tensor, f: torch.Tensor, points: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-point negative log densities ``(latent, output)``, each Tensor ``(task,)`` float64 (see :meth:`loss`)."""
        x = _as_coords(x)
        self._check(x, y)
        n_tasks = y.shape[0]
        embedding = self.embed(x, y)
        periods = self.task_periods(x, y)
        if points is not None:
            keep = torch.zeros(y.shape[2:].numel(), dtype=torch.bool, device=y.device)
            keep[points] = True
            y = torch.where(keep.reshape(y.shape[2:]), y, torch.full_like(y, float("nan")))
            f = torch.where(keep.reshape(f.shape[1:]), f, torch.full_like(f, float("nan")))
        points = mesh_points(x).to(y.device)
        phi_h = self._latent_features(points, periods)
        f_flat = f.reshape(n_tasks, -1)
        latent_terms = y.new_zeros(n_tasks)
        output_terms = y.new_zeros(n_tasks)
        f_observed = ~torch.isnan(f_flat)
        for tasks, index, factor, whitened, phi in self._condition(x, y, embedding, periods):
            output_terms = output_terms.index_put((tasks,), _output_nll(factor, whitened))
            f_masks, f_group_of = torch.unique(f_observed[tasks], dim=0, return_inverse=True)
            for f_group, f_mask in enumerate(f_masks):
                members = torch.nonzero(f_group_of == f_group).squeeze(-1)
                latent_index = torch.nonzero(f_mask).squeeze(-1)
                if latent_index.numel() == 0:
                    continue
                phi_latent = _rows(phi_h, tasks[members])[:, latent_index]
                cross = solve_lower(factor[members], self.kernel(phi[members], phi_latent))
                mean = self.latent_mean + (cross.transpose(-1, -2) @ whitened[members]).squeeze(-1)
                covariance = self.kernel(phi_latent, phi_latent) - cross.transpose(-1, -2) @ cross
                covariance = covariance + self.latent_noise**2 * torch.eye(latent_index.numel(), dtype=covariance.dtype, device=covariance.device)
                latent_factor, _ = cholesky(covariance)
                log_f = gaussian_log_density(f_flat[tasks[members]][:, latent_index], mean, latent_factor)
                latent_terms = latent_terms.index_put((tasks[members],), -log_f / latent_index.numel())
        return latent_terms, output_terms

    def posterior(self, x_obs, y_obs: torch.Tensor, x_query=None, *, full_cov: bool = False, include_noise: bool = True) -> Posterior:
        """Condition on observed outputs and predict latent force and outputs at query points (DESIGN.md item 5).

        .. math::
            \\mu_{*|y} = \\mu_* + K_{*y} (K_{yy} + \\sigma_y^2 I)^{-1} (y - \\mu_y), \\quad
            K_{*|y} = K_{**} - K_{*y} (K_{yy} + \\sigma_y^2 I)^{-1} K_{y*}

        for ``*`` the latent points ``x* (+) 0`` and the output points ``x* (+) e_p``.

        Parameters
        ----------
        x_obs : tuple of Tensor
            Mesh of ``y_obs``: ``(time,)`` or ``(space, time)``, normalised.
        y_obs : Tensor (task, output, *mesh)
            Standardised; NaN = not observed (the GP conditions on the observed points only).
        x_query : tuple of Tensor, optional
            Query mesh (default: ``x_obs``); may be denser (super-resolution) or wider (extrapolation).
        full_cov : bool
            Also return the full posterior covariances.
        include_noise : bool
            Add ``sigma_f^2`` to the latent and ``sigma_y^2`` to the output variances (predictive
            distribution of a new measurement) instead of the noise-free function's.

        Returns
        -------
        Posterior
        """
        x_obs = _as_coords(x_obs)
        x_query = x_obs if x_query is None else _as_coords(x_query)
        self._check(x_obs, y_obs)
        n_tasks, n_outputs = y_obs.shape[:2]
        query_points = mesh_points(x_query).to(y_obs.device)
        query_shape = tuple(c.numel() for c in x_query)
        n_query = query_points.shape[0]
        embedding, periods = self.embed(x_obs, y_obs), self.task_periods(x_obs, y_obs)
        phi_h = self._latent_features(query_points, periods)
        phi_q = self._output_features(query_points, embedding, n_tasks, periods)
        latent_noise = self.latent_noise**2 if include_noise else 0.0
        output_noise = (self.output_noise**2).repeat_interleave(n_query) if include_noise else 0.0
        new = y_obs.new_zeros
        latent_mean, latent_var = new(n_tasks, n_query), new(n_tasks, n_query)
        output_mean, output_var = new(n_tasks, n_outputs * n_query), new(n_tasks, n_outputs * n_query)
        latent_cov = new(n_tasks, n_query, n_query) if full_cov else None
        output_cov = new(n_tasks, n_outputs * n_query, n_outputs * n_query) if full_cov else None
        output_nll = new(n_tasks)
        output_prior_mean = self.output_mean.repeat_interleave(n_query)
        for tasks, _, factor, whitened, phi in self._condition(x_obs, y_obs, embedding, periods):
            output_nll[tasks] = _output_nll(factor, whitened)
            phi_ht = _rows(phi_h, tasks)
            cross_h = solve_lower(factor, self.kernel(phi, phi_ht))
            cross_y = solve_lower(factor, self.kernel(phi, phi_q[tasks]))
            latent_mean[tasks] = self.latent_mean + (cross_h.transpose(-1, -2) @ whitened).squeeze(-1)
            output_mean[tasks] = output_prior_mean + (cross_y.transpose(-1, -2) @ whitened).squeeze(-1)
            latent_var[tasks] = self.kernel.diag(phi_ht).expand(len(tasks), -1) - cross_h.pow(2).sum(-2) + latent_noise
            output_var[tasks] = self.kernel.diag(phi_q[tasks]) - cross_y.pow(2).sum(-2) + output_noise
            if full_cov:
                eye_h = torch.eye(n_query, dtype=factor.dtype, device=factor.device)
                latent_cov[tasks] = self.kernel(phi_ht, phi_ht) - cross_h.transpose(-1, -2) @ cross_h + latent_noise * eye_h
                output_cov[tasks] = (
                    self.kernel(phi_q[tasks], phi_q[tasks]) - cross_y.transpose(-1, -2) @ cross_y
                    + output_noise * torch.eye(n_outputs * n_query, dtype=factor.dtype, device=factor.device)
                )
        return Posterior(
            latent_mean=latent_mean.reshape(n_tasks, *query_shape),
            latent_var=latent_var.clamp_min(0.0).reshape(n_tasks, *query_shape),
            output_mean=output_mean.reshape(n_tasks, n_outputs, *query_shape),
            output_var=output_var.clamp_min(0.0).reshape(n_tasks, n_outputs, *query_shape),
            latent_cov=latent_cov,
            output_cov=output_cov,
            output_nll=output_nll,
        )

