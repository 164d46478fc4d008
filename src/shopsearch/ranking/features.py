"""Feature encoding: sample rows → :class:`~shopsearch.ranking.base.RankingBatch` tensors.

:class:`FeatureEncoder` follows the scikit-learn contract: :meth:`FeatureEncoder.fit` learns the
vocabularies (items, category path prefixes, brands, domains) and the standardisation of each
dense feature from the *training* split only; :meth:`FeatureEncoder.transform` maps any split to
tensors (unseen ids map to 0). It saves as one JSON file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import torch

from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.ranking.base import FeatureSpec, RankingBatch
from shopsearch.ranking.samples import Samples
from shopsearch.store.atomic import write_json

#: Dense (numeric) features, in column order of ``RankingBatch.dense``.
DENSE_FEATURES: tuple[str, ...] = (
    "bm25",
    "matched_share",
    "query_terms",
    "brand_in_query",
    "category_in_query",
    "has_query_leaf",
    "leaf_match",
    "top_match",
    "log_price",
    "price_rel_category",
    "price_rel_user",
    "has_user_prices",
    "user_history",
    "log_impressions",
    "log_clicks",
    "log_purchases",
    "ctr_prior",
    "cart_prior",
    "cvr_prior",
    "qp_log_impressions",
    "qp_log_clicks",
    "qp_ctr_prior",
)

#: Dense features that depend on the market (price level, traffic, priors): SEQ+MD's mask.
MARKET_DRIVEN: tuple[str, ...] = (
    "log_price",
    "price_rel_category",
    "log_impressions",
    "log_clicks",
    "log_purchases",
    "ctr_prior",
    "cart_prior",
    "cvr_prior",
    "qp_log_impressions",
    "qp_log_clicks",
    "qp_ctr_prior",
)

#: Categorical features in ``RankingBatch.sparse``.
SPARSE_FEATURES: tuple[str, ...] = ("domain", "brand", "leaf", "query_leaf")

CATEGORY_DEPTH = 3
_FILE = "encoder.json"


def category_prefixes(leaf: str, depth: int = CATEGORY_DEPTH) -> list[str]:
    """``"A > B > C"`` → ``["A", "A > B", "A > B > C"]`` (cut or padded with ``""``)."""
    parts = leaf.split(" > ") if leaf else []
    out = [" > ".join(parts[: i + 1]) for i in range(min(len(parts), depth))]
    return out + [""] * (depth - len(out))


def _tensor(values: npt.NDArray[Any]) -> torch.Tensor:
    """A tensor owning a writable copy of ``values`` (pandas may hand out read-only views)."""
    return torch.from_numpy(np.array(values, copy=True))


class FeatureEncoder:
    """Vocabularies and standardisation fitted on training samples.

    Args:
        seq_len: the behaviour sequence length of the samples.
    """

    def __init__(self, seq_len: int = 20) -> None:
        self.seq_len = seq_len

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, samples: Samples) -> FeatureEncoder:
        """Learn vocabularies and mean / std of dense features from ``samples``."""
        rows = samples.rows
        if rows.empty:
            raise InvalidInputError("cannot fit the feature encoder on zero samples")
        dense = rows[list(DENSE_FEATURES)].to_numpy(np.float64)
        self.mean_: list[float] = dense.mean(axis=0).tolist()
        self.std_: list[float] = np.maximum(dense.std(axis=0), 1e-6).tolist()
        self.items_: list[str] = sorted(set(rows["product_id"]))
        leaves = set(rows["leaf"]) | set(rows["query_leaf"])
        prefixes = {p for leaf in leaves for p in category_prefixes(leaf) if p}
        self.categories_: list[str] = sorted(prefixes)
        self.sparse_vocab_: dict[str, list[str]] = {
            "domain": sorted(set(rows["domain"])),
            "brand": sorted(set(rows["brand"]) - {""}),
            "leaf": sorted(set(rows["leaf"]) - {""}),
            "query_leaf": sorted(set(rows["query_leaf"]) - {""}),
        }
        self._index()
        return self

    def _index(self) -> None:
        self._items = pd.Index(self.items_)
        self._cats = pd.Index(self.categories_)
        self._sparse = {k: pd.Index(v) for k, v in self.sparse_vocab_.items()}

    def _check(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError("the feature encoder is not fitted; call fit(train) first")

    @property
    def spec_(self) -> FeatureSpec:
        """The :class:`FeatureSpec` of the tensors this encoder produces."""
        self._check()
        return FeatureSpec(
            dense_names=DENSE_FEATURES,
            sparse_names=SPARSE_FEATURES,
            sparse_cardinalities=tuple(len(self.sparse_vocab_[k]) + 1 for k in SPARSE_FEATURES),
            n_items=len(self.items_) + 1,
            n_categories=len(self.categories_) + 1,
            category_depth=CATEGORY_DEPTH,
            n_domains=len(self.sparse_vocab_["domain"]) + 1,
            seq_len=self.seq_len,
            market_driven=MARKET_DRIVEN,
        )

    # -- transforming ----------------------------------------------------------------------------
    def _ids(self, index: pd.Index, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        found = index.get_indexer(pd.Index(np.asarray(values, dtype=object)))
        return (found + 1).astype(np.int64)  # -1 (unseen) becomes 0

    def _paths(self, leaves: pd.Series) -> npt.NDArray[np.int64]:
        uniq, inverse = np.unique(leaves.to_numpy(dtype=object).astype(str), return_inverse=True)
        table = np.stack([self._ids(self._cats, category_prefixes(str(u))) for u in uniq]).reshape(
            len(uniq), CATEGORY_DEPTH
        )
        out: npt.NDArray[np.int64] = table[inverse.ravel()]
        return out

    def transform(self, samples: Samples) -> RankingBatch:
        """Tensors of every row of ``samples`` (labels included; weight 1)."""
        self._check()
        rows = samples.rows
        n = len(rows)
        dense = (rows[list(DENSE_FEATURES)].to_numpy(np.float64) - self.mean_) / self.std_
        sparse = np.stack(
            [self._ids(self._sparse[k], rows[k].to_numpy(object)) for k in SPARSE_FEATURES], axis=1
        )
        req = rows["req"].to_numpy(np.int64)
        seq_req, seq_inv = np.unique(req, return_inverse=True)
        seq_items = self._ids(self._items, samples.seq_items[seq_req].ravel()).reshape(
            len(seq_req), -1
        )
        seq_items[samples.seq_kinds[seq_req] == 0] = 0
        leaf_ids = self._ids(self._cats, samples.seq_leaves[seq_req].ravel()).reshape(
            len(seq_req), -1
        )
        inv = seq_inv.ravel()
        group = np.unique(rows["request_id"].to_numpy(object), return_inverse=True)[1]
        return RankingBatch(
            dense=_tensor(dense.astype(np.float32)),
            sparse=_tensor(sparse),
            item=_tensor(self._ids(self._items, rows["product_id"].to_numpy(object))),
            item_category=_tensor(self._paths(rows["leaf"])),
            query_category=_tensor(self._paths(rows["query_leaf"])),
            domain=_tensor(sparse[:, 0].copy()),
            position=_tensor(rows["position"].to_numpy(np.int64)),
            seq_items=_tensor(seq_items[inv]),
            seq_categories=_tensor(leaf_ids[inv]),
            seq_kinds=_tensor(samples.seq_kinds[seq_req][inv].astype(np.int64)),
            seq_age=_tensor(samples.seq_age[seq_req][inv].astype(np.float32)),
            group=_tensor(group.astype(np.int64).ravel()),
            click=_tensor(rows["click"].to_numpy(np.float32)),
            cart=_tensor(rows["cart"].to_numpy(np.float32)),
            purchase=_tensor(rows["purchase"].to_numpy(np.float32)),
            weight=torch.ones(n, dtype=torch.float32),
        )

    # -- persistence -----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``encoder.json`` into ``folder``."""
        self._check()
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        write_json(
            path / _FILE,
            {
                "seq_len": self.seq_len,
                "mean": self.mean_,
                "std": self.std_,
                "dense_names": list(DENSE_FEATURES),
                "items": self.items_,
                "categories": self.categories_,
                "sparse_vocab": self.sparse_vocab_,
            },
        )
        return path

    @classmethod
    def load(cls, folder: str | Path) -> FeatureEncoder:
        """An encoder saved by :meth:`save`."""
        data = orjson.loads((Path(folder) / _FILE).read_bytes())
        if list(data["dense_names"]) != list(DENSE_FEATURES):
            raise InvalidInputError(
                f"{folder} was saved with other dense features; retrain the ranking stage"
            )
        encoder = cls(int(data["seq_len"]))
        encoder.mean_ = [float(v) for v in data["mean"]]
        encoder.std_ = [float(v) for v in data["std"]]
        encoder.items_ = list(data["items"])
        encoder.categories_ = list(data["categories"])
        encoder.sparse_vocab_ = {k: list(v) for k, v in data["sparse_vocab"].items()}
        encoder._index()
        return encoder


__all__ = [
    "CATEGORY_DEPTH",
    "DENSE_FEATURES",
    "MARKET_DRIVEN",
    "SPARSE_FEATURES",
    "FeatureEncoder",
    "category_prefixes",
]
