"""Click-only ranking samples built outside a workspace (the trivago and Best Buy logs, relevance
judgments used as soft clicks).

The registry's models read :class:`~shopsearch.ranking.samples.Samples` through the
:class:`~shopsearch.ranking.features.FeatureEncoder`, whose dense columns are fixed
(:data:`~shopsearch.ranking.feature_names.DENSE_FEATURES`). A caller fills the columns it has a
signal for (and documents which signal sits in which column); every other column is zero, which
standardisation keeps at zero. Labels are clicks only (cart and purchase are zero), and models
are trained with the cart / purchase losses switched off (:func:`click_only_config`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.ranking.feature_names import DENSE_FEATURES, SPARSE_FEATURES
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig


def click_only_config(epochs: int, seed: int) -> TrainConfig:
    """Training loop settings with only the click loss switched on."""
    return TrainConfig(
        epochs=epochs,
        seed=seed,
        task_weights={"click": 1.0, "cart": 0.0, "purchase": 0.0},
    )


def make_samples(
    rows: pd.DataFrame,
    sequences: npt.NDArray[np.object_],
    seq_age: npt.NDArray[np.float32] | None = None,
    extra_dense: Sequence[str] = (),
) -> Samples:
    """Samples of click-labelled candidate ``rows``.

    Args:
        rows: one row per (request, candidate) with ``request_id``, ``product_id``, ``click``,
            ``position`` and ``req`` (row index into ``sequences``), plus any of the dense and
            sparse feature columns; missing ones are filled (dense 0, sparse ``""``).
            Rows of one request must be contiguous.
        sequences: object ``[n_requests, L]`` of earlier item ids, most recent first
            (``""`` = padding).
        seq_age: float ``[n_requests, L]`` ages of the behaviours (default 0).
        extra_dense: further numeric columns of ``rows`` the models read after
            :data:`~shopsearch.ranking.feature_names.DENSE_FEATURES` (the samples' ``dense_names``).

    Returns:
        Samples with cart and purchase labels 0 and no long-tail flag.
    """
    out = rows.reset_index(drop=True).copy()
    for name in DENSE_FEATURES:
        if name not in out:
            out[name] = 0.0
    for name in SPARSE_FEATURES:
        if name not in out:
            out[name] = ""
    for name in ("brand", "leaf"):
        if name not in out:
            out[name] = ""
    out["cart"] = 0
    out["purchase"] = 0
    out["long_tail"] = False
    kinds = (sequences != "").astype(np.int8)
    age = seq_age if seq_age is not None else np.zeros(sequences.shape, np.float32)
    return Samples(
        rows=out,
        seq_items=sequences,
        seq_leaves=np.full(sequences.shape, "", dtype=object),
        seq_kinds=kinds,
        seq_age=age.astype(np.float32),
        dense_names=(*DENSE_FEATURES, *extra_dense) if extra_dense else None,
    )


__all__ = ["click_only_config", "make_samples"]
