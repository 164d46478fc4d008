"""The data-parallel hook without a cluster: request shards and the one-replica identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.replicas import TorchReplicas, shard_rows


def test_shards_split_by_group_never_by_row() -> None:
    groups = np.array([5, 5, 1, 9, 9, 9, 1, 2, 7, 7])
    shards = [shard_rows(groups, rank, 3) for rank in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(len(groups)))
    owners = [{int(g) for g in groups[rows]} for rows in shards]
    assert all(a.isdisjoint(b) for i, a in enumerate(owners) for b in owners[i + 1 :])
    assert all(np.all(np.diff(rows) > 0) for rows in shards)  # rows keep their order
    np.testing.assert_array_equal(shard_rows(groups, 0, 1), np.arange(len(groups)))
    assert len(shard_rows(np.array([3, 3]), 1, 2)) == 0  # more replicas than requests


@pytest.mark.parametrize(("rank", "world"), [(0, 0), (2, 2), (-1, 3)])
def test_bad_rank_or_world_is_a_clear_error(rank: int, world: int) -> None:
    with pytest.raises(InvalidInputError, match="use world >= 1"):
        shard_rows(np.arange(4), rank, world)
    with pytest.raises(InvalidInputError, match="use world >= 1"):
        TorchReplicas(rank, world)


def test_one_replica_leaves_everything_untouched() -> None:
    one = TorchReplicas(0, 1)  # no process group is needed for one replica
    layer = torch.nn.Linear(3, 2)
    layer(torch.ones(4, 3)).sum().backward()  # type: ignore[no-untyped-call]
    assert layer.weight.grad is not None
    before = layer.weight.grad.clone()
    one.average_gradients(layer.parameters(), rows=4)
    one.sync(layer, parameters=True)
    assert torch.equal(layer.weight.grad, before)
    assert one.sum([1.5, 2.0]) == [1.5, 2.0]
    assert one.most(3) == 3
