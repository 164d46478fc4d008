"""Metrics: hand-computed cases, agreement with ir-measures (pytrec_eval), AUC vs brute force,
bootstrap behaviour and input validation."""

from __future__ import annotations

import itertools
import math
import time

import ir_measures
import numpy as np
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate import (
    JudgedRun,
    auc,
    auc_ci,
    bootstrap_ci,
    gauc,
    gauc_ci,
    group_bootstrap_ci,
    ir_measures_name,
    map_at_k,
    mrr,
    ndcg_at_k,
    paired_bootstrap_diff,
    parse_metric,
    recall_at_k,
    relevant_query_ids,
    rmse,
)

Run = dict[str, list[str]]
Qrels = dict[str, dict[str, float]]

# One query with graded judgments: a=2, b=1, c=0, d=3; the run shows a, e (unjudged), d.
QRELS: Qrels = {"q1": {"a": 2, "b": 1, "c": 0, "d": 3}, "q2": {"x": 0}, "q3": {"z": 1}}
RUN: Run = {"q1": ["a", "e", "d"], "q2": ["x"], "q4": ["y"]}
LOG2_3 = math.log2(3)


# --------------------------------------------------------------------------- hand cases


def test_ndcg_hand_case_linear_gain_and_unjudged_zero() -> None:
    values = ndcg_at_k(RUN, QRELS, 3)
    dcg = 2 + 0 + 3 / 2  # a at rank 1, e unjudged, d at rank 3 (log2(4) = 2)
    idcg = 3 + 2 / LOG2_3 + 1 / 2  # d, a, b
    # q2 has no positive grade, q3 is not in the run: both 0; q4 (not judged) is ignored.
    np.testing.assert_allclose(values, [dcg / idcg, 0.0, 0.0])
    np.testing.assert_allclose(ndcg_at_k(RUN, QRELS, 1), [2 / 3, 0.0, 0.0])


def test_ap_recall_rr_hand_case() -> None:
    # Relevant at grade >= 1: a, b, d (3 products). Retrieved relevant at ranks 1 and 3.
    np.testing.assert_allclose(map_at_k(RUN, QRELS, 3), [(1 / 1 + 2 / 3) / 3, 0.0, 0.0])
    np.testing.assert_allclose(map_at_k(RUN, QRELS, 2), [(1 / 1) / 3, 0.0, 0.0])
    np.testing.assert_allclose(recall_at_k(RUN, QRELS, 3), [2 / 3, 0.0, 0.0])
    # Relevant at grade >= 3: only d, found at rank 3.
    np.testing.assert_allclose(map_at_k(RUN, QRELS, 3, rel_threshold=3), [1 / 3, 0.0, 0.0])
    np.testing.assert_allclose(recall_at_k(RUN, QRELS, 2, rel_threshold=3), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(mrr(RUN, QRELS, rel_threshold=3), [1 / 3, 0.0, 0.0])
    np.testing.assert_allclose(mrr(RUN, QRELS, rel_threshold=3, k=2), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(mrr(RUN, QRELS), [1.0, 0.0, 0.0])


def test_threshold_zero_counts_judged_zero_but_never_unjudged() -> None:
    qrels: Qrels = {"q": {"a": 0}}
    np.testing.assert_allclose(mrr({"q": ["u", "a"]}, qrels, rel_threshold=0), [0.5])


def test_query_ids_select_and_align() -> None:
    values = map_at_k(RUN, QRELS, 3, query_ids=["q3", "q1"])
    np.testing.assert_allclose(values, [0.0, (1 + 2 / 3) / 3])
    assert relevant_query_ids(QRELS) == ["q1", "q3"]
    assert relevant_query_ids(QRELS, rel_threshold=2) == ["q1"]


def test_judged_run_reuses_join_and_checks_depth() -> None:
    judged = JudgedRun(RUN, QRELS, depth=3)
    np.testing.assert_allclose(judged.metric("ndcg@3"), ndcg_at_k(RUN, QRELS, 3))
    np.testing.assert_allclose(judged.metric("map@2", 2), map_at_k(RUN, QRELS, 2, rel_threshold=2))
    with pytest.raises(InvalidInputError, match="depth >= 5"):
        judged.ndcg(5)
    assert JudgedRun(RUN, QRELS).depth == 3  # longest list


# --------------------------------------------------------------------------- ir-measures


def _random_case(rng: np.random.Generator) -> tuple[Run, dict[str, dict[str, int]]]:
    """Random qrels (integer grades 0-3) and a run with missing, empty and unjudged queries."""
    docs = [f"d{i}" for i in range(25)]
    qrels: dict[str, dict[str, int]] = {}
    run: Run = {}
    for q in range(int(rng.integers(1, 8))):
        qid = f"q{q}"
        judged = rng.choice(docs, size=int(rng.integers(1, 12)), replace=False)
        qrels[qid] = {str(d): int(rng.integers(0, 4)) for d in judged}
        mode = rng.random()
        if mode < 0.1:
            continue  # query not in the run
        if mode < 0.15:
            run[qid] = []
            continue
        retrieved = rng.choice(docs, size=int(rng.integers(1, 20)), replace=False)
        run[qid] = [str(d) for d in retrieved]
    run["unjudged-query"] = ["d1", "d2"]
    return run, qrels


def _ir_measures(
    measure: str, run: Run, qrels: dict[str, dict[str, int]]
) -> tuple[dict[str, float], float]:
    """Per-query values and the mean of an ir-measures measure with the pytrec_eval backend."""
    evaluator = ir_measures.pytrec_eval.evaluator([ir_measures.parse_measure(measure)], qrels)
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    per_query = {m.query_id: float(m.value) for m in evaluator.iter_calc(scored)}
    (mean,) = evaluator.calc_aggregate(scored).values()
    return per_query, float(mean)


def _assert_agrees(
    name: str, threshold: int, ours: np.ndarray, run: Run, qrels: dict[str, dict[str, int]]
) -> None:
    ref, ref_mean = _ir_measures(ir_measures_name(name, threshold), run, qrels)
    assert set(ref) == set(qrels)
    np.testing.assert_allclose(ours, [ref[q] for q in qrels], rtol=0, atol=1e-6, err_msg=name)
    assert ours.mean() == pytest.approx(ref_mean, abs=1e-6)


@pytest.mark.parametrize("seed", range(40))
def test_agrees_with_ir_measures_pytrec_eval(seed: int) -> None:
    rng = np.random.default_rng(seed)
    run, qrels = _random_case(rng)
    k = int(rng.choice([1, 3, 5, 10, 30]))
    threshold = int(rng.choice([1, 2, 3]))
    depth = max([k, *(len(docs) for docs in run.values())])
    judged = JudgedRun(run, qrels, depth=depth)
    _assert_agrees(f"ndcg@{k}", threshold, judged.ndcg(k), run, qrels)
    _assert_agrees(f"map@{k}", threshold, judged.ap(k, threshold), run, qrels)
    _assert_agrees(f"recall@{k}", threshold, judged.recall(k, threshold), run, qrels)
    _assert_agrees("mrr", threshold, judged.rr(threshold), run, qrels)
    # pytrec_eval ignores RR's cut-off, so compare mrr@k with RR on the run cut to k.
    cut = {q: docs[:k] for q, docs in run.items()}
    _assert_agrees("mrr", threshold, judged.rr(threshold, k), cut, qrels)


@pytest.mark.parametrize("seed", range(10))
def test_fractional_grades_map_to_scaled_integer_grades(seed: int) -> None:
    """Home Depot-style grades in thirds: threshold 2.33 is ir-measures' rel=7 on 3 * grade."""
    rng = np.random.default_rng(100 + seed)
    run, scaled = _random_case(rng)
    scaled = {q: {d: 3 + 2 * g for d, g in judged.items()} for q, judged in scaled.items()}
    exact = {q: {d: g / 3 for d, g in judged.items()} for q, judged in scaled.items()}
    literal = {q: {d: round(g / 3, 2) for d, g in judged.items()} for q, judged in scaled.items()}
    k = 5
    _assert_agrees(f"ndcg@{k}", 1, ndcg_at_k(run, exact, k), run, scaled)
    _assert_agrees(f"map@{k}", 7, map_at_k(run, literal, k, rel_threshold=2.33), run, scaled)
    _assert_agrees(f"recall@{k}", 7, recall_at_k(run, literal, k, rel_threshold=2.33), run, scaled)
    _assert_agrees("mrr", 7, mrr(run, literal, rel_threshold=2.33), run, scaled)


def test_ir_measures_name_mapping() -> None:
    assert ir_measures_name("ndcg@10", 2) == "nDCG@10"
    assert ir_measures_name("map@5") == "AP@5"
    assert ir_measures_name("map@5", 2) == "AP(rel=2)@5"
    assert ir_measures_name("recall@100", 2.0) == "R(rel=2)@100"
    assert ir_measures_name("mrr", 3) == "RR(rel=3)"
    assert ir_measures_name("mrr@10") == "RR@10"
    with pytest.raises(InvalidInputError, match="scale the grades"):
        ir_measures_name("map@5", 2.33)


def test_parse_metric() -> None:
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    assert parse_metric("mrr") == ("mrr", None)
    for bad in ("ndcg", "precision@5", "map@0", "NDCG@10"):
        with pytest.raises(InvalidInputError):
            parse_metric(bad)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("k", [0, -1, True, 2.5])
def test_bad_k_rejected(k: object) -> None:
    with pytest.raises(InvalidInputError, match="k="):
        ndcg_at_k(RUN, QRELS, k)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("run", "qrels", "match"),
    [
        ({"q": ["a", "b", "a"]}, {"q": {"a": 1}}, "more than once"),
        ({"q": "ab"}, {"q": {"a": 1}}, "is a string"),
        ({"q": ["a"]}, {"q": {"a": float("nan")}}, "finite numbers >= 0"),
        ({"q": ["a"]}, {"q": {"a": -1}}, "finite numbers >= 0"),
        ({"q": ["a"]}, {}, "no queries"),
    ],
)
def test_bad_run_or_qrels_rejected(run: Run, qrels: Qrels, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        recall_at_k(run, qrels, 5)


def test_unjudged_query_id_and_bad_threshold_rejected() -> None:
    with pytest.raises(InvalidInputError, match="no judgments"):
        mrr(RUN, QRELS, query_ids=["q4"])
    with pytest.raises(InvalidInputError, match="more than once"):
        mrr(RUN, QRELS, query_ids=["q1", "q1"])
    with pytest.raises(InvalidInputError, match="rel_threshold"):
        map_at_k(RUN, QRELS, 5, rel_threshold=float("nan"))


# --------------------------------------------------------------------------- AUC, GAUC, RMSE


def _brute_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(20))
def test_auc_matches_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, 2, size=n)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=n) + 0.5 * labels, 1)  # rounding creates ties
    assert auc(labels, scores) == pytest.approx(_brute_auc(labels, scores), abs=1e-12)


def test_auc_simple_cases() -> None:
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([True, False], [0.5, 0.5]) == 0.5
    assert auc([1, 1, 0], [0.1, 0.2, 0.9]) == 0.0


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "all 3 labels are 1"),
        ([0, 1], [0.1, float("nan")], r"scores\[1\]=nan"),
        ([0, 1, 1], [0.1, 0.2], "lengths differ"),
        ([0, 2], [0.1, 0.2], r"labels\[1\]=2"),
        ([], [], "empty"),
    ],
)
def test_auc_rejects_bad_input(labels: list[int], scores: list[float], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        auc(labels, scores)


def test_gauc_hand_case_skips_one_class_groups() -> None:
    labels = [1, 0, 0, 1, 0, 1, 1]
    scores = [0.9, 0.1, 0.95, 0.4, 0.3, 0.2, 0.8]
    groups = ["A", "A", "A", "B", "B", "C", "C"]
    # A: AUC 0.5 over 3 impressions; B: AUC 1.0 over 2; C has positives only (skipped).
    assert gauc(labels, scores, groups) == pytest.approx((3 * 0.5 + 2 * 1.0) / 5)
    with pytest.raises(InvalidInputError, match="none of the 2 groups"):
        gauc([1, 1, 0], [0.1, 0.2, 0.3], [1, 1, 2])


def test_gauc_matches_per_group_brute_force() -> None:
    rng = np.random.default_rng(7)
    n = 400
    groups = rng.integers(0, 30, size=n)
    labels = rng.integers(0, 2, size=n)
    scores = np.round(rng.random(n), 1)
    num = den = 0.0
    for g in np.unique(groups):
        mask = groups == g
        if labels[mask].min() != labels[mask].max():
            num += mask.sum() * _brute_auc(labels[mask], scores[mask])
            den += mask.sum()
    assert gauc(labels, scores, groups) == pytest.approx(num / den, abs=1e-12)


def test_rmse() -> None:
    assert rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(math.sqrt(4 / 3))
    with pytest.raises(InvalidInputError, match="lengths differ"):
        rmse([1.0], [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="y_pred"):
        rmse([1.0], [float("inf")])


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_mean_narrows_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.random(50), rng.random(2000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < 0.3 * (hi_s - lo_s)  # ~ sqrt(50 / 2000) = 0.16
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    assert bootstrap_ci([0.4]) == (0.4, 0.4)
    lo90, hi90 = bootstrap_ci(small, alpha=0.1)
    assert lo_s <= lo90 <= hi90 <= hi_s


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"per_query_values": []}, "empty"),
        ({"per_query_values": [0.1, float("nan")]}, "non-finite"),
        ({"per_query_values": [0.1], "n_resamples": 0}, "n_resamples=0"),
        ({"per_query_values": [0.1], "alpha": 1.5}, "alpha=1.5"),
    ],
)
def test_bootstrap_ci_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        bootstrap_ci(**kwargs)  # type: ignore[arg-type]


def test_paired_bootstrap_diff() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(300)
    same = paired_bootstrap_diff(a, a)
    assert same == (0.0, 0.0, 0.0, 1.0)
    b = np.clip(a - 0.05 + rng.normal(0, 0.02, size=300), 0, 1)
    diff, low, high, p = paired_bootstrap_diff(a, b, n_resamples=500)
    assert low <= diff <= high
    assert low > 0
    assert p < 0.01
    noise = paired_bootstrap_diff(a, a + rng.normal(0, 0.1, size=300))
    assert noise.low < 0 < noise.high
    assert noise.p_value > 0.05
    const = paired_bootstrap_diff(a + 0.1, a)
    assert const.low == pytest.approx(0.1)
    assert const.high == pytest.approx(0.1)
    with pytest.raises(InvalidInputError, match="lengths differ"):
        paired_bootstrap_diff(a, a[:-1])


def _clicks(n: int, n_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, size=n)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.round(rng.normal(size=n) + labels, 2)
    return labels, scores, groups


def test_auc_ci_equals_generic_group_bootstrap_and_contains_auc() -> None:
    labels, scores, groups = _clicks(3000, 200, seed=2)
    fast = auc_ci(labels, scores, groups, n_resamples=100, seed=5)
    slow = group_bootstrap_ci(auc, groups, labels, scores, n_resamples=100, seed=5)
    assert fast == pytest.approx(slow, abs=1e-12)  # same resamples, two computations
    assert fast[0] <= auc(labels, scores) <= fast[1]
    rows = auc_ci(labels, scores, n_resamples=100)
    assert rows[0] <= auc(labels, scores) <= rows[1]


def test_auc_ci_drops_one_class_resamples() -> None:
    # Two groups, one positive-only: half the resamples have one class only.
    labels, scores, groups = [1, 1, 0, 0], [0.9, 0.8, 0.3, 0.85], [0, 0, 1, 1]
    assert auc_ci(labels, scores, groups, n_resamples=50) == pytest.approx((0.75, 0.75))


def test_gauc_ci_equals_generic_when_all_groups_have_both_classes() -> None:
    labels, scores, groups = _clicks(3000, 50, seed=3)
    assert gauc(labels, scores, groups) > 0.5
    fast = gauc_ci(labels, scores, groups, n_resamples=100, seed=1)
    # A group drawn twice is one group with doubled rows: same AUC, double weight.
    slow = group_bootstrap_ci(gauc, groups, labels, scores, groups, n_resamples=100, seed=1)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert fast[0] <= gauc(labels, scores, groups) <= fast[1]


def test_group_bootstrap_ci_with_rmse_and_validation() -> None:
    rng = np.random.default_rng(4)
    y = rng.random(500)
    pred = y + rng.normal(0, 0.1, size=500)
    low, high = group_bootstrap_ci(rmse, rng.integers(0, 50, size=500), y, pred, seed=0)
    assert low <= rmse(y, pred) <= high
    with pytest.raises(InvalidInputError, match="lengths differ"):
        group_bootstrap_ci(rmse, [0, 1], y, pred)
    with pytest.raises(InvalidInputError, match="at least one row array"):
        group_bootstrap_ci(rmse, [0, 1])


def test_auc_ci_is_fast_on_large_input() -> None:
    labels, scores, groups = _clicks(200_000, 20_000, seed=6)
    start = time.perf_counter()
    low, high = auc_ci(labels, scores, groups, n_resamples=50)
    assert time.perf_counter() - start < 5.0
    assert low <= auc(labels, scores) <= high
