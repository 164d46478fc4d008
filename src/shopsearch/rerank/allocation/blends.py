"""The baselines of traffic allocation: fixed-weight blends of the ranking and new-item exposure.

``blend_order(n, new, w)`` re-orders a ranked list of ``n`` items by
``(1 - w) / log2(2 + position) + w * new``: ``w = 0`` keeps the ranking (no allocation), larger
``w`` lifts new items further (``w >= 0.5`` puts every new item first). The same weight serves
every request, every day: the blend neither learns nor looks ahead.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


def blend_order(new: Bool, w: float) -> I64:
    """The order (indices into the ranked list) of the blend with weight ``w`` in ``[0, 1]``.

    Raises:
        InvalidInputError: for ``w`` outside ``[0, 1]``.
    """
    if not 0.0 <= w <= 1.0:
        raise InvalidInputError(f"blend weight w={w} is out of range; use 0 <= w <= 1")
    position = np.arange(new.size, dtype=np.float64)
    score = (1.0 - w) / np.log2(2.0 + position) + w * new.astype(np.float64)
    out: I64 = np.argsort(-score, kind="stable").astype(np.int64)
    return out


__all__ = ["blend_order"]
