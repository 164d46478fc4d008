"""Semantic IDs of products: fixed-length residual codes with a collision suffix
(``baseline/rq-fixed``, as in TIGER).

Every product's ID is its first ``levels`` residual codes (:mod:`.quantize`) and then a suffix
token, its rank among the products that share those codes, so every ID is unique and every ID
has the same length (the set is prefix-free). A product added after fitting gets its codes
from the fitted codebooks and the next free suffix of its codes: no refit, no retraining of a
generator that emits IDs. Stored as plain files: ``codes.npy`` (the full-depth codes),
``suffix.npy``, ``keys.json`` and ``ids.json`` (settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt
import orjson

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.retrieval.generative.adaptive_ids import AdaptiveSemanticIds
from shopsearch.store.atomic import write_json

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
_SETTINGS = "ids.json"


class FixedSemanticIds:
    """Fixed-length IDs over full-depth codes.

    Args:
        keys: ``(domain, product_id)`` of each row.
        codes: ``[n, depth]`` residual codes of each row (:meth:`.ResidualKMeans.encode`).
        levels: codes in the ID before the suffix (``<= depth``).
    """

    def __init__(self, keys: Sequence[tuple[str, str]], codes: npt.ArrayLike, levels: int) -> None:
        self.codes = np.asarray(codes, np.uint8)
        if self.codes.ndim != 2 or len(self.codes) != len(keys):
            raise InvalidInputError(
                f"{len(keys)} keys and codes of shape {self.codes.shape}: give one row of "
                "codes per key"
            )
        if not 1 <= levels <= self.codes.shape[1]:
            raise InvalidInputError(
                f"levels={levels}: use 1 <= levels <= {self.codes.shape[1]} (the codes' depth)"
            )
        self.keys = [tuple(k) for k in keys]
        self.levels = levels
        self.suffix = np.zeros(len(self.keys), np.int64)
        self._next: dict[bytes, int] = {}
        for row in range(len(self.keys)):
            self.suffix[row] = self._take(row)

    def _take(self, row: int) -> int:
        prefix = self.codes[row, : self.levels].tobytes()
        value = self._next.get(prefix, 0)
        self._next[prefix] = value + 1
        return value

    @property
    def tokens(self) -> I64:
        """``[n, levels + 1]``: each row's ID (its codes, then its suffix)."""
        return np.concatenate(
            [self.codes[:, : self.levels].astype(np.int64), self.suffix[:, None]], axis=1
        )

    @property
    def lengths(self) -> I64:
        """Each row's ID length (all ``levels + 1``: fixed-length IDs)."""
        return np.full(len(self.keys), self.levels + 1, np.int64)

    @property
    def vocab(self) -> int:
        """Token values are below this: the largest code or suffix + 1 (it grows when
        :meth:`add` opens a suffix above every existing one)."""
        return max(int(self.codes.max(initial=0)), int(self.suffix.max(initial=0))) + 1

    def add(self, keys: Sequence[tuple[str, str]], codes: npt.ArrayLike) -> None:
        """Give new products IDs (their codes from the fitted codebooks), after the others."""
        new = np.asarray(codes, np.uint8)
        if new.shape[1:] != self.codes.shape[1:] or len(new) != len(keys):
            raise InvalidInputError(f"new codes of shape {new.shape} do not fit {self.codes.shape}")
        start = len(self.keys)
        self.keys.extend(tuple(k) for k in keys)
        self.codes = np.concatenate([self.codes, new])
        self.suffix = np.concatenate([self.suffix, np.zeros(len(new), np.int64)])
        for row in range(start, len(self.keys)):
            self.suffix[row] = self._take(row)

    def collision_rate(self, rows: npt.ArrayLike | None = None) -> float:
        """The share of ``rows`` (default: all) whose codes, the suffix left out, another
        product shares."""
        prefixes = [self.codes[r, : self.levels].tobytes() for r in range(len(self.keys))]
        counts: dict[bytes, int] = {}
        for prefix in prefixes:
            counts[prefix] = counts.get(prefix, 0) + 1
        chosen = np.arange(len(prefixes)) if rows is None else np.asarray(rows, np.int64)
        if not chosen.size:
            return 0.0
        return float(np.mean([counts[prefixes[r]] > 1 for r in chosen.tolist()]))

    def save(self, folder: Path) -> None:
        """``codes.npy``, ``suffix.npy``, ``keys.json`` and ``ids.json`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "codes.npy", self.codes)
        np.save(folder / "suffix.npy", self.suffix)
        write_json(folder / "keys.json", [list(k) for k in self.keys])
        write_json(folder / _SETTINGS, {"kind": "rq-fixed", "levels": self.levels})

    @classmethod
    def load(cls, folder: Path) -> Self:
        """The IDs :meth:`save` wrote (suffixes as saved, so IDs never change on load).

        Raises:
            WorkspaceError: ``folder`` holds no semantic IDs.
        """
        try:
            settings = orjson.loads((folder / _SETTINGS).read_bytes())
            keys = [tuple(k) for k in orjson.loads((folder / "keys.json").read_bytes())]
            codes = np.load(folder / "codes.npy")
            suffix = np.load(folder / "suffix.npy")
        except (FileNotFoundError, OSError, orjson.JSONDecodeError, ValueError) as exc:
            raise WorkspaceError(f"{folder} holds no semantic IDs ({exc})") from exc
        if settings.get("kind", "rq-fixed") != "rq-fixed":
            raise WorkspaceError(f"{folder} holds {settings.get('kind')} IDs, not rq-fixed")
        ids = cls(keys, codes, int(settings["levels"]))
        if not np.array_equal(ids.suffix, suffix):
            ids.suffix = suffix.astype(np.int64)
            ids._next = {}
            for row in range(len(ids.keys)):
                prefix = ids.codes[row, : ids.levels].tobytes()
                ids._next[prefix] = max(ids._next.get(prefix, 0), int(ids.suffix[row]) + 1)
        return ids


def load_ids(folder: Path) -> FixedSemanticIds | AdaptiveSemanticIds:
    """The semantic IDs saved in ``folder``, of whichever kind ``ids.json`` names
    (``rq-fixed`` or ``sa2crq``).

    Raises:
        WorkspaceError: ``folder`` holds no semantic IDs, or of an unknown kind.
    """
    try:
        kind = orjson.loads((folder / _SETTINGS).read_bytes()).get("kind")
    except (FileNotFoundError, OSError, orjson.JSONDecodeError, AttributeError) as exc:
        raise WorkspaceError(f"{folder} holds no semantic IDs ({exc})") from exc
    if kind == "rq-fixed":
        return FixedSemanticIds.load(folder)
    if kind == "sa2crq":
        return AdaptiveSemanticIds.load(folder)
    raise WorkspaceError(f"{folder} holds semantic IDs of unknown kind {kind!r}")


def id_stats(
    ids: FixedSemanticIds | AdaptiveSemanticIds,
    head: npt.ArrayLike | None = None,
    cold: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """The ID statistics a run reports (design §1): mean ID length (all, head, tail, cold),
    leaves (distinct IDs), bucket size p50/p99/max (rows per ID), the head collision rate
    (:meth:`collision_rate` over head rows: the semantic code, suffix left out, is shared) and
    the share of cold products in a bucket of more than one row.

    Args:
        ids: either kind of IDs.
        head: per-row head flags (default none: no head figures).
        cold: per-row cold-start flags (products in no training pair).
    """
    n = len(ids.keys)
    tokens, lengths = ids.tokens, ids.lengths
    padded = np.where(np.arange(tokens.shape[1])[None, :] < lengths[:, None], tokens, -1)
    _, inverse, counts = np.unique(padded, axis=0, return_inverse=True, return_counts=True)
    bucket = counts[inverse.reshape(-1)]
    is_head = np.zeros(n, bool) if head is None else np.asarray(head, bool)
    is_cold = np.zeros(n, bool) if cold is None else np.asarray(cold, bool)

    def mean(mask: npt.NDArray[np.bool_]) -> float:
        return float(lengths[mask].mean()) if mask.any() else float("nan")

    return {
        "mean_length": float(lengths.mean()),
        "mean_length_head": mean(is_head),
        "mean_length_tail": mean(~is_head),
        "mean_length_cold": mean(is_cold),
        "leaves": float(len(counts)),
        "bucket_p50": float(np.percentile(counts, 50)),
        "bucket_p99": float(np.percentile(counts, 99)),
        "bucket_max": float(counts.max()),
        "head_collision_rate": ids.collision_rate(np.flatnonzero(is_head)),
        "cold_shared": float((bucket[is_cold] > 1).mean()) if is_cold.any() else float("nan"),
    }


__all__ = ["FixedSemanticIds", "id_stats", "load_ids"]
