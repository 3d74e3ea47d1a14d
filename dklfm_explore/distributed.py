"""Data-parallel training over several processes: ``torch.distributed`` with DistributedDataParallel.

Launch one process per device with torchrun, which sets the rendezvous environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)::

    torchrun --nproc-per-node N -m dklfm_explore.cli train SYSTEM|tasks.nc --out model.pt --distributed

Processes talk over NCCL on CUDA devices (process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``) and over
gloo on CPUs.  Each process draws its own fresh tasks (seeded by its rank) or takes its slice of
every global batch of a task set (:meth:`rank_share` of the sources in
:mod:`dklfm_explore.sources`); ``TrainingConfig.batch_size`` is per process, so a step's global
batch is ``world_size x batch_size`` tasks.  The loss is a mean over a batch's tasks and
DistributedDataParallel averages the processes' gradients, so with equal slices a step follows
the gradient of the mean over the global batch: the same step a single process takes with
``batch_size = world_size x batch_size`` (``tests/test_distributed.py``).

Process 0 alone validates, calls ``progress`` and reports; the other processes take its
validation score, so every process makes the same decision to keep a model or stop.  Every
step, one all-reduce agrees on the elapsed time (the learning-rate schedule of a time budget)
and on whether any process must stop (cancelled, time limit, a non-finite loss or a failed
Cholesky factorisation): then all stop together, and process 0's message names the process
that stopped them.  An exception on one process ends it; torchrun then ends the others.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .devices import resolve_device
from .errors import DeviceError, DKLFMError, InvalidInputError

__all__ = ["SingleProcess", "DataParallel", "process_group", "launched_by_torchrun", "LAUNCH_COMMAND",
           "STOP_PRIORITY", "TIMEOUT_S"]

LAUNCH_COMMAND = "torchrun --nproc-per-node N -m dklfm_explore.cli train ... --distributed"
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun (or any launcher that follows its env:// convention) sets for each process."""
STOP_PRIORITY = ("time-limit", "cancelled", "diverged")
"""When processes stop for different reasons at one step, the later reason in this list is the one reported."""
TIMEOUT_S = 1800.0
"""How long a collective waits for a process that does not answer (a hung device) before failing."""


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun started (``WORLD_SIZE`` above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class SingleProcess:
    """The training loop's points of agreement for one process: there is nothing to agree on."""

    rank = 0
    world_size = 1

    @property
    def is_main(self) -> bool:
        """Whether this process validates, reports and writes checkpoints."""
        return self.rank == 0

    def share(self, data):
        """This process's share of the training data (all of it)."""
        return data

    def loss_model(self, model):
        """What training calls ``loss(coords, y, f, points)`` on."""
        return model

    def agree(self, stop: tuple[str, str] | None, elapsed: float) -> tuple[tuple[str, str] | None, float]:
        """The stop ``(reason, message)`` or None and the elapsed seconds every process uses for this step."""
        return stop, elapsed

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the processes."""
        return value

    def from_main(self, value):
        """Process 0's ``value`` (any picklable object)."""
        return value


class _Loss(torch.nn.Module):
    """A module whose forward is the model's training loss, for DistributedDataParallel to wrap."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, coords, y, f, points):
        return self.model.loss(coords, y, f, points)


class _ParallelLoss:
    """``loss(...)`` through DistributedDataParallel: its backward all-reduces (averages) the gradients."""

    def __init__(self, wrapped: DistributedDataParallel):
        self.wrapped = wrapped

    def loss(self, coords, y, f, points):
        return self.wrapped(coords, y, f, points)


class DataParallel(SingleProcess):
    """The points of agreement of process ``rank`` of ``world_size`` in an initialised process group.

    Made by :func:`process_group`; passed to :func:`~dklfm_explore.train.train` as ``parallel``.
    """

    def __init__(self, rank: int, world_size: int, device: torch.device):
        self.rank, self.world_size, self.device = int(rank), int(world_size), torch.device(device)

    def __repr__(self) -> str:
        return f"<DataParallel process {self.rank} of {self.world_size} on {self.device}>"

    def share(self, data):
        """Process ``rank``'s slice of the training batches; the validation tasks stay with process 0."""
        provenance = dict(data.provenance, processes=self.world_size)
        return replace(data, source=data.source.rank_share(self.rank, self.world_size),
                       validation=data.validation if self.is_main else None, provenance=provenance)

    def loss_model(self, model):
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return _ParallelLoss(DistributedDataParallel(_Loss(model), device_ids=device_ids))

    def agree(self, stop, elapsed):
        code = 0 if stop is None else STOP_PRIORITY.index(stop[0]) + 1
        values = torch.tensor([code, elapsed], dtype=torch.float64, device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        code, elapsed = int(values[0]), float(values[1])
        if code == 0:
            return None, elapsed
        stops = [None] * self.world_size
        dist.all_gather_object(stops, stop)
        rank = next(r for r, s in enumerate(stops) if s is not None and STOP_PRIORITY.index(s[0]) + 1 == code)
        reason, message = stops[rank]
        return (reason, message if rank == 0 else f"Process {rank} of {self.world_size}: {message}"), elapsed

    def mean(self, value):
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total) / self.world_size

    def from_main(self, value):
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]


def _process_device(requested, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank`` on its node: ``cuda:local_rank`` or the CPU."""
    if requested is not None and str(requested).startswith("cuda:"):
        raise DeviceError(f"--device {requested} names one GPU, but each process of a distributed run takes the GPU of its "
                          "LOCAL_RANK; give 'cuda' or 'auto'.")
    device = resolve_device(requested)
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise DeviceError(f"Process with LOCAL_RANK {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                          "start at most that many processes per node (--nproc-per-node).")
    return torch.device("cuda", local_rank)


@contextmanager
def process_group(device=None, *, timeout_s: float = TIMEOUT_S) -> Iterator[DataParallel]:
    """Join the process group that torchrun set up, and leave it at the end of the block.

    Parameters
    ----------
    device : str or None
        ``None``/``"auto"``: this process's GPU (``cuda:LOCAL_RANK``) when CUDA is available, else
        the CPU; ``"cpu"`` or ``"cuda"`` to choose.  NCCL on CUDA, gloo on the CPU.
    timeout_s : float
        How long a collective waits for an unresponsive process.

    Yields
    ------
    DataParallel

    Raises
    ------
    InvalidInputError
        If the launcher's environment is missing (not started by torchrun) or the rendezvous fails.
    DeviceError
        If a process has no GPU of its own.
    DKLFMError
        Any error of the block, its message prefixed with the process that raised it.
    """
    missing = [name for name in ENVIRONMENT if name not in os.environ]
    if missing:
        raise InvalidInputError(f"A distributed run needs the launcher's environment ({', '.join(missing)} unset); "
                                f"start it with {LAUNCH_COMMAND}.")
    rank, world_size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    device = _process_device(device, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as error:
        raise InvalidInputError(f"Process {rank} of {world_size} could not join the process group at "
                                f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({error}).") from error
    try:
        yield DataParallel(rank, world_size, device)
    except DKLFMError as error:
        if world_size > 1:
            error.args = (f"Process {rank} of {world_size}: {error}",) + error.args[1:]
        raise
    finally:
        dist.destroy_process_group()
