"""Feature encoding: sample rows → :class:`~shopsearch.ranking.base.RankingBatch` tensors.

:class:`FeatureEncoder` follows the scikit-learn contract: :meth:`FeatureEncoder.fit` learns the
vocabularies (items, category path prefixes, brands, domains) and the standardisation of each
dense feature from the *training* split only; :meth:`FeatureEncoder.transform` maps any split to
tensors (unseen ids map to 0). It saves as one JSON file.

The numeric columns are :data:`DENSE_FEATURES` unless the samples name their own
(:attr:`~shopsearch.ranking.samples.Samples.dense_names`) or the encoder is given them; the
fitted encoder keeps its list (``dense_names_``) and reads only those columns, so a bundle saved
before a feature was added still loads and serves.
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
from shopsearch.ranking.feature_names import DENSE_FEATURES, MARKET_DRIVEN, SPARSE_FEATURES
from shopsearch.ranking.samples import Samples
from shopsearch.store.atomic import write_json

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
        dense_names: the numeric columns to read (default: the samples' own list, else
            :data:`DENSE_FEATURES`).
    """

    def __init__(self, seq_len: int = 20, dense_names: tuple[str, ...] | None = None) -> None:
        self.seq_len = seq_len
        self.dense_names = dense_names

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, samples: Samples) -> FeatureEncoder:
        """Learn vocabularies and mean / std of dense features from ``samples``."""
        rows = samples.rows
        if rows.empty:
            raise InvalidInputError("cannot fit the feature encoder on zero samples")
        names = self.dense_names or samples.dense_names or DENSE_FEATURES
        missing = [name for name in names if name not in rows]
        if missing:
            raise InvalidInputError(f"the samples lack the dense feature columns {missing}")
        self.dense_names_: tuple[str, ...] = tuple(names)
        dense = rows[list(names)].to_numpy(np.float64)
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
        self._lookup: dict[str, dict[str, int]] = {
            "items": {v: i + 1 for i, v in enumerate(self.items_)},
            "categories": {v: i + 1 for i, v in enumerate(self.categories_)},
            **{k: {v: i + 1 for i, v in enumerate(vs)} for k, vs in self.sparse_vocab_.items()},
        }
        self._mean = np.asarray(self.mean_, np.float64)
        self._inv_std = 1.0 / np.asarray(self.std_, np.float64)

    def _check(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError("the feature encoder is not fitted; call fit(train) first")

    @property
    def spec_(self) -> FeatureSpec:
        """The :class:`FeatureSpec` of the tensors this encoder produces."""
        self._check()
        return FeatureSpec(
            dense_names=self.dense_names_,
            sparse_names=SPARSE_FEATURES,
            sparse_cardinalities=tuple(len(self.sparse_vocab_[k]) + 1 for k in SPARSE_FEATURES),
            n_items=len(self.items_) + 1,
            n_categories=len(self.categories_) + 1,
            category_depth=CATEGORY_DEPTH,
            n_domains=len(self.sparse_vocab_["domain"]) + 1,
            seq_len=self.seq_len,
            market_driven=tuple(n for n in MARKET_DRIVEN if n in self.dense_names_),
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

    def ids(self, vocabulary: str, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Ids of ``values`` in ``vocabulary`` (``items``, ``categories`` or a sparse feature's
        name); unseen values get 0."""
        self._check()
        array = np.asarray(values, dtype=object)
        if array.size <= 256:  # a served request's few values: dict look-ups beat pandas
            get = self._lookup[vocabulary].get
            found = np.fromiter((get(v, 0) for v in array.ravel()), np.int64, array.size)
            return found.reshape(array.shape)
        if vocabulary == "items":
            return self._ids(self._items, values)
        if vocabulary == "categories":
            return self._ids(self._cats, values)
        return self._ids(self._sparse[vocabulary], values)

    def category_paths(self, leaves: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
        """``[n, CATEGORY_DEPTH]`` category path ids of leaf paths."""
        self._check()
        if len(leaves) <= 8:
            get = self._lookup["categories"].get
            rows = [[get(p, 0) if p else 0 for p in category_prefixes(str(v))] for v in leaves]
            return np.asarray(rows, np.int64).reshape(len(leaves), CATEGORY_DEPTH)
        return self._paths(pd.Series(leaves, dtype=object))

    def standardise(self, dense: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """Standardised float32 ``[n, n_dense]`` of raw dense columns in ``dense_names_`` order."""
        self._check()
        out: npt.NDArray[np.float32] = ((dense - self._mean) * self._inv_std).astype(np.float32)
        return out

    def transform(self, samples: Samples) -> RankingBatch:
        """Tensors of every row of ``samples`` (labels included; weight 1)."""
        self._check()
        rows = samples.rows
        n = len(rows)
        dense = (rows[list(self.dense_names_)].to_numpy(np.float64) - self._mean) * self._inv_std
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
                "dense_names": list(self.dense_names_),
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
        names = tuple(str(n) for n in data["dense_names"])
        if len(names) != len(data["mean"]):
            raise InvalidInputError(f"{folder}/{_FILE} is damaged; retrain the ranking stage")
        encoder = cls(int(data["seq_len"]), names)
        encoder.dense_names_ = names
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
