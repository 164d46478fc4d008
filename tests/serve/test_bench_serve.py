"""``shopsearch bench serve`` on a tiny lexical-only workspace with tiny bounds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pandas as pd
import pytest

from shopsearch.bench.serve import parse_levels
from shopsearch.bench.server_counters import server_cpu_seconds, worker_split
from shopsearch.cli import main
from shopsearch.config import Settings
from shopsearch.datasets.base import LoadedData
from shopsearch.errors import InvalidInputError
from shopsearch.events.compaction import compact_event_log
from shopsearch.ingest.workspace import ingest
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index

WORDS = ["grey", "oak", "linen", "leather", "compact", "classic"]
THINGS = ["sofa", "table", "lamp", "chair"]


def _workspace(root: Path) -> Workspace:
    rows = [
        (
            domain,
            f"{domain}{i}",
            f"{WORDS[i % 6]} {THINGS[i % 4]} {i}",
            f"brand{i % 3}",
            f"Home > {THINGS[i % 4].title()}s",
            20.0 + 15 * i,
            True,
        )
        for domain in ("us", "gb")
        for i in range(12)
    ]
    products = pd.DataFrame(
        rows, columns=["domain", "product_id", "title", "brand", "category", "price", "in_stock"]
    )
    ws = Workspace.create(root)
    ingest(ws, LoadedData("generic", products=products), add_domains=True)
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    build_index(ws, settings)
    return ws


@pytest.mark.timeout(90)
def test_bench_serve_reports_every_level_without_errors(tmp_path: Path) -> None:
    ws = _workspace(tmp_path / "ws")
    report = tmp_path / "report.json"
    main(
        [
            "bench",
            "serve",
            "--workspace",
            str(ws.root),
            "--report",
            str(report),
            "--requests",
            "30",
            "--seconds",
            "20",
            "--concurrency",
            "1,4",
            "--rate",
            "50",
            "--connections",
            "4",
            "--query-cache-size",
            "0",
        ]
    )
    result = orjson.loads(report.read_bytes())
    assert result["suite"] == "bench/serve"
    assert result["dataset"]["products"] == 24
    assert result["dataset"]["sources"] == ["lexical"]
    assert set(result["levels"]) == {"1", "4", "rate-50"}
    opened = result["levels"].pop("rate-50")
    assert opened["mode"] == "open"
    assert opened["rate"] == 50
    assert opened["connections"] == 4
    assert opened["ok"] == opened["requests"] == 30
    assert opened["errors"] == 0
    assert 0 < opened["p50_ms"] <= opened["p99_ms"] <= opened["max_ms"]
    assert opened["service_p50_ms"] <= opened["max_ms"]
    assert opened["query_cache"]["hit_rate"] is None  # lexical only: no dense cache
    assert set(opened["gc_pauses"]) == {"0", "1", "2"}
    assert opened["gc_pauses"]["0"]["count"] >= 0
    assert opened["gc_pauses"]["0"]["seconds"] >= 0
    split = opened["worker_cpu"]
    assert split["shares"]
    assert sum(split["shares"]) == pytest.approx(1.0, abs=0.01)
    assert split["shares"] == sorted(split["shares"], reverse=True)
    assert split["busiest_utilisation"] > 0
    for clients, level in result["levels"].items():
        assert level["mode"] == "closed"
        assert level["clients"] == int(clients)
        assert level["errors"] == 0
        assert level["ok"] == level["requests"] == 30
        assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"] <= level["max_ms"]
        assert level["rps"] > 0
    assert result["engine"]["queries"] == 30
    assert result["engine"]["p50_ms"] > 0
    ratios = result["ratios"]
    assert ratios["http_overhead_ratio"] == pytest.approx(
        (result["levels"]["1"]["p50_ms"] - result["engine"]["p50_ms"]) / result["engine"]["p50_ms"]
    )
    assert result["config"]["concurrency"] == [1, 4]
    assert result["config"]["workers"] == [1]
    assert result["config"]["rates"] == [50]
    assert result["config"]["overrides"] == {"query_cache_size": 0}
    assert result["config"]["query_cache_size"] == 0
    assert result["dataset"]["queries"] == 20 + 2 * 30 + 30  # warm-up, levels: one stream
    # The server ran on a snapshot: no benchmark search reaches the workspace's own logs.
    compact_event_log(ws)
    assert ws.count("requests") == 0
    assert not list(ws.dir("cache").glob("bench-serve-*"))


def test_bad_rates_and_no_levels_fail_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _workspace(tmp_path / "ws")
    for options, message in (
        (["--rate", "0"], "positive request rates"),
        (["--rate", "x"], "positive request rates"),
        (["--concurrency", ""], "no level to run"),
        (["--arrivals", "bursty", "--rate", "5"], "poisson, uniform"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(
                [
                    "bench",
                    "serve",
                    "--workspace",
                    str(ws.root),
                    "--report",
                    str(tmp_path / "r.json"),
                    *options,
                ]
            )
        assert exit_info.value.code == 2, (options, message)
        assert message in capsys.readouterr().err


def test_levels_must_be_positive_integers() -> None:
    assert parse_levels("1, 8,32", "concurrency") == [1, 8, 32]
    for bad in ("", "0,8", "one", "1;8"):
        with pytest.raises(InvalidInputError, match="comma list of positive integers"):
            parse_levels(bad, "concurrency")


def test_worker_split_orders_processes_by_their_share_of_the_level() -> None:
    before = {10: 1.0, 11: 2.0}
    after = {10: 4.0, 11: 3.0, 12: 0.0}  # 12: started during the level, used nothing
    split = worker_split(before, after, seconds=5.0)
    assert split["shares"] == [0.75, 0.25, 0.0]
    assert split["busiest_utilisation"] == pytest.approx(3.0 / 5.0)
    assert worker_split({}, {}, 5.0) == {"shares": [], "busiest_utilisation": None}
    assert worker_split(before, before, 5.0)["busiest_utilisation"] is None  # no CPU used


def test_server_cpu_is_counted_below_one_clock_tick() -> None:
    """A process group's CPU is read to the nanosecond, not in /proc's 10 ms clock ticks."""
    spin = (
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "for _ in sys.stdin:\n"
        "    end = time.process_time() + 0.003\n"
        "    while time.process_time() < end: pass\n"
        "    print('done', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", spin],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"  # started: its start-up is not counted
        before = server_cpu_seconds(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        after = server_cpu_seconds(child.pid)
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()
    assert before is not None
    assert after is not None
    # 3 ms of spinning and a line read and written: not 0 and not a whole 10 ms tick
    assert 0.003 <= after - before < 0.009
