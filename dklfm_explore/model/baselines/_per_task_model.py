r"""The per-task LFM's model: a GP force on inducing points pushed through the system's ODE, and its loss.

The pre-activation force ``g`` is a GP with the system's kernel
(RBF, or periodic with a period), represented by ``M`` inducing values on an
even grid ``z`` over the window: whitened, ``g(z) = mu + L v`` with
``L L^T = K(z, z)`` and ``v ~ N(0, I)``, and between the grid points the GP
conditional mean ``g(t) = mu + K(t, z) L^{-T} v``.  The force that drives the
ODE is ``link(g)``, the system's :meth:`~dklfm_explore.systems.base.System.link`
(softplus for ``transcription``, identity for ``transcription-linear``, ``exp`` for
``lotka-volterra``, a positive predator; identity by default).  The outputs are
``system.integrate`` (torchdiffeq, the system's fixed-step method) with that
force, observed with Gaussian noise of one learned standard deviation per
output.

The negative log posterior of :meth:`PerTaskLFM.negative_log_posterior` is given
in :mod:`~dklfm_explore.model.baselines.per_task_lfm`, which fits it.
"""

from __future__ import annotations

import bisect

import torch

from ...systems.base import ForcePrior, Mesh
from ...systems.forces import prior_covariance
from ...systems.ode import ODESystem, PiecewiseLinearForce
from ._common import cholesky

__all__ = ["PerTaskLFM", "INDUCING_JITTER", "STAGE_MATCH_TOLERANCE"]

INITIAL_NOISE_FRACTION = 0.1
"""Initial noise std as a fraction of the task's output std (the simulators' default noise level)."""
NOISE_FLOOR_FRACTION = 1e-3
"""Noise std is kept above this fraction of the output's std, so the fit cannot interpolate the noise."""
INDUCING_JITTER = 1e-6
"""Relative jitter on K(z, z): the inducing grid is far denser than a lengthscale."""


def _bounded(raw: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    return low + (high - low) * torch.sigmoid(raw)


def _kernel(prior: ForcePrior, a: torch.Tensor, b: torch.Tensor, lengthscale: torch.Tensor, period: torch.Tensor | None) -> torch.Tensor:
    """Force-prior covariance ``(task, n, m)`` for per-task ``lengthscale`` (and ``period``) ``(task,)``."""
    return prior_covariance(prior, a, b, {"force_lengthscale": lengthscale, "force_period": period})


STAGE_MATCH_TOLERANCE = 1e-9
"""Relative distance (to the window) under which a solver's time counts as a force-grid time."""


class _StageForce:
    """A force known on a grid that holds every solver stage: ``t -> Tensor (batch,)``.

    At a grid time it returns that column (one indexing op, so the solve stays
    cheap); anywhere else it interpolates linearly as :class:`PiecewiseLinearForce`.

    Parameters
    ----------
    time : Tensor ``(force_time,)``
    values : Tensor ``(batch, force_time)``
    """

    def __init__(self, time: torch.Tensor, values: torch.Tensor):
        self.grid = time.tolist()
        self.columns = values.unbind(-1)
        self.tolerance = STAGE_MATCH_TOLERANCE * max(1.0, abs(self.grid[-1] - self.grid[0]))
        self.fallback = PiecewiseLinearForce(time, values)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        value = float(t)
        position = min(max(bisect.bisect_left(self.grid, value), 0), len(self.grid) - 1)
        for index in (position - 1, position):
            if 0 <= index < len(self.grid) and abs(self.grid[index] - value) <= self.tolerance:
                return self.columns[index]
        return self.fallback(t)


class PerTaskLFM(torch.nn.Module):
    """A batch of independent latent force models, one per task, over an ODE system.

    Parameters
    ----------
    system : ODESystem
    n_tasks, n_outputs : int
    inducing_time : Tensor ``(inducing,)`` float64
    prior : ForcePrior
        Kernel family, variance, mean prior and the lengthscale (period) range.
    y_scale : Tensor ``(task, output)``
        Each task's output standard deviation (initial noise and noise floor).
    link : callable, optional
        Map from the GP to the ODE's force; default ``system.link``.
    """

    def __init__(self, system: ODESystem, n_tasks: int, n_outputs: int, inducing_time: torch.Tensor, prior: ForcePrior, y_scale: torch.Tensor, link=None):
        super().__init__()
        self.system, self.prior, self.n_outputs = system, prior, n_outputs
        self.link = link or system.link
        like = inducing_time
        self.register_buffer("inducing_time", inducing_time)
        self.bounds = {}
        raws = {}
        for spec in system.parameters:
            low, high = (x.to(like) for x in spec.bounds(n_outputs))
            shape = (n_tasks, n_outputs) if spec.per_output else (n_tasks,)
            self.bounds[spec.name] = (low.expand(shape), high.expand(shape))
            raws[spec.name] = torch.nn.Parameter(like.new_zeros(shape))
        self.raw_parameters = torch.nn.ParameterDict(raws)
        self.lengthscale_range = like.new_tensor(prior.lengthscale)
        self.raw_lengthscale = torch.nn.Parameter(like.new_zeros(n_tasks))
        self.period_range = like.new_tensor(prior.period) if prior.kernel == "periodic" else None
        self.raw_period = torch.nn.Parameter(like.new_zeros(n_tasks)) if self.period_range is not None else None
        self.whitened = torch.nn.Parameter(like.new_zeros(n_tasks, inducing_time.numel()))
        self.mean = torch.nn.Parameter(like.new_full((n_tasks,), prior.mean))
        self.register_buffer("noise_floor", NOISE_FLOOR_FRACTION * y_scale)
        self.raw_noise = torch.nn.Parameter(torch.log(INITIAL_NOISE_FRACTION * y_scale - self.noise_floor))

    def parameters_dict(self, raw_flat: torch.Tensor | None = None, tasks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Kinetic parameters, each ``(batch,)`` or ``(batch, output)``, inside their ranges.

        Without arguments, the fitted values of every task.  ``raw_flat (batch,
        kinetic)``, if given, replaces the fitted unconstrained values of the
        batch, which is ``tasks`` (default all) times copies, task-major.
        """
        if raw_flat is None:
            return {name: _bounded(raw, *self.bounds[name]) for name, raw in self.raw_parameters.items()}
        tasks = self._tasks(tasks)
        repeat = raw_flat.shape[0] // tasks.numel()
        values, position = {}, 0
        for name, raw in self.raw_parameters.items():
            width = raw[0].numel()
            piece = raw_flat[:, position : position + width].reshape((raw_flat.shape[0],) + raw.shape[1:])
            low, high = (bound[tasks].repeat_interleave(repeat, dim=0) for bound in self.bounds[name])
            values[name] = _bounded(piece, low, high)
            position += width
        return values

    def _tasks(self, tasks: torch.Tensor | None) -> torch.Tensor:
        if tasks is None:
            return torch.arange(self.raw_lengthscale.shape[0], device=self.raw_lengthscale.device)
        return tasks

    def raw_flat(self) -> torch.Tensor:
        """The unconstrained kinetic parameters, Tensor ``(task, kinetic)``."""
        return torch.cat([raw.reshape(raw.shape[0], -1) for raw in self.raw_parameters.values()], dim=-1)

    def kinetic_log_prior(self) -> torch.Tensor:
        """Log density ``(task,)`` of the unconstrained parameters under uniform priors on the ranges (up to constants).

        A uniform value in ``[low, high]`` is ``low + (high - low) sigmoid(r)``, so
        ``r`` has the logistic density ``sigmoid(r) (1 - sigmoid(r))``.
        """
        raw = self.raw_flat()
        return -(torch.nn.functional.softplus(raw) + torch.nn.functional.softplus(-raw)).sum(-1)

    def lengthscale(self) -> torch.Tensor:
        return _bounded(self.raw_lengthscale, *self.lengthscale_range)

    def period(self) -> torch.Tensor | None:
        return None if self.raw_period is None else _bounded(self.raw_period, *self.period_range)

    def noise_std(self) -> torch.Tensor:
        """Tensor ``(task, output)``."""
        return self.noise_floor + torch.exp(self.raw_noise)

    def kernel(self, a: torch.Tensor, b: torch.Tensor, tasks: torch.Tensor | None = None) -> torch.Tensor:
        """Force-prior covariance ``(task, n, m)`` of each of ``tasks`` (default all)."""
        tasks = self._tasks(tasks)
        period = self.period()
        return _kernel(self.prior, a, b, self.lengthscale()[tasks], None if period is None else period[tasks])

    def inducing_factor(self) -> torch.Tensor:
        """Cholesky factor ``(task, inducing, inducing)`` of the inducing covariance (with a small jitter)."""
        z = self.inducing_time
        eye = torch.eye(z.numel(), dtype=z.dtype, device=z.device)
        return cholesky(self.kernel(z, z) + INDUCING_JITTER * self.prior.variance * eye)

    def interpolation_weights(self, whitened: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """``L^{-T} v``, Tensor ``(batch, inducing)``, for ``factor (chunk_task, inducing, inducing)``.

        The batch is the factor's tasks times copies, task-major.
        """
        n_tasks, size = factor.shape[0], factor.shape[-1]
        columns = whitened.reshape(n_tasks, -1, size).transpose(-1, -2)
        weights = torch.linalg.solve_triangular(factor.transpose(-1, -2), columns, upper=True)
        return weights.transpose(-1, -2).reshape(whitened.shape)

    def pre_activation(self, times: torch.Tensor, weights: torch.Tensor, mean: torch.Tensor, tasks: torch.Tensor | None = None, inducing_time: torch.Tensor | None = None) -> torch.Tensor:
        """GP values ``g(times)``, Tensor ``(batch, time)``, for interpolation ``weights (batch, inducing)``.

        The batch is ``tasks`` (default all) times copies, task-major; the kernel
        between ``times`` and the inducing grid (default the fitted one) is built
        once per task, not per copy.
        """
        tasks = self._tasks(tasks)
        inducing_time = self.inducing_time if inducing_time is None else inducing_time
        cross = self.kernel(times, inducing_time, tasks)
        columns = weights.reshape(tasks.numel(), -1, inducing_time.numel()).transpose(-1, -2)
        values = (cross @ columns).transpose(-1, -2).reshape(weights.shape[0], times.numel())
        return mean[:, None] + values

    def solve(self, mesh: Mesh, weights: torch.Tensor, mean: torch.Tensor, raw_flat: torch.Tensor | None = None, tasks: torch.Tensor | None = None, inducing_time: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs ``(batch, output, step)`` on ``mesh.solver_time`` for force weights ``(batch, inducing)``, mean ``(batch,)``.

        The batch is ``tasks`` (default all) times copies, task-major.
        ``raw_flat (batch, kinetic)`` optionally replaces the fitted kinetic parameters.

        The force is evaluated once on ``mesh.force_time``, which holds every stage
        time of the solver, and read from there by the solver.
        """
        tasks = self._tasks(tasks)
        if raw_flat is None:
            repeat = weights.shape[0] // tasks.numel()
            parameters = {name: value[tasks].repeat_interleave(repeat, dim=0) for name, value in self.parameters_dict().items()}
        else:
            parameters = self.parameters_dict(raw_flat, tasks)
        force = _StageForce(mesh.force_time, self.link(self.pre_activation(mesh.force_time, weights, mean, tasks, inducing_time)))
        states = self.system.integrate(force, mesh.solver_time, parameters, weights.shape[0], self.n_outputs, weights)
        return self.system.observed(states, self.n_outputs)

    def negative_log_posterior(self, y: torch.Tensor, observed: torch.Tensor, mesh: Mesh, index: torch.Tensor) -> torch.Tensor:
        """Per-task negative log posterior ``(task,)`` (up to constants) of ``y (task, output, time)``."""
        weights = self.interpolation_weights(self.whitened, self.inducing_factor())
        predicted = self.solve(mesh, weights, self.mean)[..., index]
        noise = self.noise_std()[..., None]
        residual = torch.where(observed, (y - predicted) / noise, torch.zeros_like(y))
        data = (0.5 * residual**2 + observed * torch.log(noise)).sum((1, 2))
        prior = 0.5 * (self.whitened**2).sum(-1) + 0.5 * (self.mean - self.prior.mean) ** 2 / self.prior.variance
        return data + prior - self.kinetic_log_prior()
