"""The trivago ranking suite on tiny events written here: features, no leakage, the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.cli import run
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.ranking_trivago import (
    RankingTrivagoConfig,
    build_trivago_samples,
    read_events,
    run_ranking_trivago_suite,
)


def _platforms(n_sessions: int) -> list[str]:
    return ["FR" if s % 2 else "DE" for s in range(n_sessions)]


@pytest.fixture(scope="module")
def files(
    tmp_path_factory: pytest.TempPathFactory, trivago_events: Callable[..., pd.DataFrame]
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("trivago")
    train, test = root / "train.parquet", root / "test.parquet"
    trivago_events(_platforms(120), 0, "a").to_parquet(train)
    trivago_events(_platforms(40), 1, "b").to_parquet(test)
    return train, test


def test_features_use_only_earlier_rows_and_other_sessions(files: tuple[Path, Path]) -> None:
    cfg = RankingTrivagoConfig(*files)
    samples = build_trivago_samples(read_events(files[0]), None, cfg)
    rows = samples.rows
    assert rows.groupby("request_id")["click"].sum().eq(1).all()
    clicked = rows[rows["click"] == 1]
    assert clicked["top_match"].eq(1).all()
    assert clicked["matched_share"].eq(1).all()
    assert rows.loc[rows["click"] == 0, "top_match"].eq(0).all()
    # the clickout row itself (step 2) is not an earlier interaction: one look only
    assert np.allclose(clicked["bm25"], np.log1p(1))
    # priors leave the row's own session out: a session's click never counts for itself
    one_session = rows.groupby("product_id")["session_id"].transform("nunique") == 1
    assert rows.loc[one_session, "log_clicks"].eq(0).all()
    assert (
        samples.seq_items[clicked["req"].to_numpy(), 0].tolist() == clicked["product_id"].tolist()
    )


def test_suite_beats_impression_order_with_a_perfect_signal(files: tuple[Path, Path]) -> None:
    cfg = RankingTrivagoConfig(*files, models=("dnn", "lightgbm"), epochs=2)
    report = run_ranking_trivago_suite(cfg)
    assert report.primary_metric == "mrr"
    assert set(report.systems) == {
        "baseline/impression-order",
        "shopsearch/dnn",
        "baseline/lightgbm",
    }
    assert report.dataset["test_clickouts"] == 40
    order = report.systems["baseline/impression-order"]["mrr"]
    assert 0 < order < 0.6
    assert report.systems["shopsearch/dnn"]["mrr"] > 0.9
    assert report.systems["baseline/lightgbm"]["mrr"] > 0.9
    for entry in report.systems.values():
        low, high = entry["ci95"]["mrr"]
        assert 0 <= low <= entry["mrr"] <= high <= 1


def test_cli_writes_the_report(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    argv = [
        "eval", "ranking", "--dataset", "trivago", "--train", str(files[0]),
        "--test", str(files[1]), "--models", "lightgbm", "--report", str(out),
    ]  # fmt: skip
    assert run(argv) == 0
    report = Report.read(out)
    assert report.config["dataset"] == "trivago"
    assert "baseline/lightgbm" in report.systems


def _session(steps: list[tuple[str, str, str]]) -> pd.DataFrame:
    """One session's rows from ``(action, reference, impressions)``; prices 10, 20, 30 ..."""
    rows = []
    for i, (action, ref, imps) in enumerate(steps, start=1):
        prices = "|".join(str(10 * (k + 1)) for k in range(len(imps.split("|")))) if imps else None
        rows.append(
            {"user_id": "u", "session_id": "s", "timestamp": 100 * i, "step": i,
             "action_type": action, "reference": ref, "platform": "DE", "city": "Berlin",
             "device": "mobile", "current_filters": None, "impressions": imps or None,
             "prices": prices}
        )  # fmt: skip
    return pd.DataFrame(rows)


def test_context_features_come_from_the_list_and_earlier_steps(tmp_path: Path) -> None:
    steps = [
        ("clickout item", "b", "a|b|c|d"),
        ("interaction item image", "c", ""),
        ("interaction item image", "c", ""),
        ("clickout item", "d", "d|c|b|a"),
        ("interaction item info", "a", ""),
    ]
    path = tmp_path / "s.parquet"
    _session(steps).to_parquet(path)
    cfg = RankingTrivagoConfig(path, path)
    rows = build_trivago_samples(read_events(path), None, cfg).rows
    second = rows[rows["request_id"] == "s:4"].set_index("product_id")
    assert second["shown_rank"].tolist() == [1, 2, 3, 4]
    assert second["list_length"].eq(4).all()
    # the last interaction (before step 4) was an image of c, shown at rank 2 of this list
    assert second.loc["c", "is_last_ref"] == 1
    assert second.loc["c", "last_ref_image"] == 1
    assert second["rank_minus_last_ref"].tolist() == [-1, 0, 1, 2]
    assert second.loc["c", "n_item_images"] == 2
    # b was clicked out at step 1 from the previous list, where d was at rank 4
    assert second.loc["b", "is_last_clickout_ref"] == 1
    assert second.loc["b", "n_item_clickouts"] == 1
    assert second.loc["d", "prev_list_rank"] == 4
    assert second.loc["d", "rank_minus_prev_rank"] == -3
    assert second["n_earlier_lists"].eq(1).all()
    # b cost 20 in the list it was clicked from: prices relative to that
    assert second.loc["b", "price_rel_clicked"] == pytest.approx(np.log1p(30) - np.log1p(20))
    # nothing at or after the clickout's step leaks in: step 5 (info on a) is not counted
    assert second.loc["a", "n_item_other"] == 0
    first = rows[rows["request_id"] == "s:1"]
    assert first["last_ref_in_list"].eq(0).all()
    assert first["in_prev_list"].eq(0).all()
    assert first["has_clicked_prices"].eq(0).all()


def test_both_model_kinds_read_the_context_features(files: tuple[Path, Path]) -> None:
    from shopsearch.evaluate.suites.ranking_trivago import CONTEXT_FEATURES
    from shopsearch.ranking.features import FeatureEncoder

    samples = build_trivago_samples(read_events(files[0]), None, RankingTrivagoConfig(*files))
    encoder = FeatureEncoder(samples.seq_kinds.shape[1]).fit(samples)
    assert set(CONTEXT_FEATURES) <= set(encoder.dense_names_)
    assert encoder.transform(samples).dense.shape[1] == len(encoder.dense_names_)
