r"""Refine the amortised answer per task: a short per-task LFM fit warm-started from the DKLFM's posterior.

The first answer (:meth:`~dklfm_explore.trained.TrainedModel.infer`) takes milliseconds but carries the
amortisation gap: one network serves every task.  Refining fits the per-task latent force model
(:mod:`dklfm_explore.model.baselines.per_task_lfm`) to each task alone, starting where the DKLFM left
off, so it needs a fraction of the iterations a fit from the prior needs:

- **force**: the amortised latent mean ``f(z)`` on the per-task LFM's inducing grid ``z``, mapped back
  through the link (``g = link^{-1}(f)``, by bisection, so any increasing link works), gives the
  whitened inducing values ``v = L^{-1} (g(z) - mu)`` with ``L L^T = K(z, z)``;
- **kinetics**: least squares on the ODE itself (collocation): with the amortised outputs ``y`` and
  latent ``f`` on a grid twice as fine as ``z``, the kinetic parameters minimise
  ``sum_t || dy/dt - rhs(t, y, f, theta) ||^2`` (``dy/dt`` by central differences, each output
  weighted by its slope's spread), a few Adam steps on the unconstrained values within the
  parameters' ranges; no ODE is solved.  Systems with unobserved states (``state_names`` longer
  than ``output_names``) start at the centre of the ranges instead.

Then ``gauss_newton_steps`` Levenberg-Marquardt steps on the per-task negative log posterior over the
force values, kinetics and kernel parameters (Jacobian by batched central differences, noise at its
MAP after each step), optionally ``iterations`` Adam steps, and the per-task LFM's Laplace
approximation give the refined posterior with its own uncertainty.  On 20 transcription test tasks
(benchmarks/refine.py): latent MSE 0.215 first answer, 0.098 refined, 0.109 per-task LFM from the
prior, at about 1/8 of the latter's CPU time.  This needs the system's right-hand side, so it applies
to every :class:`~dklfm_explore.systems.ode.ODESystem`, the user-defined ones included, and not to
reaction-diffusion, whose force varies over space and is solved on a mesh.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import xarray as xr

from .data import TaskSet
from .errors import InvalidInputError, UnknownNameError
from .model.baselines._common import cholesky
from .model.baselines._per_task_laplace import tasks_per_chunk
from .model.baselines.per_task_lfm import PerTaskLFM, per_task_posterior
from .systems.base import System, get_system
from .standardise import standardise
from .systems.ode import ODESystem

__all__ = ["refine", "refinable_system", "in_training_units", "REFINE_ITERATIONS", "REFINE_LEARNING_RATE", "REFINE_SAMPLES"]

REFINE_ITERATIONS = 0
"""Adam steps after the Gauss-Newton ones (a fit from the prior takes 300); the Gauss-Newton steps already reach the
per-task LFM's accuracy (benchmarks/results/refine.md)."""
REFINE_LEARNING_RATE = 0.02
"""Adam step size of the warm-started fit: smaller than a cold fit's 0.05, which would shake the warm start."""
REFINE_SAMPLES = 128
"""Laplace draws of the refined posterior (Monte Carlo error of its std about 6%)."""
COLLOCATION_STEPS = 100
"""Adam steps of the kinetics' least squares (cheap: right-hand side evaluations only)."""
COLLOCATION_LEARNING_RATE = 0.1
"""Adam step size on the unconstrained kinetic parameters in the least squares."""
COLLOCATION_PER_INDUCING = 2
"""Collocation points per inducing interval."""
BISECTION_STEPS = 50
"""Halvings of the inverse link's bracket: 2^-50 of it, far below any force's resolution."""
BRACKET_STDS = 6.0
"""Half-width of the inverse link's bracket around the prior mean, in prior standard deviations."""
GAUSS_NEWTON_STEPS = 6
"""Levenberg-Marquardt steps from the warm start (each costs one finite-difference Jacobian, a batched solve)."""
INITIAL_DAMPING = 1e-2
"""Levenberg-Marquardt damping at the first step, relative to the Hessian's diagonal."""
MIN_DAMPING, MAX_DAMPING = 1e-6, 1e3
"""Bounds of the damping: no smaller than rounding needs, no larger than a plain gradient step needs."""
MAX_STEP = 1.0
"""Largest change of an unconstrained kinetic or kernel parameter in one step (a unit of its logit): the Gauss-Newton
step is shrunk to it, since where a parameter's sigmoid saturates its curvature vanishes and the step would explode."""
STEP_FRACTIONS = (1.0, 0.3, 0.1)
"""Fractions of the damped Gauss-Newton step tried along its direction (one ODE solve each); the best one is kept."""
DAMPING_FACTOR = 10.0
"""Damping falls by this factor after a step that lowers a task's loss and rises by it after one that does not."""
DIFFERENCE_STEP = 1e-4
"""Step of the central differences in ``theta`` (truncation error ~1e-8 relative, rounding ~1e-12: float64)."""
NOISE_MARGIN = 1e-3
"""Smallest noise std above its floor, as a fraction of the floor (keeps its logarithm finite)."""
SLOPE_FLOOR = 1e-8
"""Smallest slope spread a residual is divided by (a flat output)."""


def refinable_system(name: str) -> System:
    """The registered system ``name`` if refining applies to it, else an InvalidInputError saying why.

    Raises
    ------
    InvalidInputError
        For a system without an ODE right-hand side or one that is not registered.
    """
    if not name:
        raise InvalidInputError("Refining needs the model's system, but the model names none; train it on a registered system.")
    try:
        system = get_system(name)
    except UnknownNameError as error:
        raise InvalidInputError(f"Refining needs the model's system {name!r} registered in this session ({error}).") from None
    if not isinstance(system, ODESystem):
        raise InvalidInputError(
            f"Refining does not apply to {name!r}: it fits a per-task force through an ODE right-hand side, and this "
            "system is a space x time PDE whose force varies over space as well as time."
        )
    return system


def refine(trained, tasks, amortised: xr.Dataset | None = None, *, time=None, time_mapping: str = "shift",
           output_scaling: str = "auto", iterations: int = REFINE_ITERATIONS, learning_rate: float = REFINE_LEARNING_RATE,
           n_samples: int = REFINE_SAMPLES, gauss_newton_steps: int = GAUSS_NEWTON_STEPS, seed: int = 0) -> xr.Dataset:
    """Refine a trained model's answer for each task by a short per-task LFM fit from its amortised posterior.

    Parameters
    ----------
    trained : TrainedModel
    tasks : TaskSet
        ``y (task, output, time)`` of the model's (ODE) system.
    amortised : xarray.Dataset, optional
        ``trained.infer(tasks, time=time, ...)``, if already computed (it is kept in the result).
    time : array-like (query,), optional
        Query times in the tasks' units (not before the system's start); default the tasks' own.
    time_mapping, output_scaling : str
        As for :meth:`~dklfm_explore.trained.TrainedModel.infer`.
    iterations, learning_rate, n_samples, seed
        Of the per-task fit (:func:`~dklfm_explore.model.baselines.per_task_posterior`).

    Returns
    -------
    xarray.Dataset
        The per-task LFM's ``latent_mean``, ``latent_std`` ``(task, time)``, ``output_mean``,
        ``output_std`` ``(task, output, time)`` and fitted parameters; the first answer as
        ``amortised_latent_mean``, ``amortised_latent_std``; ``ood_score``/``out_of_distribution``
        of the first answer when it has them.  attrs: ``first_answer_ms_per_task``,
        ``refine_ms_per_task``, ``infer_ms_per_task`` (their sum), ``refined`` = 1, and those of
        the per-task fit.

    Raises
    ------
    InvalidInputError
        Where refining does not apply (:func:`refinable_system`), and as the per-task LFM raises.
    """
    system = refinable_system(trained.system_name)
    options = {"time_mapping": time_mapping, "output_scaling": output_scaling}
    if amortised is None:
        amortised = trained.infer(tasks, time=time, **options)
    fit_tasks, to_data_units = tasks, None
    if amortised.attrs.get("output_scaling") == "self":
        fit_tasks, to_data_units = in_training_units(trained, tasks)
        options = dict(options, output_scaling="training")
    initialise = _warm_start(trained, fit_tasks, options, gauss_newton_steps)
    refined = per_task_posterior(fit_tasks, time=time, system=system, iterations=iterations, learning_rate=learning_rate,
                                 n_samples=n_samples, seed=seed, device=trained.device, initialise=initialise)
    if to_data_units is not None:
        refined = to_data_units(refined)
    first_ms, refine_ms = float(amortised.attrs["infer_ms_per_task"]), float(refined.attrs["infer_ms_per_task"])
    refined["amortised_latent_mean"] = amortised["latent_mean"]
    refined["amortised_latent_std"] = amortised["latent_std"]
    for name in ("ood_score", "out_of_distribution"):
        if name in amortised:
            refined[name] = amortised[name]
    refined.attrs.update({key: amortised.attrs[key] for key in ("time_mapping", "output_scaling") if key in amortised.attrs})
    refined.attrs.update({"refined": 1, "first_answer_ms_per_task": first_ms, "refine_ms_per_task": refine_ms,
                          "infer_ms_per_task": first_ms + refine_ms})
    return refined


def in_training_units(trained, tasks):
    """``tasks`` with each output mapped affinely from its own scale onto the training set's, and the inverse map.

    The first answer of data in other units (``output_scaling="self"``: a microarray's thousands where the
    simulator made ones) standardises each output by its own mean and std; the ODE fit needs the outputs
    in the units its kinetic ranges describe, so the data are fitted as
    ``y' = m_train + s_train (y - m_own) / s_own`` (``y_se`` scaled alike) and the refined outputs are
    mapped back.  The latent force keeps the training units, as in the first answer.

    Returns
    -------
    (TaskSet, callable)
        The mapped tasks, and ``result -> result`` that maps ``output_mean`` and ``output_std``
        ``(task, output, time)`` of a refined result back to the data's units.
    """
    own = standardise(tasks, trained.normaliser, output_scaling="self", latent=False)
    own_mean, own_std = (v.numpy()[None] for v in (own.y_mean, own.y_std))
    train_mean, train_std = (v.numpy()[None] for v in trained.normaliser.y_stats(own.y_mean))
    gain = train_std / own_std
    mapped = tasks.dataset.assign(y=(tasks.dataset["y"] - own_mean) * gain + train_mean)
    if "y_se" in mapped:
        mapped["y_se"] = tasks.dataset["y_se"] * gain

    def to_data_units(result: xr.Dataset) -> xr.Dataset:
        result = result.copy()
        result["output_mean"] = (result["output_mean"] - train_mean) / gain + own_mean
        result["output_std"] = result["output_std"] / gain
        return result

    return TaskSet(mapped), to_data_units


def _warm_start(trained, tasks, options: dict, gauss_newton_steps: int):
    """The per-task LFM's ``initialise``: force and kinetics from the amortised posterior (module docstring)."""

    def initialise(model: PerTaskLFM, y, observed, mesh, observed_index) -> None:
        inducing = model.inducing_time
        grid = torch.linspace(float(inducing[0]), float(inducing[-1]), COLLOCATION_PER_INDUCING * (inducing.numel() - 1) + 1,
                              dtype=inducing.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            answer = trained.infer(tasks, time=grid.numpy(), **options)
        like = model.whitened
        latent = torch.as_tensor(answer["latent_mean"].values).to(like)
        outputs = torch.as_tensor(answer["output_mean"].values).to(like)
        pre_activation = _inverse_link(model.link, latent[:, ::COLLOCATION_PER_INDUCING], model.prior)
        centred = (pre_activation - model.mean[:, None])[..., None]
        model.whitened.copy_(torch.linalg.solve_triangular(model.inducing_factor(), centred, upper=False)[..., 0])
        if model.system.n_states(model.n_outputs) == model.n_outputs:
            _fit_kinetics(model, grid.to(like), latent, outputs)
        _gauss_newton(model, y, observed, mesh, observed_index, gauss_newton_steps)

    return initialise


def _inverse_link(link, force: torch.Tensor, prior) -> torch.Tensor:
    """``g`` with ``link(g) = force``, elementwise by bisection on the prior's bracket (clamped at its ends).

    ``link`` must be monotone; a decreasing one is handled by orienting the bracket.
    """
    half = BRACKET_STDS * float(np.sqrt(prior.variance))
    low = torch.full_like(force, prior.mean - half)
    high = torch.full_like(force, prior.mean + half)
    if float(link(high[:1].flatten()[:1])) < float(link(low[:1].flatten()[:1])):
        low, high = high, low
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        below = link(middle) < force
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    return 0.5 * (low + high)


def _fit_kinetics(model: PerTaskLFM, time: torch.Tensor, latent: torch.Tensor, outputs: torch.Tensor) -> None:
    """Set the kinetic parameters by least squares on the ODE at the collocation ``time (colloc,)``.

    ``latent (task, colloc)`` is the force the ODE sees; ``outputs (task, output, colloc)`` its states.
    """
    slope = torch.gradient(outputs, spacing=(time,), dim=-1)[0]
    weight = 1.0 / slope.std(-1, keepdim=True).clamp_min(SLOPE_FLOOR)
    raw = model.raw_flat().detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([raw], lr=COLLOCATION_LEARNING_RATE)
    with torch.enable_grad():
        for _ in range(COLLOCATION_STEPS):
            optimiser.zero_grad()
            parameters = model.parameters_dict(raw)
            rates = torch.stack([model.system.rhs(time[k], outputs[..., k], latent[:, k], parameters)
                                 for k in range(time.numel())], dim=-1)
            loss = (((rates - slope) * weight) ** 2).mean((1, 2)).sum()
            loss.backward()
            optimiser.step()
    _set_raw(model, raw.detach())


def _set_raw(model: PerTaskLFM, raw_flat: torch.Tensor) -> None:
    """Set the unconstrained kinetic parameters from ``raw_flat (task, kinetic)`` (the layout of ``model.raw_flat()``)."""
    position = 0
    for raw_value in model.raw_parameters.values():
        width = raw_value[0].numel()
        raw_value.copy_(raw_flat[:, position : position + width].reshape(raw_value.shape))
        position += width


def _hyperparameters(model: PerTaskLFM) -> list[torch.Tensor]:
    """The unconstrained force-kernel parameters, each ``(task,)``: lengthscale (and period)."""
    return [model.raw_lengthscale] + ([] if model.raw_period is None else [model.raw_period])


def _theta(model: PerTaskLFM) -> torch.Tensor:
    """``theta (task, inducing + 1 + kinetic + kernel)``: whitened force values, force mean, unconstrained kinetics and
    kernel parameters."""
    return torch.cat([model.whitened, model.mean[:, None], model.raw_flat(), torch.stack(_hyperparameters(model), -1)], dim=-1)


def _set_theta(model: PerTaskLFM, theta: torch.Tensor) -> None:
    """Set the model's values from ``theta`` (the layout of :func:`_theta`)."""
    n_inducing, hyper = model.whitened.shape[1], _hyperparameters(model)
    model.whitened.copy_(theta[:, :n_inducing])
    model.mean.copy_(theta[:, n_inducing])
    _set_raw(model, theta[:, n_inducing + 1 : theta.shape[1] - len(hyper)])
    for index, value in enumerate(hyper):
        value.copy_(theta[:, theta.shape[1] - len(hyper) + index])


def _force_and_kinetics_jacobian(model: PerTaskLFM, theta: torch.Tensor, mesh, observed_index) -> torch.Tensor:
    """``d y_hat / d theta`` ``(task, output * time, theta)`` for ``theta = (v, mu, r)`` ``(task, theta)``, by central
    differences, all perturbed copies of a chunk of tasks solved as one batch (no derivatives are propagated)."""
    n_tasks, size = theta.shape
    n_inducing = model.whitened.shape[1]
    offsets = DIFFERENCE_STEP * torch.cat([torch.eye(size, dtype=theta.dtype, device=theta.device)] * 2) * theta.new_tensor(
        [1.0] * size + [-1.0] * size)[:, None]
    factor = model.inducing_factor()
    chunk = tasks_per_chunk(2 * size, mesh, model.system.n_states(model.n_outputs), n_inducing, dual=False)
    pieces = []
    for tasks in torch.arange(n_tasks, device=theta.device).split(chunk):
        primal = (theta[tasks, None, :] + offsets).flatten(0, 1)
        weights = model.interpolation_weights(primal[:, :n_inducing], factor[tasks])
        outputs = model.solve(mesh, weights, primal[:, n_inducing], primal[:, n_inducing + 1 :], tasks)[..., observed_index]
        outputs = outputs.reshape(tasks.numel(), 2, size, -1)
        pieces.append(((outputs[:, 0] - outputs[:, 1]) / (2 * DIFFERENCE_STEP)).transpose(-1, -2))
    return torch.cat(pieces)


def _hyperparameter_jacobian(model: PerTaskLFM, mesh, observed_index) -> torch.Tensor:
    """``d y_hat / d (kernel parameters)`` ``(task, output * time, kernel)`` by central differences."""
    columns = []
    for value in _hyperparameters(model):
        centre = value.clone()
        value.copy_(centre + DIFFERENCE_STEP)
        above = _fitted_outputs(model, mesh, observed_index)
        value.copy_(centre - DIFFERENCE_STEP)
        below = _fitted_outputs(model, mesh, observed_index)
        value.copy_(centre)
        columns.append(((above - below) / (2 * DIFFERENCE_STEP)).flatten(1))
    return torch.stack(columns, -1)


def _fitted_outputs(model: PerTaskLFM, mesh, observed_index) -> torch.Tensor:
    """The model's outputs ``(task, output, time)`` at the observed times."""
    weights = model.interpolation_weights(model.whitened, model.inducing_factor())
    return model.solve(mesh, weights, model.mean)[..., observed_index]


def _set_noise(model: PerTaskLFM, y, observed, mesh, observed_index) -> None:
    """Set each task's and output's noise std to its MAP given the fit: the root mean squared residual (above the floor)."""
    residual = torch.where(observed, y - _fitted_outputs(model, mesh, observed_index), torch.zeros_like(y))
    std = (residual.pow(2).sum(-1) / observed.sum(-1).clamp_min(1)).sqrt()
    model.raw_noise.copy_(torch.log((std - model.noise_floor).clamp_min(NOISE_MARGIN * model.noise_floor)))


def _loss(model: PerTaskLFM, y, observed, mesh, observed_index) -> torch.Tensor:
    """The per-task negative log posterior ``(task,)`` with the kernel parameters' logistic priors."""
    hyper = torch.stack(_hyperparameters(model), -1)
    logistic = (torch.nn.functional.softplus(hyper) + torch.nn.functional.softplus(-hyper)).sum(-1)
    return model.negative_log_posterior(y, observed, mesh, observed_index) + logistic


def _gauss_newton(model: PerTaskLFM, y, observed, mesh, observed_index, steps: int) -> None:
    """Levenberg-Marquardt steps on the per-task negative log posterior over ``theta`` (:func:`_theta`).

    The Hessian is the Gauss-Newton one, ``J^T diag(1/sigma^2) J`` plus the priors' precisions (the
    kinetic and kernel parameters' uniform priors are logistic in their unconstrained values), with
    ``J`` by central differences (a batch of perturbed copies in one solve: torch's forward-mode
    differentiation runs op by op in Python and costs ten times more here); each task keeps its step only if
    it lowers its loss, and its damping (relative to the Hessian's diagonal) falls tenfold after a kept
    step and rises tenfold after a rejected one.  The noise is set to its MAP after every step.
    """
    n_tasks, n_inducing = model.whitened.shape
    damping = model.whitened.new_full((n_tasks,), INITIAL_DAMPING)
    _set_noise(model, y, observed, mesh, observed_index)
    for _ in range(steps):
        theta = _theta(model)
        raw = theta[:, n_inducing + 1 :]
        n_hyper = len(_hyperparameters(model))
        force_and_kinetics = theta[:, : theta.shape[1] - n_hyper]
        jacobian = torch.cat([_force_and_kinetics_jacobian(model, force_and_kinetics, mesh, observed_index),
                              _hyperparameter_jacobian(model, mesh, observed_index)], dim=-1)
        residual = torch.where(observed, y - _fitted_outputs(model, mesh, observed_index), torch.zeros_like(y)).flatten(1)
        precision = (observed / model.noise_std()[..., None] ** 2).flatten(1)
        prior_gradient = torch.cat([model.whitened, ((model.mean - model.prior.mean) / model.prior.variance)[:, None],
                                    2 * torch.sigmoid(raw) - 1], dim=-1)
        prior_precision = torch.cat([torch.ones_like(model.whitened), theta.new_full((n_tasks, 1), 1 / model.prior.variance),
                                     2 * torch.sigmoid(raw) * torch.sigmoid(-raw)], dim=-1)
        gradient = prior_gradient - (jacobian.transpose(-1, -2) @ (precision * residual)[..., None])[..., 0]
        hessian = jacobian.transpose(-1, -2) @ (precision[..., None] * jacobian) + torch.diag_embed(prior_precision)
        loss = _loss(model, y, observed, mesh, observed_index)
        damped = hessian + torch.diag_embed(damping[:, None] * torch.diagonal(hessian, dim1=-2, dim2=-1))
        direction = -torch.cholesky_solve(gradient[..., None], cholesky(damped))[..., 0]
        direction = direction * (MAX_STEP / direction[:, n_inducing + 1 :].abs().amax(-1, keepdim=True)).clamp(max=1.0)
        best, best_loss = theta, loss
        for fraction in STEP_FRACTIONS:
            _set_theta(model, theta + fraction * direction)
            trial = _loss(model, y, observed, mesh, observed_index)
            better = trial < best_loss
            best = torch.where(better[:, None], theta + fraction * direction, best)
            best_loss = torch.where(better, trial, best_loss)
        kept = best_loss < loss
        _set_theta(model, best)
        damping = torch.where(kept, damping / DAMPING_FACTOR, damping * DAMPING_FACTOR).clamp(MIN_DAMPING, MAX_DAMPING)
        _set_noise(model, y, observed, mesh, observed_index)
