"""SA²CRQ's adaptive semantic IDs (SARQ): ID length follows traffic, tail products share.

Products are placed in the trie of their full-depth residual codes (:mod:`.quantize`). Walking
it from the root, a node ``v`` at depth ``d`` holding rows ``S_v`` with traffic
``T_v = sum n_i`` either *splits* (its children become separate IDs) or becomes a *bucket*
(one ID that all of ``S_v`` share). Its "path entropy" (our reading, [U1]: the paper's method
section was not available) is the entropy of its children's smoothed traffic shares,
``q_c = (T_c + alpha) / (T_v + alpha |ch(v)|)``, ``H_v = -sum q_c log q_c``. ``v`` splits when

- ``d < min_length`` or ``|S_v| > max_bucket`` (forced, up to the codes' depth);
- ``d < max_length``, ``|S_v| > 1`` and at least ``head_split`` head products are in ``S_v``
  (our addition: head IDs are meant to be discriminative; 1 separates every head product from
  every other product, 2 only head products from each other, 0 turns the rule off);
- ``d < max_length``, ``|S_v| > 1``, ``T_v >= tau_T`` and ``H_v >= tau_H``: enough traffic,
  spread over several children that need telling apart.

Head products still sharing a bucket at ``max_length`` get a suffix token (their rank, capped at
``suffix_cap``); the tail products of such a bucket share one more suffix. ``tau_T`` is the
"tau budget": a bisection over the nodes' traffic values sets it so that the mean ID length
(suffix included) is as close as it can get to ``target_length`` (:mod:`.sarq` computes the
lengths). The set is prefix-free. Separating head products floors the mean length: on Home
Depot (K=64, 5 levels, 2,326 head products of the tr2 judgments) no ``tau_T`` gets it below
3.00 with ``head_split=1``; there the head collision rate is 0.577 against 0.834 for rq-fixed
(3 levels + suffix, 4 tokens), and 85% of cold products share a bucket
(``/work/runs/i17/sa2crq_stats.py``).

A product added later (:meth:`AdaptiveSemanticIds.add`) descends the existing trie with its
codes and joins the bucket it reaches, or opens a new leaf under an internal node that has no
child for its next code, or joins the tail suffix of a suffixed bucket (opening it if there is
none). Nothing is refitted and no existing ID changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import orjson

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.retrieval.generative.sarq import sarq_lengths
from shopsearch.store.atomic import write_json

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
_SETTINGS = "ids.json"
_BUCKET = -2  # a leaf without suffix children
_NO_TAIL = -1  # a suffixed leaf whose suffixes are all head products'


class AdaptiveSemanticIds:
    """SA²CRQ IDs: variable-length, traffic-adaptive, prefix-free.

    Args:
        keys: ``(domain, product_id)`` of each row.
        codes: ``[n, depth]`` full-depth residual codes of each row.
        traffic: per-row traffic ``n_i >= 0`` (e.g. relevant judgments or weighted events).
        head: per-row head flags (default ``traffic >= head_threshold``).
        head_threshold: the head cut when ``head`` is not given.
        min_length: every ID has at least this many codes.
        max_length: no split past this depth, except for buckets over ``max_bucket``.
        max_bucket: a node holding more rows always splits (while codes last).
        target_length: the mean ID length (suffix included) the ``tau_T`` bisection aims at.
        alpha: smoothing of the children's traffic shares.
        min_entropy: ``tau_H``, nats.
        head_split: a node holding this many head products (and more than one row) splits
            (up to ``max_length``; 0: never forced).
        suffix_cap: suffix tokens are ``0..suffix_cap - 1``.
        codewords: code values ``0..codewords - 1`` (default: the largest code + 1).
        threshold: a fixed ``tau_T`` (no bisection).

    Raises:
        InvalidInputError: shapes or settings out of range.
    """

    def __init__(
        self,
        keys: Sequence[tuple[str, str]],
        codes: npt.ArrayLike,
        traffic: npt.ArrayLike,
        *,
        head: npt.ArrayLike | None = None,
        head_threshold: float = 2.0,
        min_length: int = 2,
        max_length: int = 4,
        max_bucket: int = 64,
        target_length: float = 2.6,
        alpha: float = 0.5,
        min_entropy: float = 0.5,
        head_split: int = 1,
        suffix_cap: int = 64,
        codewords: int | None = None,
        threshold: float | None = None,
    ) -> None:
        self.codes = np.asarray(codes, np.uint8)
        self.traffic = np.asarray(traffic, np.float64)
        flags = self.traffic >= head_threshold if head is None else np.asarray(head, bool)
        self.head = flags
        n = len(keys)
        if self.codes.ndim != 2 or len(self.codes) != n or n == 0:
            raise InvalidInputError(f"{n} keys and codes {self.codes.shape}: one row per key")
        if self.traffic.shape != (n,) or self.head.shape != (n,) or (self.traffic < 0).any():
            raise InvalidInputError("give one traffic value >= 0 and one head flag per key")
        full = self.codes.shape[1]
        if not 1 <= min_length <= max_length <= full or max_bucket < 1 or alpha <= 0:
            raise InvalidInputError(
                f"min_length={min_length}, max_length={max_length}, max_bucket={max_bucket}, "
                f"alpha={alpha}: use 1 <= min_length <= max_length <= {full} (the codes' "
                "depth), max_bucket >= 1, alpha > 0"
            )
        self.codewords = int(self.codes.max()) + 1 if codewords is None else codewords
        if not 1 <= suffix_cap <= 256 or int(self.codes.max()) >= self.codewords:
            raise InvalidInputError(f"suffix_cap={suffix_cap} or codes >= {self.codewords}")
        self.keys = [tuple(k) for k in keys]
        self.settings: dict[str, Any] = {
            "min_length": min_length, "max_length": max_length, "max_bucket": max_bucket,
            "target_length": target_length, "alpha": alpha, "min_entropy": min_entropy,
            "head_split": head_split, "suffix_cap": suffix_cap,
        }  # fmt: skip
        rules = {k: v for k, v in self.settings.items() if k != "suffix_cap"}
        self.id_len, suffixed, self.threshold = sarq_lengths(
            self.codes, self.traffic, self.head, threshold=threshold, **rules
        )
        self.suffix = self._suffixes(suffixed)
        self.width = int((self.id_len + (self.suffix >= 0)).max())
        self._index()

    def _suffixes(self, suffixed: Bool) -> I64:
        """Suffix per row (-1: none): heads by falling traffic, then one shared by tails."""
        cap = self.settings["suffix_cap"]
        suffix = np.full(len(self.keys), -1, np.int64)
        rows = np.flatnonzero(suffixed)
        ids = [self.codes[r, : self.id_len[r]].tobytes() for r in rows.tolist()]
        rank = np.lexsort((rows, -self.traffic[rows], ~self.head[rows]))
        taken: dict[bytes, int] = {}
        tail: dict[bytes, int] = {}
        for at in rank.tolist():
            row, key = int(rows[at]), ids[at]
            if self.head[row]:
                suffix[row] = min(taken.get(key, 0), cap - 1)
                taken[key] = taken.get(key, 0) + 1
            else:
                suffix[row] = tail.setdefault(key, min(taken.get(key, 0), cap - 1))
        return suffix

    def _index(self) -> None:
        """The trie's internal nodes and leaves, for :meth:`add`."""
        self._internal: set[bytes] = set()
        self._leaf: dict[bytes, int] = {}
        self._next: dict[bytes, int] = {}
        for row in range(len(self.keys)):
            self._register(row)

    def _register(self, row: int) -> None:
        size, code = int(self.id_len[row]), self.codes[row]
        self._internal.update(code[:d].tobytes() for d in range(size))
        key, value = code[:size].tobytes(), int(self.suffix[row])
        if value < 0:
            self._leaf[key] = _BUCKET
            return
        self._next[key] = max(self._next.get(key, 0), value + 1)
        if not self.head[row]:
            self._leaf[key] = value
        else:
            self._leaf.setdefault(key, _NO_TAIL)

    @property
    def lengths(self) -> I64:
        """Each row's ID length: its codes, plus one when it has a suffix."""
        out: I64 = self.id_len + (self.suffix >= 0)
        return out

    @property
    def tokens(self) -> I64:
        """``[n, width]``: each row's ID (codes, then its suffix if any; 0 past its length)."""
        out = np.zeros((len(self.keys), self.width), np.int64)
        depth = min(self.width, self.codes.shape[1])
        columns = np.arange(depth)[None, :]
        out[:, :depth] = np.where(columns < self.id_len[:, None], self.codes[:, :depth], 0)
        has = np.flatnonzero(self.suffix >= 0)
        out[has, self.id_len[has]] = self.suffix[has]
        return out

    @property
    def vocab(self) -> int:
        """Token values are below this (code values and suffix tokens share it)."""
        return max(self.codewords, int(self.settings["suffix_cap"]))

    def add(self, keys: Sequence[tuple[str, str]], codes: npt.ArrayLike) -> None:
        """Give new products (traffic 0, tail) IDs on the existing trie, after the others."""
        new = np.asarray(codes, np.uint8)
        if new.shape[1:] != self.codes.shape[1:] or len(new) != len(keys):
            raise InvalidInputError(f"new codes of shape {new.shape} do not fit {self.codes.shape}")
        start = len(self.keys)
        self.keys.extend(tuple(k) for k in keys)
        self.codes = np.concatenate([self.codes, new])
        self.traffic = np.concatenate([self.traffic, np.zeros(len(new))])
        self.head = np.concatenate([self.head, np.zeros(len(new), bool)])
        self.id_len = np.concatenate([self.id_len, np.zeros(len(new), np.int64)])
        self.suffix = np.concatenate([self.suffix, np.full(len(new), -1, np.int64)])
        for row in range(start, len(self.keys)):
            self._place(row)
            self._register(row)

    def _place(self, row: int) -> None:
        code = self.codes[row]
        for depth in range(self.codes.shape[1] + 1):
            key = code[:depth].tobytes()
            kind = self._leaf.get(key)
            if kind is not None:
                self.id_len[row] = depth
                if kind >= 0:
                    self.suffix[row] = kind
                elif kind == _NO_TAIL:
                    free = self._next.get(key, 0)
                    self.suffix[row] = min(free, int(self.settings["suffix_cap"]) - 1)
                return
            if key not in self._internal:  # a new leaf under the internal node above
                self.id_len[row] = depth
                return
        raise AssertionError("the codes' trie has a leaf on every full-depth path")

    def collision_rate(self, rows: npt.ArrayLike | None = None) -> float:
        """The share of ``rows`` (default: all) whose semantic ID (codes up to the ID's code
        length, the suffix left out) another product shares."""
        columns = np.arange(self.codes.shape[1])[None, :]
        semantic = np.where(columns < self.id_len[:, None], self.codes.astype(np.int16), -1)
        _, inverse, counts = np.unique(semantic, axis=0, return_inverse=True, return_counts=True)
        chosen = np.arange(len(self.keys)) if rows is None else np.asarray(rows, np.int64)
        if not chosen.size:
            return 0.0
        return float(np.mean(counts[inverse.reshape(-1)[chosen]] > 1))

    def save(self, folder: Path) -> None:
        """``codes.npy``, ``id_len.npy``, ``suffix.npy``, ``traffic.npy``, ``head.npy``,
        ``keys.json`` and ``ids.json`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, npt.NDArray[Any]] = {
            "codes": self.codes, "id_len": self.id_len, "suffix": self.suffix,
            "traffic": self.traffic, "head": self.head,
        }  # fmt: skip
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", array)
        write_json(folder / "keys.json", [list(k) for k in self.keys])
        settings = {"kind": "sa2crq", **self.settings, "codewords": self.codewords}
        settings.update(width=self.width, threshold=_finite(self.threshold))
        write_json(folder / _SETTINGS, settings)

    @classmethod
    def load(cls, folder: Path) -> Self:
        """The IDs :meth:`save` wrote, exactly (SARQ is not re-run).

        Raises:
            WorkspaceError: ``folder`` holds no SA²CRQ IDs.
        """
        try:
            settings = orjson.loads((folder / _SETTINGS).read_bytes())
            if settings.get("kind") != "sa2crq":
                raise WorkspaceError(f"{folder} holds {settings.get('kind')} IDs, not sa2crq")
            keys = [tuple(k) for k in orjson.loads((folder / "keys.json").read_bytes())]
            arrays = {
                name: np.load(folder / f"{name}.npy", allow_pickle=False)
                for name in ("codes", "id_len", "suffix", "traffic", "head")
            }
        except (FileNotFoundError, OSError, orjson.JSONDecodeError, ValueError) as exc:
            raise WorkspaceError(f"{folder} holds no semantic IDs ({exc})") from exc
        ids = cls.__new__(cls)
        ids.keys = keys
        ids.codes = arrays["codes"].astype(np.uint8)
        ids.id_len = arrays["id_len"].astype(np.int64)
        ids.suffix = arrays["suffix"].astype(np.int64)
        ids.traffic = arrays["traffic"].astype(np.float64)
        ids.head = arrays["head"].astype(bool)
        ids.codewords = int(settings["codewords"])
        ids.threshold = np.inf if settings["threshold"] is None else float(settings["threshold"])
        ids.width = int(settings["width"])
        ids.settings = {k: settings[k] for k in settings if k not in
                        ("kind", "codewords", "threshold", "width")}  # fmt: skip
        ids._index()
        return ids


def _finite(value: float) -> float | None:
    """JSON has no infinity: ``None`` stands for ``tau_T = inf`` (no traffic split)."""
    return None if np.isinf(value) else value


__all__ = ["AdaptiveSemanticIds"]
