"""Data-parallel replicas: the hook a training loop takes to run as one of ``world`` copies.

A loop given a :class:`Replicas` (``shopsearch.ranking.train.fit`` takes one) trains on its
:func:`shard_rows` of the query groups (a request's rows are never split between replicas),
averages the gradients of all replicas before every optimiser step (weighted by the rows each
replica's mini-batch held, so for a loss that is a mean over rows the step is the one of the
union of the replicas' mini-batches), broadcasts replica 0's buffers after every step (running
statistics, as torch DDP does by default) and sums its loss totals across replicas, so that
every replica reports the same losses and early stopping decides the same everywhere.

With ``world == 1`` every method leaves the values untouched, so one replica trains exactly as
a local run does. :class:`TorchReplicas` does the exchanges with ``torch.distributed`` on the
process group the launcher set up (Ray Train's ``TorchTrainer``: gloo on CPU). torch is
imported lazily: this module sits below every stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

IntArray = npt.NDArray[np.int64]


def _sparse_mean(param: torch.nn.Parameter, rows: int, total: float) -> torch.Tensor:
    """The rows-weighted mean of the replicas' sparse gradients of ``param``."""
    import torch
    import torch.distributed as dist

    grad = param.grad
    if grad is None:  # this replica did not reach it; others did: a sparse zero
        empty = torch.zeros((1, 0), dtype=torch.int64)
        values = torch.zeros((0, *param.shape[1:]), dtype=param.dtype)
        grad = torch.sparse_coo_tensor(empty, values, param.shape, check_invariants=False)
    weighted = (grad.detach().coalesce() * float(rows)).coalesce()
    dist.all_reduce(weighted, op=dist.ReduceOp.SUM)
    return (weighted / total).coalesce()


def _check(rank: int, world: int) -> None:
    if world < 1 or not 0 <= rank < world:
        raise InvalidInputError(f"rank={rank}, world={world}: use world >= 1, 0 <= rank < world")


def shard_rows(groups: npt.ArrayLike, rank: int, world: int) -> IntArray:
    """The rows of replica ``rank`` of ``world``: every row of the groups (requests or queries)
    at positions ``rank``, ``rank + world``, ... of the sorted distinct group ids, in row order.

    Raises:
        InvalidInputError: ``world`` below 1 or ``rank`` outside ``[0, world)``.
    """
    _check(rank, world)
    ids = np.asarray(groups)
    if world == 1:
        return np.arange(len(ids), dtype=np.int64)
    mine = np.unique(ids)[rank::world]
    return np.flatnonzero(np.isin(ids, mine)).astype(np.int64)


class Replicas(Protocol):
    """What a data-parallel training loop needs from its replica group.

    Attributes:
        rank: this replica's index, 0 to ``world - 1``.
        world: the number of replicas.
    """

    rank: int
    world: int

    def most(self, value: int) -> int:
        """The largest ``value`` of any replica (the mini-batches of an epoch: every replica
        takes as many steps as the one with the most rows)."""
        ...

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter], rows: int) -> None:
        """Replace each gradient by the rows-weighted mean of the replicas' gradients (``rows``:
        this replica's mini-batch rows, 0 when it had none left)."""
        ...

    def sync(self, module: torch.nn.Module, parameters: bool = False) -> None:
        """Copy replica 0's buffers (and with ``parameters`` its parameters) to every replica."""
        ...

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the replicas."""
        ...


class TorchReplicas:
    """:class:`Replicas` over the default ``torch.distributed`` process group.

    Args:
        rank: this process's rank in the group.
        world: the group's size.

    Raises:
        InvalidInputError: a rank outside ``[0, world)``.
    """

    def __init__(self, rank: int, world: int) -> None:
        _check(rank, world)
        self.rank, self.world = rank, world

    def most(self, value: int) -> int:
        """The largest ``value`` of any replica."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        most = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        return int(most.item())

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter], rows: int) -> None:
        """Rows-weighted mean of the replicas' gradients, in place: the dense ones in one
        all-reduce, each sparse one (an embedding table's rows) in its own.

        A parameter no replica computed a gradient for keeps ``None`` (Adam then skips it, as
        in a local run); one that only some replicas reached counts as zero on the others.
        """
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        params = [p for p in parameters if p.requires_grad]
        # one exchange of the layout: per parameter how many replicas have a gradient, how
        # many a sparse one (an embedding table's), and the rows of all replicas
        have = [float(p.grad is not None) for p in params]
        sparse = [float(p.grad is not None and p.grad.is_sparse) for p in params]
        counts = self.sum([*have, *sparse, float(rows)])
        total = max(counts[-1], 1.0)
        dense = []
        for i, p in enumerate(params):
            if counts[len(params) + i] > 0:
                p.grad = _sparse_mean(p, rows, total)
            elif counts[i] > 0:
                dense.append(p)
        if not dense:
            return
        parts = [
            torch.zeros(p.numel(), dtype=p.dtype)
            if p.grad is None
            else p.grad.detach().reshape(-1) * float(rows)
            for p in dense
        ]
        flat = torch.cat(parts)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        start = 0
        for p in dense:
            n = p.numel()
            p.grad = (flat[start : start + n] / total).reshape(p.shape)
            start += n

    def sync(self, module: torch.nn.Module, parameters: bool = False) -> None:
        """Broadcast replica 0's buffers (and parameters) to every replica."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        # the persistent buffers (running statistics); constants need no copy
        state = module.state_dict(keep_vars=True)
        tensors = [b for name, b in module.named_buffers() if name in state]
        if parameters:
            tensors += list(module.parameters())
        with torch.no_grad():
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the replicas."""
        if self.world == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        total = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return [float(v) for v in total.tolist()]


__all__ = ["IntArray", "Replicas", "TorchReplicas", "shard_rows"]
