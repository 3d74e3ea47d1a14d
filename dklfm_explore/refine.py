"""Refine per task: a test-time fit of the deep kernel's scalar parameters to one task's outputs.

The amortised posterior of :meth:`TrainedModel.infer` conditions every task on one shared set of
kernel parameters.  Refining starts from them and, for one task at a time, maximises that task's
outputs' log marginal likelihood ``log N(y | mu_y, K_yy + sigma_y^2 I)`` over the few scalars of the
model: the base kernel's scale and lengthscale (and period), the output noises ``sigma_y`` and the
output means ``mu_y``; the feature network and the task embedding stay as trained.  The refined
posterior (with its own uncertainty) is the exact GP conditional under the refined scalars.

It needs no right-hand side, so it applies to every system the model can be trained on, the
user-defined ones and space x time ones included.  Where it cannot help: the latent force enters
the outputs' likelihood only through the shared kernel, so the latent mean ``mu_h`` and noise
``sigma_f`` are not identifiable from one task's outputs and are kept; and with very few observed
points the fit is limited to :data:`REFINE_STEPS` small steps from the amortised values so that it
cannot run away.
"""

from __future__ import annotations

import copy

import torch

from .errors import CholeskyError

__all__ = ["REFINE_STEPS", "REFINE_LEARNING_RATE", "refined_posterior", "refined_modules"]

REFINE_STEPS = 30
"""Adam steps per task."""
REFINE_LEARNING_RATE = 0.05
"""Step size on the raw (softplus) scalars; 30 steps move a scalar by at most about a factor 4."""
SCALAR_PARAMETERS = ("kernel.raw_scale", "kernel.raw_lengthscale", "kernel.raw_period", "raw_output_noise", "output_mean")
"""The parameters a refinement fits; every other one stays as trained."""


def refined_modules(module, coords, y: torch.Tensor, *, steps: int = REFINE_STEPS, learning_rate: float = REFINE_LEARNING_RATE):
    """One copy of ``module`` per task with its scalar parameters fitted to that task's outputs.

    Parameters
    ----------
    coords : tuple of Tensor
        Normalised mesh ``(time,)`` or ``(space, time)``.
    y : Tensor (task, output, *mesh)
        Standardised outputs, NaN = missing.

    Returns
    -------
    list of DKLFM
        In task order, in eval mode; a task whose fit fails numerically keeps the amortised parameters.
    """
    refined = []
    for index in range(y.shape[0]):
        task = copy.deepcopy(module)
        fitted = [p for name, p in task.named_parameters() if name in SCALAR_PARAMETERS]
        for name, parameter in task.named_parameters():
            parameter.requires_grad_(name in SCALAR_PARAMETERS)
        start = {name: p.detach().clone() for name, p in task.named_parameters() if name in SCALAR_PARAMETERS}
        optimiser = torch.optim.Adam(fitted, lr=learning_rate)
        target = y[index : index + 1]
        no_latent = torch.full((1,) + tuple(target.shape[2:]), float("nan"), dtype=target.dtype, device=target.device)
        with torch.no_grad():
            embedding = task.embed(coords, target)
        try:
            for _ in range(steps):
                optimiser.zero_grad()
                loss = _output_nll(task, coords, target, no_latent, embedding)
                loss.backward()
                optimiser.step()
            if not torch.isfinite(_output_nll(task, coords, target, no_latent, embedding).detach()):
                raise CholeskyError("non-finite likelihood")
        except CholeskyError:
            with torch.no_grad():
                for name, parameter in task.named_parameters():
                    if name in start:
                        parameter.copy_(start[name])
        refined.append(task.eval().requires_grad_(False))
    return refined


def _output_nll(task, coords, y, no_latent, embedding) -> torch.Tensor:
    for _, index, factor, whitened, _ in task._condition(coords, y, embedding):
        log_det_half = torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)
        return (0.5 * whitened.pow(2).sum() + log_det_half.sum()) / index.numel()
    raise CholeskyError("no observed output")


def refined_posterior(module, coords, y: torch.Tensor, query, **fit):
    """Per-task refined posteriors joined like :meth:`DKLFM.posterior`'s: ``(latent_mean, latent_var, output_mean, output_var)``."""
    parts = []
    for index, task in enumerate(refined_modules(module, coords, y, **fit)):
        with torch.no_grad():
            parts.append(task.posterior(coords, y[index : index + 1], query))
    return tuple(torch.cat([getattr(p, name) for p in parts]) for name in ("latent_mean", "latent_var", "output_mean", "output_var"))
