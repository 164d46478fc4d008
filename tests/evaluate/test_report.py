"""Report builder (format, validation, JSON round trip, table) and evaluate_run."""

from __future__ import annotations

import json
from pathlib import Path

import ir_measures
import numpy as np
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate import (
    Report,
    evaluate_run,
    ir_measures_name,
    map_at_k,
    mrr,
    ndcg_at_k,
    paired_bootstrap_diff,
    recall_at_k,
    relevant_query_ids,
)

QRELS: dict[str, dict[str, float]] = {
    "q1": {"a": 3, "b": 2, "c": 1, "d": 0},
    "q2": {"x": 2, "y": 1},
    "q3": {"z": 0},
}
RUN: dict[str, list[str]] = {"q1": ["b", "u", "a", "d"], "q2": ["y", "x"], "q3": ["z"]}


def _report() -> Report:
    report = Report(
        suite="relevance",
        primary_metric="ndcg@10",
        dataset={"queries": 3, "judgments": 7},
        config={"k": 10, "seed": np.int64(0), "ks": (10, 100), "skipped": float("nan")},
    )
    report.add_system("baseline/bm25s", {"ndcg@10": 0.41, "mrr": 0.5})
    report.add_system(
        "shopsearch/hybrid",
        {"ndcg@10": np.float64(0.47), "recall@100": 0.8, "mrr": 0.55},
        ci={"ndcg@10": (0.45, 0.49)},
        extra={
            "by_domain": {"es": {"ndcg@10": 0.5}, "de": {"ndcg@10": 0.44}},
            "long_tail": {"ndcg@10": np.float32(0.25), "queries": np.int64(40)},
        },
    )
    report.timing("index", 1.5)
    return report


# --------------------------------------------------------------------------- report


def test_report_has_the_design_format() -> None:
    data = _report().to_dict()
    assert list(data) == [
        "suite",
        "dataset",
        "primary_metric",
        "systems",
        "timing_s",
        "created",
        "config",
    ]
    hybrid = data["systems"]["shopsearch/hybrid"]
    assert hybrid["ndcg@10"] == 0.47
    assert hybrid["ci95"] == {"ndcg@10": [0.45, 0.49]}
    assert hybrid["by_domain"]["es"] == {"ndcg@10": 0.5}
    assert hybrid["long_tail"]["queries"] == 40
    assert "ci95" not in data["systems"]["baseline/bm25s"]
    assert data["timing_s"] == {"index": 1.5}
    assert data["created"].endswith("+00:00")
    assert data["config"] == {"k": 10, "seed": 0, "ks": [10, 100], "skipped": None}


def test_report_round_trips_through_json_and_disk(tmp_path: Path) -> None:
    report = _report()
    text = report.to_json()
    assert json.loads(text) == report.to_dict()
    assert Report.from_json(text).to_dict() == report.to_dict()
    path = report.write(tmp_path / "out" / "report.json")
    assert json.loads(path.read_text()) == report.to_dict()
    assert Report.read(path).to_dict() == report.to_dict()
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp files left


@pytest.mark.parametrize("name", ["bm25s", "baseline/", "other/x", "Baseline/x", "shopsearch"])
def test_report_rejects_bad_system_names(name: str) -> None:
    with pytest.raises(InvalidInputError, match="baseline/"):
        _report().add_system(name, {"ndcg@10": 0.1})


@pytest.mark.parametrize(
    ("metrics", "ci", "extra", "match"),
    [
        ({"mrr": 0.1}, None, None, "lacks the primary metric"),
        ({"ndcg@10": float("nan")}, None, None, "finite number"),
        ({"ndcg@10": "0.4"}, None, None, "finite number"),
        ({"ndcg@10": 0.4}, {"mrr": (0.1, 0.2)}, None, "no such metric"),
        ({"ndcg@10": 0.4}, {"ndcg@10": (0.5, 0.3)}, None, "low > high"),
        ({"ndcg@10": 0.4}, None, {"ndcg@10": {}}, "clashes"),
        ({"ndcg@10": 0.4}, None, {"ci95": {}}, "clashes"),
        ({"ndcg@10": 0.4}, None, {"by_domain": 3}, "give an object"),
    ],
)
def test_report_rejects_bad_entries(
    metrics: dict[str, float],
    ci: dict[str, tuple[float, float]] | None,
    extra: dict[str, object] | None,
    match: str,
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        _report().add_system("shopsearch/new", metrics, ci, extra)


def test_report_rejects_duplicates_and_bad_fields() -> None:
    report = _report()
    with pytest.raises(InvalidInputError, match="already in the report"):
        report.add_system("baseline/bm25s", {"ndcg@10": 0.1})
    with pytest.raises(InvalidInputError, match="negative"):
        report.timing("fit", -1.0)
    with pytest.raises(InvalidInputError, match="suite"):
        Report(suite="", primary_metric="ndcg@10")
    with pytest.raises(InvalidInputError, match="not a shopsearch report"):
        Report.from_dict({"suite": "x"})
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        Report.from_json("{")


def test_timer_records_elapsed_seconds() -> None:
    report = _report()
    with report.timer("search"):
        pass
    assert 0.0 <= report.timing_s["search"] < 1.0


def test_render_table_puts_primary_metric_first_with_intervals() -> None:
    table = _report().render_table(digits=2)
    lines = table.splitlines()
    assert lines[0] == "relevance (primary metric: ndcg@10)"
    assert lines[1].split() == ["system", "ndcg@10", "mrr", "recall@100"]
    assert lines[3].split() == ["baseline/bm25s", "0.41", "0.50", "-"]
    assert "0.47 [0.45, 0.49]" in lines[4]
    assert lines[4].startswith("shopsearch/hybrid")


# --------------------------------------------------------------------------- evaluate_run


def test_an_undefined_metric_is_null_with_its_reason(tmp_path: Path) -> None:
    report = _report()
    reason = "AUC is undefined: all 40 labels are 0"
    report.add_system(
        "shopsearch/dnn",
        {"ndcg@10": 0.5, "auc_click": 0.7},
        {"ndcg@10": (0.4, 0.6)},
        undefined={"auc_purchase": reason},
    )
    entry = report.to_dict()["systems"]["shopsearch/dnn"]
    assert entry["auc_purchase"] is None
    assert entry["undefined"] == {"auc_purchase": reason}
    assert "auc_purchase" in report.metric_names()
    dnn_row = next(r for r in report.render_table().splitlines() if r.startswith("shopsearch/dnn"))
    assert dnn_row.split()[-1] == "n/a"
    back = Report.read(report.write(tmp_path / "r.json"))
    assert back.to_dict() == report.to_dict()


@pytest.mark.parametrize(
    ("metrics", "ci", "undefined", "match"),
    [
        ({"ndcg@10": 0.4, "auc": 0.5}, None, {"auc": "one class"}, "both a value and a reason"),
        ({"ndcg@10": 0.4}, None, {"auc": " "}, "without a reason"),
        ({"ndcg@10": 0.4}, {"auc": (0.1, 0.2)}, {"auc": "one class"}, "no such metric"),
        ({"ndcg@10": 0.4}, None, {"undefined": "why"}, "not allowed"),
    ],
)
def test_report_rejects_bad_undefined_metrics(
    metrics: dict[str, float],
    ci: dict[str, tuple[float, float]] | None,
    undefined: dict[str, str],
    match: str,
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        _report().add_system("shopsearch/new", metrics, ci, None, undefined)


def test_a_null_metric_without_its_reason_does_not_load() -> None:
    data = _report().to_dict()
    data["systems"]["baseline/bm25s"]["mrr"] = None
    with pytest.raises(InvalidInputError, match="mrr is undefined without a reason"):
        Report.from_dict(data)


def test_evaluate_run_keys_values_and_intervals() -> None:
    result = evaluate_run(RUN, QRELS, ks=(2, 100), rel_threshold=2, n_resamples=200)
    assert list(result.metrics) == [
        "ndcg@2",
        "recall@2",
        "map@2",
        "ndcg@100",
        "recall@100",
        "map@100",
        "mrr",
    ]
    assert result.query_ids == ["q1", "q2", "q3"]
    np.testing.assert_allclose(result.per_query["ndcg@2"], ndcg_at_k(RUN, QRELS, 2))
    np.testing.assert_allclose(
        result.per_query["map@100"], map_at_k(RUN, QRELS, 100, rel_threshold=2)
    )
    np.testing.assert_allclose(
        result.per_query["recall@2"], recall_at_k(RUN, QRELS, 2, rel_threshold=2)
    )
    np.testing.assert_allclose(result.per_query["mrr"], mrr(RUN, QRELS, rel_threshold=2))
    assert result.metrics["mrr"] == pytest.approx((1 + 0.5 + 0) / 3)
    for name, (low, high) in result.ci.items():
        assert low <= result.metrics[name] <= high


def test_evaluate_run_explicit_metrics_query_ids_and_no_ci() -> None:
    queries = relevant_query_ids(QRELS)
    result = evaluate_run(RUN, QRELS, metrics=["map@5", "mrr@1"], query_ids=queries, n_resamples=0)
    assert list(result.metrics) == ["map@5", "mrr@1"]
    assert result.query_ids == ["q1", "q2"]
    assert result.ci == {}
    assert result.metrics["mrr@1"] == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="not known"):
        evaluate_run(RUN, QRELS, metrics=["p@10"])
    with pytest.raises(InvalidInputError, match="needs a cut-off"):
        evaluate_run(RUN, QRELS, metrics=["ndcg"])


def test_evaluate_run_means_equal_ir_measures() -> None:
    rng = np.random.default_rng(11)
    docs = [f"d{i}" for i in range(40)]
    qrels = {
        f"q{q}": {str(d): int(rng.integers(0, 4)) for d in rng.choice(docs, 10, replace=False)}
        for q in range(30)
    }
    run = {q: [str(d) for d in rng.choice(docs, 25, replace=False)] for q in qrels}
    result = evaluate_run(run, qrels, ks=(5, 20), rel_threshold=2, n_resamples=0)
    names = {ir_measures_name(m, 2): m for m in result.metrics}
    scored = {q: {d: float(len(ds) - i) for i, d in enumerate(ds)} for q, ds in run.items()}
    evaluator = ir_measures.pytrec_eval.evaluator(
        [ir_measures.parse_measure(n) for n in names], qrels
    )
    for measure, value in evaluator.calc_aggregate(scored).items():
        assert result.metrics[names[str(measure)]] == pytest.approx(value, abs=1e-6)


def test_add_evaluation_and_paired_comparison() -> None:
    better = evaluate_run(RUN, QRELS, ks=(10,), n_resamples=100)
    worse_run = {q: list(reversed(docs)) for q, docs in RUN.items()}
    worse = evaluate_run(worse_run, QRELS, ks=(10,), n_resamples=100)
    assert better.query_ids == worse.query_ids
    diff = paired_bootstrap_diff(better.per_query["ndcg@10"], worse.per_query["ndcg@10"])
    assert diff.mean_diff > 0
    report = Report(suite="relevance", primary_metric="ndcg@10")
    report.add_evaluation("shopsearch/good", better, extra={"vs_reversed": diff._asdict()})
    report.add_evaluation("baseline/reversed", worse)
    entry = report.to_dict()["systems"]["shopsearch/good"]
    assert entry["ci95"]["ndcg@10"] == list(better.ci["ndcg@10"])
    assert entry["vs_reversed"]["mean_diff"] == pytest.approx(diff.mean_diff)
    assert Report.from_json(report.to_json()).to_dict() == report.to_dict()
