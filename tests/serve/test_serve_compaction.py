"""Compaction of the event log: exactly once through crashes at every step, torn lines, live
segments."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from shopsearch.events import compaction
from shopsearch.events.compaction import MANIFEST, STAGING, compact_event_log
from shopsearch.events.log import LOG_DIR
from shopsearch.events.records import Shown, interaction_line, search_line
from shopsearch.store.workspace import Workspace


class SimulatedCrashError(Exception):
    """Stands for the process dying at this point."""


def _search(i: int) -> bytes:
    shown = [Shown("1", 1, 499.0, {"retrieve.lexical": 1.5}), Shown("2", 2, None, {})]
    return search_line(f"r{i}", "u", "us", f"query {i}", {}, 1_700_000_000_000_000 + i, shown)


def _click(i: int) -> bytes:
    return interaction_line(f"r{i}", "u", "1", "click", 1_700_000_000_000_000 + i, 0.0)


def _segment(ws: Workspace, name: str, data: bytes) -> None:
    folder = ws.root / LOG_DIR
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)


def _ids(ws: Workspace, table: str) -> list[str]:
    return sorted(ws.table(table)["request_id"].to_pylist())


def test_compaction_moves_rows_once_and_removes_finished_segments(workspace):
    _segment(workspace, "a.wal", b"".join([_search(0), _click(0), _search(1)]))
    _segment(workspace, "b.wal", _click(1))
    result = compact_event_log(workspace)
    assert (result.requests, result.impressions, result.interactions) == (2, 4, 2)
    assert result.segments_removed == 2
    assert not list((workspace.root / LOG_DIR).glob("*.wal"))
    assert compact_event_log(workspace).rows == 0
    assert _ids(workspace, "requests") == ["r0", "r1"]
    assert _ids(workspace, "interactions") == ["r0", "r1"]
    assert workspace.table("impressions")["position"].to_pylist() == [1, 2, 1, 2]


def test_repeats_that_two_workers_both_logged_are_stored_once(workspace):
    def click(event_id: str | None, at: int) -> bytes:
        return interaction_line("r0", "u", "1", "click", at, 0.0, event_id=event_id)

    _segment(workspace, "a.wal", b"".join([_search(0), click(None, 1), click("e1", 2)]))
    _segment(workspace, "b.wal", b"".join([click(None, 3), click("e1", 4), click("e2", 5)]))
    result = compact_event_log(workspace)
    assert result.interactions == 3  # the keyless click, e1 and e2; the repeats are dropped
    assert sorted(workspace.table("interactions")["timestamp"].to_pylist()) == [
        datetime.fromtimestamp(at / 1e6, UTC) for at in (1, 2, 5)
    ]


def test_an_all_markets_search_is_stored_as_one_request_per_market(workspace):
    shown = [Shown("1", 1, 499.0, {}, domain="us"), Shown("5", 2, 249.0, {}, domain="gb")]
    search = search_line("r0", "u", "*", "grey", {}, 1_700_000_000_000_000, shown)
    _segment(workspace, "a.wal", search)
    compact_event_log(workspace)
    requests = workspace.table("requests").to_pylist()
    assert [(r["request_id"], r["domain"]) for r in requests] == [("r0@us", "us"), ("r0@gb", "gb")]
    impressions = workspace.table("impressions").to_pylist()
    assert [(i["request_id"], i["product_id"], i["position"]) for i in impressions] == [
        ("r0@us", "1", 1),
        ("r0@gb", "5", 2),
    ]


def test_torn_and_corrupt_lines_are_skipped(workspace):
    corrupt = bytearray(_click(5))
    corrupt[20] ^= 0x01  # a flipped bit: the checksum catches it
    torn = _search(9)[:-30]
    lines = [_search(0), bytes(corrupt), b"garbage\n", _click(0), torn]
    _segment(workspace, "a.wal", b"".join(lines))
    result = compact_event_log(workspace)
    assert result.bad_lines == 3
    assert _ids(workspace, "requests") == ["r0"]
    assert _ids(workspace, "interactions") == ["r0"]
    assert not (workspace.root / LOG_DIR / "a.wal").exists()


def test_a_live_segment_is_read_to_its_last_newline_and_kept(workspace):
    folder = workspace.root / LOG_DIR
    _segment(workspace, "live.wal", _search(0) + _click(0)[:10])
    fd = os.open(folder / "live.wal", os.O_WRONLY | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)  # its writer is alive
    try:
        assert compact_event_log(workspace).requests == 1
        assert (folder / "live.wal").exists()
        os.write(fd, _click(0)[10:] + _click(1))  # the half-written line is finished
        result = compact_event_log(workspace)
        assert (result.requests, result.interactions, result.bad_lines) == (0, 2, 0)
    finally:
        os.close(fd)
    assert compact_event_log(workspace).segments_removed == 1
    assert _ids(workspace, "interactions") == ["r0", "r1"]
    assert _ids(workspace, "requests") == ["r0"]


# Every write compaction makes, by the name it is called through in the compaction module.
_STEPS = ("write_parquet", "write_json", "write_manifest", "fsync_dir")


@pytest.mark.parametrize("step", _STEPS)
def test_a_crash_at_any_write_neither_loses_nor_duplicates(workspace, monkeypatch, step):
    """Crash at the k-th call of ``step`` for every k, then recover: the rows are there once."""
    real = getattr(compaction, step)
    crashes = 0
    for k in range(40):
        ws = Workspace.open(workspace.root)
        for table in ("requests", "impressions", "interactions"):
            ws.replace(table, ws.table(table).slice(0, 0))
        (ws.root / LOG_DIR / MANIFEST).unlink(missing_ok=True)
        _segment(ws, "a.wal", _search(0) + _click(0) + _search(1))
        _segment(ws, "b.wal", _click(1))
        calls = 0

        def failing(*args, _real=real, _k=k, **kwargs):
            nonlocal calls
            calls += 1
            if calls == _k + 1:
                raise SimulatedCrashError(step)
            return _real(*args, **kwargs)

        monkeypatch.setattr(compaction, step, failing)
        try:
            compact_event_log(ws)
        except SimulatedCrashError:
            crashes += 1
        else:
            break
        finally:
            monkeypatch.setattr(compaction, step, real)
        compact_event_log(ws)  # the next run (of any process) recovers
        compact_event_log(ws)
        assert _ids(ws, "requests") == ["r0", "r1"], (step, k)
        assert _ids(ws, "interactions") == ["r0", "r1"], (step, k)
        assert ws.count("impressions") == 4, (step, k)
        assert not list((ws.root / LOG_DIR).glob("*.wal"))
        assert not (ws.root / LOG_DIR / STAGING).exists() or not any(
            (ws.root / LOG_DIR / STAGING).iterdir()
        )
        for table in ("requests", "impressions", "interactions"):
            for part in ws.parts(table):
                pq.read_table(part)
    assert crashes >= 1


def test_stats_compacts_first(workspace):
    from shopsearch.events.stats import workspace_stats

    _segment(workspace, "a.wal", _search(0) + _click(0))
    counts = workspace_stats(workspace)["domains"]["us"]
    assert (counts["requests"], counts["impressions"], counts["clicks"]) == (1, 2, 1)


def test_a_logged_stream_becomes_rows_of_the_stream_table(workspace):
    from shopsearch.pipeline.request import StreamEntry

    stream = [
        StreamEntry("retrieve", [("us", "1"), ("us", "2"), ("us", "3")], [3.0, 2.0, 1.0]),
        StreamEntry("prerank", [("us", "2"), ("us", "1")], [0.9, 0.4]),
    ]
    line = search_line("r0", "u", "us", "q", {}, 1_700_000_000_000_000, [], stream)
    _segment(workspace, "a.wal", line)
    result = compact_event_log(workspace)
    assert result.stream == 5
    rows = workspace.table("stream").to_pylist()
    assert [(r["stage"], r["product_id"], r["position"], r["score"]) for r in rows] == [
        ("retrieve", "1", 1, 3.0),
        ("retrieve", "2", 2, 2.0),
        ("retrieve", "3", 3, 1.0),
        ("prerank", "2", 1, 0.9),
        ("prerank", "1", 2, 0.4),
    ]
