"""Constrained beam search over the trie of valid semantic IDs.

The decoder only ever extends a prefix by a token the trie allows (and, with a filter, only
into nodes that hold a product passing it), so it can never emit an ID no product has. At every
step the model's log-probabilities over the vocabulary are renormalised over the allowed
children of the prefix (``log_softmax`` restricted to them), so the scores of all complete IDs
sum to one. A prefix's score only falls as it grows, so the search stops as soon as the
``k``-th complete ID scores at least the best open prefix: the result is then exact for the
kept beam. A leaf shared by several products (an adaptive, shortened ID) returns all of them
with the leaf's score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.trie import PrefixTrie

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


class StepScores(Protocol):
    """A model's next-token log-probabilities over the vocabulary, one call per depth.

    The first call, ``step(None, None)``, scores the empty prefix (one row). Every later call
    scores the prefixes ``previous[parents[i]] + [tokens[i]]``, where ``previous`` are the rows
    of the call before: a model may keep per-row state (a key/value cache) between calls.
    """

    def __call__(
        self, parents: I64 | None, tokens: I64 | None
    ) -> npt.NDArray[np.floating]: ...  # pragma: no cover


def prefix_scorer(
    score: Callable[[Sequence[Sequence[int]]], npt.NDArray[np.floating]],
) -> StepScores:
    """A :class:`StepScores` from a function of whole prefixes (token lists), which it
    recomputes every call: for models without a cache."""
    prefixes = np.zeros((1, 0), np.int64)

    def step(parents: I64 | None, tokens: I64 | None) -> npt.NDArray[np.floating]:
        nonlocal prefixes
        if parents is None or tokens is None:
            prefixes = np.zeros((1, 0), np.int64)
        else:
            prefixes = np.concatenate([prefixes[parents], tokens[:, None]], axis=1)
        return score(prefixes.tolist())

    return step


@dataclass(frozen=True)
class Decoded:
    """Complete IDs found, best first.

    Attributes:
        leaves: the trie leaf of each.
        scores: the log-probability of each.
        steps: how many model calls the search made.
    """

    leaves: I64
    scores: F64
    steps: int

    def rows(self, trie: PrefixTrie) -> tuple[I64, F64]:
        """The products of the leaves with their leaf's score, best first."""
        rows = [trie.rows(int(leaf)) for leaf in self.leaves]
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0)
        scores = np.repeat(self.scores, [len(r) for r in rows])
        return np.concatenate(rows), scores


def beam_search(
    trie: PrefixTrie,
    step: StepScores,
    k: int,
    beam: int,
    allowed: Bool | None = None,
) -> Decoded:
    """The ``k`` best complete IDs under the model ``step``, constrained to the trie.

    Args:
        trie: the valid IDs.
        step: log-probabilities of the next token of each open prefix (one call per depth,
            all open prefixes at once; see :class:`StepScores`).
        k: complete IDs wanted.
        beam: open prefixes kept per depth (``>= k`` for the search to be able to find ``k``).
        allowed: per trie node, whether it may be entered (:meth:`PrefixTrie.allowed` of a
            filter); ``None``: every node.

    Raises:
        InvalidInputError: ``k`` or ``beam`` below 1.
    """
    if k < 1 or beam < 1:
        raise InvalidInputError(f"k={k}, beam={beam}: both must be >= 1")
    open_nodes = np.zeros(1, np.int64)
    open_scores = np.zeros(1)
    parents: I64 | None = None
    extend: I64 | None = None
    done_nodes, done_scores = np.zeros(0, np.int64), np.zeros(0)
    steps = 0
    while open_nodes.size:
        logits = np.asarray(step(parents, extend), np.float64)
        steps += 1
        counts = trie.child_count_[open_nodes]
        parent = np.repeat(np.arange(len(open_nodes)), counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        kids = np.repeat(trie.first_child_[open_nodes], counts) + within
        if allowed is not None:
            keep = allowed[kids]
            parent, kids = parent[keep], kids[keep]
        if not kids.size:
            break
        tokens = trie.token_[kids]
        row = logits[parent, tokens]
        # log-softmax over each parent's allowed children (parents come in runs)
        starts = np.flatnonzero(np.r_[True, parent[1:] != parent[:-1]])
        run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(row)]))
        top = np.maximum.reduceat(row, starts)
        norm = top + np.log(np.add.reduceat(np.exp(row - top[run]), starts))
        scores = open_scores[parent] + row - norm[run]
        leaf = trie.child_count_[kids] == 0
        done_nodes = np.concatenate([done_nodes, kids[leaf]])
        done_scores = np.concatenate([done_scores, scores[leaf]])
        best = np.argsort(-done_scores, kind="stable")[:k]
        done_nodes, done_scores = done_nodes[best], done_scores[best]
        going = np.flatnonzero(~leaf)
        going = going[np.argsort(-scores[going], kind="stable")[:beam]]
        open_nodes, open_scores = kids[going], scores[going]
        parents, extend = parent[going], tokens[going]
        if len(done_nodes) == k and open_scores.size and done_scores[-1] >= open_scores[0]:
            break  # no open prefix can beat the k-th complete ID any more
    return Decoded(done_nodes, done_scores, steps)


__all__ = ["Decoded", "StepScores", "beam_search", "prefix_scorer"]
