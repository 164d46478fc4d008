"""``shopsearch eval query --dataset suggest-sim | suggest-bestbuy``: autocompletion scored on
held-out logged queries, on a tiny simulated shop and a tiny Best Buy-format log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from shopsearch.cli import run
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.workspace import Workspace

TINY = SimulationConfig(domains=2, products=120, users=60, sessions=300, seed=6)
METRICS = {"mrr_prefix2", "mrr_prefix4", "mrr_prefix6", "mrr_prefix_all", "coverage"}


def _report(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(path.read_bytes())
    return body


def test_suggest_sim_scores_every_system(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, TINY)
    report = tmp_path / "r.json"
    code = run(["eval", "query", "--dataset", "suggest-sim", "-w", str(ws.root), "--report",
                str(report), "--max-test-requests", "80"])  # fmt: skip
    assert code == 0
    body = _report(report)
    assert body["primary_metric"] == "mrr_prefix4"
    assert body["dataset"]["scored_test_requests"] <= 80
    systems = body["systems"]
    assert set(systems) == {"baseline/frequency", "shopsearch/suggest", "shopsearch/suggest-exact",
                            "shopsearch/suggest-by-frequency"}  # fmt: skip
    for entry in systems.values():
        assert set(entry) >= METRICS
        assert all(0 <= entry[m] <= 1 for m in METRICS)
        assert entry["latency"]["calls"] > 0
        assert entry["latency"]["p99_ms"] > 0
    ours, baseline = systems["shopsearch/suggest"], systems["baseline/frequency"]
    # the baseline suggests every logged query; ours only those that led to a click
    assert ours["coverage"] <= baseline["coverage"]
    assert set(ours["vs_baseline"]["mrr_prefix4"]) == {"diff", "low", "high", "p_value"}
    assert ours["clicked"]["requests"] == body["dataset"]["clicked_test_requests"]


def _bestbuy(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    frame = pd.DataFrame(rows, columns=["user", "sku", "query", "query_time"])
    frame.assign(category="abcat0701002", click_time=frame["query_time"]).to_csv(path, index=False)
    return path


def test_suggest_bestbuy_reads_the_log_and_scores(tmp_path: Path) -> None:
    train = _bestbuy(tmp_path / "train.csv", [
        ("u1", "1", "gears of war 3", "2011-09-01 10:00:00"),
        ("u1", "2", "gears of war 3", "2011-09-01 10:00:00"),  # two clicks of one search
        ("u2", "1", "gears of war 3", "2011-09-02 10:00:00"),
        ("u3", "3", "call of duty", "2011-09-03 10:00:00"),
        ("u4", "4", "madden 12", "2011-09-04 10:00:00"),
    ])  # fmt: skip
    test = _bestbuy(tmp_path / "test.csv", [
        ("u9", "1", "Gears of War 3", "2011-09-05 10:00:00"),
        ("u9", "3", "call of duty", "2011-09-05 11:00:00"),
        ("u8", "5", "skyrim", "2011-09-06 10:00:00"),
    ])  # fmt: skip
    report = tmp_path / "r.json"
    code = run(["eval", "query", "--dataset", "suggest-bestbuy", "--train", str(train), "--test",
                str(test), "--report", str(report), "--systems",
                "baseline/frequency,shopsearch/suggest"])  # fmt: skip
    assert code == 0
    body = _report(report)
    assert body["dataset"]["train_requests"] == 4  # one search of two clicks
    assert body["dataset"]["scored_test_requests"] == 3
    ours = body["systems"]["shopsearch/suggest"]
    assert ours["coverage"] == pytest.approx(2 / 3)  # skyrim was never typed in training
    # "ga" → gears of war 3 first; "ca" → call of duty first; skyrim never
    assert ours["mrr_prefix2"] == pytest.approx(2 / 3)


def test_suggest_bestbuy_refuses_another_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1]}).to_csv(other, index=False)
    code = run(["eval", "query", "--dataset", "suggest-bestbuy", "--train", str(other), "--test",
                str(other), "--report", str(tmp_path / "r.json")])  # fmt: skip
    assert code != 0
    assert "it is not a Best Buy clicks file" in " ".join(capsys.readouterr().err.split())
