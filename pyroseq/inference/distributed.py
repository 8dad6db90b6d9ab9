"""Data-parallel training with :mod:`torch.distributed`: process-group set-up (e.g. under ``torchrun``),
identical initialisation, the per-rank share of a global minibatch and gradient averaging.

Every rank runs the same training loop on its own shard of every global minibatch; the gradients are
averaged with one ``all_reduce`` per step, so every rank applies the same update and the parameters stay
bit-identical. No scheduler of our own: the processes are launched by ``torchrun`` (or any launcher
that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``)::

    # train.py: an ordinary script calling fit(model, x, batch_size=64, checkpoint="run.pt", ...)
    torchrun --standalone --nproc_per_node=2 train.py      # 2 CPU processes (gloo), 32 sequences each
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-endpoint=host:29500 train.py   # GPUs: NCCL
"""

import atexit
import functools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "all_gather_objects",
    "average_gradients",
    "barrier",
    "broadcast_module",
    "setup_distributed",
    "shard_indices",
]

_MODES = ("auto", True, False)
_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly trivial) data-parallel group.

    :ivar int rank: this process's rank, ``0 <= rank < world_size``.
    :ivar int world_size: number of processes (1: single-process training).
    """

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self):
        """True if there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self):
        """True on rank 0, the process that logs and writes checkpoints."""
        return self.rank == 0


def _launched_by_torchrun():
    return all(name in os.environ for name in _ENV) and int(os.environ["WORLD_SIZE"]) > 1


def setup_distributed(mode="auto", backend=None):
    """Join (or create) the default process group.

    - ``mode=False``: single process, whatever the environment.
    - ``mode="auto"``: use the default process group if it is initialised; otherwise, if the environment
      of a launcher such as ``torchrun`` describes more than one process, initialise it from there
      (``init_method="env://"``); otherwise run single-process.
    - ``mode=True``: like ``"auto"`` but raise if neither applies.

    The backend defaults to NCCL when CUDA is available and to gloo otherwise. With NCCL, the model and
    the data must already live on the rank's GPU (``cuda:LOCAL_RANK``; this function selects that device).

    :param mode: ``"auto"``, True or False.
    :param str backend: ``"gloo"``, ``"nccl"`` or None (see above).
    :returns: a :class:`DistributedContext`.
    :raises ValueError: for an unknown mode, or ``mode=True`` without a process group or launcher.
    """
    if not any(mode is m or (isinstance(mode, str) and mode == m) for m in _MODES):
        raise ValueError(f"distributed must be 'auto', True or False, got {mode!r}")
    if mode is False or not dist.is_available():
        if mode is True:
            raise ValueError("distributed=True but torch.distributed is not available in this build")
        return DistributedContext()
    if not dist.is_initialized():
        if not _launched_by_torchrun():
            if mode is True:
                raise ValueError("distributed=True needs an initialised default process group or a launcher "
                                 f"(torchrun) that sets {', '.join(_ENV)} with WORLD_SIZE > 1")
            return DistributedContext()
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend, init_method="env://")
        atexit.register(_destroy)  # we created it, so we tear it down (unless the user did)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def _destroy():
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(indices, context):
    """This rank's contiguous share of a global minibatch.

    :param torch.Tensor indices: global minibatch indices of shape ``(B,)``, the same on every rank;
        ``B`` must be a multiple of the world size.
    :param DistributedContext context: the group.
    :returns: indices of shape ``(B // world_size,)``.
    """
    if not context.enabled:
        return indices
    size = len(indices) // context.world_size
    return indices[context.rank * size : (context.rank + 1) * size]


def broadcast_module(module, context, src=0):
    """Copy the parameters and buffers of ``module`` from rank ``src`` to every rank (in place), so that
    all ranks start from the same state whatever their own initialisation was."""
    if not context.enabled:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


def average_gradients(params, context, *extras):
    """Average the gradients of ``params`` (and the tensors ``extras``, e.g. the loss) over all ranks
    with a single ``all_reduce`` of one flat buffer. A parameter whose gradient is None on some ranks
    counts as zero there; it keeps ``grad = None`` only if no rank has a gradient for it (so the optimiser
    skips it, as in a single process).

    :param list params: parameters whose ``.grad`` is replaced by the average.
    :param DistributedContext context: the group.
    :param torch.Tensor extras: further tensors to average (returned, in order).
    :returns: a list of the averaged ``extras``.
    """
    extras = [e.detach() for e in extras]
    if not context.enabled:
        return extras
    present = torch.tensor([float(p.grad is not None) for p in params])
    tensors = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params] + extras + [present]
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors], torch.float32)
    device = params[0].device if params else torch.device("cpu")
    flat = torch.cat([t.reshape(-1).to(device=device, dtype=dtype) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= context.world_size
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].view_as(t).to(device=t.device, dtype=t.dtype))
        offset += t.numel()
    for p, averaged, anywhere in zip(params, out, out[-1]):
        p.grad = averaged if anywhere > 0 else None
    return out[len(params) : len(params) + len(extras)]


def all_gather_objects(obj, context):
    """The list of ``obj`` from every rank (``[obj]`` in a single process)."""
    if not context.enabled:
        return [obj]
    out = [None] * context.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(context):
    """Wait until every rank gets here (nothing in a single process)."""
    if context.enabled:
        dist.barrier()
