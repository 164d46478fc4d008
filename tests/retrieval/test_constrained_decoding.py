"""Constrained beam search: only valid IDs, exact against enumeration when the beam is wide,
filters respected, shared leaves return all their products."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.decode import beam_search, prefix_scorer
from shopsearch.retrieval.generative.trie import PrefixTrie

VOCAB = 5


def _scores(prefixes: Sequence[Sequence[int]]) -> np.ndarray:
    """A fixed, prefix-dependent next-token distribution (log-probabilities)."""
    out = np.empty((len(prefixes), VOCAB))
    for i, prefix in enumerate(prefixes):
        rng = np.random.default_rng(zlib.crc32(bytes(prefix)))
        out[i] = np.log(rng.dirichlet(np.ones(VOCAB)))
    return out


def _exact(trie: PrefixTrie, tokens: np.ndarray, allowed: np.ndarray | None) -> dict:
    """The renormalised log-probability of every reachable complete ID, by enumeration."""
    scores = {}
    for row in tokens.tolist():
        node, total, ok = 0, 0.0, True
        for depth, token in enumerate(row):
            kids_tokens, kids = trie.children(node)
            if allowed is not None:
                kids_tokens, kids = kids_tokens[allowed[kids]], kids[allowed[kids]]
            if token not in kids_tokens.tolist():
                ok = False
                break
            logits = _scores([row[:depth]])[0][kids_tokens]
            logits = logits - np.log(np.exp(logits).sum())
            total += float(logits[kids_tokens.tolist().index(token)])
            node = int(kids[kids_tokens.tolist().index(token)])
        if ok:
            scores[tuple(row)] = total
    return scores


@pytest.fixture
def ids() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.unique(rng.integers(0, VOCAB, size=(50, 3)), axis=0)


def test_a_wide_beam_is_exact(ids: np.ndarray) -> None:
    trie = PrefixTrie(ids)
    exact = _exact(trie, ids, None)
    assert sum(np.exp(v) for v in exact.values()) == pytest.approx(1.0)
    found = beam_search(trie, prefix_scorer(_scores), k=10, beam=len(ids))
    best = sorted(exact.values(), reverse=True)[:10]
    np.testing.assert_allclose(found.scores, best)
    rows, scores = found.rows(trie)
    for row, score in zip(rows.tolist(), scores.tolist(), strict=True):
        assert exact[tuple(ids[row])] == pytest.approx(score)


def test_a_narrow_beam_emits_only_valid_ids_and_stops_early(ids: np.ndarray) -> None:
    trie = PrefixTrie(ids)
    found = beam_search(trie, prefix_scorer(_scores), k=3, beam=3)
    assert len(found.leaves) == 3
    valid = {tuple(t) for t in ids.tolist()}
    rows, _ = found.rows(trie)
    assert all(tuple(ids[r]) in valid for r in rows.tolist())
    assert found.steps <= 3


def test_a_filter_is_respected(ids: np.ndarray) -> None:
    trie = PrefixTrie(ids)
    mask = ids[:, 0] % 2 == 0  # only IDs starting with an even token pass
    allowed = trie.allowed(mask)
    found = beam_search(trie, prefix_scorer(_scores), k=5, beam=len(ids), allowed=allowed)
    rows, _ = found.rows(trie)
    assert mask[rows].all()
    exact = _exact(trie, ids, allowed)
    np.testing.assert_allclose(found.scores, sorted(exact.values(), reverse=True)[:5])


def test_a_shared_leaf_returns_every_product_of_it() -> None:
    # rows 0 and 1 share the short ID (0,); rows 2 and 3 have IDs (1, 0) and (1, 1)
    trie = PrefixTrie(np.array([[0, 9], [0, 9], [1, 0], [1, 1]]), lengths=[1, 1, 2, 2])
    found = beam_search(trie, prefix_scorer(_scores), k=3, beam=3)
    assert len(found.leaves) == 3
    rows, scores = found.rows(trie)
    assert sorted(rows.tolist()) == [0, 1, 2, 3]
    shared = [score for row, score in zip(rows.tolist(), scores.tolist(), strict=True) if row < 2]
    assert shared[0] == shared[1]
    assert list(scores) == sorted(scores, reverse=True)
    with pytest.raises(InvalidInputError, match="must be >= 1"):
        beam_search(trie, prefix_scorer(_scores), k=0, beam=3)
