"""The Best Buy ranking suite on tiny clicks written here: baseline, candidates, the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.cli import run
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.ranking_bestbuy import (
    RankingBestBuyConfig,
    normalise,
    run_ranking_bestbuy_suite,
)

_QUERIES = {
    "modern warfare 3": "100",
    "battlefield 3": "200",
    "gears of war": "300",
    "halo reach": "400",
}
_TYPOS = {"modern warefare 3": "100", "Battlefeild 3!": "200"}


def _clicks(n: int, seed: int, queries: dict[str, str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = list(queries)
    rows = []
    for i in range(n):
        query = names[int(rng.integers(0, len(names)))]
        sku = queries[query] if rng.random() < 0.8 else str(int(rng.choice([100, 200, 300, 400])))
        day = 1 + int(rng.integers(0, 20))
        rows.append(
            {
                "user": f"u{seed}-{i % 37}",
                "sku": sku,
                "category": f"cat{sku}",
                "query": query,
                "click_time": f"2011-09-{day:02d} 12:00:30.000",
                "query_time": f"2011-09-{day:02d} 12:00:00.000",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bestbuy")
    train, test = root / "train.csv", root / "test.csv"
    _clicks(300, 0, _QUERIES).to_csv(train, index=False)
    pd.concat([_clicks(60, 1, _QUERIES), _clicks(20, 2, _TYPOS)]).to_csv(test, index=False)
    return train, test


def test_normalise() -> None:
    assert normalise("  Call-of  Duty: MW3! ") == "call of duty mw3"


def test_suite_report(files: tuple[Path, Path]) -> None:
    report = run_ranking_bestbuy_suite(
        RankingBestBuyConfig(*files, models=("lightgbm", "dnn"), epochs=1)
    )
    assert report.primary_metric == "map@5"
    assert set(report.systems) == {
        "baseline/query-popularity",
        "shopsearch/lightgbm",
        "shopsearch/dnn",
    }
    assert report.dataset["test_clicks"] == 80
    assert report.dataset["candidate_recall"] == 1.0
    for entry in report.systems.values():
        assert 0 < entry["map@5"] <= 1
    # misspelt queries are unseen: the baseline falls back to global popularity, while the
    # learned ranker finds the SKU of the similar query
    assert report.dataset["test_queries_unseen"] == 20
    assert (
        report.systems["shopsearch/lightgbm"]["map@5"]
        >= report.systems["baseline/query-popularity"]["map@5"]
    )


def test_cli_writes_the_report(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    argv = [
        "eval", "ranking", "--dataset", "bestbuy", "--train", str(files[0]),
        "--test", str(files[1]), "--models", "lightgbm", "--report", str(out),
    ]  # fmt: skip
    assert run(argv) == 0
    assert set(Report.read(out).systems) == {"baseline/query-popularity", "shopsearch/lightgbm"}
