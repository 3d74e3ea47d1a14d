"""Systems given by an ordinary differential equation ``dy/dt = g(t, y, f, theta)``."""

from __future__ import annotations

from typing import ClassVar, Mapping

import torch
from torchdiffeq import odeint

from ..errors import InvalidInputError
from ..quadrature import interpolate_linear
from .base import Force, Mesh, System

__all__ = ["ODESystem", "PiecewiseLinearForce"]


class PiecewiseLinearForce:
    """A force known on a grid, linear in between: ``t -> Tensor (task,)``.

    Parameters
    ----------
    time : Tensor ``(force_time,)``
    values : Tensor ``(task, force_time)``
    """

    def __init__(self, time: torch.Tensor, values: torch.Tensor):
        self.time = time.to(device=values.device, dtype=values.dtype)
        self.values = values

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=self.time.dtype, device=self.time.device)
        return interpolate_linear(self.values, self.time, t.reshape(1))[..., 0]


class _RightHandSide(torch.nn.Module):
    def __init__(self, system: "ODESystem", force: Force, parameters: Mapping[str, torch.Tensor]):
        super().__init__()
        self.system, self.force, self.parameters = system, force, parameters

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.system.rhs(t, state, self.force(t), self.parameters)


class ODESystem(System):
    """A system ``dy/dt = g(t, y, f(t), theta)`` solved by torchdiffeq, batched over tasks.

    Subclasses give :meth:`rhs` and, unless every state starts at zero,
    :meth:`initial_state`.  Every state is observed unless ``state_names`` lists
    more states than ``output_names``; then the outputs are the states of those
    names.  If ``state_names`` is ``None`` the states are the outputs, and the
    number of outputs may be chosen per task set (as the number of genes).

    Attributes
    ----------
    state_names : tuple of str or None
    max_step : float
        Longest solver step, in the system's time unit.
    method : str
        A fixed-grid torchdiffeq method (``"rk4"``, ``"midpoint"``, ``"euler"``).

    Examples
    --------
    >>> from dklfm_explore.systems import ODESystem, ParameterSpec, register_system
    >>> @register_system
    ... class Decay(ODESystem):
    ...     name = "decay-example"
    ...     parameters = (ParameterSpec("rate", "k", 0.5, 1.5, "1/s", "decay rate"),)
    ...     def rhs(self, t, state, force, parameters):
    ...         return force[:, None] - parameters["rate"][:, None] * state
    """

    state_names: ClassVar[tuple[str, ...] | None] = None
    max_step: ClassVar[float] = 0.1
    method: ClassVar[str] = "rk4"

    def rhs(
        self, t: torch.Tensor, state: torch.Tensor, force: torch.Tensor, parameters: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Return ``dy/dt``, Tensor ``(task, state)``, for ``state (task, state)`` and ``force (task,)``."""
        raise NotImplementedError

    def initial_state(self, parameters: Mapping[str, torch.Tensor], n_tasks: int, n_states: int, like: torch.Tensor) -> torch.Tensor:
        """Return the state at the first time, Tensor ``(task, state)`` (default zeros)."""
        return like.new_zeros(n_tasks, n_states)

    def n_states(self, n_outputs: int) -> int:
        """Number of states for ``n_outputs`` observed outputs."""
        return n_outputs if self.state_names is None else len(self.state_names)

    def observed(self, states: torch.Tensor, n_outputs: int) -> torch.Tensor:
        """Pick the outputs out of ``states (task, state, time)``; returns ``(task, output, time)``."""
        if self.state_names is None:
            return states
        index = [self.state_names.index(name) for name in self.output_names]
        return states[:, index]

    def integrate(
        self,
        force: Force,
        solver_time: torch.Tensor,
        parameters: Mapping[str, torch.Tensor],
        n_tasks: int,
        n_outputs: int,
        like: torch.Tensor,
    ) -> torch.Tensor:
        """Integrate on ``solver_time (step,)`` with any force ``t -> (task,)``; returns ``(task, state, step)``."""
        state0 = self.initial_state(parameters, n_tasks, self.n_states(n_outputs), like)
        rhs = _RightHandSide(self, force, parameters)
        solution = odeint(rhs, state0, solver_time.to(like), method=self.method)
        return solution.permute(1, 2, 0)

    def solve(self, mesh: Mesh, force: torch.Tensor, parameters: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Solve for every task; returns the outputs ``(task, output, time)`` on ``mesh.time``.

        ``force`` is ``(task, force_time)`` on ``mesh.force_time``; it holds every
        solver stage time, so the piecewise-linear force is exact at the stages.
        """
        if force.ndim != 2 or force.shape[1] != mesh.force_time.numel():
            raise InvalidInputError(
                f"force has shape {tuple(force.shape)} but needs (task, {mesh.force_time.numel()})."
            )
        n_tasks = force.shape[0]
        n_outputs = _n_outputs(parameters, len(self.output_names)) if self.state_names is None else len(self.output_names)
        piecewise = PiecewiseLinearForce(mesh.force_time, force)
        states = self.integrate(piecewise, mesh.solver_time, parameters, n_tasks, n_outputs, force)
        solver_index = torch.searchsorted(mesh.solver_time, mesh.time)
        return self.observed(states[..., solver_index], n_outputs)


def _n_outputs(parameters: Mapping[str, torch.Tensor], default: int) -> int:
    for value in parameters.values():
        if value.ndim == 2:
            return value.shape[1]
    return default
