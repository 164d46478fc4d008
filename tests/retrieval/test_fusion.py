from __future__ import annotations

import numpy as np
import pytest

from shopsearch.catalog.candidates import Candidates
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.fusion import WeightedScoreFusion, minmax, reciprocal_rank_fusion


def _c(ids: list[str], scores: list[float]) -> Candidates:
    return Candidates(keys=[("d", i) for i in ids], scores=np.array(scores, dtype=np.float32))


def test_rrf_matches_hand_computation_and_keeps_sources():
    fused = reciprocal_rank_fusion(
        {"lex": _c(["a", "b", "c"], [9, 5, 1]), "dense": _c(["c", "a"], [0.9, 0.8])},
        k=3,
        constant=60,
    )
    expected = {"a": 1 / 61 + 1 / 62, "b": 1 / 62, "c": 1 / 63 + 1 / 61}
    assert [key[1] for key in fused.keys] == sorted(expected, key=lambda x: -expected[x])
    np.testing.assert_allclose(fused.scores, sorted(expected.values(), reverse=True), rtol=1e-6)
    b = [key[1] for key in fused.keys].index("b")
    assert np.isnan(fused.sources["dense"][b])
    assert fused.sources["lex"][b] == 5


def test_minmax_handles_absent_and_constant_scores():
    np.testing.assert_allclose(minmax(np.array([2, np.nan, 4], dtype=np.float32)), [0, 0, 1])
    np.testing.assert_allclose(minmax(np.array([3, 3], dtype=np.float32)), [1, 1])


def test_weighted_fusion_fit_learns_the_informative_source():
    # "good" ranks the relevant product first in every query, "bad" ranks it last.
    lists, qrels = [], []
    for q in range(5):
        rel, other = f"r{q}", f"x{q}"
        lists.append({"good": _c([rel, other], [2.0, 1.0]), "bad": _c([other, rel], [2.0, 1.0])})
        qrels.append({("d", rel): 3.0})
    fusion = WeightedScoreFusion(["good", "bad"], grid_steps=10).fit(lists, qrels)
    assert fusion.weights_["good"] > fusion.weights_["bad"]
    assert fusion.train_ndcg10_ == pytest.approx(1.0)
    fused = fusion.fuse(lists[0], k=2)
    assert fused.keys[0] == ("d", "r0")


def test_weighted_fusion_errors():
    with pytest.raises(InvalidInputError):
        WeightedScoreFusion([])
    fusion = WeightedScoreFusion(["a"])
    with pytest.raises(InvalidInputError, match="source"):
        fusion.fuse({"b": _c(["x"], [1])}, k=1)
    with pytest.raises(InvalidInputError, match="judgment"):
        fusion.fit([{"a": _c(["x"], [1])}], [])
