"""SARQ, the length rule of SA²CRQ's adaptive semantic IDs (see :mod:`.adaptive_ids`).

Every node of the full-depth code trie is tabulated once (rows, traffic, head rows, the entropy
of its children's smoothed traffic shares); a row's ID length under a traffic threshold
``tau_T`` is then the first depth whose node does not split, one vectorised pass. The
threshold comes from an exact bisection over the nodes' traffic values towards a target mean
length.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


class Sarq(NamedTuple):
    """SARQ's outcome: code length per row, whether the row takes a suffix, ``tau_T``."""

    id_len: I64
    suffixed: Bool
    threshold: float


def sarq_lengths(
    codes: npt.NDArray[np.uint8],
    traffic: F64,
    head: Bool,
    *,
    min_length: int,
    max_length: int,
    max_bucket: int,
    target_length: float,
    alpha: float,
    min_entropy: float,
    head_split: int,
    threshold: float | None = None,
) -> Sarq:
    """Each row's ID code length and suffix flag under SARQ's split rule (the settings are
    :class:`.AdaptiveSemanticIds`'), with ``tau_T = threshold`` or, when it is ``None``, the
    ``tau_T`` whose mean ID length (suffix included) is nearest ``target_length``."""
    s = {
        "min_length": min_length, "max_length": max_length, "max_bucket": max_bucket,
        "target_length": target_length, "min_entropy": min_entropy, "head_split": head_split,
    }  # fmt: skip
    nodes = _Nodes(codes, traffic, head, alpha)
    always, maybe = _rules(nodes, s)
    tau = _bisect(nodes, always, maybe, s) if threshold is None else float(threshold)
    id_len, suffixed = _lengths(nodes, always, maybe, tau, s)
    return Sarq(id_len, suffixed, tau)


class _Nodes:
    """Every node of the full code trie, per depth, and each row's node at every depth."""

    def __init__(self, codes: npt.NDArray[np.uint8], traffic: F64, head: Bool,
                 alpha: float) -> None:  # fmt: skip
        n, full = codes.shape
        order = np.lexsort(codes.T[::-1])
        ordered = codes[order]
        change = np.zeros(max(n - 1, 0), bool)
        self.of_row = np.zeros((full + 1, n), np.int64)  # local node index, original row order
        self.size: list[I64] = []  # rows per node
        self.traffic: list[F64] = []
        self.heads: list[I64] = []
        for depth in range(full + 1):
            if depth:
                change |= ordered[1:, depth - 1] != ordered[:-1, depth - 1]
            local = np.concatenate([[0], np.cumsum(change)]).astype(np.int64)
            self.of_row[depth, order] = local
            self.size.append(np.bincount(local).astype(np.int64))
            self.traffic.append(np.bincount(local, weights=traffic[order]).astype(np.float64))
            self.heads.append(
                np.bincount(local, weights=head[order].astype(np.float64)).astype(np.int64)
            )
        self.entropy: list[F64] = []
        for depth in range(full):
            parent = np.zeros(len(self.size[depth + 1]), np.int64)
            parent[self.of_row[depth + 1]] = self.of_row[depth]
            kids = np.bincount(parent, minlength=len(self.size[depth]))
            share = (self.traffic[depth + 1] + alpha) / (
                self.traffic[depth][parent] + alpha * kids[parent]
            )
            spread = np.bincount(parent, weights=-share * np.log(share), minlength=len(kids))
            self.entropy.append(spread.astype(np.float64))
        self.entropy.append(np.zeros(len(self.size[full])))


def _rules(nodes: _Nodes, s: dict[str, Any]) -> tuple[list[Bool], list[Bool]]:
    """Per depth and node: splits whatever ``tau_T``; splits when ``T_v >= tau_T``."""
    always, maybe = [], []
    for depth, size in enumerate(nodes.size):
        deep = depth < s["max_length"]
        forced = (depth < s["min_length"]) | (size > s["max_bucket"])
        if s["head_split"] > 0:
            forced |= deep & (size > 1) & (nodes.heads[depth] >= s["head_split"])
        spread = deep & (size > 1) & (nodes.entropy[depth] >= s["min_entropy"])
        open_ = np.full(len(size), depth < len(nodes.size) - 1)  # codes left to split on
        always.append(forced & open_)
        maybe.append(spread & ~forced & open_)
    return always, maybe


def _lengths(
    nodes: _Nodes, always: list[Bool], maybe: list[Bool], threshold: float, s: dict[str, Any]
) -> tuple[I64, Bool]:
    """Each row's ID code length under ``tau_T = threshold``, and whether it takes a suffix."""
    split = np.stack(
        [(always[d] | (maybe[d] & (nodes.traffic[d] >= threshold)))[nodes.of_row[d]]
         for d in range(len(always))],
        axis=1,
    )  # fmt: skip
    id_len = np.argmin(split, axis=1).astype(np.int64)
    rows = np.arange(len(id_len))
    leaf = nodes.of_row[id_len, rows]
    size = np.zeros(len(rows), np.int64)
    heads = np.zeros(len(rows), np.int64)
    for depth in np.unique(id_len).tolist():
        at = id_len == depth
        size[at] = nodes.size[depth][leaf[at]]
        heads[at] = nodes.heads[depth][leaf[at]]
    suffixed = (heads > 0) & (size > 1) & (id_len >= s["max_length"])
    return id_len, suffixed


def _bisect(nodes: _Nodes, always: list[Bool], maybe: list[Bool], s: dict[str, Any]) -> float:
    """The ``tau_T`` whose mean ID length is nearest ``target_length`` (ties: the shorter).

    Mean length falls as ``tau_T`` rises and only changes at the traffic of a node that may
    split, so the search runs over those values (exact and deterministic)."""
    values = np.unique(np.concatenate([t[m] for t, m in zip(nodes.traffic, maybe, strict=True)]))
    candidates = np.concatenate([values, [np.inf]])

    def mean(at: int) -> float:
        id_len, suffixed = _lengths(nodes, always, maybe, float(candidates[at]), s)
        return float((id_len + suffixed).mean())

    lo, hi = 0, len(candidates) - 1  # mean(hi) is the shortest reachable
    target = float(s["target_length"])
    if mean(lo) <= target:
        return float(candidates[lo])
    while hi - lo > 1:  # invariant: mean(lo) > target >= mean(hi), or hi is the last
        mid = (lo + hi) // 2
        if mean(mid) > target:
            lo = mid
        else:
            hi = mid
    return float(candidates[lo if mean(lo) - target < target - mean(hi) else hi])


__all__ = ["Sarq", "sarq_lengths"]
