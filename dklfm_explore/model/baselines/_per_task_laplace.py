r"""The per-task LFM's uncertainty: a Laplace approximation at the MAP fit, and its draws.

A Gaussian over ``theta = (v, mu, r)`` -- the whitened force values, their mean
and the unconstrained kinetic parameters, because most of a per-task LFM's error
is the force's scale and offset traded against the kinetics -- centred at the
MAP, whose precision is the Gauss-Newton Hessian ``J^T diag(1/sigma^2) J`` plus
the priors' precisions (``1`` for ``v``, ``1/s_0`` for ``mu``,
``sigmoid(r)(1 - sigmoid(r))`` for ``r``);
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
"""

from __future__ import annotations

import torch
from torch.autograd import forward_ad

from ...linalg import solve_lower
from ...systems.base import Mesh
from ._common import cholesky
from ._per_task_model import INDUCING_JITTER, PerTaskLFM

__all__ = ["laplace_posterior", "tasks_per_chunk"]

LAPLACE_CHUNK_BYTES = 2**28
"""Budget of one chunk of tasks in the Laplace step (256 MB): its Jacobian and draws are solved a chunk at a time."""
BYTES_PER_VALUE = 8
"""float64."""
FORCE_GRID_COPIES = 4
"""Force-grid tensors a batch copy holds at once: GP values, their task-major copy, the link, its stage columns."""
KERNEL_COPIES = 4
"""Kernel-sized temporaries of a task: time differences, sine (or scaled square), exponent, kernel."""


def tasks_per_chunk(copies: int, mesh: Mesh, n_states: int, n_inducing: int, dual: bool) -> int:
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
    lower = solve_lower(factor, cross).transpose(-1, -2)
    eye = torch.eye(extension.numel(), dtype=factor.dtype, device=factor.device)
    corner = cholesky(model.kernel(extension, extension) - lower @ lower.transpose(-1, -2) + INDUCING_JITTER * model.prior.variance * eye)
    top = torch.cat([factor, factor.new_zeros(factor.shape[0], factor.shape[1], extension.numel())], dim=-1)
    return torch.cat([model.inducing_time, extension]), torch.cat([top, torch.cat([lower, corner], dim=-1)], dim=-2)


def laplace_posterior(model: PerTaskLFM, observed, mesh: Mesh, observed_index, predict_mesh: Mesh, query_time, query_index, extension, n_samples, generator):
    """Laplace approximation over ``theta = (v, mu, r)`` and its draws pushed through the link and the ODE.

    ``r`` are the unconstrained kinetic parameters; their uniform priors give the
    logistic precision ``sigmoid(r) (1 - sigmoid(r))``.  The Jacobian is taken on
    the fit ``mesh``; the draws are solved on ``predict_mesh``, with the GP's
    inducing values on ``extension`` (beyond the data) drawn from the prior
    conditional on the fitted ones.  Both run in chunks of whole tasks
    (:func:`tasks_per_chunk`).

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
        chunk = tasks_per_chunk(size, mesh, n_states, n_inducing, dual=True)
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
        chunk = tasks_per_chunk(n_samples, predict_mesh, n_states, joint_time.numel(), dual=False)
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
    whitened = solve_lower(factor, cross)
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
