"""Several processes, one run: data-parallel training and sharded scoring under ``torchrun``.

``torchrun`` starts one process (a *rank*) per GPU or per share of the CPU cores and tells each who it is
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` or a c10d rendezvous). The command
line sees those variables and joins the run: :func:`init` opens the process group (NCCL on CUDA, with Gloo
beside it for the small CPU messages; Gloo alone on CPU), and everything else goes through a :class:`Context`.

Training (:mod:`deeprc_core.training`): every rank builds the same model from the same data-driven start;
``DistributedDataParallel`` copies rank 0's weights to all ranks and averages the gradients of each update
over the ranks. Each update takes ``batch_size`` repertoires *per rank* from one seeded permutation of the
training set (:class:`BatchSampler`), so two ranks with ``batch_size`` 4 take the same gradient step as one
process with ``batch_size`` 8 over the same 8 repertoires (the loss is a mean over repertoires). Validation
repertoires are shared out and their outputs gathered, so every rank reaches the same early-stopping decision.
Only rank 0 reports progress and writes the model; a failure on any rank stops every rank with one message
(:meth:`Context.check`).

Scoring (``predict``): the files are dealt out over the ranks, each rank streams its share, and rank 0
gathers the rows and writes one table in the order of the files given.

One machine, four processes::

    torchrun --nproc_per_node 4 -m deeprc_core train DATASET_DIR --target disease --out model

Slurm, two nodes with four GPUs each (the dataset folder and ``--out`` on a shared file system; HDF5 file
locking off where the file system does not support it)::

    #!/bin/bash
    #SBATCH --nodes=2
    #SBATCH --ntasks-per-node=1
    #SBATCH --gpus-per-node=4
    #SBATCH --cpus-per-task=32
    export HDF5_USE_FILE_LOCKING=FALSE
    head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint "$head:29500" \\
        --rdzv_id "$SLURM_JOB_ID" -m deeprc_core train /shared/cohort --target disease --out /shared/model
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from deeprc_core.errors import DeepRCError

T = TypeVar("T")

TIMEOUT = timedelta(minutes=float(os.environ.get("DEEPRC_DIST_TIMEOUT_MINUTES", "60")))  # one collective step
PATIENT_TIMEOUT = timedelta(hours=24)  # ranks waiting while rank 0 alone builds the cache or saves the model
_STOP_CODES = {None: 0, "time budget": 1, "cancelled": 2}


class RankFailure(DeepRCError):
    """A failure that every rank has agreed on: raised on all ranks, reported once (by rank 0)."""


@dataclass
class Context:
    """This process's place in a distributed run."""

    rank: int  # this process, 0 .. world_size - 1
    world_size: int  # processes in the run
    local_rank: int  # this process on its node (the index of its GPU)
    backend: str  # "gloo" or "cpu:gloo,cuda:nccl"
    owned: bool = False  # the process group was opened by :func:`init` (and is closed by :func:`shutdown`)
    _patient: Any = field(default=None, repr=False)  # Gloo group with a long timeout, for waits on rank 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports progress and writes files."""
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        """Positions ``0 .. n-1`` this rank handles: every ``world_size``-th, starting at ``rank``."""
        return np.arange(self.rank, n, self.world_size)

    # ------------------------------------------------------------------------------------------------
    # Agreement

    def check(self, error: BaseException | str | None, *, patient: bool = False) -> None:
        """Collective: raise :class:`RankFailure` on every rank when any rank brings an error.

        The message is the failing rank's own (the lowest such rank), naming it when there are several ranks.
        ``patient``: wait up to a day for the others (one rank may have been working alone)."""
        message = None
        if error is not None:
            message = (
                str(error)
                if isinstance(error, DeepRCError) or isinstance(error, str)
                else f"{type(error).__name__}: {error}"
            )
        group = self._patient if patient else None
        flag = torch.tensor([0 if message is None else 1])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
        if not int(flag):
            return
        messages: list[str | None] = [None] * self.world_size
        dist.all_gather_object(messages, message, group=group)
        failed = next(r for r, m in enumerate(messages) if m is not None)
        text = messages[failed]
        if len(set(messages)) > 1:  # not every rank hit the same problem: say where it happened
            text = f"{text} (on rank {failed} of {self.world_size}; all ranks stopped)"
        if isinstance(error, BaseException):
            raise RankFailure(text) from error
        raise RankFailure(text)

    def together(self, fn: Callable[..., T], *args: Any, main_only: bool = False) -> T | None:
        """``fn(*args)`` on every rank (or rank 0 alone), then :meth:`check`: one rank's failure stops all."""
        result, error = None, None
        try:
            if self.is_main or not main_only:
                result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, by the rank that had it
            error = exc
        self.check(error, patient=main_only)
        return result

    def main_first(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0 while the others wait (up to a day), then on the others: e.g. rank 0 builds the
        dataset cache, the others find it up to date and open it read-only. One rank's failure stops all."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - reported by every rank, printed by rank 0
                error = exc
        self.check(error, patient=True)  # rank 0's outcome
        if not self.is_main:
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001
                error = exc
        self.check(error)  # the others' outcome
        return result

    def agree_stop(self, reason: str | None) -> str | None:
        """Collective: the reason to stop training now, if any rank has one (cancel wins over time budget)."""
        code = torch.tensor([_STOP_CODES[reason]])
        dist.all_reduce(code, op=dist.ReduceOp.MAX)
        return {v: k for k, v in _STOP_CODES.items()}[int(code)]

    def mean(self, value: float) -> float:
        """Collective: the mean of ``value`` over the ranks."""
        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total)
        return float(total) / self.world_size

    def gather_rows(
        self, rows: list[torch.Tensor], positions: np.ndarray, n: int, device: torch.device
    ) -> torch.Tensor:
        """Collective: rows ``(n_outputs,)`` that each rank computed for its ``positions`` -> all ``n`` rows, in
        order, on every rank."""
        local = (positions.tolist(), torch.stack(rows).cpu() if rows else None)
        everything: list = [None] * self.world_size
        dist.all_gather_object(everything, local)
        out: list[torch.Tensor | None] = [None] * n
        for where, values in everything:
            for k, position in enumerate(where):
                out[position] = values[k]
        return torch.stack(out).to(device)

    def gather_to_main(self, items: list) -> list | None:
        """Collective: every rank's list, concatenated in rank order, on rank 0 (None on the others)."""
        everything: list = [None] * self.world_size
        dist.all_gather_object(everything, items)
        return [x for part in everything for x in part] if self.is_main else None


def launched() -> bool:
    """True in a process started by ``torchrun`` (or anything else that sets ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def current() -> Context | None:
    """The context of the open process group, or None in a single process."""
    return _context if dist.is_available() and dist.is_initialized() else None


_context: Context | None = None


def init(device: str = "auto") -> Context | None:
    """Join the distributed run this process was launched in (``torchrun``); None when it was not.

    NCCL (with Gloo for CPU messages) when the run computes on CUDA, Gloo otherwise. Each process uses the GPU
    of its ``LOCAL_RANK``. Calling it again, or in a process whose group is already open, returns the same
    context."""
    if dist.is_available() and dist.is_initialized():  # ours, or a group the caller opened: adopt it
        return _context if _context is not None else _adopt()
    if not launched():
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not torch.cuda.is_available():
        raise DeepRCError("--device cuda was asked for, but this machine has no usable GPU.")
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    try:
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as exc:
        raise DeepRCError(f"Could not join the distributed run ({exc}). Start it with torchrun.") from exc
    return _record(local_rank, backend, owned=True)


def _adopt() -> Context:
    """A context for a process group someone else opened (a test, a notebook)."""
    return _record(int(os.environ.get("LOCAL_RANK", dist.get_rank())), str(dist.get_backend()), owned=False)


def _record(local_rank: int, backend: str, owned: bool) -> Context:
    """Keep the open group's context, with its patient Gloo group for long waits on rank 0."""
    global _context
    _context = Context(dist.get_rank(), dist.get_world_size(), local_rank, backend, owned=owned)
    _context._patient = dist.new_group(backend="gloo", timeout=PATIENT_TIMEOUT)
    return _context


def shutdown() -> None:
    """Close the process group if :func:`init` opened it."""
    global _context
    if _context is not None and _context.owned and dist.is_initialized():
        dist.destroy_process_group()
    _context = None


# ----------------------------------------------------------------------------------------------------------
# Training


class BatchSampler:
    """Which training repertoires each rank takes at each update.

    Update ``u`` takes positions ``u * B * W .. (u + 1) * B * W - 1`` of an endless stream made of seeded
    permutations of the training set, one per epoch and the same on every rank (``B`` = ``batch_size``,
    ``W`` = ``world_size``); rank ``r`` takes the ``r``-th block of ``B``. The draw depends only on the seed and
    the update count, so a resumed run takes what the uninterrupted one would have taken.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int, context: Context) -> None:
        self.indices, self.batch_size, self.seed, self.context = np.asarray(indices), batch_size, seed, context
        self._epoch, self._order = -1, self.indices

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.indices)
        return self._order

    def batch(self, update: int) -> np.ndarray:
        """This rank's ``batch_size`` repertoires (dataset indices) for update ``update`` (0-based)."""
        n, b = len(self.indices), self.batch_size
        start = (update * self.context.world_size + self.context.rank) * b
        positions = np.arange(start, start + b)
        return np.asarray([self._permutation(int(p // n))[p % n] for p in positions], dtype=self.indices.dtype)

    def selection_rng(self, update: int) -> np.random.Generator:
        """The generator this rank draws sequences with from update ``update`` on (seeded per rank)."""
        return np.random.default_rng([self.seed, update, self.context.rank, 1])


class _TrainingStep(torch.nn.Module):
    """The training forward pass as a module, so ``DistributedDataParallel`` can hook its backward pass."""

    def __init__(self, forward: Callable[..., torch.Tensor], model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, selection: Any, n_bags: int) -> torch.Tensor:
        return self._forward(self.model, selection, n_bags)


def data_parallel(forward: Callable[..., torch.Tensor], model: torch.nn.Module) -> DistributedDataParallel:
    """``forward(model, selection, n_bags)`` wrapped so that the gradients of ``model`` are averaged over the
    ranks in every backward pass. Rank 0's weights are copied to every rank here."""
    # device_ids=None: a single-device module whose inputs are moved by ``forward`` itself (CPU or one GPU);
    # buffers (the position table, the same on every rank) are synced once, not at every forward pass
    return DistributedDataParallel(_TrainingStep(forward, model), device_ids=None, forward_sync_buffers=False)


def together(context: Context | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``; in a distributed run, one rank's failure stops every rank (see :meth:`Context.together`)."""
    return fn(*args) if context is None else context.together(fn, *args)


__all__ = [
    "BatchSampler",
    "Context",
    "RankFailure",
    "current",
    "data_parallel",
    "init",
    "launched",
    "shutdown",
    "together",
]
