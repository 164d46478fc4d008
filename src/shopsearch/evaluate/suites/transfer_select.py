"""Model selection for a data-poor target by cross-validation over its few training queries.

A transfer method's settings (warm start, regulariser weights) cannot be chosen on the target's
test queries, and a by-request validation split of the pooled rows is mostly source rows. Here
the target's training queries are cut into ``folds`` folds (seeded, by query); each candidate is
trained on the source rows plus every other fold's target rows and scored by NDCG@10 on the
held-out fold's target queries; the candidate with the best mean over all held-out queries wins
(ties: the earlier candidate, the method's default first). The caller then trains the winner on
all the training rows.
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


#: The settings tried per method: the default first.
CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    # A target domain with ~1% of the rows has ~2 rows in a mini-batch of 256, below CDAN-W's
    # ``min_rows`` (16): its Wasserstein term then never fires. ``min-rows-2`` lets it fire.
    "cdan-w": (
        Candidate("default"),
        Candidate("warm-start", warm_start=True),
        Candidate("min-rows-2", model_kwargs={"min_rows": 2}),
        Candidate("warm-start+min-rows-2", warm_start=True, model_kwargs={"min_rows": 2}),
    ),
    "pgtl": (
        Candidate("default"),
        Candidate("warm-start", warm_start=True),
        Candidate("prior-weight-0", model_kwargs={"prior_weight": 0.0}),
    ),
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


def select(
    train: Samples,
    is_target: npt.NDArray[np.bool_],
    candidates: Sequence[Candidate],
    trainer: Trainer,
    gains: Mapping[str, Mapping[str, float]],
    folds: int,
    seed: int,
) -> Selection:
    """Cross-validate ``candidates`` over the target queries of ``train`` (see the module
    docstring); ``gains``: request id → product id → gain of the target training rows.

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
    per_query: dict[str, list[float]] = {c.name: [] for c in candidates}
    for k in range(folds):
        held = is_target & (fold == k)
        fit_part, held_part = train.subset(~held), train.subset(held)
        qrels = {r: dict(gains[r]) for r in {str(x) for x in requests[held]}}
        rows = held_part.rows.assign(product_id=held_part.rows["pid"])
        for candidate in candidates:
            score = trainer(fit_part, candidate)(held_part)
            run = ranked_lists(rows, score)
            evaluation = evaluate_run(run, qrels, metrics=("ndcg@10",), n_resamples=0)
            per_query[candidate.name].extend(evaluation.per_query["ndcg@10"].tolist())
    means = {name: float(np.mean(values)) for name, values in per_query.items()}
    best = max(means.values())
    chosen = next(c for c in candidates if means[c.name] == best)
    return Selection(chosen, means, folds)


__all__ = ["CANDIDATES", "Candidate", "Selection", "Trainer", "select"]
