"""The ranking model at serving: re-score the top candidates and sort them by value.

Features come from :class:`~shopsearch.ranking.serving.ServingFeatures` (a snapshot of the
workspace logs taken when the stage loads, with every product's encoder ids precomputed; the
user's behaviour sequence when a user id is given), ``dense_sim`` from the retrieval source whose
vectors are in the space the model was trained with (the query vector retrieval just computed in
that space is reused), the model from the bundle's ``ranking/`` folder, ``relevance`` (when the
model was trained with it) from the pipeline's relevance stage, and the value from the
``[ranking]`` settings. Candidates below the re-scored depth keep their order after the
re-scored ones. The pipeline's ``rank`` stage (:mod:`shopsearch.pipeline.stages.rank`) runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from shopsearch.catalog.candidates import Candidates
from shopsearch.config import RankingSettings
from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import RankingBatch
from shopsearch.ranking.dense_feature import DenseSimilarity, VectorSource
from shopsearch.ranking.feature_names import RELEVANCE
from shopsearch.ranking.ranker import Ranker
from shopsearch.ranking.serving import ServingFeatures
from shopsearch.ranking.value import RankingValue
from shopsearch.store.workspace import Workspace

F64 = npt.NDArray[np.float64]
#: Ranking features an earlier pipeline stage computes per candidate (not the log snapshot).
PIPELINE_FEATURES: tuple[str, ...] = (RELEVANCE,)


@dataclass
class Ranked:
    """The ranking of one request's candidates.

    Attributes:
        order: the new order, as indices into the candidates given to :meth:`RankingStage.rank`
            (the re-scored ones by value, then the rest in their order).
        scores: the final score of each candidate in ``order`` (decreasing).
        columns: ``click``, ``cart``, ``purchase`` and ``value`` per *given* candidate (``nan``
            beyond the re-scored depth).
    """

    order: npt.NDArray[np.intp]
    scores: npt.NDArray[np.float32]
    columns: dict[str, F64]

    def candidates(self, given: Candidates) -> Candidates:
        """``given`` in the new order with the new scores."""
        return Candidates(
            keys=[given.keys[i] for i in self.order.tolist()],
            scores=self.scores,
            total=given.total,
            sources={name: s[self.order] for name, s in given.sources.items()},
        )


class RankingStage:
    """A trained ranker plus the log snapshot its features need.

    Args:
        ranker: the trained ranker.
        features: the serving feature snapshot.
        value: how task outputs combine into the sort value.
        vectors: the source of the ``dense_sim`` vectors (needed when the model reads it; its
            vector space must be the one the model was trained with).

    Raises:
        InvalidInputError: when the model reads ``dense_sim`` and no source, or a source of
            another vector space, is given.
    """

    def __init__(
        self,
        ranker: Ranker,
        features: ServingFeatures,
        value: RankingValue,
        vectors: VectorSource | None = None,
    ) -> None:
        self.ranker = ranker
        self.features = features
        self.value = value
        self.similarity: DenseSimilarity | None = None
        space = ranker.dense_space
        if space is not None:
            if vectors is None:
                raise InvalidInputError(
                    "the ranking model reads the dense similarity, but the engine has no source "
                    f"of its vectors ({space or 'the dense source'}); add that source to the "
                    "bundle or retrain the ranking stage with 'shopsearch train --stage ranking'"
                )
            if space and vectors.vector_space != space:
                raise InvalidInputError(
                    f"the ranking model was trained with dense_sim in vector space {space!r}, "
                    f"but was given vectors of {vectors.vector_space!r}; retrain the ranking "
                    "stage with 'shopsearch train --stage ranking'"
                )
            self.similarity = DenseSimilarity(vectors)
        features.bind(ranker.encoder)

    @classmethod
    def load(
        cls,
        folder: Path,
        workspace: Workspace,
        settings: RankingSettings,
        vectors: Callable[[str], VectorSource | None] | None = None,
    ) -> RankingStage:
        """The stage of a bundle's ``ranking/`` folder over ``workspace``'s logs.

        Args:
            folder: the saved ranker.
            workspace: whose logs the serving features read.
            settings: the value's weights.
            vectors: finds the source of a vector space (``""``: the bundle's ``dense``
                source, for models saved before spaces were recorded).
        """
        value = RankingValue(settings.value, settings.w_click, settings.w_cart, settings.w_purchase)
        ranker = Ranker.load(folder, settings.runtime, max(1, torch.get_num_threads()))
        space = ranker.dense_space
        source = vectors(space) if space is not None and vectors is not None else None
        return cls(ranker, ServingFeatures.from_workspace(workspace), value, source)

    @property
    def pipeline_features(self) -> tuple[str, ...]:
        """The features the model reads that an earlier pipeline stage computes (``relevance``
        from the relevance stage), to be passed to :meth:`rank` as ``given``."""
        return tuple(n for n in self.ranker.encoder.dense_names_ if n in PIPELINE_FEATURES)

    @property
    def vector_space(self) -> str | None:
        """The vector space whose query vector :meth:`rank` wants (``None``: none)."""
        return None if self.similarity is None else self.similarity.space

    def rank(
        self,
        fused: Candidates,
        query: str,
        user_id: str | None,
        depth: int,
        query_vector: npt.NDArray[np.float32] | None = None,
        predicted_leaf: str = "",
        given: Mapping[str, F64] | None = None,
    ) -> Ranked:
        """Re-score the first ``depth`` candidates and sort them by value (best first).

        ``query_vector``: the query in :attr:`vector_space`, when retrieval computed it;
        ``predicted_leaf``: the query's most likely category by query understanding, the
        ``query_leaf`` feature of a query the log never saw acted on; ``given``: features an
        earlier stage computed, one value per candidate of ``fused`` (see
        :attr:`pipeline_features`).
        """
        n = min(depth, len(fused))
        now = int(time.time() * 1e6)
        tasks = {t: np.full(len(fused), np.nan) for t in ("click", "cart", "purchase")}
        keys = fused.keys[:n]
        by_domain: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            by_domain.setdefault(key[0], []).append(i)
        similarity = self.similarity
        if similarity is not None and query_vector is not None:
            similarity = similarity.with_query_vector(query, query_vector)
        # Features per domain (each domain has its own tables), one model call for all.
        batches, prices, rows = [], [], []
        for domain, at in by_domain.items():
            idx = np.asarray(at, dtype=np.int64)
            ids = [keys[i][1] for i in at]
            part = {name: np.asarray(v, np.float64)[idx] for name, v in (given or {}).items()}
            batch, price = self.features.batch(
                self.ranker.encoder, query, domain, ids, user_id, now, similarity,
                predicted_leaf, part,
            )  # fmt: skip
            batches.append(batch)
            prices.append(price)
            rows.append(idx)
        order_in = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        price = np.zeros(n)
        price[order_in] = np.concatenate(prices) if prices else np.zeros(0)
        if batches:
            scores = self.ranker.score_batch(RankingBatch.concat(batches))
            for task in tasks:
                tasks[task][order_in] = scores[task]
        value = self.value.score(
            tasks["click"][:n], tasks["cart"][:n], tasks["purchase"][:n], price
        )
        order = np.concatenate([np.argsort(-value, kind="stable"), np.arange(n, len(fused))])
        floor = float(value.min()) if n else 0.0
        rest = floor - 1.0 - np.arange(len(fused) - n, dtype=np.float64)
        new_scores = np.concatenate([value, rest])[order].astype(np.float32)
        columns = dict(tasks)
        columns["value"] = np.concatenate([value, np.full(len(fused) - n, np.nan)])
        return Ranked(order.astype(np.intp), new_scores, columns)


__all__ = ["PIPELINE_FEATURES", "Ranked", "RankingStage"]
