"""GenRec's hybrid reward: a logged reward model times a relevance gate.

The **reward model** is a logistic regression on logged impressions (shown → clicked or
better), so it learns from the search log only, never from a simulator's truth. Its features
for a (query, product) pair are: the MiniLM cosine of query and product, the share of the
query's words found in the product text, and ``log(1 + clicks of the product before then)``
(:class:`PastClicks`). The **relevance gate** is 1 when the cosine is at least a threshold
(e.g. the dense source's calibrated noise level) and 0 otherwise, so a popular but unrelated
product earns nothing however high the model scores it: GenRec's guard against reward
hacking. [U4] The paper's dense reward model is a production ranker and its gate's form is not
public; these are our stand-ins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Self

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError, NotFittedError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: The reward model's features, in column order.
FEATURES = ("cos", "overlap", "log_past_clicks")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> set[str]:
    """Lower-cased alphanumeric words of a text."""
    return set(_WORD.findall(text.lower()))


def word_overlaps(queries: Sequence[str], texts: Sequence[str]) -> F64:
    """Per pair, the share of the query's words that occur in the text (0 for no words)."""
    out = np.zeros(len(queries))
    for i, (query, text) in enumerate(zip(queries, texts, strict=True)):
        q = words(query)
        out[i] = len(q & words(text)) / len(q) if q else 0.0
    return out


class PastClicks:
    """How often each product was clicked (or better) before a given time.

    Args:
        rows: the product row of each logged click.
        times: its time (any increasing integer unit, e.g. microseconds).
    """

    def __init__(self, rows: npt.ArrayLike, times: npt.ArrayLike) -> None:
        r, t = np.asarray(rows, np.int64), np.asarray(times, np.int64)
        if r.shape != t.shape:
            raise InvalidInputError("give one time per clicked row")
        order = np.lexsort((t, r))
        self._rows, self._times = r[order], t[order]

    def before(self, rows: npt.ArrayLike, times: npt.ArrayLike) -> I64:
        """Clicks of ``rows[i]`` strictly before ``times[i]``."""
        r, t = np.asarray(rows, np.int64), np.asarray(times, np.int64)
        start = np.searchsorted(self._rows, r, side="left")
        stop = np.searchsorted(self._rows, r, side="right")
        out = np.zeros(len(r), np.int64)
        for i in np.flatnonzero(stop > start).tolist():
            out[i] = np.searchsorted(self._times[start[i] : stop[i]], t[i], side="left")
        return out


def reward_features(cos: npt.ArrayLike, overlap: npt.ArrayLike, past: npt.ArrayLike) -> F64:
    """``[n, 3]`` feature rows (:data:`FEATURES`)."""
    return np.stack(
        [
            np.asarray(cos, np.float64),
            np.asarray(overlap, np.float64),
            np.log1p(np.asarray(past, np.float64)),
        ],
        axis=1,
    )


class LoggedRewardModel:
    """Logistic regression of "clicked" on standardised features (Newton's method, L2).

    Args:
        l2: ridge penalty on the (standardised) weights.
        iterations: most Newton steps.
    """

    def __init__(self, l2: float = 1e-3, iterations: int = 30) -> None:
        self.l2, self.iterations = l2, iterations

    def fit(self, features: npt.ArrayLike, clicked: npt.ArrayLike) -> Self:
        """Fit on impressions (``clicked``: 1 for clicked or better, 0 for shown only).

        Raises:
            InvalidInputError: shapes that do not match, or labels of one class only.
        """
        x = np.asarray(features, np.float64)
        y = np.asarray(clicked, np.float64)
        if x.ndim != 2 or y.shape != (len(x),) or not 0 < y.sum() < len(y):
            raise InvalidInputError(
                "the reward model needs [n, features] rows and labels with both clicked and "
                "unclicked impressions"
            )
        self.mean_ = x.mean(0)
        self.scale_ = np.where(x.std(0) > 0, x.std(0), 1.0)
        z = np.column_stack([np.ones(len(x)), (x - self.mean_) / self.scale_])
        w = np.zeros(z.shape[1])
        w[0] = np.log(y.mean() / (1 - y.mean()))
        penalty = self.l2 * len(x) * np.diag([0.0] + [1.0] * x.shape[1])
        for _ in range(self.iterations):
            p = 1 / (1 + np.exp(-z @ w))
            gradient = z.T @ (p - y) + penalty @ w
            hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty
            delta = np.linalg.solve(hessian, gradient)
            w -= delta
            if np.abs(delta).max() < 1e-8:
                break
        self.weights_ = w
        return self

    def predict(self, features: npt.ArrayLike) -> F64:
        """Click probability of each feature row.

        Raises:
            NotFittedError: before :meth:`fit`.
        """
        if not hasattr(self, "weights_"):
            raise NotFittedError("fit the reward model on logged impressions first")
        x = (np.asarray(features, np.float64) - self.mean_) / self.scale_
        out: F64 = 1 / (1 + np.exp(-(self.weights_[0] + x @ self.weights_[1:])))
        return out

    def coefficients(self) -> dict[str, float]:
        """The intercept and per-feature weights (on standardised features)."""
        names = ("intercept", *FEATURES)
        return {n: float(v) for n, v in zip(names, self.weights_, strict=True)}


def relevance_gate(cos: npt.ArrayLike, threshold: float) -> F64:
    """1 where the query–product cosine reaches ``threshold``, else 0."""
    return (np.asarray(cos, np.float64) >= threshold).astype(np.float64)


def hybrid_reward(
    model: LoggedRewardModel, features: npt.ArrayLike, threshold: float
) -> F64:  # fmt: skip
    """The reward model's click probability, zeroed by the relevance gate (column ``cos``)."""
    x = np.asarray(features, np.float64)
    out: F64 = model.predict(x) * relevance_gate(x[:, FEATURES.index("cos")], threshold)
    return out


__all__ = [
    "FEATURES",
    "LoggedRewardModel",
    "PastClicks",
    "hybrid_reward",
    "relevance_gate",
    "reward_features",
    "word_overlaps",
    "words",
]
