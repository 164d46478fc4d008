"""SA²CRQ: adaptive semantic IDs (SARQ) on toy tries, and anchored residual quantization
(ACRQ)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.retrieval.generative.adaptive_ids import AdaptiveSemanticIds
from shopsearch.retrieval.generative.ids import FixedSemanticIds, id_stats, load_ids
from shopsearch.retrieval.generative.quantize import ResidualKMeans, kmeans
from shopsearch.retrieval.generative.trie import PrefixTrie


def _keys(n: int, tag: str = "p") -> list[tuple[str, str]]:
    return [("us", f"{tag}{i}") for i in range(n)]


def _toy(n: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Depth-5 codes over 8 values, skewed at the top (crowded nodes) and a traffic column
    with 15% head products (2..30) and a tail of 0s and 1s."""
    rng = np.random.default_rng(seed)
    top = rng.choice(8, size=n, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05])
    codes = np.concatenate([top[:, None], rng.integers(0, 8, size=(n, 4))], axis=1)
    head = rng.random(n) < 0.15
    traffic = np.where(head, rng.integers(2, 31, size=n), rng.random(n) < 0.3)
    return codes.astype(np.uint8), traffic.astype(np.float64)


def _written(ids: AdaptiveSemanticIds) -> list[tuple[int, ...]]:
    return [
        tuple(t[:size]) for t, size in zip(ids.tokens.tolist(), ids.lengths.tolist(), strict=True)
    ]


def test_a_hand_made_trie_gives_the_expected_ids() -> None:
    codes = [[0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1]]
    traffic = [5, 3, 0, 0, 0, 0, 0]
    ids = AdaptiveSemanticIds(_keys(7), codes, traffic, min_length=1, max_length=2,
                              threshold=np.inf, codewords=4, suffix_cap=8)  # fmt: skip
    # [0] holds heads: it splits; [0, 0] is at max_length with two heads: suffixes by traffic,
    # and its tail row shares the next one; [0, 1] and [1] are tail buckets
    assert _written(ids) == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1), (0, 1), (1,), (1,)]
    assert ids.tokens.shape == (7, 3)
    assert ids.tokens[5].tolist() == [1, 0, 0]  # padding past the length is 0
    assert ids.vocab == 8
    assert ids.collision_rate() == 1.0
    assert ids.collision_rate([3]) == 1.0
    ids.add(_keys(3, "n"), [[1, 1, 1], [0, 2, 0], [0, 0, 3]])
    # joins bucket [1]; opens leaf [0, 2] under the internal node [0]; joins the tail suffix
    assert _written(ids)[7:] == [(1,), (0, 2), (0, 0, 2)]
    assert _written(ids)[:7] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1), (0, 1), (1,), (1,)]
    PrefixTrie(ids.tokens, ids.lengths)


def test_new_products_under_a_head_only_suffix_node_share_one_new_suffix() -> None:
    codes = [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 1, 0]]
    ids = AdaptiveSemanticIds(_keys(4), codes, [4, 2, 0, 0], min_length=1, max_length=2,
                              threshold=np.inf, codewords=4)  # fmt: skip
    assert _written(ids) == [(0, 0, 0), (0, 0, 1), (1,), (1,)]
    ids.add(_keys(2, "n"), [[0, 0, 3], [0, 0, 2]])
    assert _written(ids)[4:] == [(0, 0, 2), (0, 0, 2)]
    capped = AdaptiveSemanticIds(_keys(4), codes, [4, 2, 0, 0], min_length=1, max_length=2,
                                 threshold=np.inf, codewords=4, suffix_cap=2)  # fmt: skip
    capped.add(_keys(1, "n"), [[0, 0, 3]])
    assert _written(capped)[4] == (0, 0, 1)  # past the cap: the last suffix leaf


def test_sarq_ids_are_prefix_free_and_longer_where_the_traffic_is() -> None:
    codes, traffic = _toy()
    ids = AdaptiveSemanticIds(_keys(len(codes)), codes, traffic, target_length=2.6)
    trie = PrefixTrie(ids.tokens, ids.lengths)  # raises unless prefix-free
    assert trie.nodes > 1
    lengths = ids.lengths
    head = traffic >= 2
    assert lengths[head].mean() > lengths[traffic == 0].mean() + 0.5
    assert int(ids.tokens.max()) < ids.vocab
    head_ids = [t for t, h in zip(_written(ids), head.tolist(), strict=True) if h]
    assert len(set(head_ids)) == len(head_ids)  # every head product is told apart
    assert np.percentile(id_stats(ids)["bucket_max"], 50) > 1  # tail products share


@pytest.mark.parametrize("head_split", [0, 1])
def test_the_tau_bisection_finds_the_nearest_reachable_mean_length(head_split: int) -> None:
    codes, traffic = _toy(n=400, seed=1)
    keys = _keys(len(codes))
    grid = [*range(160), np.inf]  # node traffic is an integer here
    reachable = [
        AdaptiveSemanticIds(keys, codes, traffic, head_split=head_split, threshold=t)
        .lengths.mean()
        for t in grid
    ]  # fmt: skip
    assert all(a >= b for a, b in itertools.pairwise(reachable))  # monotone
    assert reachable[-2] == reachable[-1]  # the grid reaches past every node's traffic
    hit = []
    for target in (2.3, 2.6, 3.0, 3.4):
        ids = AdaptiveSemanticIds(keys, codes, traffic, head_split=head_split,
                                  target_length=target)  # fmt: skip
        best = min(abs(m - target) for m in reachable)
        assert abs(ids.lengths.mean() - target) == pytest.approx(best)
        hit.append(best < 0.1)
    assert any(hit)


def test_head_collisions_are_no_more_than_rq_fixed() -> None:
    codes, traffic = _toy(seed=2)
    head = np.flatnonzero(traffic >= 2)
    ids = AdaptiveSemanticIds(_keys(len(codes)), codes, traffic)
    fixed = FixedSemanticIds(_keys(len(codes)), codes, levels=3)
    assert ids.collision_rate(head) <= fixed.collision_rate(head)
    stats = id_stats(ids, traffic >= 2, traffic == 0)
    assert stats["head_collision_rate"] == ids.collision_rate(head)
    assert stats["mean_length_head"] > stats["mean_length_cold"]


def test_new_products_keep_the_old_ids_and_the_ids_survive_save_and_load(tmp_path) -> None:
    codes, traffic = _toy(seed=3)
    ids = AdaptiveSemanticIds(_keys(600), codes[:600], traffic[:600], codewords=8)
    before, lengths = ids.tokens.copy(), ids.lengths.copy()
    ids.save(tmp_path / "ids")
    ids.add(_keys(200, "n"), codes[600:])
    np.testing.assert_array_equal(ids.tokens[:600], before)
    np.testing.assert_array_equal(ids.lengths[:600], lengths)
    PrefixTrie(ids.tokens, ids.lengths)
    assert ids.tokens.shape[1] == before.shape[1]  # the new IDs fit the width
    loaded = load_ids(tmp_path / "ids")
    assert isinstance(loaded, AdaptiveSemanticIds)
    np.testing.assert_array_equal(loaded.tokens, before)
    assert (loaded.threshold, loaded.vocab) == (ids.threshold, ids.vocab)
    loaded.add(_keys(200, "n"), codes[600:])  # the same placement after a round trip
    np.testing.assert_array_equal(loaded.tokens, ids.tokens)
    fixed = FixedSemanticIds(_keys(600), codes[:600], levels=2)
    fixed.save(tmp_path / "fixed")
    assert isinstance(load_ids(tmp_path / "fixed"), FixedSemanticIds)
    assert fixed.vocab == max(int(codes[:600].max()), int(fixed.suffix.max())) + 1
    with pytest.raises(WorkspaceError, match="not rq-fixed"):
        FixedSemanticIds.load(tmp_path / "ids")
    with pytest.raises(WorkspaceError, match="not sa2crq"):
        AdaptiveSemanticIds.load(tmp_path / "fixed")
    with pytest.raises(WorkspaceError, match="no semantic IDs"):
        load_ids(tmp_path / "none")


def test_bad_settings_are_refused() -> None:
    codes, traffic = _toy(n=50)
    keys = _keys(50)
    with pytest.raises(InvalidInputError, match="max_length"):
        AdaptiveSemanticIds(keys, codes, traffic, max_length=6)
    with pytest.raises(InvalidInputError, match="traffic"):
        AdaptiveSemanticIds(keys, codes, -traffic - 1)
    with pytest.raises(InvalidInputError, match="one row per key"):
        AdaptiveSemanticIds(keys[:10], codes, traffic)
    with pytest.raises(InvalidInputError, match="do not fit"):
        AdaptiveSemanticIds(keys, codes, traffic).add(_keys(1, "n"), [[0, 1]])


def _vectors(n: int = 500, dim: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim))
    x = centers[rng.integers(10, size=n)] + 0.4 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_acrq_anchors_level_one_on_the_head_and_shrinks_deeper_levels_to_it() -> None:
    x = _vectors()
    rng = np.random.default_rng(5)
    head = rng.random(len(x)) < 0.2
    traffic = np.where(head, rng.integers(2, 10, size=len(x)), 0).astype(np.float64)
    rq = ResidualKMeans(levels=3, codewords=8, iterations=10, seed=4)
    rq.fit_anchored(x, head, traffic)
    # level 1 is the head-only fit, whatever the tail holds
    alone = kmeans(x[head], 8, 10, np.random.default_rng(4), 1 + traffic[head])
    np.testing.assert_array_equal(rq.codebooks_[0], alone)
    np.testing.assert_array_equal(rq.codebooks_[0], rq.head_codebooks_[0])
    # a huge shrink keeps the deeper codebooks at their head values; none moves them
    stiff = ResidualKMeans(3, 8, 10, seed=4).fit_anchored(x, head, traffic, shrink=1e12)
    for level in (1, 2):
        np.testing.assert_allclose(stiff.codebooks_[level], stiff.head_codebooks_[level],
                                   atol=1e-5)  # fmt: skip
    loose = ResidualKMeans(3, 8, 10, seed=4).fit_anchored(x, head, traffic, shrink=0.0)
    assert not np.allclose(loose.codebooks_[1], loose.head_codebooks_[1], atol=1e-3)
    # new products are encoded by the frozen codebooks, and deeper levels still help
    fresh = _vectors(n=50, seed=9)
    codes = rq.encode(fresh)
    assert codes.shape == (50, 3)
    errors = [float(((fresh - rq.reconstruct(codes, d)) ** 2).sum(1).mean()) for d in (1, 3)]
    assert errors[1] < errors[0]
    with pytest.raises(InvalidInputError, match="2 head rows"):
        ResidualKMeans(3, 8).fit_anchored(x, np.zeros(len(x), bool))
    with pytest.raises(InvalidInputError, match="anchor_levels"):
        ResidualKMeans(3, 8).fit_anchored(x, head, anchor_levels=4)
