"""Diversity re-ranking: PODM-MI (:mod:`.podm_mi`) and its baselines MMR (:mod:`.mmr`) and DPP
(:mod:`.dpp`), over the candidates' facet similarity (:mod:`.base`), learned from logged lists
(:mod:`.samples`)."""

from shopsearch.rerank.diversity.base import (
    FACETS,
    RERANKERS,
    DiversityReranker,
    Reranked,
    facet_similarity,
    load_reranker,
)

__all__ = [
    "FACETS",
    "RERANKERS",
    "DiversityReranker",
    "Reranked",
    "facet_similarity",
    "load_reranker",
]
