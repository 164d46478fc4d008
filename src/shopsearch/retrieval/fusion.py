"""Fusion of candidate lists from several sources into one ranking.

Two methods:

* :func:`reciprocal_rank_fusion` (Cormack et al., 2009): ``score = Σ_s 1 / (c + rank_s)``; needs
  no training and ignores score scales.
* :class:`WeightedScoreFusion`: each source's scores are min-max normalised per query to [0, 1]
  (a product a source did not return gets 0), then ``score = Σ_s w_s · norm_s``. The weights are
  fitted on training judgments by a grid search over the weight simplex that maximises the mean
  NDCG@10 of the training queries; without judgments they stay equal.

Both keep every source's raw score for each fused candidate (``Candidates.sources``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import Candidates, ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Union:
    """The candidates of every source: ``keys`` in first-seen order, each source's raw score
    per key (``sources``, nan if absent) and where each source's ranked keys are (``at``)."""

    keys: list[ProductKey]
    sources: dict[str, FloatArray]
    at: dict[str, npt.NDArray[np.intp]]


def _union(lists: Mapping[str, Candidates]) -> _Union:
    position: dict[ProductKey, int] = {}
    at: dict[str, npt.NDArray[np.intp]] = {}
    for name, cands in lists.items():
        place = position.setdefault  # one dict operation per key: its union index
        at[name] = np.array([place(key, len(position)) for key in cands.keys], dtype=np.intp)
    sources: dict[str, FloatArray] = {}
    for name, cands in lists.items():
        column = np.full(len(position), np.nan, dtype=np.float32)
        column[at[name]] = cands.scores
        sources[name] = column
    return _Union(list(position), sources, at)


def _top(union: _Union, scores: FloatArray, k: int, total: int | None) -> Candidates:
    order = np.argsort(-scores, kind="stable")[:k]
    keys = union.keys
    return Candidates(
        keys=[keys[i] for i in order.tolist()],
        scores=scores[order].astype(np.float32),
        total=total,
        sources={name: column[order] for name, column in union.sources.items()},
    )


def _total(lists: Mapping[str, Candidates], n_union: int) -> int | None:
    totals = [c.total for c in lists.values() if c.total is not None]
    return max([*totals, n_union]) if totals else n_union


def reciprocal_rank_fusion(
    lists: Mapping[str, Candidates], k: int, constant: float = 60.0
) -> Candidates:
    """Fuse ranked lists by reciprocal rank: ``Σ_s 1 / (constant + rank_s)`` (ranks from 1)."""
    if constant <= 0:
        raise InvalidInputError(f"constant={constant} is not allowed; use a constant > 0")
    union = _union(lists)
    fused = np.zeros(len(union.keys), dtype=np.float64)
    for at in union.at.values():
        # a source lists each key once, so no index repeats within one assignment
        fused[at] += 1.0 / (constant + np.arange(1, len(at) + 1, dtype=np.float64))
    return _top(union, fused.astype(np.float32), k, _total(lists, len(union.keys)))


def minmax(scores: FloatArray) -> FloatArray:
    """Min-max normalise present scores to [0, 1]; absent (nan) scores become 0."""
    present = ~np.isnan(scores)
    out = np.zeros_like(scores)
    if present.any():
        low, high = scores[present].min(), scores[present].max()
        out[present] = (scores[present] - low) / (high - low) if high > low else 1.0
    return out


def _ndcg10(scores: FloatArray, gains: FloatArray, ideal: float) -> float:
    # Ties are broken pessimistically (lower gain first) so that fitting rewards weights that
    # separate relevant from irrelevant products, not an accident of list order.
    order = np.lexsort((gains, -scores))[:10]
    discounts = 1.0 / np.log2(np.arange(2, len(order) + 2))
    return float((gains[order] * discounts).sum() / ideal) if ideal > 0 else 0.0


def _ideal_dcg(grades: Sequence[float]) -> float:
    top = np.sort(np.asarray(grades, dtype=np.float64))[::-1][:10]
    return float((top / np.log2(np.arange(2, len(top) + 2))).sum())


class WeightedScoreFusion:
    """Weighted sum of per-query min-max normalised source scores.

    Args:
        sources: the source names, in a fixed order.
        grid_steps: the weight grid resolution used by :meth:`fit` (weights are multiples of
            ``1 / grid_steps`` summing to 1).
    """

    config_keys = ("sources", "grid_steps")

    def __init__(self, sources: Sequence[str], grid_steps: int = 20) -> None:
        if not sources:
            raise InvalidInputError("sources is empty; give at least one source name")
        if grid_steps < 1:
            raise InvalidInputError(f"grid_steps={grid_steps} is not allowed; use >= 1")
        self.sources = list(sources)
        self.grid_steps = grid_steps
        self.weights_: dict[str, float] = {s: 1.0 / len(self.sources) for s in self.sources}

    def fuse(self, lists: Mapping[str, Candidates], k: int) -> Candidates:
        """Fuse one query's candidate lists into the top ``k``."""
        missing = [s for s in self.sources if s not in lists]
        if missing:
            raise InvalidInputError(f"no candidates from source(s) {', '.join(missing)}")
        union = _union({s: lists[s] for s in self.sources})
        fused = np.zeros(len(union.keys), dtype=np.float32)
        for name in self.sources:
            fused += np.float32(self.weights_[name]) * minmax(union.sources[name])
        return _top(union, fused, k, _total(lists, len(union.keys)))

    def _grid(self) -> list[tuple[float, ...]]:
        n, steps = len(self.sources), self.grid_steps
        return [
            tuple(c / steps for c in combo)
            for combo in itertools.product(range(steps + 1), repeat=n)
            if sum(combo) == steps
        ]

    def fit(
        self,
        lists_per_query: Sequence[Mapping[str, Candidates]],
        judgments: Sequence[Mapping[ProductKey, float]],
    ) -> Self:
        """Choose the weights that maximise mean NDCG@10 over training queries.

        Args:
            lists_per_query: each training query's candidate lists by source.
            judgments: each training query's graded judgments (product key → grade).
        """
        if len(lists_per_query) != len(judgments):
            raise InvalidInputError(
                f"{len(lists_per_query)} candidate sets but {len(judgments)} judgment sets; "
                "give one judgment set per query"
            )
        prepared = []
        for lists, qrels in zip(lists_per_query, judgments, strict=True):
            ideal = _ideal_dcg([g for g in qrels.values() if g > 0])
            if ideal <= 0:
                continue
            union = _union({s: lists[s] for s in self.sources})
            matrix = np.stack([minmax(union.sources[s]) for s in self.sources], axis=1)
            gains = np.array(
                [max(qrels.get(key, 0.0), 0.0) for key in union.keys], dtype=np.float32
            )
            prepared.append((matrix, gains, ideal))
        if not prepared:
            raise NotFittedError("no training query has a relevant judged candidate; cannot fit")
        best, best_score = self._grid()[0], -1.0
        for weights in self._grid():
            w = np.asarray(weights, dtype=np.float32)
            score = float(np.mean([_ndcg10(m @ w, g, i) for m, g, i in prepared]))
            if score > best_score + 1e-12:
                best, best_score = weights, score
        self.weights_ = dict(zip(self.sources, best, strict=True))
        self.train_ndcg10_ = best_score
        return self
