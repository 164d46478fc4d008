"""Training of the MMSE two towers: the multi-grained objective and the loop over staged samples.

``loss = retrieval + rank_weight · ranking (+ symmetric_weight · swapped retrieval)``: the
retrieval loss is a softmax (InfoNCE) with temperature over in-batch and random negatives for
pairs at or above the positive stage (global comparison, :func:`retrieval_loss`); the ranking
loss is a margin hinge on pairs of the same query whose stages differ (local comparison,
:func:`ranking_loss`); the optional swapped term is SCI's symmetric alignment (SymmAligner): the
same retrieval loss with queries through the item tower and items through the query tower.
:func:`train` runs the epochs over a network of :mod:`shopsearch.retrieval.mmse_net`;
:class:`~shopsearch.retrieval.mmse.TwoTowerEncoder` calls it from ``fit`` and ``fine_tune``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shopsearch.errors import InvalidInputError
from shopsearch.progress import Progress
from shopsearch.replicas import Replicas, shard_rows
from shopsearch.retrieval.mmse_samples import IntArray, StagedSamples
from shopsearch.text.encoders import FloatMatrix
from shopsearch.text.hashed import Bags, HashedFeaturizer

if TYPE_CHECKING:
    import torch

#: ``transform(vectors, side)`` with side ``"query"`` or ``"item"``: applied before the losses.
Transform = Callable[["torch.Tensor", str], "torch.Tensor"]


def retrieval_loss(
    scores: torch.Tensor, positive: torch.Tensor, exclude: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Softmax cross-entropy of each query's positive among its candidates (global comparison).

    Args:
        scores: ``[queries, candidates]`` similarities.
        positive: ``[queries]`` column of each query's positive.
        exclude: ``[queries, candidates]`` True where a candidate must not count as a negative
            (another positive of the same query, or the same item again).
        temperature: divides the scores before the softmax.
    """
    import torch

    logits = (scores / temperature).masked_fill(exclude, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, positive)


def ranking_loss(higher: torch.Tensor, lower: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge ``max(0, margin - (higher - lower))`` over pairs (local comparison).

    Zero when every higher-stage item outscores its lower-stage partner by at least ``margin``.
    """
    return (margin - (higher - lower)).clamp(min=0).mean()


@dataclass(frozen=True)
class TrainSettings:
    """The hyper-parameters of :func:`train` (each is described on ``TwoTowerEncoder``).

    Attributes:
        temperature: softmax temperature of the retrieval loss.
        margin: margin of the ranking loss.
        rank_weight: weight of the ranking loss.
        random_negatives: random catalog items added to each batch as negatives.
        batch_size: positive pairs (and ranking pairs) per step.
        lr: learning rate of the towers and of extra parameters unless given otherwise.
        seed: random seed of the sampling.
        symmetric_weight: weight of the retrieval loss on swapped inputs (SCI); 0 leaves it out.
    """

    temperature: float
    margin: float
    rank_weight: float
    random_negatives: int
    batch_size: int
    lr: float
    seed: int
    symmetric_weight: float = 0.0


class Featurized:
    """Features of many texts: hashed ids per grain (flat ids + start offsets), and optionally
    one frozen sentence vector per text (the MiniLM head's input).

    Args:
        featurizer: the hashed featurizer of the towers.
        texts: the texts, in row order.
        dense: their frozen sentence vectors, or None without a MiniLM head.
    """

    def __init__(
        self, featurizer: HashedFeaturizer, texts: Sequence[str], dense: FloatMatrix | None
    ) -> None:
        bags = featurizer.featurize(texts)
        self.ids = [b.ids for b in bags]
        self.starts = [np.append(b.offsets, len(b.ids)) for b in bags]
        self.dense = dense

    def take(self, rows: IntArray) -> tuple[list[Bags], FloatMatrix | None]:
        """The bags and dense vectors of ``rows``."""
        return self._bags(rows), None if self.dense is None else self.dense[rows]

    def _bags(self, rows: IntArray) -> list[Bags]:
        out = []
        for ids, starts in zip(self.ids, self.starts, strict=True):
            lo, hi = starts[rows], starts[rows + 1]
            lengths = hi - lo
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            flat = np.concatenate([ids[a:b] for a, b in zip(lo, hi, strict=True)])
            out.append(Bags(flat.astype(np.int64), offsets))
        return out


class _Sides:
    """Fused (and optionally transformed) query and item vectors of featurized rows.

    ``tower`` picks the tower the rows go through: by default each text through its own
    (queries through the query tower, items through the item tower); SCI's swapped loss passes
    the other one. A transform is applied as the tower's output (``transform(vectors, tower)``).
    """

    def __init__(
        self, net: Any, queries: Featurized, items: Featurized, transform: Transform | None
    ) -> None:
        self.net = net
        self.queries = queries
        self.items = items
        self.transform = transform

    def _vectors(self, texts: Featurized, rows: IntArray, side: str) -> torch.Tensor:
        bags, dense = texts.take(rows)
        vectors: torch.Tensor = self.net.fused(self.net.tower(bags, dense, side))
        return vectors if self.transform is None else self.transform(vectors, side)

    def query(self, rows: IntArray, tower: str = "query") -> torch.Tensor:
        return self._vectors(self.queries, rows, tower)

    def item(self, rows: IntArray, tower: str = "item") -> torch.Tensor:
        return self._vectors(self.items, rows, tower)


def positive_rows(samples: StagedSamples, positive_stage: float) -> IntArray:
    """Positions of the triples at or above ``positive_stage``: the retrieval loss's positives.

    Raises:
        InvalidInputError: no pair reaches ``positive_stage``.
    """
    positives = np.flatnonzero(samples.stage >= positive_stage)
    if len(positives) == 0:
        raise InvalidInputError(
            f"no training pair has stage >= positive_stage={positive_stage}; lower it"
        )
    return positives


def train(
    net: Any,
    samples: StagedSamples,
    queries: Featurized,
    items: Featurized,
    positives: IntArray,
    epochs: int,
    settings: TrainSettings,
    extra: Sequence[torch.nn.Parameter] = (),
    transform: Transform | None = None,
    progress: Progress | None = None,
    extra_lr: float | None = None,
    tower_lr: float | None = None,
    replicas: Replicas | None = None,
) -> list[float]:
    """Train ``net`` on ``samples`` (retrieval + ranking loss); the mean loss of each epoch.

    Args:
        net: a network of :func:`~shopsearch.retrieval.mmse_net.two_tower_net`; only its
            parameters that require gradients are trained.
        samples: the staged triples.
        queries: the features of ``samples.queries``.
        items: the features of ``samples.items``.
        positives: the triples of the retrieval loss (:func:`positive_rows`).
        epochs: passes over ``positives``.
        settings: the losses' and the loop's hyper-parameters.
        extra: more parameters optimised with the towers (a transform's own).
        transform: applied to the vectors before the losses (see :data:`Transform`).
        progress: told after each epoch.
        extra_lr: learning rate of ``extra`` (``None``: ``settings.lr``).
        tower_lr: learning rate of the towers (``None``: ``settings.lr``).
        replicas: train as one data-parallel replica of these
            (:mod:`shopsearch.replicas`): on the positives and ranking pairs of its share of
            the queries, ``ceil(batch_size / world)`` positives per step, the gradients
            averaged across replicas; one replica trains exactly as a local run.
    """
    import torch

    higher, lower = _ranking_pairs(samples)
    rank = 0 if replicas is None else replicas.rank
    rng = np.random.default_rng(settings.seed + rank)
    size = settings.batch_size
    if replicas is not None and replicas.world > 1:
        positives = positives[_shard(samples, positives, replicas)]
        mine = _shard(samples, higher, replicas)
        higher, lower = higher[mine], lower[mine]
        size = max(1, math.ceil(size / replicas.world))
    # The hashed backbone's shared feature table takes sparse gradients: sparse Adam.
    table = [p for p in net.table.parameters() if p.requires_grad] if hasattr(net, "table") else []
    towers = tower_lr or settings.lr
    sparse = torch.optim.SparseAdam(table, lr=towers) if table else None
    others = [
        p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("table.")
    ]
    groups = [{"params": others, "lr": towers}] if others else []
    if extra:
        groups.append({"params": list(extra), "lr": extra_lr or settings.lr})
    dense = torch.optim.Adam(groups) if groups else None
    steps = max(1, len(positives) // size)
    trained: list[torch.nn.Parameter] = [*net.parameters(), *extra]
    if replicas is not None:
        steps = replicas.most(steps)
        replicas.sync(net, parameters=True)
    history = []
    for epoch in range(epochs):
        order = rng.permutation(positives)
        total, taken = 0.0, 0
        for step in range(steps):
            batch = order[step * size : (step + 1) * size]
            if dense is not None:
                dense.zero_grad()
            if sparse is not None:
                sparse.zero_grad()
            if len(batch):  # a replica with no positives left still joins the exchange
                pairs = rng.integers(0, len(higher), size=len(batch)) if len(higher) else None
                sides = _Sides(net, queries, items, transform)
                loss = _step_loss(sides, samples, batch, higher, lower, pairs, rng, settings)
                loss.backward()  # type: ignore[no-untyped-call]
                total, taken = total + float(loss.detach()), taken + 1
            if replicas is not None:
                replicas.average_gradients(trained, len(batch))
            if dense is not None:
                dense.step()
            if sparse is not None:
                sparse.step()  # type: ignore[no-untyped-call]
            if replicas is not None:
                replicas.sync(net)
        sums = [total, float(taken)]
        sums = sums if replicas is None else replicas.sum(sums)
        history.append(sums[0] / max(sums[1], 1.0))
        if progress is not None:
            progress(epoch + 1, epochs)
    return history


def _shard(samples: StagedSamples, rows: IntArray, replicas: Replicas) -> IntArray:
    """Positions in ``rows`` (triples) of this replica's share of the queries."""
    return shard_rows(samples.query_index[rows], replicas.rank, replicas.world)


def _step_loss(
    sides: _Sides,
    samples: StagedSamples,
    batch: IntArray,
    higher: IntArray,
    lower: IntArray,
    pairs: IntArray | None,
    rng: np.random.Generator,
    settings: TrainSettings,
) -> torch.Tensor:
    """Retrieval loss over in-batch + random negatives, plus the weighted ranking loss, plus
    (``symmetric_weight > 0``) the weighted retrieval loss on swapped inputs: the same query and
    candidate rows, positives, exclusions and temperature, with the queries through the item
    tower and the candidates through the query tower. The ranking loss is not swapped."""
    import torch

    q_rows = samples.query_index[batch]
    i_rows = samples.item_index[batch]
    randoms = rng.integers(0, len(samples.items), size=settings.random_negatives)
    candidates = np.concatenate([i_rows, randoms])
    q = sides.query(q_rows)
    i = sides.item(candidates)
    scores = q @ i.T
    same_item = candidates[None, :] == i_rows[:, None]
    same_query = np.zeros_like(same_item)
    same_query[:, : len(batch)] = q_rows[None, :] == q_rows[:, None]
    exclude = same_item | same_query
    exclude[np.arange(len(batch)), np.arange(len(batch))] = False
    positive = torch.arange(len(batch))
    excluded = torch.from_numpy(exclude)
    loss = retrieval_loss(scores, positive, excluded, settings.temperature)
    if settings.symmetric_weight > 0:
        swapped = sides.query(q_rows, "item") @ sides.item(candidates, "query").T
        loss = loss + settings.symmetric_weight * retrieval_loss(
            swapped, positive, excluded, settings.temperature
        )
    if pairs is not None and settings.rank_weight > 0:
        pq = sides.query(samples.query_index[higher[pairs]])
        ph = sides.item(samples.item_index[higher[pairs]])
        pl = sides.item(samples.item_index[lower[pairs]])
        loss = loss + settings.rank_weight * ranking_loss(
            (pq * ph).sum(-1), (pq * pl).sum(-1), settings.margin
        )
    return loss


def _ranking_pairs(samples: StagedSamples) -> tuple[IntArray, IntArray]:
    """All (higher, lower) triple positions of the same query with different stages."""
    order = np.lexsort((samples.stage, samples.query_index))
    bounds = np.flatnonzero(np.diff(samples.query_index[order])) + 1
    higher: list[int] = []
    lower: list[int] = []
    for group in np.split(order, bounds):
        stages = samples.stage[group]
        for a in range(len(group)):
            for b in range(a):
                if stages[a] > stages[b]:
                    higher.append(int(group[a]))
                    lower.append(int(group[b]))
    return np.asarray(higher, np.int64), np.asarray(lower, np.int64)
