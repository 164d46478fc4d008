"""``eval relevance`` with the relevance models (teacher on a tiny BERT, student, graph models,
hybrid+relevance): every system is reported with its judged re-rank NDCG, RMSE and cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopsearch.evaluate.suites.relevance import RelevanceSuiteConfig, run_relevance_suite
from shopsearch.relevance import cross_encoder

from .test_relevance_query import TITLES, _write

SMALL = {
    "teacher": {"max_length": 16, "batch_size": 16, "epochs": 2, "lr": 3e-3, "threads": 1},
    "student": {"buckets": 2**12, "dim": 16, "hidden": 32, "epochs": 5, "batch_size": 32},
    "graph": {"buckets": 2**12, "dim": 16, "hidden": 32, "epochs": 3, "batch_size": 32},
}
SYSTEMS = ("teacher", "bert2dnn", "second-order", "first-order")


@pytest.mark.slow
def test_the_relevance_systems(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cross_encoder, "minilm_folder", lambda: tiny_bert)
    words = ["drill", "fan", "hose", "bulb", "screws", "seat", "roller", "hinge"]
    titles = [t for t in TITLES if not t.startswith("filler")]
    rows = [(f"{w} {n}", t, 3.0 if w in t else 1.0)
            for n in range(3) for w in words for t in titles[:5]]  # fmt: skip
    rows += [("filler", f"filler product number {i}", 1.0) for i in range(100)]
    train = _write(tmp_path / "train.csv", rows)
    test = _write(tmp_path / "test.csv", [
        ("seat", "toilet seat white", 3.0), ("seat", "paint roller set", 1.0),
        ("hinge", "door hinge brass", 3.0), ("hinge", "wood screws box", 1.0),
    ])  # fmt: skip
    config = RelevanceSuiteConfig(
        dataset="homedepot", test=[test], train=[train], cache_dir=tmp_path / "cache",
        learned=("none",), query_components=("none",), relevance=SMALL, n_resamples=50,
        relevance_candidates=5, relevance_depth=10,
    )  # fmt: skip
    body = run_relevance_suite(config, say=lambda _m: None).to_dict()
    for name in SYSTEMS:
        system = body["systems"][f"shopsearch/{name}"]
        assert 0 <= system["judged_ndcg@10"] <= 1
        assert system["rmse"] >= 0
        assert system["cost_ms_200"]["p99"] >= system["cost_ms_200"]["p50"] > 0
        assert "judged_ndcg@10" in system["ci95"]
    gated = body["systems"]["shopsearch/hybrid+relevance"]
    assert 0 <= gated["gate"]["demoted_share"] <= 1
    used = body["config"]["relevance"]
    assert used["holdout_queries"] >= 1
    assert used["stack"]["names"] == ["cross_encoder", "dense_cosine", "bm25"]
    graph = used["graph"]
    assert graph["judged_relevant_edges"] + graph["retrieved_edges"] >= graph["kept_by_teacher"]
    assert graph["retrieved_edges"] > 0
    assert list(tmp_path.glob("cache/relevance-teacher-*/*"))  # a rerun reuses the teacher


@pytest.mark.slow
def test_lref_is_opt_in_and_measured_like_the_others(
    tmp_path: Path, tiny_causal_lm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shopsearch.relevance import lref

    monkeypatch.setattr(lref, "smollm2_backbone", tiny_causal_lm)
    words = ["drill", "fan", "hose", "bulb", "seat", "hinge"]
    titles = [t for t in TITLES if not t.startswith("filler")]
    rows = [(f"{w} {n}", t, 3.0 if w in t else 1.0)
            for n in range(2) for w in words for t in titles[:4]]  # fmt: skip
    rows += [("filler", f"filler product number {i}", 1.0) for i in range(100)]
    train = _write(tmp_path / "train.csv", rows)
    test = _write(tmp_path / "test.csv", [
        ("seat", "toilet seat white", 3.0), ("seat", "paint roller set", 1.0),
        ("hinge", "door hinge brass", 3.0), ("hinge", "wood screws box", 1.0),
    ])  # fmt: skip
    tiny = {"levels": 3, "max_epochs": 2, "train_layers": 2, "lr": 3e-3, "max_tokens": 48,
            "threads": 1}  # fmt: skip
    config = RelevanceSuiteConfig(
        dataset="homedepot", test=[test], train=[train], cache_dir=tmp_path / "cache",
        learned=("none",), query_components=("none",), relevance={"lref": tiny},
        relevance_models=("lref",), lref_seconds=(30, 30, 30), lref_depth=3, n_resamples=20,
    )  # fmt: skip
    body = run_relevance_suite(config, say=lambda _m: None).to_dict()
    assert "shopsearch/teacher" not in body["systems"]  # only what was asked for
    system = body["systems"]["shopsearch/lref"]
    assert 0 <= system["judged_ndcg@10"] <= 1
    assert system["rmse"] >= 0
    assert system["rerank"]["depth"] == 3
    assert system["cost_ms_200"]["p50"] > 0
    used = body["config"]["relevance"]
    assert used["models"] == ["lref"]
    assert used["lref"]["sft"]["steps"] > 0
    assert used["lref"]["config"]["sft_seconds"] == 30


def test_unknown_relevance_models_fail_early(tmp_path: Path) -> None:
    from shopsearch.errors import InvalidInputError

    test = _write(tmp_path / "test.csv", [("seat", "toilet seat white", 3.0)])
    config = RelevanceSuiteConfig(dataset="homedepot", test=[test], train=[test],
                                  relevance_models=("teacher", "gpt"))  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"unknown \['gpt'\].*lref"):
        run_relevance_suite(config, say=lambda _m: None)
