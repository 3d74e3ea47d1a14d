r"""The per-task latent force model (the paper's "Alfi"): a GP force pushed through the system's own ODE.

Each task is fitted on its own -- no learning across tasks -- and many tasks are
fitted at once as a batch of independent problems (every loss term, gradient
and Adam statistic belongs to one task).

**Model.**  The pre-activation force ``g`` is a GP with the system's kernel
(RBF, or periodic with a period), represented by ``M`` inducing values on an
even grid ``z`` over the window: whitened, ``g(z) = mu + L v`` with
``L L^T = K(z, z)`` and ``v ~ N(0, I)``, and between the grid points the GP
conditional mean ``g(t) = mu + K(t, z) L^{-T} v``.  The force that drives the
ODE is ``link(g)``: ``system.activation`` when the system has one (softplus for
``transcription``, identity for ``transcription-linear``), ``exp`` for
``lotka-volterra`` (a positive predator), identity otherwise.  The outputs are
``system.integrate`` (torchdiffeq, the system's fixed-step method) with that
force, observed with Gaussian noise of one learned standard deviation per
output.

**Window and solver step.**  The fit integrates from the start to the last
observed time only, and the inducing grid covers that window: later outputs do
not enter the likelihood.  The step is :func:`fit_step`, a quarter
(``SOLVER_STEPS_PER_TIME_SCALE``) of the force prior's shortest time scale: the
force is the smooth GP interpolant, read exactly at every solver stage, so the
step follows its resolution, not the simulator's, which must resolve a
piecewise-linear force (Lotka-Volterra: 0.16 against 0.05).  Each interval
between observed times is split into equal steps no longer than that.  After the
fit, a step-doubling estimate ``|y_h - y_{h/2}|`` of the solver error at the
observed values is checked against the fitted noise std: above
``SOLVER_TOLERANCE`` of it the step is halved (never below the system's
``max_step``) and the fit goes on for another ``iterations``.  Beyond the window,
the GP's values on an extension of the inducing grid (same spacing) are drawn
from the prior conditional on the fitted inducing values -- exactly the
per-task posterior there, since the data constrain only the window -- and the
draws are solved over the whole query range with the same step.

**Fit (MAP).**  Adam on the negative log posterior

.. math::

    \sum_{\mathrm{observed}} \Big[\frac{(y - \hat y)^2}{2\sigma_p^2} + \log\sigma_p\Big]
    + \tfrac12 \lVert v\rVert^2 + \frac{(\mu - \mu_0)^2}{2 s_0}

over ``v``, the mean ``mu`` (prior ``N(mu_0, s_0)`` from the force prior), the
kinetic parameters (each mapped by a sigmoid into its ``ParameterSpec`` range,
so it never leaves it), the kernel lengthscale (and period) within the force
prior's range, and the noise.  Gradients by direct backpropagation through the
solver (the adjoint method pays off only for long solves with large states).

The uniform prior of a kinetic parameter on its range is, for its unconstrained
value ``r``, the logistic density ``sigmoid(r) (1 - sigmoid(r))``, which enters
the loss.

**Uncertainty (Laplace).**  Over ``theta = (v, mu, r)`` -- the force values and
the unconstrained kinetic parameters, because most of a per-task LFM's error is
the force's scale and offset traded against the kinetics -- at the MAP, with the
Gauss-Newton Hessian ``J^T diag(1/sigma^2) J`` plus the priors' precisions
(``1`` for ``v``, ``1/s_0`` for ``mu``, ``sigmoid(r)(1 - sigmoid(r))`` for ``r``);
``J = d y_hat / d theta`` is exact, by forward-mode differentiation through the
solver, with one tangent per batch copy, in chunks of whole tasks (each with all
its tangents) whose tensors stay near ``LAPLACE_CHUNK_BYTES`` (256 MB, one task
at least; a Lotka-Volterra task observed at 60 points on 0-30 needs ~9 MB); the draws are
solved in chunks by the same bound.  Kernel hyperparameters and noise stay at
their MAP values.
``n_samples`` draws of ``theta`` give the latent ``link(g)`` (plus the GP's
variance between the inducing points) and the noise-free outputs by solving the
ODE for every draw.  The result reports the MAP fit as the mean (the draws'
average is biased by the sigmoid ranges: output nMSE 0.011 against 0.002 at the
mode on 20 transcription tasks) and the draws' standard deviation.

**Cost.**  One iteration solves the ODE forward and backward over the fit
window for all tasks at once: O(iterations x solver steps x tasks x (outputs +
M)); the Laplace step solves once more for tasks x (M + 1 + kinetic) tangents
and once for tasks x ``n_samples`` draws over the query range, both chunked.
Measured on 2 busy CPU cores, one thread (``benchmarks/per_task_cost.py``,
seed 5): 20 transcription tasks x 5 genes x 30 points with the defaults take
~0.7-1.3 s a task (nMSE 0.085, 95% coverage 1.0), peak RSS 0.5 GB of which
~0.35 GB is the interpreter and torch.  Lotka-Volterra observed on 0-30, queried
on 0-60: 3 tasks x 16 points x 20 iterations ~2 s a task, 0.5 GB (with the
simulator's step over 0-60 and per-copy kernels this was ~55 s a task and
16 GB); 20 tasks x 60 points x 300 iterations ~4-7 s a task, 0.74 GB (the
simulation of those tasks alone peaks at 0.65 GB).
It is meant to be the slow and accurate reference.
"""

from __future__ import annotations

import bisect
import math
import time as timer
from typing import Callable

import torch
import xarray as xr
from torch.autograd import forward_ad

from ...data import TaskSet
from ...devices import resolve_device
from ...errors import InvalidInputError
from ...systems.base import ForcePrior, Mesh, System
from ...systems.forces import prior_covariance, shortest_time_scale
from ...systems.mesh import time_mesh
from ...systems.ode import ODESystem, PiecewiseLinearForce
from ._common import check_observed, cholesky, force_prior_of, query_axis, result_dataset, start_time_of, system_of

__all__ = ["PerTaskLFM", "per_task_posterior", "LINKS", "DEFAULT_ITERATIONS"]

DEFAULT_ITERATIONS = 300
"""Adam steps: the data fit of transcription tasks stops improving visibly after about 250."""
DEFAULT_LEARNING_RATE = 0.05
"""Adam step size on the whitened force values and the unconstrained parameters."""
DEFAULT_SAMPLES = 256
"""Laplace draws for the posterior mean and standard deviation (Monte Carlo error ~ std / 16)."""
INDUCING_PER_TIME_SCALE = 2.5
"""Inducing points per shortest time scale of the force prior: the kernel interpolant is then exact to ~1e-3."""
MIN_INDUCING = 8
"""Fewest inducing points."""
MIN_OBSERVED = 3
"""Observed values a task needs: fewer cannot constrain a force and its kinetics."""
INITIAL_NOISE_FRACTION = 0.1
"""Initial noise std as a fraction of the task's output std (the simulators' default noise level)."""
NOISE_FLOOR_FRACTION = 1e-3
"""Noise std is kept above this fraction of the output's std, so the fit cannot interpolate the noise."""
INDUCING_JITTER = 1e-6
"""Relative jitter on K(z, z): the inducing grid is far denser than a lengthscale."""
SOLVER_STEPS_PER_TIME_SCALE = 4
"""Fit solver steps per shortest time scale of the force prior: on prior draws at the shortest lengthscale
RK4 then departs from a 0.01-step solve by under 2e-4 of the output std (0.2% of the default noise)."""
SOLVER_TOLERANCE = 0.1
"""Largest step-doubling estimate of the solver error at an observed value, as a fraction of the fitted noise
std, before the fit halves its step: a tenth of the noise std adds 1% to the noise variance."""
LAPLACE_CHUNK_BYTES = 2**28
"""Budget of one chunk of tasks in the Laplace step (256 MB): its Jacobian and draws are solved a chunk at a time."""
BYTES_PER_VALUE = 8
"""float64."""
FORCE_GRID_COPIES = 4
"""Force-grid tensors a batch copy holds at once: GP values, their task-major copy, the link, its stage columns."""
KERNEL_COPIES = 4
"""Kernel-sized temporaries of a task: time differences, sine (or scaled square), exponent, kernel."""

LINKS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"lotka-volterra": torch.exp}
"""Maps from the GP to the force for systems without an ``activation`` (default identity)."""


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _link_for(system: System) -> Callable[[torch.Tensor], torch.Tensor]:
    if system.name in LINKS:
        return LINKS[system.name]
    return getattr(system, "activation", _identity)


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
        Map from the GP to the ODE's force; default per :data:`LINKS`.
    """

    def __init__(self, system: ODESystem, n_tasks: int, n_outputs: int, inducing_time: torch.Tensor, prior: ForcePrior, y_scale: torch.Tensor, link=None):
        super().__init__()
        self.system, self.prior, self.n_outputs = system, prior, n_outputs
        self.link = link or _link_for(system)
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


def _inducing_count(prior: ForcePrior, span: float, requested: int | None) -> int:
    if requested is not None:
        if int(requested) < 2:
            raise InvalidInputError(f"n_inducing must be at least 2, got {requested}.")
        return int(requested)
    return max(MIN_INDUCING, math.ceil(INDUCING_PER_TIME_SCALE * span / shortest_time_scale(prior)) + 1)


def per_task_posterior(
    tasks: TaskSet,
    *,
    time=None,
    space=None,
    n_inducing: int | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    device=None,
    system: System | str | None = None,
    link: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    threads: int | None = 1,
    initialise: Callable[..., None] | None = None,
) -> xr.Dataset:
    """Fit a per-task LFM to every task (independently, batched) and return its posterior.

    Parameters
    ----------
    tasks : TaskSet
        Outputs ``y (task, output, time)`` of an ODE system, NaN where missing.
        The true parameters and ``f`` are ignored.
    time : array-like, optional
        Query times; default the tasks' own times.  Must not precede the start.
    space : None
        ODE systems have no space; giving one is an error.
    n_inducing : int, optional
        Inducing points over the observed window; default ``INDUCING_PER_TIME_SCALE``
        per shortest time scale of the force prior (21 for transcription, 0-12 h).
    iterations, learning_rate : int, float
        Adam steps and step size.
    n_samples : int
        Laplace draws for the reported mean and standard deviation.
    seed : int
        Seeds the draws (a private generator).
    device : str, optional
        ``None``/``"auto"``, ``"cpu"`` or ``"cuda"``.
    system : System or str, optional
        Default: the system named in the task set's attrs (any registered ODE system).
    link : callable, optional
        Map from the GP to the force; default as described in the module docstring.
    progress : callable ``(iteration, iterations, mean_loss)``, optional
    threads : int or None
        Torch intra-op threads during the call, restored afterwards.  The tensors
        are tiny, so one thread is fastest (66 against 350 ms an iteration for 20
        tasks on 2 busy cores); ``None`` keeps torch's setting.  The setting is
        process-wide while the call runs.
    initialise : callable ``(model, y, observed, mesh, observed_index) -> None``, optional
        Called, without gradients, before the Adam steps with the constructed :class:`PerTaskLFM`, the
        outputs ``y (task, output, time)`` (0 where missing), their ``observed`` mask, the fit's solver
        ``mesh`` and the solver index of each observed time, to set the starting values (a warm start,
        e.g. from an amortised posterior); default: the prior's centre.

    Returns
    -------
    xarray.Dataset
        ``latent_mean``, ``latent_std`` ``(task, time)`` (the latent as stored in
        task sets: ``link(g)``), ``output_mean``, ``output_std`` ``(task, output,
        time)`` (noise-free), the fitted kinetic parameters as ``fitted_<name>``,
        ``fitted_force_lengthscale`` (and ``fitted_force_period``), ``noise_std
        (task, output)``, ``final_loss (task,)``; attrs ``infer_ms_per_task``,
        ``device``, ``baseline``, ``n_inducing``, ``iterations`` (including a
        refinement round), ``solver_step``, ``solver_steps`` (of the fit window)
        and ``solver_error`` (the step-doubling estimate over the noise std).

    Raises
    ------
    InvalidInputError
        For a system that is not an ODE, a task with fewer than ``MIN_OBSERVED``
        observed values, non-positive settings or query times before the start.
    """
    system = system_of(tasks) if system is None else _as_system(system)
    if not isinstance(system, ODESystem):
        raise InvalidInputError(f"The per-task LFM needs an ODE system; {system.name!r} is not one (use the exact LFM for reaction-diffusion).")
    if space is not None:
        raise InvalidInputError(f"System {system.name!r} is over time only; do not give query space.")
    for name, value in (("iterations", iterations), ("n_samples", n_samples)):
        if int(value) < (0 if name == "iterations" else 2):
            raise InvalidInputError(f"{name} must be at least {0 if name == 'iterations' else 2}, got {value}.")
    if not learning_rate > 0:
        raise InvalidInputError(f"learning_rate must be positive, got {learning_rate}.")
    device = resolve_device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _fit_and_predict(tasks, system, time, n_inducing, int(iterations), learning_rate, int(n_samples), seed, device, link,
                                progress, initialise)
    finally:
        torch.set_num_threads(previous_threads)


def fit_step(prior: ForcePrior) -> float:
    """The solver step of the fit: ``1 / SOLVER_STEPS_PER_TIME_SCALE`` of the force prior's shortest time scale.

    The force is the GP interpolant, smooth on that scale, so the step follows
    the force's resolution, not the simulator's (whose piecewise-linear forces
    need finer steps).  :func:`per_task_posterior` checks the step at the fit.
    """
    return shortest_time_scale(prior) / SOLVER_STEPS_PER_TIME_SCALE


def _device_mesh(times: torch.Tensor, step: float, device) -> Mesh:
    mesh = time_mesh(times, step)
    return Mesh(time=mesh.time.to(device), force_time=mesh.force_time.to(device), time_index=mesh.time_index.to(device), solver_time=mesh.solver_time.to(device))


def _extension_grid(fit_end: float, end: float, spacing: float) -> torch.Tensor:
    """Inducing times ``(extension,)`` beyond the fit window, at the window's spacing, up to at least ``end``."""
    count = max(0, math.ceil((end - fit_end) / spacing - STAGE_MATCH_TOLERANCE))
    return fit_end + spacing * torch.arange(1, count + 1, dtype=torch.float64)


def _fit_and_predict(tasks, system, time, n_inducing, iterations, learning_rate, n_samples, seed, device, link, progress,
                     initialise) -> xr.Dataset:
    started = timer.perf_counter()
    prior = force_prior_of(tasks, system)
    y = tasks.y(device=device)
    observed = check_observed(y, MIN_OBSERVED)
    n_tasks, n_outputs, _ = y.shape
    start = start_time_of(tasks, system)
    query_time = query_axis(time, tasks.time, "time")
    if torch.any(query_time < start):
        raise InvalidInputError(f"Query time {float(query_time.min()):g} precedes the start {start:g} of the system's initial condition.")
    observed_time = tasks.time.to(torch.float64)
    n_fit = int(torch.nonzero(observed.flatten(0, 1).any(0).cpu())[-1, 0]) + 1
    y, observed, fit_time = y[..., :n_fit], observed[..., :n_fit], observed_time[:n_fit]
    fit_end = float(fit_time[-1])
    fit_times = torch.unique(torch.cat([fit_time.new_tensor([start]), fit_time]))
    predict_times = torch.unique(torch.cat([fit_times, query_time]))
    count = _inducing_count(prior, fit_end - start, n_inducing)
    inducing_time = torch.linspace(start, fit_end, count, dtype=torch.float64, device=device)
    extension = _extension_grid(fit_end, float(predict_times[-1]), (fit_end - start) / (count - 1)).to(device)

    y_filled = torch.where(observed, y, torch.zeros_like(y))
    counts = observed.sum(-1).clamp_min(1)
    centred = torch.where(observed, y - (y_filled.sum(-1) / counts)[..., None], torch.zeros_like(y))
    spread = torch.sqrt((centred**2).sum(-1) / counts)
    y_scale = torch.where(spread > 0, spread, y_filled.abs().amax(-1).clamp_min(1.0))
    model = PerTaskLFM(system, n_tasks, n_outputs, inducing_time, prior, y_scale, link).to(device)

    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    step, rounds = fit_step(prior), 0
    if initialise is not None:
        mesh = _device_mesh(fit_times, step, device)
        with torch.no_grad():
            initialise(model, y_filled, observed, mesh, torch.searchsorted(mesh.solver_time, fit_time.to(device)))
    while True:
        mesh = _device_mesh(fit_times, step, device)
        observed_index = torch.searchsorted(mesh.solver_time, fit_time.to(device))
        for iteration in range(iterations):
            optimiser.zero_grad()
            loss = model.negative_log_posterior(y_filled, observed, mesh, observed_index)
            loss.sum().backward()
            optimiser.step()
            if progress is not None:
                progress(rounds * iterations + iteration + 1, (rounds + 1) * iterations, float(loss.mean()))
        solver_error = _solver_error(model, observed, fit_times, fit_time, step)
        if solver_error <= SOLVER_TOLERANCE or step <= system.max_step:
            break
        step, rounds = max(step / 2, system.max_step), rounds + 1
    with torch.no_grad():
        final_loss = model.negative_log_posterior(y_filled, observed, mesh, observed_index)

    predict_mesh = _device_mesh(predict_times, step, device)
    query_index = torch.searchsorted(predict_mesh.solver_time, query_time.to(device))
    generator = torch.Generator().manual_seed(int(seed))
    latent_mean, latent_var, output_mean, output_var = _laplace(
        model, observed, mesh, observed_index, predict_mesh, query_time.to(device), query_index, extension, int(n_samples), generator
    )
    elapsed_ms = 1000.0 * (timer.perf_counter() - started) / n_tasks
    attrs = {
        "baseline": "per-task-lfm",
        "system": system.name,
        "infer_ms_per_task": elapsed_ms,
        "device": str(device),
        "n_inducing": count,
        "iterations": int(iterations) * (rounds + 1),
        "n_samples": int(n_samples),
        "solver_step": step,
        "solver_steps": mesh.solver_time.numel() - 1,
        "solver_error": solver_error,
    }
    extra = {"noise_std": (("task", "output"), model.noise_std()), "final_loss": (("task",), final_loss)}
    with torch.no_grad():
        for name, value in model.parameters_dict().items():
            extra[f"fitted_{name}"] = (("task", "output") if value.ndim == 2 else ("task",), value)
        extra["fitted_force_lengthscale"] = (("task",), model.lengthscale())
        if model.period() is not None:
            extra["fitted_force_period"] = (("task",), model.period())
    return result_dataset(tasks, query_time, None, latent_mean, latent_var, output_mean, output_var, attrs, extra)


def _as_system(system) -> System:
    from ...systems.base import get_system

    return get_system(system)


def _solver_error(model: PerTaskLFM, observed, fit_times, fit_time, step: float) -> float:
    """Step-doubling estimate of the fit's solver error: the largest ``|y_h - y_{h/2}|`` at an observed value, over its noise std."""
    device = model.whitened.device
    with torch.no_grad():
        weights = model.interpolation_weights(model.whitened, model.inducing_factor())
        solutions = []
        for h in (step, step / 2):
            mesh = _device_mesh(fit_times, h, device)
            solutions.append(model.solve(mesh, weights, model.mean)[..., torch.searchsorted(mesh.solver_time, fit_time.to(device))])
        ratio = (solutions[0] - solutions[1]).abs() / model.noise_std()[..., None]
    return float(torch.where(observed, ratio, torch.zeros_like(ratio)).amax())


def _tasks_per_chunk(copies: int, mesh: Mesh, n_states: int, n_inducing: int, dual: bool) -> int:
    """Tasks solved together so a chunk's tensors stay near ``LAPLACE_CHUNK_BYTES`` (one task at least).

    A copy holds ``FORCE_GRID_COPIES`` tensors on the force grid and the states on
    the solver grid (twice with forward-mode tangents); a task, ``KERNEL_COPIES``
    of its kernel between the force grid and the inducing points.
    """
    per_copy = (2 if dual else 1) * (FORCE_GRID_COPIES * mesh.force_time.numel() + n_states * mesh.solver_time.numel())
    per_task = copies * per_copy + KERNEL_COPIES * mesh.force_time.numel() * n_inducing
    return max(1, LAPLACE_CHUNK_BYTES // (BYTES_PER_VALUE * per_task))


def _joint_inducing(model: PerTaskLFM, factor: torch.Tensor, extension: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fitted inducing grid followed by ``extension``, and the Cholesky factor of their covariance.

    The factor's leading block is the fitted ``factor``, so the fitted whitened
    values keep their meaning, and whitened values for the extension drawn from
    ``N(0, I)`` give the GP conditional on the fitted inducing values.

    Returns
    -------
    time : Tensor ``(inducing + extension,)``
    factor : Tensor ``(task, inducing + extension, inducing + extension)``
    """
    if extension.numel() == 0:
        return model.inducing_time, factor
    cross = model.kernel(model.inducing_time, extension)
    lower = torch.linalg.solve_triangular(factor, cross, upper=False).transpose(-1, -2)
    eye = torch.eye(extension.numel(), dtype=factor.dtype, device=factor.device)
    corner = cholesky(model.kernel(extension, extension) - lower @ lower.transpose(-1, -2) + INDUCING_JITTER * model.prior.variance * eye)
    top = torch.cat([factor, factor.new_zeros(factor.shape[0], factor.shape[1], extension.numel())], dim=-1)
    return torch.cat([model.inducing_time, extension]), torch.cat([top, torch.cat([lower, corner], dim=-1)], dim=-2)


def _laplace(model: PerTaskLFM, observed, mesh: Mesh, observed_index, predict_mesh: Mesh, query_time, query_index, extension, n_samples, generator):
    """Laplace approximation over ``theta = (v, mu, r)`` and its draws pushed through the link and the ODE.

    ``r`` are the unconstrained kinetic parameters; their uniform priors give the
    logistic precision ``sigmoid(r) (1 - sigmoid(r))``.  The Jacobian is taken on
    the fit ``mesh``; the draws are solved on ``predict_mesh``, with the GP's
    inducing values on ``extension`` (beyond the data) drawn from the prior
    conditional on the fitted ones.  Both run in chunks of whole tasks
    (:func:`_tasks_per_chunk`).

    Returns
    -------
    latent_mode, latent_var : Tensor ``(task, query)``
    output_mode, output_var : Tensor ``(task, output, query)``
        The MAP fit pushed through the link and the ODE, and the draws' variances.
    """
    n_tasks, n_inducing = model.whitened.shape
    n_states = model.system.n_states(model.n_outputs)
    with torch.no_grad():
        factor = model.inducing_factor()
        raw = model.raw_flat()
        centre = torch.cat([model.whitened, model.mean[:, None], raw], dim=-1)
        size = centre.shape[-1]
        chunk = _tasks_per_chunk(size, mesh, n_states, n_inducing, dual=True)
        jacobian = _output_jacobian(model, centre, factor, mesh, observed_index, chunk)
        precision_data = (observed / model.noise_std()[..., None] ** 2).flatten(1)
        logistic = torch.sigmoid(raw) * torch.sigmoid(-raw)
        force_precision = centre.new_ones(n_tasks, n_inducing + 1)
        force_precision[:, -1] = 1.0 / model.prior.variance
        prior_precision = torch.cat([force_precision, logistic], dim=-1)
        hessian = jacobian.transpose(-1, -2) @ (precision_data[..., None] * jacobian) + torch.diag_embed(prior_precision)
        hessian_factor = cholesky(hessian)
        normal = torch.randn(n_tasks, n_samples, size, generator=generator, dtype=torch.float64).to(centre)
        offsets = torch.linalg.solve_triangular(hessian_factor.transpose(-1, -2), normal.transpose(-1, -2), upper=True).transpose(-1, -2)
        draws = centre[:, None] + offsets
        beyond = torch.randn(n_tasks, n_samples, extension.numel(), generator=generator, dtype=torch.float64).to(centre)
        whitened = torch.cat([draws[..., :n_inducing], beyond], dim=-1)
        normal_between = torch.randn(n_tasks, n_samples, query_time.numel(), generator=generator, dtype=torch.float64).to(centre)
        joint_time, joint_factor = _joint_inducing(model, factor, extension)
        conditional_std = _conditional_variance(model, query_time, joint_time, joint_factor).sqrt()
        chunk = _tasks_per_chunk(n_samples, predict_mesh, n_states, joint_time.numel(), dual=False)
        latent_var, output_var = [], []
        for tasks in torch.arange(n_tasks, device=centre.device).split(chunk):
            weights = model.interpolation_weights(whitened[tasks].flatten(0, 1), joint_factor[tasks])
            mean = draws[tasks, :, n_inducing].flatten()
            g = model.pre_activation(query_time, weights, mean, tasks, joint_time)
            g = g + normal_between[tasks].flatten(0, 1) * conditional_std[tasks].repeat_interleave(n_samples, dim=0)
            latent_var.append(model.link(g).reshape(tasks.numel(), n_samples, -1).var(1))
            outputs = model.solve(predict_mesh, weights, mean, draws[tasks, :, n_inducing + 1 :].flatten(0, 1), tasks, joint_time)
            output_var.append(outputs[..., query_index].reshape(tasks.numel(), n_samples, model.n_outputs, -1).var(1))
        map_whitened = torch.cat([model.whitened, model.whitened.new_zeros(n_tasks, extension.numel())], dim=-1)
        map_weights = model.interpolation_weights(map_whitened, joint_factor)
        latent_mode = model.link(model.pre_activation(query_time, map_weights, model.mean, None, joint_time))
        output_mode = model.solve(predict_mesh, map_weights, model.mean, None, None, joint_time)[..., query_index]
    return latent_mode, torch.cat(latent_var), output_mode, torch.cat(output_var)


def _conditional_variance(model: PerTaskLFM, query_time: torch.Tensor, inducing_time: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """GP variance ``(task, query)`` of ``g`` between the inducing points, given their values."""
    cross = model.kernel(inducing_time, query_time)
    whitened = torch.linalg.solve_triangular(factor, cross, upper=False)
    return (model.prior.variance - (whitened**2).sum(-2)).clamp_min(0.0)


def _output_jacobian(model: PerTaskLFM, centre: torch.Tensor, factor: torch.Tensor, mesh, observed_index, chunk: int) -> torch.Tensor:
    """Exact ``d y_hat / d theta`` ``(task, output * time, theta)`` by forward-mode AD, one tangent per batch copy.

    ``centre (task, theta)`` stacks the whitened force values, the mean and the
    unconstrained kinetic parameters; ``chunk`` tasks (each with all its
    tangents) are solved at a time.
    """
    n_tasks, size = centre.shape
    n_inducing = model.whitened.shape[1]
    eye = torch.eye(size, dtype=centre.dtype, device=centre.device)
    pieces = []
    for tasks in torch.arange(n_tasks, device=centre.device).split(chunk):
        primal = centre[tasks].repeat_interleave(size, dim=0)
        with forward_ad.dual_level():
            dual = forward_ad.make_dual(primal, eye.repeat(tasks.numel(), 1))
            weights = model.interpolation_weights(dual[:, :n_inducing], factor[tasks])
            outputs = model.solve(mesh, weights, dual[:, n_inducing], dual[:, n_inducing + 1 :], tasks)[..., observed_index]
            derivative = forward_ad.unpack_dual(outputs).tangent
        pieces.append(derivative.reshape(tasks.numel(), size, -1).transpose(-1, -2))
    return torch.cat(pieces)
