"""The prefix trie of valid semantic IDs: what constrained decoding may emit next.

Rows (products) are sorted by their ID tokens, so every trie node covers one contiguous range
``[lo, hi)`` of sorted rows, and a node's children are contiguous in the node arrays (built
breadth first). A node is a leaf when its depth is the ID length of the rows it covers (IDs are
prefix-free: no ID is the prefix of another, so no end token is needed). Filters become a row
mask; a node may be entered when some row of its range passes (:meth:`PrefixTrie.allowed`: one
cumulative sum over the rows, then two look-ups per node).
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


class PrefixTrie:
    """The trie of ``tokens`` (one ID per row, the first ``lengths[i]`` tokens of row ``i``).

    Args:
        tokens: ``[n, depth]`` ID tokens (entries past a row's length are ignored).
        lengths: each row's ID length (default: every row uses all ``depth`` tokens).

    Raises:
        InvalidInputError: an ID that is the prefix of another, or a length out of range.
    """

    def __init__(self, tokens: npt.ArrayLike, lengths: npt.ArrayLike | None = None) -> None:
        ids = np.asarray(tokens, np.int64)
        if ids.ndim != 2:
            raise InvalidInputError(f"tokens must be [rows, depth], not {ids.shape}")
        n, depth = ids.shape
        size = np.full(n, depth, np.int64) if lengths is None else np.asarray(lengths, np.int64)
        if len(size) != n or (n and (size.min() < 1 or size.max() > depth)):
            raise InvalidInputError(f"every ID length must be in 1..{depth}")
        padded = np.where(np.arange(depth)[None, :] < size[:, None], ids, -1)
        self.order_ = np.lexsort(padded.T[::-1]) if n else np.zeros(0, np.int64)
        self.sorted_ = padded[self.order_]
        self.lengths_ = size[self.order_]
        self._build(depth)

    def _build(self, depth: int) -> None:
        lo, hi, level, token, first, count = [0], [len(self.sorted_)], [0], [-1], [], []
        at = 0
        while at < len(lo):
            start, stop, d = lo[at], hi[at], level[at]
            first.append(len(lo))
            ends = self.lengths_[start:stop]
            if stop - start and (ends == d).any():
                if not (ends == d).all():
                    raise InvalidInputError(
                        "an ID is the prefix of another; semantic IDs must be prefix-free"
                    )
                count.append(0)  # a leaf; several rows here share one ID
            elif d < depth and stop > start:
                column = self.sorted_[start:stop, d]
                cuts = np.flatnonzero(np.diff(column)) + 1
                bounds = np.concatenate([[0], cuts, [stop - start]])
                for a, b in itertools.pairwise(bounds.tolist()):
                    lo.append(start + int(a))
                    hi.append(start + int(b))
                    level.append(d + 1)
                    token.append(int(column[a]))
                count.append(len(bounds) - 1)
            else:
                count.append(0)
            at += 1
        self.lo_, self.hi_ = np.array(lo, np.int64), np.array(hi, np.int64)
        self.depth_, self.token_ = np.array(level, np.int64), np.array(token, np.int64)
        self.first_child_, self.child_count_ = np.array(first, np.int64), np.array(count, np.int64)

    @property
    def nodes(self) -> int:
        """How many nodes (the root is node 0)."""
        return len(self.lo_)

    def children(self, node: int) -> tuple[I64, I64]:
        """The tokens that may follow ``node`` and the nodes they lead to."""
        start = int(self.first_child_[node])
        kids = np.arange(start, start + int(self.child_count_[node]))
        return self.token_[kids], kids

    def is_leaf(self, node: int) -> bool:
        """Whether ``node`` ends an ID."""
        return bool(self.child_count_[node] == 0)

    def rows(self, node: int) -> I64:
        """The original rows under ``node``."""
        out: I64 = self.order_[self.lo_[node] : self.hi_[node]]
        return out

    def find(self, prefix: npt.ArrayLike) -> int | None:
        """The node of a token prefix (``None``: no ID starts with it)."""
        node = 0
        for value in np.asarray(prefix, np.int64).tolist():
            tokens, kids = self.children(node)
            hit = np.flatnonzero(tokens == value)
            if not hit.size:
                return None
            node = int(kids[hit[0]])
        return node

    def allowed(self, mask: npt.ArrayLike) -> Bool:
        """Per node, whether some row under it passes ``mask`` (a bool per original row)."""
        passed = np.asarray(mask, bool)[self.order_]
        cumulative = np.concatenate([[0], np.cumsum(passed)])
        out: Bool = cumulative[self.hi_] > cumulative[self.lo_]
        return out


__all__ = ["PrefixTrie"]
