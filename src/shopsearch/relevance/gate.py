"""The relevance gate at serving: which candidates a student-score threshold keeps, demotes or
drops (:func:`gate_order`). Kept apart from the models so that it imports no torch."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

#: How the gate treats candidates below its threshold.
GateMode = Literal["demote", "drop", "off"]


def gate_order(
    scores: npt.ArrayLike, threshold: float, mode: GateMode
) -> tuple[npt.NDArray[np.intp], int]:
    """The candidates' order after the gate and how many are below ``threshold``.

    ``demote``: those at or above it first, then those below, each group in its order;
    ``drop``: only those at or above it; ``off``: the order unchanged.
    """
    values = np.asarray(scores, np.float64)
    below = values < threshold
    n_below = int(below.sum())
    keep = np.flatnonzero(~below)
    if mode == "drop":
        return keep.astype(np.intp), n_below
    if mode == "demote":
        return np.concatenate([keep, np.flatnonzero(below)]).astype(np.intp), n_below
    return np.arange(len(values), dtype=np.intp), n_below


__all__ = ["GateMode", "gate_order"]
