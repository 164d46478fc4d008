"""``baseline/dpp``: a determinantal point process by fast greedy MAP inference (Chen, Zhang
and Zhou, "Fast Greedy MAP Inference for Determinantal Point Process to Improve Recommendation
Diversity", NeurIPS 2018).

The kernel is ``L = diag(q) S diag(q)`` with the quality ``q_i = exp(alpha r_i)``, ``r`` the
ranking score scaled to [0, 1] within the list, ``alpha = theta / (2 (1 - theta))`` (the paper's
relevance/diversity trade-off ``theta``) and ``S`` the equal blend of the facet matrices
(positive semi-definite, :mod:`~.base`) plus ``jitter`` on the diagonal. Greedy MAP adds, one at
a time, the candidate with the largest gain in ``log det L_Y``, updating the Cholesky factor
incrementally (``O(n k)`` per step); when no candidate adds more than ``epsilon`` the rest follow
in ranked order. Nothing is learned; ``theta`` is a setting (``[rerank] dpp_theta``).
"""

from __future__ import annotations

import math

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
class DPPReranker(DiversityReranker):
    """DPP re-ranking by fast greedy MAP.

    Args:
        theta: relevance/diversity trade-off in [0, 1) (larger: more relevance).
        jitter: added to the similarity's diagonal (keeps duplicates' kernel non-singular).
        epsilon: least gain (the Cholesky pivot) at which greedy selection goes on.
    """

    name = "dpp"
    config_keys = ("theta", "jitter", "epsilon")

    def __init__(self, theta: float = 0.7, jitter: float = 0.1, epsilon: float = 1e-10) -> None:
        if not 0.0 <= theta < 1.0:
            raise InvalidInputError(f"theta={theta} is out of range; use 0 <= theta < 1")
        if jitter < 0.0 or epsilon <= 0.0:
            raise InvalidInputError(
                f"jitter={jitter}, epsilon={epsilon}: use jitter >= 0 and epsilon > 0"
            )
        self.theta = theta
        self.jitter = jitter
        self.epsilon = epsilon

    def fit(self, *args: object, **kwargs: object) -> DPPReranker:
        """Nothing to learn; returns ``self``."""
        return self

    def kernel(self, scores: F64, similarity: F64) -> F64:
        """The DPP kernel ``L`` of a list."""
        alpha = self.theta / (2.0 * (1.0 - self.theta))
        quality = np.exp(alpha * minmax(scores))
        sim = blend(similarity) + self.jitter * np.eye(len(scores))
        out: F64 = quality[:, None] * sim * quality[None, :]
        return out

    def _rerank(self, scores: F64, similarity: F64, user: str | None, k: int) -> Reranked:
        """The greedy MAP order of the first ``depth`` candidates (module docstring)."""
        n = len(scores)
        kernel = self.kernel(scores, similarity)
        factors = np.zeros((k, n))
        gains = np.diag(kernel).copy()
        picked: list[int] = []
        utility: list[float] = []
        best = int(np.argmax(gains))
        while True:
            picked.append(best)
            utility.append(math.log(max(float(gains[best]), 1e-300)))
            if len(picked) == k:
                break
            t = len(picked) - 1
            e = (kernel[best] - factors[:t].T @ factors[:t, best]) / math.sqrt(gains[best])
            factors[t] = e
            gains = gains - e**2
            gains[picked] = -np.inf
            best = int(np.argmax(gains))
            if gains[best] < self.epsilon:
                break
        return complete(picked, utility, n)


__all__ = ["DPPReranker"]
