"""The cross-entropy method over objective weights (MODRL-TA's decision fusion).

Weights live on the simplex: a candidate is ``softmax(z)`` for ``z`` drawn from a diagonal
Gaussian; each round keeps the ``elite`` best candidates by ``score`` and refits the Gaussian
to their ``z``. The best candidate seen is returned.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

F64 = npt.NDArray[np.float64]


def softmax(z: F64) -> F64:
    """Row-wise softmax."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    out: F64 = e / e.sum(axis=-1, keepdims=True)
    return out


def cross_entropy_weights(
    score: Callable[[F64], float],
    k: int,
    *,
    population: int = 24,
    elite: int = 6,
    rounds: int = 4,
    init: F64 | None = None,
    seed: int = 0,
) -> tuple[F64, float]:
    """The weights on the ``k``-simplex that maximise ``score(weights)``, and that score.

    Args:
        score: the value of one weight vector (higher is better).
        k: number of objectives.
        population: candidates per round.
        elite: candidates kept per round.
        rounds: rounds.
        init: weights to start the search around (default: equal).
        seed: random seed.
    """
    if not 1 <= elite <= population or rounds < 1 or k < 1:
        raise InvalidInputError(
            f"population={population}, elite={elite}, rounds={rounds}, k={k}: use "
            "1 <= elite <= population, rounds >= 1 and k >= 1"
        )
    rng = np.random.default_rng(seed)
    start = np.full(k, 1.0 / k) if init is None else np.asarray(init, dtype=np.float64)
    mean = np.log(np.maximum(start, 1e-6))
    std = np.full(k, 1.0)
    best_w, best = softmax(mean), score(softmax(mean))
    for _ in range(rounds):
        z = mean + std * rng.standard_normal((population, k))
        weights = softmax(z)
        values = np.array([score(w) for w in weights])
        keep = np.argsort(-values, kind="stable")[:elite]
        if values[keep[0]] > best:
            best, best_w = float(values[keep[0]]), weights[keep[0]]
        mean = z[keep].mean(axis=0)
        std = z[keep].std(axis=0) + 0.05
    return best_w, float(best)


__all__ = ["cross_entropy_weights", "softmax"]
