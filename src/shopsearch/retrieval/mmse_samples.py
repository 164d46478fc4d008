"""Training samples of the MMSE two-tower encoder: (query, item, stage) triples.

Paper: MMSE's multi-stage samples (:mod:`shopsearch.retrieval.mmse`). A training pair carries a
*stage*, higher is better: from the event log, purchased 3 > added to cart 2.5 > clicked 2 >
shown-unclicked 1 (:meth:`StagedSamples.from_events`); from graded judgments, the grade
(:meth:`StagedSamples.from_judgments`). Random catalog items are the lowest stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shopsearch.catalog.candidates import ProductKey

IntArray = npt.NDArray[np.int64]

#: Stage of each logged interaction kind; a shown product without one is at stage 1.
EVENT_STAGES: dict[str, float] = {"click": 2.0, "add_to_cart": 2.5, "purchase": 3.0}


def furthest_stages(interactions: pa.Table) -> dict[tuple[str, str], float]:
    """``(request id, product id)`` → the furthest stage an interaction of that request reached
    for that product (:data:`EVENT_STAGES`; an unknown kind, or a shown product, is 1)."""
    reached: dict[tuple[str, str], float] = {}
    for rid, pid, kind in zip(
        interactions.column("request_id").to_pylist(),
        interactions.column("product_id").to_pylist(),
        interactions.column("kind").to_pylist(),
        strict=True,
    ):
        key = (rid, pid)
        reached[key] = max(reached.get(key, 1.0), EVENT_STAGES.get(kind, 1.0))
    return reached


@dataclass(frozen=True)
class StagedSamples:
    """Training data: (query, item, stage) triples over lists of query and item texts.

    Attributes:
        queries: query texts.
        items: item texts (the catalog: random negatives are drawn from all of them).
        query_index: per triple, its query's position in ``queries``.
        item_index: per triple, its item's position in ``items``.
        stage: per triple, how far the item went (higher is better).
    """

    queries: list[str]
    items: list[str]
    query_index: IntArray
    item_index: IntArray
    stage: npt.NDArray[np.float32]

    @classmethod
    def from_judgments(
        cls,
        qrels: Mapping[str, Mapping[ProductKey, float]],
        item_texts: Mapping[ProductKey, str],
    ) -> StagedSamples:
        """Graded judgments as stages (the grade is the stage); unknown products are skipped.

        Args:
            qrels: query → product key → grade.
            item_texts: product key → item text, for every catalog product.
        """
        keys = list(item_texts)
        row = {key: i for i, key in enumerate(keys)}
        queries: list[str] = []
        qi: list[int] = []
        ii: list[int] = []
        stages: list[float] = []
        for query, judged in qrels.items():
            known = [(row[k], g) for k, g in judged.items() if k in row]
            if not known:
                continue
            queries.append(query)
            for item, grade in known:
                qi.append(len(queries) - 1)
                ii.append(item)
                stages.append(grade)
        return cls(
            queries,
            [item_texts[k] for k in keys],
            np.asarray(qi, np.int64),
            np.asarray(ii, np.int64),
            np.asarray(stages, np.float32),
        )

    @classmethod
    def from_events(
        cls,
        requests: pa.Table,
        impressions: pa.Table,
        interactions: pa.Table,
        item_texts: Mapping[ProductKey, str],
    ) -> StagedSamples:
        """The event log as stages: purchased 3 > added to cart 2.5 > clicked 2 > shown 1.

        Each (query, product) pair shown in a logged request gets the furthest stage it reached
        in any of its requests; pairs whose product is not in ``item_texts`` are skipped.

        Args:
            requests: the workspace ``requests`` table (request id, domain, query).
            impressions: the ``impressions`` table (request id, product id).
            interactions: the ``interactions`` table (request id, product id, kind).
            item_texts: product key → item text, for every catalog product.
        """
        request = {
            rid: (domain, query)
            for rid, domain, query in zip(
                requests.column("request_id").to_pylist(),
                requests.column("domain").to_pylist(),
                requests.column("query").to_pylist(),
                strict=True,
            )
        }
        reached = furthest_stages(interactions)
        best: dict[str, dict[ProductKey, float]] = {}
        for rid, pid in zip(
            impressions.column("request_id").to_pylist(),
            impressions.column("product_id").to_pylist(),
            strict=True,
        ):
            if rid not in request:
                continue
            domain, query = request[rid]
            stage = reached.get((rid, pid), 1.0)
            judged = best.setdefault(query, {})
            judged[(domain, pid)] = max(judged.get((domain, pid), 0.0), stage)
        return cls.from_judgments(best, item_texts)
