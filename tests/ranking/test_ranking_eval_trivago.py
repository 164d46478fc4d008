"""The trivago ranking suite on tiny events written here: features, no leakage, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.cli import main
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.ranking_trivago import (
    RankingTrivagoConfig,
    build_trivago_samples,
    read_events,
    run_ranking_trivago_suite,
)


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _events(n_sessions: int, seed: int, prefix: str) -> pd.DataFrame:
    """Sessions that look at one item, then click it out of a 10-item list at a random place."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for s in range(n_sessions):
        items = [str(i) for i in rng.choice(np.arange(100, 160), 10, replace=False)]
        target = items[int(rng.integers(0, 10))]
        base = {
            "user_id": f"u{s}",
            "session_id": f"{prefix}{s}",
            "platform": "FR" if s % 2 else "DE",
            "city": "Paris, France",
            "device": "mobile",
            "current_filters": None,
        }
        rows.append(
            {**base, "timestamp": 1000 + s, "step": 1, "action_type": "interaction item image",
             "reference": target, "impressions": None, "prices": None}
        )  # fmt: skip
        rows.append(
            {**base, "timestamp": 1060 + s, "step": 2, "action_type": "clickout item",
             "reference": target, "impressions": "|".join(items),
             "prices": "|".join(str(int(p)) for p in rng.integers(50, 200, 10))}
        )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("trivago")
    train, test = root / "train.parquet", root / "test.parquet"
    _events(120, 0, "a").to_parquet(train)
    _events(40, 1, "b").to_parquet(test)
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
    assert _run(argv) == 0
    report = Report.read(out)
    assert report.config["dataset"] == "trivago"
    assert "baseline/lightgbm" in report.systems
