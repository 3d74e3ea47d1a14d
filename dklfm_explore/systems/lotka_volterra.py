"""Lotka–Volterra prey driven by a hidden predator population."""

from __future__ import annotations

import torch

from ..quadrature import trapezoid_mean
from .base import ForcePrior, ParameterSpec, register_system
from .ode import ODESystem

__all__ = ["LotkaVolterra"]


@register_system
class LotkaVolterra(ODESystem):
    """Prey ``u`` grows at rate ``alpha`` and is eaten at rate ``beta`` per predator.

    .. math:: \\frac{du}{dt} = \\alpha u - \\beta u f(t)

    The predator ``f`` is the latent force.  It is built from a periodic GP draw
    ``g`` as ``f = (alpha / beta) exp(g) / <exp(g)>``, where ``<.>`` averages over
    one period: the predator is positive and holds the prey in a cycle (the
    prey's growth over a period is exactly zero), as in the full Lotka–Volterra
    system, instead of a drift to extinction or explosion.
    """

    name = "lotka-volterra"
    title = "Lotka–Volterra (prey observed)"
    equation = r"\frac{du}{dt} = \alpha\,u - \beta\,u\,f(t)"
    description = (
        "The output is a prey population; the hidden force is the predator population that eats it. Predator "
        "cycles come from a periodic Gaussian-process prior, so the prey oscillates with the same period: the "
        "system to try extrapolation beyond the training window with a periodic kernel."
    )
    parameters = (
        ParameterSpec("growth_rate", r"\alpha", 0.5, 1.0, "1/time", "prey growth rate"),
        ParameterSpec("predation_rate", r"\beta", 1.0, 1.4, "1/(predator x time)", "prey loss per predator"),
        ParameterSpec("initial_prey", "u_0", 0.5, 1.5, "population", "prey population at time 0"),
    )
    force_prior = ForcePrior(kernel="periodic", lengthscale=(0.8, 1.5), variance=0.25, mean=0.0, period=(5.0, 10.0))
    output_names = ("prey",)
    state_names = ("prey",)
    time_range = (0.0, 30.0)
    default_points = 60
    noise_level = 0.1
    max_step = 0.05
    time_unit = "time"
    output_unit = "population"
    latent_unit = "population"
    latent_name = "predator population"

    def latent_force(self, draw, parameters, mesh, hyper):
        time = mesh.force_time.to(draw)
        weights = torch.ones_like(time).expand_as(draw).clone()
        if "force_period" in hyper:
            period = hyper["force_period"].to(draw)[:, None]
            covers = (time[-1] - time[0]) >= period
            inside = (time[None, :] - time[0]) <= period
            weights = torch.where(covers & inside, 1.0, torch.where(covers, 0.0, 1.0)).to(draw)
        growth = torch.exp(draw)
        mean_growth = trapezoid_mean(growth, time, weights)
        ratio = (parameters["growth_rate"] / parameters["predation_rate"]).to(draw)
        return ratio[:, None] * growth / mean_growth[:, None]

    def link(self, value: torch.Tensor) -> torch.Tensor:
        """``exp``: a predator population is positive."""
        return torch.exp(value)

    def rhs(self, t, state, force, parameters):
        return state * (parameters["growth_rate"][:, None] - parameters["predation_rate"][:, None] * force[:, None])

    def initial_state(self, parameters, n_tasks, n_states, like):
        return parameters["initial_prey"].to(like)[:, None]
