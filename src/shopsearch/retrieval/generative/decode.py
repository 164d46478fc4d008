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

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.trie import PrefixTrie

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

#: Log-probabilities over the vocabulary of the next token of each prefix (token lists).
StepScores = Callable[[Sequence[Sequence[int]]], npt.NDArray[np.floating]]


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
        step: log-probabilities of the next token of each prefix (one call per depth, all
            open prefixes at once).
        k: complete IDs wanted.
        beam: open prefixes kept per depth (``>= k`` for the search to be able to find ``k``).
        allowed: per trie node, whether it may be entered (:meth:`PrefixTrie.allowed` of a
            filter); ``None``: every node.

    Raises:
        InvalidInputError: ``k`` or ``beam`` below 1.
    """
    if k < 1 or beam < 1:
        raise InvalidInputError(f"k={k}, beam={beam}: both must be >= 1")
    open_nodes: list[int] = [0]
    open_scores: list[float] = [0.0]
    prefixes: list[list[int]] = [[]]
    done: list[tuple[float, int]] = []
    steps = 0
    while open_nodes:
        logits = np.asarray(step(prefixes), np.float64)
        steps += 1
        candidates: list[tuple[float, int, list[int]]] = []
        for i, node in enumerate(open_nodes):
            tokens, kids = trie.children(node)
            if allowed is not None:
                keep = allowed[kids]
                tokens, kids = tokens[keep], kids[keep]
            if not len(kids):
                continue
            row = logits[i, tokens]
            top = float(row.max())
            normalised = row - (top + np.log(np.exp(row - top).sum()))
            for token, kid, value in zip(tokens.tolist(), kids.tolist(), normalised, strict=True):
                candidates.append((open_scores[i] + float(value), kid, [*prefixes[i], token]))
        candidates.sort(key=lambda c: -c[0])
        open_nodes, open_scores, prefixes = [], [], []
        for score, node, prefix in candidates:
            if trie.is_leaf(node):
                done.append((score, node))
            elif len(open_nodes) < beam:
                open_nodes.append(node)
                open_scores.append(score)
                prefixes.append(prefix)
        done.sort(key=lambda d: -d[0])
        del done[k:]
        if len(done) == k and open_scores and done[-1][0] >= open_scores[0]:
            break  # no open prefix can beat the k-th complete ID any more
    return Decoded(
        np.array([node for _, node in done], np.int64),
        np.array([score for score, _ in done], np.float64),
        steps,
    )


__all__ = ["Decoded", "StepScores", "beam_search"]
