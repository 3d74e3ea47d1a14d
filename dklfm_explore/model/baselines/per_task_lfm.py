r"""The per-task latent force model (the paper's "Alfi"): a GP force pushed through the system's own ODE.

Each task is fitted on its own -- no learning across tasks -- and many tasks are
fitted at once as a batch of independent problems (every loss term, gradient
and Adam statistic belongs to one task).

**Model** (:mod:`~dklfm_explore.model.baselines._per_task_model`): the
pre-activation force ``g`` is a GP on ``M`` whitened inducing values over the
window, the force that drives the ODE is the system's ``link(g)``, and the
outputs are observed with one learned noise std per output.

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

**Uncertainty** (:mod:`~dklfm_explore.model.baselines._per_task_laplace`): a
Laplace approximation over the force values, its mean and the unconstrained
kinetic parameters at the MAP, whose draws are pushed through the link and the
ODE.  The result reports the MAP fit as the mean and the draws' standard
deviation.

**Cost.**  One iteration solves the ODE forward and backward over the fit
window for all tasks at once: O(iterations x solver steps x tasks x (outputs +
M)); the Laplace step solves once more for tasks x (M + 1 + kinetic) tangents
and once for tasks x ``n_samples`` draws over the query range, both chunked.
Measured times and memory: ``benchmarks/README.md`` (``benchmarks/per_task_cost.py``).
It is meant to be the slow and accurate reference.
"""

from __future__ import annotations

import math
import time as timer
from typing import Callable

import torch
import xarray as xr

from ...data import TaskSet
from ...devices import resolve_device
from ...errors import InvalidInputError
from ...systems.base import ForcePrior, Mesh, System, get_system
from ...systems.forces import shortest_time_scale
from ...systems.mesh import time_mesh
from ...systems.ode import ODESystem
from ._common import check_observed, force_prior_of, query_axis, result_dataset, start_time_of, system_of
from ._per_task_laplace import laplace_posterior
from ._per_task_model import STAGE_MATCH_TOLERANCE, PerTaskLFM

__all__ = ["PerTaskLFM", "per_task_posterior", "fit_step", "DEFAULT_ITERATIONS"]

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
SOLVER_STEPS_PER_TIME_SCALE = 4
"""Fit solver steps per shortest time scale of the force prior: on prior draws at the shortest lengthscale
RK4 then departs from a 0.01-step solve by under 2e-4 of the output std (0.2% of the default noise)."""
SOLVER_TOLERANCE = 0.1
"""Largest step-doubling estimate of the solver error at an observed value, as a fraction of the fitted noise
std, before the fit halves its step: a tenth of the noise std adds 1% to the noise variance."""


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
        Map from the GP to the force; default ``system.link``.
    progress : callable ``(iteration, iterations, mean_loss)``, optional
    threads : int or None
        Torch intra-op threads during the call, restored afterwards.  The tensors
        are tiny, so one thread is fastest (measured in ``benchmarks/README.md``);
        ``None`` keeps torch's setting.  The setting is process-wide while the call runs.
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
    system = system_of(tasks) if system is None else get_system(system)
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
    latent_mean, latent_var, output_mean, output_var = laplace_posterior(
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
