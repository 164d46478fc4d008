"""A metric the test rows leave undefined is reported as such, never silently dropped.

The ranking (sim) and transfer (sim) suites once caught every ``InvalidInputError`` of AUC and
GAUC and left the metric out of the report; now only :class:`UndefinedMetricError` (one class
in the rows) is caught, and the metric is ``null`` with its reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.metrics import UndefinedMetricError, auc, gauc
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites import ranking_sim, transfer_sim


def _rows(requests: int, clicks: bool, purchases: bool) -> pd.DataFrame:
    """``requests`` requests of 4 shown products; the first of each clicked / carted /
    purchased when asked."""
    rows = pd.DataFrame(
        {
            "request_id": np.repeat([f"r{i}" for i in range(requests)], 4),
            "product_id": np.tile(["a", "b", "c", "d"], requests),
        }
    )
    first = (np.arange(len(rows)) % 4 == 0).astype(np.int64)
    rows["click"] = first if clicks else 0
    rows["cart"] = first if clicks else 0
    rows["purchase"] = first if purchases else 0
    return rows


def _scores(n: int) -> dict[str, np.ndarray]:
    score = np.tile([0.9, 0.5, 0.3, 0.1], n // 4)
    return {"click": score, "cart": score / 2, "purchase": score / 4}


def test_one_class_is_an_undefined_metric_error() -> None:
    with pytest.raises(UndefinedMetricError, match="AUC is undefined"):
        auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(UndefinedMetricError, match="GAUC is undefined"):
        gauc([1, 1], [0.1, 0.2], ["a", "b"])
    assert issubclass(UndefinedMetricError, InvalidInputError)


def test_ranking_sim_reports_an_undefined_auc_with_its_reason(tmp_path: Path) -> None:
    rows = _rows(6, clicks=True, purchases=False)
    scores = _scores(len(rows))
    grade = np.tile([3.0, 1.0, 0.0, 0.0], 6)
    value = scores["click"]
    got = ranking_sim._metrics(rows, scores, value, grade, grade, 50, 0, True)
    assert set(got.values) >= {"auc_click", "auc_cart", "gauc_click", "ndcg@10"}
    assert list(got.undefined) == ["auc_purchase"]
    assert "all 24 labels are 0" in got.undefined["auc_purchase"]
    assert "auc_purchase" not in got.ci
    entry = got.entry()  # a slice (by_domain, long_tail) keeps the key, null, and the reason
    assert entry["auc_purchase"] is None
    assert entry["undefined"] == got.undefined

    report = Report(suite="ranking", primary_metric="ndcg@10")
    report.add_system("shopsearch/dnn", got.values, got.ci, {"long_tail": entry}, got.undefined)
    data = Report.read(report.write(tmp_path / "r.json")).to_dict()["systems"]["shopsearch/dnn"]
    assert data["auc_purchase"] is None
    assert data["undefined"]["auc_purchase"].startswith("AUC is undefined")
    assert data["long_tail"]["auc_purchase"] is None


def test_ranking_sim_still_raises_on_bad_scores() -> None:
    rows = _rows(6, clicks=True, purchases=True)
    scores = _scores(len(rows))
    scores["cart"] = np.full(len(rows), np.nan)  # a broken model: an error, not "undefined"
    with pytest.raises(InvalidInputError, match="finite") as raised:
        ranking_sim._metrics(rows, scores, scores["click"], scores["click"], scores["click"], 50,
                             0, False)  # fmt: skip
    assert not isinstance(raised.value, UndefinedMetricError)


def test_transfer_sim_says_which_market_leaves_the_mean_undefined() -> None:
    cfg = transfer_sim.TransferSimConfig(workspace=Path("W"), n_resamples=20)
    targets = {
        "gb": transfer_sim._Target(_rows(5, True, True), np.tile([3.0, 1.0, 0.0, 0.0], 5)),
        "au": transfer_sim._Target(_rows(5, False, False), np.tile([3.0, 1.0, 0.0, 0.0], 5)),
    }
    scores = {d: _scores(len(t.rows)) for d, t in targets.items()}
    report = Report(suite="transfer", primary_metric="ndcg@10")
    metrics = transfer_sim._add(report, "shopsearch/cdan-w@1", targets, scores, cfg)
    assert set(metrics) == {"ndcg@10"}
    entry = report.systems["shopsearch/cdan-w@1"]
    assert entry["auc"] is None
    assert entry["gauc"] is None
    assert entry["undefined"]["auc"].startswith("the mean over the target markets is undefined")
    assert "au: AUC is undefined" in entry["undefined"]["auc"]
    assert "gb" not in entry["undefined"]["auc"]
    assert "au: GAUC is undefined" in entry["undefined"]["gauc"]
    assert entry["by_domain"]["gb"]["auc"] == pytest.approx(1.0)
    assert entry["by_domain"]["au"]["auc"] is None
    assert set(entry["by_domain"]["au"]["undefined"]) == {"auc", "gauc"}
    assert "n/a" in report.render_table()
