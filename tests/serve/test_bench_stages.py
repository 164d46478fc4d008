"""``shopsearch bench stages``: per-stage timings in process and over HTTP, on tiny data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
import pytest

from shopsearch.bench.stages import summarise
from shopsearch.cli import main
from shopsearch.store.workspace import Workspace


def _products() -> pd.DataFrame:
    """The tiny catalog of these tests."""
    rows = [
        ("us", f"p{i}", f"oak {['desk', 'shelf', 'bed'][i % 3]} {i}", "b", "Home", 5.0 + i, True)
        for i in range(12)
    ]
    products = pd.DataFrame(
        rows, columns=["domain", "product_id", "title", "brand", "category", "price", "in_stock"]
    )
    return products


def test_summarise_gives_mean_and_percentiles_per_key() -> None:
    out = summarise({"total": [1.0, 2.0, 3.0, 4.0], "rank": [5.0]})
    assert out["total"]["mean_ms"] == 2.5
    assert out["total"]["p50_ms"] == 2.5
    assert 3.9 < out["total"]["p99_ms"] <= 4.0
    assert out["total"]["count"] == 4
    assert out["rank"] == {"mean_ms": 5.0, "p50_ms": 5.0, "p99_ms": 5.0, "count": 1.0}


@pytest.mark.timeout(90)
def test_stages_are_timed_in_process_and_over_http(
    tmp_path: Path, make_workspace: Callable[..., Workspace]
) -> None:
    ws = make_workspace(tmp_path / "ws", _products())
    report = tmp_path / "stages.json"
    main(["bench", "stages", "-w", str(ws.root), "--report", str(report), "--queries", "15"])
    result = orjson.loads(report.read_bytes())
    assert result["suite"] == "bench/stages"
    assert result["dataset"]["queries"] == 15
    assert result["dataset"]["ranking"] is False
    assert result["config"]["caches"] is False
    inside, http = result["in_process"], result["http"]
    for timings in (inside, http):
        assert {"retrieve", "retrieve.lexical", "render", "total"} <= set(timings)
        assert timings["total"]["count"] == 15
        assert 0 < timings["total"]["p50_ms"] <= timings["total"]["p99_ms"]
        # a stage takes part of the total
        assert timings["retrieve"]["mean_ms"] <= timings["total"]["mean_ms"]
    assert inside["call_wall"]["mean_ms"] >= inside["total"]["mean_ms"]
    assert inside["call_cpu"]["count"] == 15
    assert http["round_trip"]["mean_ms"] >= http["total"]["mean_ms"]
    assert http["server_cpu"]["mean_ms"] > 0


def test_no_http_measures_in_process_only(
    tmp_path: Path, make_workspace: Callable[..., Workspace]
) -> None:
    ws = make_workspace(tmp_path / "ws", _products())
    report = tmp_path / "stages.json"
    main(
        [
            "bench",
            "stages",
            "-w",
            str(ws.root),
            "--report",
            str(report),
            "--queries",
            "5",
            "--no-http",
            "--caches",
            "--no-ranking",
        ]
    )
    result = orjson.loads(report.read_bytes())
    assert result["http"] == {}
    assert result["in_process"]["total"]["count"] == 5
    assert result["config"]["caches"] is True
    assert result["config"]["ranking_enabled"] is False
