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

Then ``iterations`` Adam steps on the per-task posterior and its Laplace approximation give the
refined posterior with its own uncertainty.  This needs the system's right-hand side, so it applies
to every :class:`~dklfm_explore.systems.ode.ODESystem`, the user-defined ones included, and not to
reaction-diffusion, whose force varies over space and is solved on a mesh.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import xarray as xr

from .errors import InvalidInputError, UnknownNameError
from .model.baselines.per_task_lfm import PerTaskLFM, per_task_posterior
from .systems.base import System, get_system
from .systems.ode import ODESystem

__all__ = ["refine", "refinable_system", "REFINE_ITERATIONS", "REFINE_LEARNING_RATE", "REFINE_SAMPLES"]

REFINE_ITERATIONS = 40
"""Adam steps of the warm-started fit (a fit from the prior takes 300)."""
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
           n_samples: int = REFINE_SAMPLES, seed: int = 0) -> xr.Dataset:
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
    initialise = _warm_start(trained, tasks, options)
    refined = per_task_posterior(tasks, time=time, system=system, iterations=iterations, learning_rate=learning_rate,
                                 n_samples=n_samples, seed=seed, device=trained.device, initialise=initialise)
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


def _warm_start(trained, tasks, options: dict):
    """The per-task LFM's ``initialise``: force and kinetics from the amortised posterior (module docstring)."""

    def initialise(model: PerTaskLFM) -> None:
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
    position = 0
    for raw_value in model.raw_parameters.values():
        width = raw_value[0].numel()
        raw_value.copy_(raw[:, position : position + width].detach().reshape(raw_value.shape))
        position += width
