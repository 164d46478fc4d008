"""Model selection for a data-poor target, never on its test queries, in two steps.

1. **Regularisation on source-held-out data** (:func:`select_on_source`): a seeded share of the
   *source's* queries is held out; each regulariser setting (:data:`REGULARISERS`) is trained
   on everything else and scored by NDCG@10 on those source queries, which are plentiful.
2. **Target-specific choices by cross-validation over the target's few training queries**
   (:func:`select`): they are cut into ``folds`` folds (seeded, by query); each candidate (warm
   start or not, :data:`CANDIDATES`, with the regularisers of step 1) is trained on the source
   rows plus every other fold's target rows and scored on the held-out fold's target queries.

In both the best mean over the held-out queries wins (ties: the earlier candidate, the method's
default first); the caller then trains the winner on all the training rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import evaluate_run
from shopsearch.evaluate.suites.click_samples import ranked_lists
from shopsearch.ranking.samples import Samples

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Candidate:
    """One setting of a method: whether it warm-starts and its model's arguments."""

    name: str
    warm_start: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)


#: Regulariser settings tried on source-held-out data, per method: the default first. CDAN-W's
#: Wasserstein term needs ``min_rows`` rows of a domain in a mini-batch; a target with ~1% of
#: the rows has ~2 in a batch of 256, so every setting but the first lets it fire with 2.
REGULARISERS: dict[str, tuple[Candidate, ...]] = {
    "cdan-w": (
        Candidate("default"),
        Candidate("wasserstein-0.1", model_kwargs={"min_rows": 2}),
        Candidate("wasserstein-1", model_kwargs={"min_rows": 2, "wasserstein_weight": 1.0}),
        Candidate("no-difference", model_kwargs={"min_rows": 2, "difference_weight": 0.0}),
    ),
    "pgtl": (
        Candidate("default"),
        Candidate("prior-weight-0", model_kwargs={"prior_weight": 0.0}),
        Candidate("prior-weight-1", model_kwargs={"prior_weight": 1.0}),
    ),
}

#: Target-specific settings tried by cross-validation over the target's training queries.
CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    method: (Candidate("default"), Candidate("warm-start", warm_start=True))
    for method in REGULARISERS
}

#: ``train(samples, candidate) -> score(samples) -> F64``: trains a candidate, returns a scorer.
Trainer = Callable[[Samples, Candidate], Callable[[Samples], F64]]


@dataclass(frozen=True)
class Selection:
    """What cross-validation chose.

    Attributes:
        chosen: the winning candidate.
        scores: each candidate's mean NDCG@10 over the held-out target queries.
        folds: folds used.
    """

    chosen: Candidate
    scores: dict[str, float]
    folds: int


def _score(
    train: Samples,
    held_out: Sequence[npt.NDArray[np.bool_]],
    candidates: Sequence[Candidate],
    trainer: Trainer,
    gains: Mapping[str, Mapping[str, float]],
) -> dict[str, float]:
    """Each candidate's mean NDCG@10 over the queries of every held-out part, each part's
    candidate trained on the rows outside it."""
    requests = np.asarray(train.rows["request_id"].to_numpy(object))
    per_query: dict[str, list[float]] = {c.name: [] for c in candidates}
    for held in held_out:
        fit_part, held_part = train.subset(~held), train.subset(held)
        qrels = {r: dict(gains[r]) for r in {str(x) for x in requests[held]}}
        rows = held_part.rows.assign(product_id=held_part.rows["pid"])
        for candidate in candidates:
            score = trainer(fit_part, candidate)(held_part)
            evaluation = evaluate_run(
                ranked_lists(rows, score), qrels, metrics=("ndcg@10",), n_resamples=0
            )
            per_query[candidate.name].extend(evaluation.per_query["ndcg@10"].tolist())
    return {name: float(np.mean(values)) for name, values in per_query.items()}


def _best(candidates: Sequence[Candidate], means: dict[str, float], folds: int) -> Selection:
    best = max(means.values())
    return Selection(next(c for c in candidates if means[c.name] == best), means, folds)


def select(
    train: Samples,
    is_target: npt.NDArray[np.bool_],
    candidates: Sequence[Candidate],
    trainer: Trainer,
    gains: Mapping[str, Mapping[str, float]],
    folds: int,
    seed: int,
) -> Selection:
    """Cross-validate ``candidates`` over the target queries of ``train`` (step 2 of the
    module docstring); ``gains``: request id → product id → gain of the target training rows.

    Raises:
        InvalidInputError: fewer than 2 folds, or fewer target queries than folds.
    """
    requests = np.asarray(train.rows["request_id"].to_numpy(object))
    queries = sorted({str(r) for r in requests[is_target]})
    if folds < 2 or len(queries) < folds:
        raise InvalidInputError(
            f"{folds} folds over {len(queries)} target training queries: use at least 2 folds "
            "and no more folds than queries"
        )
    order = np.random.default_rng(seed).permutation(len(queries))
    fold_of = {queries[q]: i % folds for i, q in enumerate(order.tolist())}
    fold = np.array([fold_of.get(str(r), -1) for r in requests])
    parts = [is_target & (fold == k) for k in range(folds)]
    return _best(candidates, _score(train, parts, candidates, trainer, gains), folds)


def select_on_source(
    train: Samples,
    is_source: npt.NDArray[np.bool_],
    candidates: Sequence[Candidate],
    trainer: Trainer,
    gains: Mapping[str, Mapping[str, float]],
    share: float,
    seed: int,
    most: int = 1000,
) -> Selection:
    """Choose among ``candidates`` on a held-out ``share`` of the source's queries (at most
    ``most`` of them; step 1 of the module docstring); ``gains`` of the source rows.

    Raises:
        InvalidInputError: a share outside (0, 1) or too few source queries to hold one out.
    """
    requests = np.asarray(train.rows["request_id"].to_numpy(object))
    queries = sorted({str(r) for r in requests[is_source]})
    n = min(most, round(share * len(queries)))
    if not 0.0 < share < 1.0 or n < 1 or n >= len(queries):
        raise InvalidInputError(
            f"cannot hold out {share:g} of {len(queries)} source queries; use a share in (0, 1)"
        )
    held = set(np.random.default_rng(seed).choice(queries, size=n, replace=False).tolist())
    part = is_source & np.isin(requests, list(held))
    return _best(candidates, _score(train, [part], candidates, trainer, gains), 1)


__all__ = [
    "CANDIDATES",
    "REGULARISERS",
    "Candidate",
    "Selection",
    "Trainer",
    "select",
    "select_on_source",
]
