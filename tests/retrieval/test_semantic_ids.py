"""Semantic IDs: residual k-means codes, fixed-length IDs with a collision suffix
(``rq-fixed``), and the prefix trie checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.retrieval.generative.ids import FixedSemanticIds
from shopsearch.retrieval.generative.quantize import ResidualKMeans
from shopsearch.retrieval.generative.trie import PrefixTrie


def _vectors(n: int = 400, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(8, dim))
    x = centers[rng.integers(8, size=n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_each_level_shrinks_the_reconstruction_error() -> None:
    x = _vectors()
    rq = ResidualKMeans(levels=4, codewords=8, seed=1).fit(x)
    codes = rq.encode(x)
    assert codes.shape == (400, 4)
    errors = [float(((x - rq.reconstruct(codes, level)) ** 2).sum(1).mean()) for level in range(5)]
    assert all(b < a for a, b in itertools.pairwise(errors))
    np.testing.assert_array_equal(codes, ResidualKMeans(4, 8, seed=1).fit(x).encode(x))
    with pytest.raises(InvalidInputError, match="codewords"):
        ResidualKMeans(codewords=300)
    with pytest.raises(InvalidInputError, match="at least 2"):
        ResidualKMeans().fit(x[:1])


def test_fixed_ids_are_unique_and_new_products_get_ids_without_a_refit(tmp_path) -> None:
    x = _vectors()
    rq = ResidualKMeans(levels=3, codewords=4, seed=0).fit(x[:300])
    keys = [("us", f"p{i}") for i in range(300)]
    ids = FixedSemanticIds(keys, rq.encode(x[:300]), levels=2)
    tokens = ids.tokens
    assert tokens.shape == (300, 3)
    assert len({tuple(t) for t in tokens.tolist()}) == 300  # unique
    assert ids.collision_rate() > 0.5  # 16 prefixes for 300 products: most collide
    ids.add([("us", f"n{i}") for i in range(100)], rq.encode(x[300:]))
    assert len({tuple(t) for t in ids.tokens.tolist()}) == 400
    np.testing.assert_array_equal(ids.tokens[:300], tokens)  # old IDs never change
    ids.save(tmp_path / "ids")
    loaded = FixedSemanticIds.load(tmp_path / "ids")
    np.testing.assert_array_equal(loaded.tokens, ids.tokens)
    loaded.add([("us", "late")], rq.encode(x[:1]))
    assert tuple(loaded.tokens[-1]) not in {tuple(t) for t in ids.tokens.tolist()}
    with pytest.raises(WorkspaceError, match="no semantic IDs"):
        FixedSemanticIds.load(tmp_path / "none")


def test_the_trie_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    tokens = np.unique(rng.integers(0, 4, size=(60, 3)), axis=0)
    trie = PrefixTrie(tokens)
    ids = {tuple(t) for t in tokens.tolist()}
    # the tokens that may follow every prefix are exactly those of some ID
    for prefix in {t[:d] for t in ids for d in range(3)}:
        node = trie.find(prefix)
        assert node is not None
        expected = sorted({t[len(prefix)] for t in ids if t[: len(prefix)] == prefix})
        assert sorted(trie.children(node)[0].tolist()) == expected
        under = {tuple(tokens[r]) for r in trie.rows(node).tolist()}
        assert under == {t for t in ids if t[: len(prefix)] == prefix}
    assert trie.find((9,)) is None
    leaf = trie.find(tokens[5])
    assert leaf is not None
    assert trie.is_leaf(leaf)
    assert trie.rows(leaf).tolist() == [5]
    # a filter leaves the nodes with a passing row under them
    mask = rng.random(len(tokens)) < 0.3
    allowed = trie.allowed(mask)
    for node in range(trie.nodes):
        assert allowed[node] == bool(mask[trie.rows(node)].any())


def test_variable_length_ids_must_be_prefix_free() -> None:
    tokens = np.array([[0, 1, 0], [0, 2, 5], [1, 0, 0]])
    trie = PrefixTrie(tokens, lengths=[2, 3, 1])
    leaf = trie.find([1])
    assert leaf is not None
    assert trie.is_leaf(leaf)
    with pytest.raises(InvalidInputError, match="prefix-free"):
        PrefixTrie(np.array([[0, 1], [0, 2]]), lengths=[1, 2])
    shared = PrefixTrie(np.array([[0, 1], [0, 2]]), lengths=[1, 1])  # one ID, two products
    node = shared.find([0])
    assert node is not None
    assert shared.is_leaf(node)
    assert sorted(shared.rows(node).tolist()) == [0, 1]
