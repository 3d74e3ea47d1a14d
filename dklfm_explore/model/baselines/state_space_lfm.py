r"""The state-space latent force model: the force as a Gauss-Markov process in the ODE's state, one linear-time pass.

Hartikainen & Sarkka (2011), "Sequential inference for latent force models";
Schmidt, Kramer & Hennig (NeurIPS 2021), "A probabilistic state space model for
joint inference from differential equations and data".

**Model.**  The pre-activation force is ``g = mu + x_f[0]`` with ``x_f`` the
state of a Matern-nu process (``nu = 3/2``: ``m = 2`` states ``(g, g')``;
``nu = 5/2``: ``m = 3``), ``dx_f = F x_f dt + L dW``, ``lambda = sqrt(2 nu) / l``,

.. math::

    F_{3/2} = \begin{pmatrix} 0 & 1 \\ -\lambda^2 & -2\lambda \end{pmatrix},\quad
    q_{3/2} = 4 \lambda^3 \sigma^2, \qquad
    F_{5/2} = \begin{pmatrix} 0 & 1 & 0 \\ 0 & 0 & 1 \\ -\lambda^3 & -3\lambda^2 & -3\lambda \end{pmatrix},\quad
    q_{5/2} = \tfrac{16}{3} \lambda^5 \sigma^2

(``L = e_m``, spectral density ``q``), started from its stationary covariance, so
``x_f[0]`` has the Matern kernel of variance ``sigma^2`` and lengthscale ``l``.
It is appended to the ODE's state ``y``: ``dy/dt = rhs(t, y, link(g), theta)``.
Observations are the system's outputs ``H y`` with Gaussian noise ``noise_std``
per output.

**Inference.**  Continuous-discrete extended Kalman filter: between
consecutive times (measurement and query times merged) the mean follows
``dm/dt = a(m)``, the covariance ``dP/dt = J P + P J^T + L q L^T`` and the
linearised transition ``dPhi/dt = J Phi``, with ``J`` the drift's Jacobian at
``m``, integrated together by RK4 in equal substeps no longer than ``step``;
at a measurement time, the Kalman update on the observed entries.  The
Rauch-Tung-Striebel smoother runs back over the same times with the stored
``Phi``.  Cost: ``O(times x substeps x (state)^3)`` per task, linear in the
number of time points; all tasks are one batch.  For a linear system the
filter is exact up to the RK4 error of the moments, ``O(step^4)``.

**Hyperparameters** (per task, by maximising the filter's log marginal
likelihood ``sum_k log N(v_k | 0, S_k)`` with Adam on unconstrained values,
every term belonging to one task): the force's lengthscale (within the
prior's range), variance (within ``VARIANCE_RANGE`` times the prior's), mean,
the kinetic parameters (within their ``ParameterSpec`` ranges) and each
output's noise std (at least ``NOISE_FLOOR`` of the output's spread).
``fit=False`` keeps the given values (the true parameters for a simulated task
set).

**Latent.**  Reported as stored in task sets, ``link(g)``: the Gaussian
marginal of ``g`` for the identity link, else the moments of ``link(g)`` by
``HERMITE_NODES``-point Gauss-Hermite quadrature.
"""

from __future__ import annotations

import math
import time as timer

import numpy as np
import torch
import xarray as xr

from ...data import TaskSet
from ...devices import resolve_device
from ...errors import InvalidInputError
from ...linalg import cholesky_solve
from ...systems.base import System, get_system
from ...systems.ode import ODESystem
from ...systems.lotka_volterra import LotkaVolterra
from ...systems.transcription import Transcription
from ._common import check_observed, cholesky, force_prior_of, query_axis, result_dataset, start_time_of, system_of

__all__ = ["state_space_posterior", "matern_state_space", "kalman_smoother", "DEFAULT_ITERATIONS", "MATERN_ORDERS"]

MATERN_ORDERS = (1.5, 2.5)
"""Matern smoothness ``nu`` with a state-space form here."""
DEFAULT_ITERATIONS = 150
"""Adam steps of the marginal-likelihood fit (the transcription fit's loss is flat after about 100)."""
DEFAULT_LEARNING_RATE = 0.05
STEPS_PER_LENGTHSCALE = 4
"""Default substep: the force prior's shortest lengthscale over this (the force is smooth on that scale)."""
VARIANCE_RANGE = (0.25, 4.0)
"""The fitted force variance stays within these multiples of the prior's."""
NOISE_FLOOR = 1e-3
"""Smallest noise std, relative to each output's spread in the task (noise-free data stay factorisable)."""
HERMITE_NODES = 20
MIN_OBSERVED = 2
JITTER = 1e-10


def matern_state_space(nu: float, lengthscale: torch.Tensor, variance: torch.Tensor):
    """State-space form of a Matern-``nu`` process.

    Parameters
    ----------
    nu : 1.5 or 2.5
    lengthscale, variance : Tensor ``(task,)``

    Returns
    -------
    F : Tensor ``(task, m, m)``, drift
    q : Tensor ``(task,)``, spectral density of the white noise entering the last state
    P_inf : Tensor ``(task, m, m)``, stationary covariance (its ``[0, 0]`` entry is ``variance``)
    """
    if nu not in MATERN_ORDERS:
        raise InvalidInputError(f"The state-space force needs a Matern order in {MATERN_ORDERS}, got {nu!r}.")
    lam = math.sqrt(2 * nu) / lengthscale
    zero, one = torch.zeros_like(lam), torch.ones_like(lam)
    if nu == 1.5:
        F = torch.stack([torch.stack([zero, one], -1), torch.stack([-lam**2, -2 * lam], -1)], -2)
        q = 4 * lam**3 * variance
        P_inf = torch.diag_embed(torch.stack([variance, lam**2 * variance], -1))
        return F, q, P_inf
    F = torch.stack([torch.stack([zero, one, zero], -1), torch.stack([zero, zero, one], -1),
                     torch.stack([-lam**3, -3 * lam**2, -3 * lam], -1)], -2)
    q = 16.0 / 3.0 * lam**5 * variance
    kappa = lam**2 * variance / 3
    P_inf = torch.stack([torch.stack([variance, zero, -kappa], -1), torch.stack([zero, kappa, zero], -1),
                         torch.stack([-kappa, zero, lam**4 * variance], -1)], -2)
    return F, q, P_inf


class _Drift:
    """Drift ``a(x)`` of the joint state ``x = (y, x_f)`` ``(task, S + m)`` and its Jacobian ``(task, S + m, S + m)``.

    The Jacobian is in closed form for transcription (``rhs`` linear in the state) and Lotka-Volterra
    (``u (alpha - beta f)``), else by forward-mode autodiff of the system's ``rhs``.
    """

    def __init__(self, system: ODESystem, link, parameters: dict, F: torch.Tensor, mean: torch.Tensor, n_states: int):
        self.system, self.link, self.parameters, self.F, self.mean, self.S = system, link, parameters, F, mean, n_states
        self.closed_form = type(system).rhs if type(system).rhs in (Transcription.rhs, LotkaVolterra.rhs) else None

    def __call__(self, t, x: torch.Tensor) -> torch.Tensor:
        y, xf = x[:, : self.S], x[:, self.S:]
        force = self.link(self.mean + xf[:, 0])
        dy = self.system.rhs(t, y, force, self.parameters)
        return torch.cat([dy, (self.F @ xf[..., None])[..., 0]], -1)

    def jacobian(self, t, x: torch.Tensor) -> torch.Tensor:
        n_tasks, n = x.shape
        top = self._closed_form_jacobian(x) if self.closed_form is not None else self._generic_jacobian(t, x)
        bottom = torch.cat([x.new_zeros(n_tasks, n - self.S, self.S), self.F], -1)
        return torch.cat([top, bottom], -2)

    def _closed_form_jacobian(self, x: torch.Tensor) -> torch.Tensor:
        n_tasks, n = x.shape
        g = self.mean + x[:, self.S]
        force, slope = torch.func.jvp(self.link, (g,), (torch.ones_like(g),))
        if self.closed_form is Transcription.rhs:
            by_state = -self.parameters["decay_rate"].expand(n_tasks, self.S)
            by_force = self.parameters["sensitivity"].expand(n_tasks, self.S) * slope[:, None]
        else:
            growth, predation = self.parameters["growth_rate"][:, None], self.parameters["predation_rate"][:, None]
            by_state = (growth - predation * force[:, None]).expand(n_tasks, self.S)
            by_force = -predation * x[:, : self.S] * slope[:, None]
        return torch.cat([torch.diag_embed(by_state), by_force[..., None], x.new_zeros(n_tasks, self.S, n - self.S - 1)], -1)

    def _generic_jacobian(self, t, x: torch.Tensor) -> torch.Tensor:
        def single(x_one, parameters, mean):
            batch = {k: v[None] for k, v in parameters.items()}
            y, g = x_one[None, : self.S], mean + x_one[self.S]
            return self.system.rhs(t, y, self.link(g)[None], batch)[0]

        return torch.func.vmap(torch.func.jacfwd(single))(x, self.parameters, self.mean.expand(x.shape[0]))


def _rk4(drift: _Drift, t: float, h: float, m, P, Phi, noise_in: torch.Tensor):
    def derivative(tau, m_, P_, Phi_):
        J = drift.jacobian(tau, m_)
        dP = J @ P_ + P_ @ J.transpose(-1, -2) + noise_in
        return drift(tau, m_), dP, J @ Phi_

    k1 = derivative(t, m, P, Phi)
    k2 = derivative(t + h / 2, *(s + h / 2 * k for s, k in zip((m, P, Phi), k1)))
    k3 = derivative(t + h / 2, *(s + h / 2 * k for s, k in zip((m, P, Phi), k2)))
    k4 = derivative(t + h, *(s + h * k for s, k in zip((m, P, Phi), k3)))
    return tuple(s + h / 6 * (a + 2 * b + 2 * c + d) for s, a, b, c, d in zip((m, P, Phi), k1, k2, k3, k4))


def _symmetric(P: torch.Tensor) -> torch.Tensor:
    return 0.5 * (P + P.transpose(-1, -2))


def kalman_smoother(drift: _Drift, times: torch.Tensor, z: torch.Tensor, H: torch.Tensor, noise_var: torch.Tensor,
                    m0: torch.Tensor, P0: torch.Tensor, noise_in: torch.Tensor, step: float, smooth: bool = True):
    """One EKF pass over ``times`` (and the RTS smoother back), batched over tasks.

    Parameters
    ----------
    times : Tensor ``(time,)``, increasing; the state ``(m0, P0)`` holds at ``times[0]``
    z : Tensor ``(task, output, time)``, NaN where nothing is observed
    H : Tensor ``(output, state)``; noise_var : Tensor ``(task, output)``
    m0 : Tensor ``(task, state)``; P0, noise_in : Tensor ``(task, state, state)``
    step : float, longest RK4 substep

    Returns
    -------
    log_likelihood : Tensor ``(task,)``
    mean : Tensor ``(task, time, state)``, covariance : Tensor ``(task, time, state, state)``
    (smoothed when ``smooth``, else filtered)
    """
    n_tasks, n = m0.shape
    eye = torch.eye(n, dtype=m0.dtype, device=m0.device).expand(n_tasks, n, n)
    observed_all = torch.isfinite(z)
    log_likelihood = m0.new_zeros(n_tasks)
    filtered, predicted, transitions = [], [], []
    m, P = m0, P0
    for k in range(times.numel()):
        Phi = eye
        if k > 0:
            span = float(times[k] - times[k - 1])
            n_sub = max(1, math.ceil(span / step - 1e-9))
            h = span / n_sub
            for j in range(n_sub):
                m, P, Phi = _rk4(drift, float(times[k - 1]) + j * h, h, m, P, Phi, noise_in)
            P = _symmetric(P)
        predicted.append((m, P))
        transitions.append(Phi)
        observed = observed_all[..., k]
        if observed.any():
            mask = observed.to(m.dtype)
            Hm = H[None] * mask[..., None]
            innovation = torch.where(observed, z[..., k], torch.zeros_like(z[..., k])) - (Hm @ m[..., None])[..., 0]
            S = Hm @ P @ Hm.transpose(-1, -2) + torch.diag_embed(noise_var * mask + (1 - mask))
            factor = cholesky(_symmetric(S))
            gain_t = cholesky_solve(factor, Hm @ P)
            weights = cholesky_solve(factor, innovation[..., None])[..., 0]
            log_likelihood = log_likelihood - 0.5 * ((innovation * weights).sum(-1)
                                                     + 2 * (factor.diagonal(dim1=-2, dim2=-1).log() * mask).sum(-1)
                                                     + mask.sum(-1) * math.log(2 * math.pi))
            m = m + (gain_t.transpose(-1, -2) @ innovation[..., None])[..., 0]
            P = _symmetric(P - (Hm @ P).transpose(-1, -2) @ gain_t)
        filtered.append((m, P))
    if not smooth:
        return log_likelihood, torch.stack([f[0] for f in filtered], 1), torch.stack([f[1] for f in filtered], 1)
    means, covariances = [filtered[-1][0]], [filtered[-1][1]]
    for k in range(times.numel() - 2, -1, -1):
        m_f, P_f = filtered[k]
        m_p, P_p = predicted[k + 1]
        scale = P_p.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)[:, None, None]
        cross = P_f @ transitions[k + 1].transpose(-1, -2)
        gain = torch.linalg.solve(P_p + JITTER * scale * eye, cross.transpose(-1, -2)).transpose(-1, -2)
        means.insert(0, m_f + (gain @ (means[0] - m_p)[..., None])[..., 0])
        covariances.insert(0, _symmetric(P_f + gain @ (covariances[0] - P_p) @ gain.transpose(-1, -2)))
    return log_likelihood, torch.stack(means, 1), torch.stack(covariances, 1)


def _bounded(raw: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    return low + (high - low) * torch.sigmoid(raw)


def _unbounded(value: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    p = ((value - low) / (high - low).clamp_min(1e-300)).clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def _link_moments(system: System, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``system.link(g)``, ``g ~ N(mean, var)``: exact for the default identity link, else by Gauss-Hermite."""
    if type(system).link is System.link:
        return mean, var
    nodes, weights = np.polynomial.hermite_e.hermegauss(HERMITE_NODES)
    nodes = torch.as_tensor(nodes, dtype=mean.dtype, device=mean.device)
    weights = torch.as_tensor(weights / weights.sum(), dtype=mean.dtype, device=mean.device)
    values = system.link(mean[..., None] + var.clamp_min(0).sqrt()[..., None] * nodes)
    first = (weights * values).sum(-1)
    return first, ((weights * values**2).sum(-1) - first**2).clamp_min(0)


def state_space_posterior(
    tasks: TaskSet,
    *,
    time=None,
    space=None,
    nu: float = 1.5,
    step: float | None = None,
    fit: bool = True,
    parameters: dict | None = None,
    force_lengthscale=None,
    force_variance=None,
    force_mean=None,
    noise_std=None,
    iterations: int = DEFAULT_ITERATIONS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    device=None,
    system: System | str | None = None,
) -> xr.Dataset:
    """Posterior of the latent force (and outputs) under the state-space LFM, every task at once.

    Parameters
    ----------
    tasks : TaskSet
        Outputs ``y (task, output, time)`` of an ODE system, NaN where missing.
    time : array-like, optional
        Query times (default the tasks' own); none may precede the simulation's start.
    space : None
        ODE systems only.
    nu : 1.5 or 2.5
        Matern order of the force.
    step : float, optional
        Longest RK4 substep; default the prior's shortest lengthscale / ``STEPS_PER_LENGTHSCALE``.
    fit : bool
        Fit the hyperparameters by the marginal likelihood (from the given values or the
        defaults), or keep them.
    parameters : dict of name -> array ``(task, output)`` or ``(task,)``, optional
        Kinetic parameters; default the middle of each range.  ``"true"`` is not a value: pass
        ``{name: tasks.dataset[name].values}`` for the simulator's.
    force_lengthscale, force_variance, force_mean : float or array ``(task,)``, optional
        Default the middle of the prior's lengthscale range, its variance and mean.
    noise_std : float or array ``(output,)`` or ``(task, output)``, optional
        Default 0.1 of each output's spread in the task.
    iterations, learning_rate : Adam steps and step size of the fit.
    device : str, optional
    system : System or str, optional; default the task set's.

    Returns
    -------
    xarray.Dataset
        ``latent_mean``, ``latent_std`` ``(task, time)`` (``link(g)``), ``output_mean``,
        ``output_std`` ``(task, output, time)`` (noise-free), ``fitted_<name>`` for every kinetic
        parameter, ``fitted_force_lengthscale``, ``fitted_force_variance``, ``fitted_force_mean``
        ``(task,)``, ``noise_std (task, output)``, ``log_marginal_likelihood (task,)``; attrs
        ``baseline``, ``infer_ms_per_task``, ``device``, ``nu``, ``step``, ``iterations``.

    Raises
    ------
    InvalidInputError
        For a system that is not an ODE, a task with fewer than two observed values, query
        times before the start, or a bad setting.
    """
    system = get_system(system) if system is not None else system_of(tasks)
    if not isinstance(system, ODESystem):
        raise InvalidInputError(f"The state-space LFM covers ODE systems; {system.name!r} is not one.")
    if space is not None:
        raise InvalidInputError(f"System {system.name!r} is over time only; do not give query space.")
    if iterations < 0 or learning_rate <= 0:
        raise InvalidInputError(f"iterations must be >= 0 and learning_rate > 0, got {iterations} and {learning_rate}.")
    started = timer.perf_counter()
    device = resolve_device(device)
    dtype = torch.float64
    prior = force_prior_of(tasks, system)
    step = float(step) if step is not None else min(prior.lengthscale) / STEPS_PER_LENGTHSCALE
    if not step > 0:
        raise InvalidInputError(f"step must be positive, got {step}.")
    y = tasks.y().to(device=device, dtype=dtype)
    check_observed(y, MIN_OBSERVED)
    n_tasks, n_outputs, _ = y.shape
    start = start_time_of(tasks, system)
    query_time = query_axis(time, tasks.time, "time")
    if torch.any(query_time < start):
        raise InvalidInputError(f"Query time {float(query_time.min()):g} precedes the simulation's start {start:g}.")
    obs_time = tasks.time.to(torch.float64).cpu()
    grid = torch.unique(torch.cat([torch.tensor([start], dtype=torch.float64), obs_time, query_time.cpu()]))
    obs_index = torch.searchsorted(grid, obs_time)
    query_index = torch.searchsorted(grid, query_time.cpu())
    z = torch.full((n_tasks, n_outputs, grid.numel()), float("nan"), dtype=dtype, device=device)
    z[..., obs_index] = y
    n_states = system.n_states(n_outputs)
    H = system.observed(torch.eye(n_states, dtype=dtype, device=device)[None], n_outputs)[0]

    def per_task(value, default, name, shape):
        if value is None:
            value = default
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=dtype, device=device)
        try:
            return tensor.expand(shape).clone()
        except RuntimeError:
            raise InvalidInputError(f"{name} needs one value or shape {tuple(shape)}, got shape {tuple(tensor.shape)}.") from None

    spread = torch.nan_to_num(y.std(-1), nan=1.0).clamp_min(1e-12)
    low_l, high_l = (torch.tensor(v, dtype=dtype, device=device) for v in prior.lengthscale)
    lengthscale = per_task(force_lengthscale, math.sqrt(prior.lengthscale[0] * prior.lengthscale[1]), "force_lengthscale", (n_tasks,))
    variance = per_task(force_variance, prior.variance, "force_variance", (n_tasks,))
    mean = per_task(force_mean, prior.mean, "force_mean", (n_tasks,))
    noise = per_task(noise_std, 0.1 * spread, "noise_std", (n_tasks, n_outputs)) if noise_std is not None else 0.1 * spread
    specs = system.parameter_specs
    given = parameters or {}
    unknown = set(given) - set(specs)
    if unknown:
        raise InvalidInputError(f"Unknown kinetic parameter(s) {sorted(unknown)}; {system.name!r} has {sorted(specs)}.")
    bounds, kinetics = {}, {}
    for name, spec in specs.items():
        low, high = (b.to(device=device, dtype=dtype) for b in spec.bounds(n_outputs))
        shape = (n_tasks, n_outputs) if spec.per_output else (n_tasks,)
        bounds[name] = (low.expand(shape), high.expand(shape))
        kinetics[name] = per_task(given.get(name), 0.5 * (low + high), name, shape)

    def run(kinetic, lengthscale_, variance_, mean_, noise_, smooth):
        F, q, P_inf = matern_state_space(nu, lengthscale_, variance_)
        m_f = P_inf.shape[-1]
        n = n_states + m_f
        drift = _Drift(system, system.link, kinetic, F, mean_, n_states)
        y0 = system.initial_state(kinetic, n_tasks, n_states, y).to(dtype)
        m0 = torch.cat([y0, y0.new_zeros(n_tasks, m_f)], -1)
        P0 = y0.new_zeros(n_tasks, n, n)
        P0[:, n_states:, n_states:] = P_inf
        noise_in = y0.new_zeros(n_tasks, n, n)
        noise_in[:, -1, -1] = q
        H_joint = torch.cat([H, H.new_zeros(n_outputs, m_f)], -1)
        return kalman_smoother(drift, grid.to(device), z, H_joint, noise_.square(), m0, P0, noise_in, step, smooth)

    low_v, high_v = VARIANCE_RANGE[0] * prior.variance, VARIANCE_RANGE[1] * prior.variance
    if fit and iterations > 0:
        raw = {name: _unbounded(kinetics[name], *bounds[name]).requires_grad_(True) for name in specs}
        raw_l = _unbounded(lengthscale.clamp(low_l, high_l), low_l, high_l).requires_grad_(True)
        raw_v = _unbounded(variance.clamp(low_v, high_v), torch.tensor(low_v), torch.tensor(high_v)).requires_grad_(True)
        raw_mean = mean.clone().requires_grad_(True)
        raw_noise = torch.log((noise - NOISE_FLOOR * spread).clamp_min(1e-6 * spread)).requires_grad_(True)
        optimiser = torch.optim.Adam([*raw.values(), raw_l, raw_v, raw_mean, raw_noise], lr=learning_rate)

        def current():
            return ({name: _bounded(raw[name], *bounds[name]) for name in specs}, _bounded(raw_l, low_l, high_l),
                    _bounded(raw_v, torch.tensor(low_v), torch.tensor(high_v)), raw_mean,
                    NOISE_FLOOR * spread + raw_noise.exp())

        for _ in range(iterations):
            optimiser.zero_grad()
            log_likelihood, _, _ = run(*current(), smooth=False)
            (-log_likelihood.sum()).backward()
            optimiser.step()
        with torch.no_grad():
            kinetics, lengthscale, variance, mean, noise = (v.detach() if isinstance(v, torch.Tensor) else
                                                            {k: w.detach() for k, w in v.items()} for v in current())
    else:
        noise = noise.clamp_min(NOISE_FLOOR * spread)
    with torch.no_grad():
        log_likelihood, m_s, P_s = run(kinetics, lengthscale, variance, mean, noise, smooth=True)
    m_q, P_q = m_s[:, query_index], P_s[:, query_index]
    g_mean, g_var = mean[:, None] + m_q[..., n_states], P_q[..., n_states, n_states]
    latent_mean, latent_var = _link_moments(system, g_mean, g_var)
    m_y, P_y = m_q[..., :n_states], P_q[..., :n_states, :n_states]
    output_mean = (H @ m_y[..., None])[..., 0].transpose(1, 2)
    output_var = (H @ P_y @ H.T).diagonal(dim1=-2, dim2=-1).transpose(1, 2)
    elapsed_ms = 1000.0 * (timer.perf_counter() - started) / n_tasks
    attrs = {"baseline": "state-space-lfm", "infer_ms_per_task": elapsed_ms, "device": str(device), "system": system.name,
             "nu": nu, "step": step, "iterations": iterations if fit else 0}
    task_dims = lambda shape: ("task", "output") if len(shape) == 2 else ("task",)  # noqa: E731
    extra = {f"fitted_{name}": (task_dims(value.shape), value) for name, value in kinetics.items()}
    extra.update({"fitted_force_lengthscale": (("task",), lengthscale), "fitted_force_variance": (("task",), variance),
                  "fitted_force_mean": (("task",), mean), "noise_std": (("task", "output"), noise),
                  "log_marginal_likelihood": (("task",), log_likelihood)})
    return result_dataset(tasks, query_time, None, latent_mean, latent_var, output_mean, output_var, attrs, extra)
