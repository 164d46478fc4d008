"""``baseline/mmr``: maximal marginal relevance (Carbonell and Goldstein, 1998).

Greedily places the candidate with the largest ``lam * relevance - (1 - lam) * max similarity
to the candidates already placed``; relevance is the ranking score scaled to [0, 1] within the
list, similarity the equal blend of the facet matrices (:func:`~.base.blend`). Nothing is
learned; ``lam`` is a setting (``[rerank] mmr_lambda``).
"""

from __future__ import annotations

import numpy as np

from shopsearch.errors import InvalidInputError
from shopsearch.rerank.diversity.base import (
    F64,
    RERANKERS,
    DiversityReranker,
    Reranked,
    blend,
    complete,
    minmax,
)


@RERANKERS.register()
class MMRReranker(DiversityReranker):
    """Maximal marginal relevance.

    Args:
        lam: weight of relevance against redundancy, in [0, 1] (1: the ranked order).
    """

    name = "mmr"
    config_keys = ("lam",)

    def __init__(self, lam: float = 0.7) -> None:
        if not 0.0 <= lam <= 1.0:
            raise InvalidInputError(f"lam={lam} is out of range; use 0 <= lam <= 1")
        self.lam = lam

    def fit(self, *args: object, **kwargs: object) -> MMRReranker:
        """Nothing to learn; returns ``self``."""
        return self

    def _rerank(self, scores: F64, similarity: F64, user: str | None, k: int) -> Reranked:
        """The MMR order of the first ``depth`` candidates (see the module docstring)."""
        n = len(scores)
        relevance = minmax(scores)
        sim = blend(similarity)
        redundancy = np.zeros(n)
        free = np.ones(n, dtype=bool)
        picked: list[int] = []
        utility: list[float] = []
        for step in range(k):
            value = self.lam * relevance - (1.0 - self.lam) * (redundancy if step else 0.0)
            value = np.where(free, value, -np.inf)
            best = int(np.argmax(value))
            picked.append(best)
            utility.append(float(value[best]))
            free[best] = False
            redundancy = np.maximum(redundancy, sim[:, best])
        return complete(picked, utility, n)


__all__ = ["MMRReranker"]
