"""The engine's ranking stage: re-score the top fused candidates and sort them by value.

Features come from :class:`~shopsearch.ranking.serving.ServingFeatures` (a snapshot of the
workspace logs taken when the stage loads, with every product's encoder ids precomputed; the
user's behaviour sequence when a user id is given), ``dense_sim`` from the engine's dense
retriever when the model reads it (the query vector the retriever just computed is reused), the
model from the bundle's ``ranking/`` folder, and the value from the ``[ranking]`` settings.
Candidates below the re-scored depth keep their order after the re-scored ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import Candidates
from shopsearch.config import RankingSettings
from shopsearch.errors import InvalidInputError
from shopsearch.ranking.dense_feature import DenseSimilarity
from shopsearch.ranking.feature_names import DENSE_SIM
from shopsearch.ranking.ranker import Ranker
from shopsearch.ranking.serving import ServingFeatures
from shopsearch.ranking.value import RankingValue
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.store.workspace import Workspace

F64 = npt.NDArray[np.float64]


@dataclass
class Ranked:
    """Candidates re-ordered by the ranking value, and per-stage scores aligned to them."""

    candidates: Candidates
    stages: dict[str, F64]


class RankingStage:
    """A trained ranker plus the log snapshot its features need.

    Args:
        ranker: the trained ranker.
        features: the serving feature snapshot.
        value: how task outputs combine into the sort value.
        dense: the engine's dense retriever (needed when the model reads ``dense_sim``).

    Raises:
        InvalidInputError: when the model reads ``dense_sim`` and no dense retriever is given.
    """

    def __init__(
        self,
        ranker: Ranker,
        features: ServingFeatures,
        value: RankingValue,
        dense: DenseRetriever | None = None,
    ) -> None:
        self.ranker = ranker
        self.features = features
        self.value = value
        self.similarity: DenseSimilarity | None = None
        if DENSE_SIM in ranker.encoder.dense_names_:
            if dense is None:
                raise InvalidInputError(
                    "the ranking model reads the dense similarity, but the engine has no dense "
                    "retriever; add 'dense' to [retrieval] sources or retrain the ranking stage"
                )
            self.similarity = DenseSimilarity(dense)
        features.bind(ranker.encoder)

    @classmethod
    def load(
        cls,
        folder: Path,
        workspace: Workspace,
        settings: RankingSettings,
        dense: DenseRetriever | None = None,
    ) -> RankingStage:
        """The stage of a bundle's ``ranking/`` folder over ``workspace``'s logs."""
        value = RankingValue(settings.value, settings.w_click, settings.w_cart, settings.w_purchase)
        return cls(Ranker.load(folder), ServingFeatures.from_workspace(workspace), value, dense)

    def rank(self, fused: Candidates, query: str, user_id: str | None, depth: int) -> Ranked:
        """Re-score the first ``depth`` candidates and sort them by value (best first)."""
        n = min(depth, len(fused))
        now = int(time.time() * 1e6)
        tasks = {t: np.full(len(fused), np.nan) for t in ("click", "cart", "purchase")}
        price = np.zeros(n)
        domains = [key[0] for key in fused.keys[:n]]
        for domain in dict.fromkeys(domains):
            idx = np.array([i for i, d in enumerate(domains) if d == domain], dtype=np.int64)
            ids = [fused.keys[i][1] for i in idx]
            batch, prices = self.features.batch(
                self.ranker.encoder, query, domain, ids, user_id, now, self.similarity
            )
            scores = self.ranker.score_batch(batch)
            for task in tasks:
                tasks[task][idx] = scores[task]
            price[idx] = prices
        value = self.value.score(
            tasks["click"][:n], tasks["cart"][:n], tasks["purchase"][:n], price
        )
        order = np.concatenate([np.argsort(-value, kind="stable"), np.arange(n, len(fused))])
        floor = float(value.min()) if n else 0.0
        rest = floor - 1.0 - np.arange(len(fused) - n, dtype=np.float64)
        new_scores = np.concatenate([value, rest])[order].astype(np.float32)
        stages = {"retrieval.fused": fused.scores.astype(np.float64)[order]}
        stages.update({f"ranking.{t}": v[order] for t, v in tasks.items()})
        stages["ranking.value"] = np.concatenate([value, np.full(len(fused) - n, np.nan)])[order]
        ranked = Candidates(
            keys=[fused.keys[i] for i in order],
            scores=new_scores,
            total=fused.total,
            sources={name: scores[order] for name, scores in fused.sources.items()},
        )
        return Ranked(ranked, stages)


__all__ = ["Ranked", "RankingStage"]
