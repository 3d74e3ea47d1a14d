r"""A transformer neural process meta-trained on simulated tasks: the amortised peer of DKLFM.

Nguyen & Grover (ICML 2022), "Transformer Neural Processes: Uncertainty-Aware Meta Learning
via Sequence Modeling" (TNP-D); Garnelo et al. (2018), "Conditional Neural Processes".

**Model.**  Every observed value of a task is a context token: its mesh coordinate
(standardised time, and space for spatial systems), a one-hot of its output and its
standardised value, embedded by an MLP.  Every query point is a query token: its coordinate
and a learned flag.  ``layers`` pre-norm transformer blocks follow; in each, context tokens
attend to the context, query tokens attend to the context only (the TNP-D mask, computed as
two attentions with shared weights, so the cost is ``O(context^2 + query x context)``).  A
head maps each query token to the mean and std of ``1 + output`` Gaussians: the latent force
(a target-only channel, never in the context) and each output's noise-free value.

**Meta-training.**  On the training tasks (the same ones DKLFM trains on), minibatches of
``batch_size`` tasks; each task's context is, with equal probability, all of its observed
values, a random fraction ``U(MIN_CONTEXT_FRACTION, 1)`` of them, or those before a random
time ``U(MIN_CONTEXT_FRACTION, 1)`` of the window (so that forecasting is trained); the
targets are the latent and the noise-free outputs (``y_clean``, else ``y``) on the whole mesh.
The loss is their mean Gaussian negative log-likelihood, by AdamW with a cosine schedule over
the step budget, within ``epochs`` passes over the tasks and ``max_seconds``.
"""

from __future__ import annotations

import math
import time as timer

import torch
import xarray as xr
from torch import nn

from ...data import Normaliser, TaskSet
from ...devices import resolve_device
from ...errors import InvalidInputError
from ._common import query_axis, result_dataset

__all__ = ["TransformerNeuralProcess", "NeuralProcess", "train_neural_process", "MIN_STD", "MIN_CONTEXT_FRACTION"]

MIN_STD = 1e-3
"""Smallest predicted std in standardised units (noise-free targets stay finite in the likelihood)."""
MIN_CONTEXT_FRACTION = 0.2
"""Smallest fraction of a training task's values (or of its window) kept as context."""
FINAL_LR_FRACTION = 0.1
INFER_CHUNK = 256
"""Tasks per forward pass at inference (bounds the memory of large batches)."""


def _mlp(n_in: int, width: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, n_out))


class _Block(nn.Module):
    """One pre-norm block: context self-attention, query-to-context attention (shared weights), MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_attention = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, context: torch.Tensor, query: torch.Tensor, absent: torch.Tensor):
        keys = self.norm_attention(context)
        context = context + self.attention(keys, keys, keys, key_padding_mask=absent, need_weights=False)[0]
        query = query + self.attention(self.norm_attention(query), keys, keys, key_padding_mask=absent, need_weights=False)[0]
        return context + self.mlp(self.norm_mlp(context)), query + self.mlp(self.norm_mlp(query))


class TransformerNeuralProcess(nn.Module):
    """TNP-D over a mesh: ``(context tokens, query coordinates) -> Gaussian (mean, std)`` per query and channel.

    Parameters
    ----------
    n_outputs : int
        Outputs of the system (the context's one-hot width; the head predicts ``1 + n_outputs`` channels).
    mesh_dims : int
        1 for time, 2 for (space, time).
    width, heads, layers : int
        Token width, attention heads, transformer blocks.
    """

    def __init__(self, n_outputs: int, mesh_dims: int = 1, width: int = 64, heads: int = 4, layers: int = 3):
        super().__init__()
        if width % heads:
            raise InvalidInputError(f"width must be a multiple of heads, got width {width} and {heads} heads.")
        self.n_outputs, self.mesh_dims = n_outputs, mesh_dims
        self.context_embedding = _mlp(mesh_dims + n_outputs + 1, width, width)
        self.query_embedding = _mlp(mesh_dims, width, width)
        self.query_flag = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = _mlp(width, width, 2 * (1 + n_outputs))

    def forward(self, coordinates: torch.Tensor, output: torch.Tensor, value: torch.Tensor, absent: torch.Tensor,
                query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and std.

        Parameters
        ----------
        coordinates : Tensor ``(task, point, mesh_dims)``, standardised mesh coordinates of the context
        output : Tensor ``(task, point)`` long, the output each context value belongs to
        value : Tensor ``(task, point)``, standardised values (anything where ``absent``)
        absent : Tensor ``(task, point)`` bool, padding (True: not in the context)
        query : Tensor ``(task, query, mesh_dims)``, standardised query coordinates

        Returns
        -------
        mean, std : Tensor ``(task, query, channel)``, channel 0 the latent force, ``1 + j`` output ``j``
        """
        one_hot = nn.functional.one_hot(output, self.n_outputs).to(value.dtype)
        context = self.context_embedding(torch.cat([coordinates, one_hot, value[..., None]], -1))
        context = context * (~absent)[..., None]
        tokens = self.query_embedding(query) + self.query_flag
        for block in self.blocks:
            context, tokens = block(context, tokens, absent)
        mean, raw_std = self.head(self.norm(tokens)).chunk(2, -1)
        return mean, MIN_STD + nn.functional.softplus(raw_std)


def _mesh_coordinates(normaliser: Normaliser, time: torch.Tensor, space: torch.Tensor | None) -> torch.Tensor:
    """Standardised coordinates ``(point, mesh_dims)`` of the mesh, in ``(task, [space,] time)`` order."""
    t = normaliser.transform_time(time)
    if space is None:
        return t[:, None]
    x = normaliser.transform_space(space)
    return torch.stack(torch.meshgrid(x, t, indexing="ij"), -1).reshape(-1, 2)


def _context(normaliser: Normaliser, y: torch.Tensor, time: torch.Tensor, space: torch.Tensor | None):
    """Context tokens of ``y (task, output, [space,] time)``: coordinates, output index, value, absent (NaN)."""
    n_tasks, n_outputs = y.shape[:2]
    mesh = _mesh_coordinates(normaliser, time, space)
    value = normaliser.transform_y(y).reshape(n_tasks, -1)
    coordinates = mesh.repeat(n_outputs, 1).expand(n_tasks, -1, -1)
    output = torch.arange(n_outputs, device=y.device).repeat_interleave(mesh.shape[0]).expand(n_tasks, -1)
    absent = ~torch.isfinite(value)
    return coordinates, output, torch.nan_to_num(value), absent


def _training_context(absent: torch.Tensor, times: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Padding of a training batch's context: all values, a random fraction, or a random prefix in time.

    ``absent`` and ``times`` are ``(task, point)``; the first observed point of every task stays in.
    """
    n_tasks = absent.shape[0]
    draw = lambda *shape: torch.rand(*shape, generator=generator).to(absent.device)  # noqa: E731
    mode = torch.randint(0, 3, (n_tasks, 1), generator=generator).to(absent.device)
    fraction = MIN_CONTEXT_FRACTION + (1 - MIN_CONTEXT_FRACTION) * draw(n_tasks, 1)
    start, end = times.min(), times.max()
    cut = start + fraction * (end - start)
    dropped = torch.where(mode == 1, draw(*absent.shape) > fraction, torch.where(mode == 2, times > cut, False))
    keep_first = torch.zeros_like(absent)
    earliest = torch.where(absent, math.inf, times).argmin(-1)
    keep_first[torch.arange(n_tasks), earliest] = True
    return absent | (dropped & ~keep_first)


def _targets(normaliser: Normaliser, tasks: TaskSet, rows, device) -> torch.Tensor:
    """Standardised ``(task, point, channel)`` targets: the latent, then each output's noise-free value."""
    f = normaliser.transform_f(tasks.f(rows, device=device, dtype=torch.float32)).flatten(1)
    name = "y_clean" if "y_clean" in tasks.dataset else "y"
    y = normaliser.transform_y(tasks.tensor(name, rows, device=device, dtype=torch.float32))
    return torch.cat([f[..., None], y.flatten(2).transpose(1, 2)], -1)


def _gaussian_nll(mean: torch.Tensor, std: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-density over the finite entries of ``target``."""
    known = torch.isfinite(target)
    z = (torch.nan_to_num(target) - mean) / std
    terms = 0.5 * z**2 + std.log() + 0.5 * math.log(2 * math.pi)
    return (terms * known).sum() / known.sum().clamp_min(1)


class NeuralProcess:
    """A meta-trained :class:`TransformerNeuralProcess` with the training set's units.

    Attributes
    ----------
    module : TransformerNeuralProcess
    normaliser : Normaliser, fitted on the training tasks
    system : str, the system the training tasks came from
    losses : list of float, the training loss of every step
    steps, train_seconds : the steps taken and their wall-clock time
    """

    def __init__(self, module: TransformerNeuralProcess, normaliser: Normaliser, system: str, device: torch.device):
        self.module, self.normaliser, self.system, self.device = module, normaliser, system, device
        self.losses: list[float] = []
        self.steps, self.train_seconds = 0, 0.0

    @torch.no_grad()
    def infer(self, tasks: TaskSet, *, time=None, space=None) -> xr.Dataset:
        """Latent force and noise-free outputs on the query mesh, every task from its observed outputs.

        Parameters
        ----------
        tasks : TaskSet
            ``y (task, output, [space,] time)`` of the training system, NaN where not observed.
        time, space : array-like, optional
            Query mesh (default the tasks' own).

        Returns
        -------
        xarray.Dataset
            ``latent_mean``, ``latent_std`` ``(task, [space,] time)``, ``output_mean``,
            ``output_std`` ``(task, output, [space,] time)``; attrs ``baseline``,
            ``infer_ms_per_task``, ``device``, ``steps``.

        Raises
        ------
        InvalidInputError
            For tasks of another system or shape, a task with no observed value, or a query
            space for time-only tasks.
        """
        if tasks.system_name and tasks.system_name != self.system:
            raise InvalidInputError(f"The neural process was trained on {self.system!r}; these tasks are {tasks.system_name!r}.")
        if tasks.n_outputs != self.module.n_outputs or tasks.is_spatial != (self.module.mesh_dims == 2):
            raise InvalidInputError(f"The neural process expects {self.module.n_outputs} output(s) over "
                                    f"{'(space, time)' if self.module.mesh_dims == 2 else 'time'}; got {tasks}.")
        if space is not None and not tasks.is_spatial:
            raise InvalidInputError("These tasks are over time only; do not give query space.")
        started = timer.perf_counter()
        self.module.eval()
        query_time = query_axis(time, tasks.time, "time")
        query_space = query_axis(space, tasks.space, "space") if tasks.is_spatial else None
        query = _mesh_coordinates(self.normaliser, query_time, query_space).to(self.device, torch.float32)
        y = tasks.y(device=self.device, dtype=torch.float32)
        context = _context(self.normaliser, y, tasks.time.to(self.device), tasks.space if tasks.space is None
                           else tasks.space.to(self.device))
        if torch.any(context[3].all(-1)):
            raise InvalidInputError(f"Task {int(torch.nonzero(context[3].all(-1))[0, 0])} has no observed value.")
        coordinates = context[0].to(torch.float32)
        means, stds = [], []
        for rows in torch.arange(tasks.n_tasks).split(INFER_CHUNK):
            mean, std = self.module(coordinates[rows], context[1][rows], context[2][rows], context[3][rows],
                                    query.expand(rows.numel(), -1, -1))
            means.append(mean)
            stds.append(std)
        mean, std = torch.cat(means).double(), torch.cat(stds).double()
        mesh = (query_space.numel(),) if query_space is not None else ()
        mesh = (*mesh, query_time.numel())
        latent_mean = self.normaliser.inverse_f(mean[..., 0]).reshape(tasks.n_tasks, *mesh)
        latent_var = self.normaliser.inverse_f(std[..., 0] ** 2, variance=True).reshape(tasks.n_tasks, *mesh)
        output_mean = self.normaliser.inverse_y(mean[..., 1:].transpose(1, 2).reshape(tasks.n_tasks, -1, *mesh))
        output_var = self.normaliser.inverse_y(std[..., 1:].transpose(1, 2).reshape(tasks.n_tasks, -1, *mesh) ** 2, variance=True)
        attrs = {"baseline": "neural-process", "device": str(self.device), "system": self.system, "steps": self.steps,
                 "infer_ms_per_task": 1000.0 * (timer.perf_counter() - started) / tasks.n_tasks}
        return result_dataset(tasks, query_time, query_space, latent_mean, latent_var, output_mean, output_var, attrs)


def train_neural_process(
    tasks: TaskSet,
    *,
    epochs: int = 100,
    batch_size: int = 16,
    learning_rate: float = 5e-4,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    width: int = 64,
    heads: int = 4,
    layers: int = 3,
    seed: int = 0,
    device=None,
) -> NeuralProcess:
    """Meta-train a transformer neural process on ``tasks`` (simulated, with the latent ``f``).

    Parameters
    ----------
    tasks : TaskSet
        Training tasks ``y (task, output, [space,] time)``, ``f (task, [space,] time)``.
    epochs, batch_size : passes over the tasks and tasks per step.
    learning_rate : float, initial AdamW step (cosine decay to ``FINAL_LR_FRACTION`` of it).
    max_steps, max_seconds : optional, further step and wall-clock budgets (whichever comes first).
    width, heads, layers : the transformer's size.
    seed : int, seeds the weights, the batch order and the contexts (no global RNG is touched).
    device : str, optional

    Raises
    ------
    InvalidInputError
        For tasks without the latent, or a budget that is not positive.
    """
    if not tasks.has_latent:
        raise InvalidInputError("Meta-training the neural process needs tasks with the latent force `f` (simulated tasks).")
    if epochs < 1 or batch_size < 1 or learning_rate <= 0 or (max_steps is not None and max_steps < 1):
        raise InvalidInputError(f"epochs, batch_size and max_steps must be >= 1 and learning_rate > 0; got {epochs}, "
                                f"{batch_size}, {max_steps} and {learning_rate}.")
    device = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    normaliser = Normaliser.fit(tasks)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = TransformerNeuralProcess(tasks.n_outputs, 2 if tasks.is_spatial else 1, width, heads, layers).to(device)
    model = NeuralProcess(module, normaliser, tasks.system_name, device)
    space = tasks.space.to(device) if tasks.is_spatial else None
    context = _context(normaliser, tasks.y(device=device), tasks.time.to(device), space)
    coordinates, output, value, absent = (context[0].float(), context[1], context[2].float(), context[3])
    query = _mesh_coordinates(normaliser, tasks.time.to(device), space).float()
    targets = _targets(normaliser, tasks, None, device)
    steps_per_epoch = math.ceil(tasks.n_tasks / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    optimiser = torch.optim.AdamW(module.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1))))
    module.train()
    started = timer.perf_counter()
    while model.steps < total:
        for rows in torch.randperm(tasks.n_tasks, generator=generator).split(batch_size):
            if model.steps >= total or (max_seconds is not None and timer.perf_counter() - started > max_seconds):
                total = model.steps
                break
            rows = rows.to(device)
            batch_absent = _training_context(absent[rows], coordinates[rows, :, -1], generator)
            mean, std = module(coordinates[rows], output[rows], value[rows], batch_absent, query.expand(rows.numel(), -1, -1))
            loss = _gaussian_nll(mean, std, targets[rows])
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            model.steps += 1
            model.losses.append(float(loss.detach()))
    model.train_seconds = timer.perf_counter() - started
    module.eval()
    return model
