"""``shopsearch bench serve --generator hey``: levels offered by the compiled ``hey``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
import pytest

from shopsearch.bench.hey_loop import (
    MISSING_HEY,
    hey_command,
    hey_plan,
    parse_hey_csv,
    start_offsets,
)
from shopsearch.cli import main
from shopsearch.errors import InvalidInputError, ShopSearchError
from shopsearch.store.workspace import Workspace

needs_hey = pytest.mark.skipif(shutil.which("hey") is None, reason="hey is not installed")


def _products() -> pd.DataFrame:
    """The tiny catalog of these tests."""
    things = ["sofa", "table", "lamp", "chair", "rug"]
    rows = [
        ("us", f"p{i}", f"grey {things[i % 5]} {i}", "acme", "Home", 10.0 + i, True)
        for i in range(15)
    ]
    products = pd.DataFrame(
        rows, columns=["domain", "product_id", "title", "brand", "category", "price", "in_stock"]
    )
    return products


def test_plan_splits_connections_and_paces_every_worker_at_rate_over_connections() -> None:
    paths = ["/a", "/b", "/a", "/c", "/d"]
    plan = hey_plan(paths, 300.0, 32, 3)
    assert [p.path for p in plan] == ["/a", "/b", "/c"]  # first distinct paths
    assert [p.connections for p in plan] == [11, 11, 10]
    assert all(p.per_connection_rps == pytest.approx(300 / 32) for p in plan)
    total = sum(p.connections * p.per_connection_rps for p in plan)
    assert total == pytest.approx(300.0)
    # the processes start spread over one tick interval (32 / 300 s)
    assert start_offsets(plan) == pytest.approx([0.0, 32 / 300 / 3, 2 * 32 / 300 / 3])
    # never more processes than connections or distinct paths
    assert len(hey_plan(paths, 10.0, 2, 16)) == 2
    assert len(hey_plan(["/x"] * 5, 10.0, 8, 16)) == 1
    for bad in ((paths, 0.0, 4, 2), (paths, 5.0, 0, 2), (paths, 5.0, 4, 0), ([], 5.0, 4, 2)):
        with pytest.raises(InvalidInputError):
            hey_plan(*bad)


def test_command_asks_for_csv_at_the_workers_pace() -> None:
    plan = hey_plan(["/search?q=sofa&size=10"], 30.0, 4, 1)[0]
    command = hey_command("/usr/bin/hey", 8123, plan, 2.5)
    assert command[0] == "/usr/bin/hey"
    assert command[command.index("-z") + 1] == "2.5s"
    assert command[command.index("-c") + 1] == "4"
    assert float(command[command.index("-q") + 1]) == pytest.approx(7.5)
    assert command[command.index("-o") + 1] == "csv"
    assert command[-1] == "http://127.0.0.1:8123/search?q=sofa&size=10"


def test_csv_rows_give_latency_status_and_end_time() -> None:
    text = (
        "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,"
        "status-code,offset\n"
        "0.0128,0.0002,0.0000,0.0000,0.0121,0.0002,200,0.2074\n"
        "0.0500,0.0006,0.0000,0.0000,0.0198,0.0003,503,0.4075\n"
    )
    rows = parse_hey_csv(text)
    assert rows.latencies == [0.0128, 0.05]
    assert rows.statuses == [200, 503]
    assert rows.ends == pytest.approx([0.2202, 0.4575])
    assert parse_hey_csv("").latencies == []
    with pytest.raises(ShopSearchError, match="CSV without"):
        parse_hey_csv("a,b\n1,2\n")


def test_missing_hey_and_bad_generators_fail_before_a_server_starts(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = make_workspace(tmp_path / "ws", _products())
    base = ["bench", "serve", "-w", str(ws.root), "--report", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--rate", "5", "--generator", "wrk"])
    assert exit_info.value.code == 2
    assert "python, hey" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--rate", "5", "--generator", "hey", "--concurrency", ""])
    assert exit_info.value.code != 0
    assert "apt-get install hey" in capsys.readouterr().err
    assert "apt-get install hey" in MISSING_HEY
    assert not (tmp_path / "r.json").exists()


@needs_hey
@pytest.mark.timeout(120)
def test_hey_and_python_offer_the_same_rate_on_one_server(
    tmp_path: Path, make_workspace: Callable[..., Workspace]
) -> None:
    ws = make_workspace(tmp_path / "ws", _products())
    report = tmp_path / "report.json"
    main(
        [
            "bench",
            "serve",
            "-w",
            str(ws.root),
            "--report",
            str(report),
            "--concurrency",
            "",
            "--rate",
            "40",
            "--requests",
            "60",
            "--seconds",
            "10",
            "--connections",
            "4",
            "--generator",
            "python,hey",
            "--hey-queries",
            "3",
        ]
    )
    result = orjson.loads(report.read_bytes())
    assert list(result["levels"]) == ["rate-40", "hey-rate-40"]
    python, hey = result["levels"]["rate-40"], result["levels"]["hey-rate-40"]
    assert python["generator"] == "python"
    assert python["ok"] == 60
    assert python["client_cpu_ms_per_request"] > 0
    assert hey["generator"] == "hey"
    assert hey["mode"] == "open"
    assert hey["queries"] == hey["hey_processes"] == 3
    assert hey["connections"] == 4
    # 60 requests at 40/s: 1.5 s; each of 4 workers ticks every 0.1 s, 15 times
    assert hey["scheduled"] == 60
    assert hey["errors"] == 0
    assert hey["ok"] == hey["requests"] >= 50  # a skipped tick or two on a busy machine
    assert hey["missing"] == hey["scheduled"] - hey["requests"]
    assert 0 < hey["p50_ms"] <= hey["p95_ms"] <= hey["p99_ms"] <= hey["max_ms"]
    assert hey["rps"] == pytest.approx(40, rel=0.3)
    assert 0 < hey["client_cpu_share"] < 1
    assert hey["client_cpu_ms_per_request"] > 0
    assert hey["server_cpu_ms_per_request"] > 0
    # hey repeats 3 queries: both caches were turned off, for the python level too
    assert result["config"]["overrides"] == {
        "query_cache_size": 0,
        "result_cache_size": 0,
        "response_cache_size": 0,
    }
    assert result["config"]["generators"] == ["python", "hey"]
    for level in (python, hey):
        assert level["query_cache"]["result_hit_rate"] in (None, 0.0)
