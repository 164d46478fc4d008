"""The event log writer: durability on acknowledgement, group commit, rotation, back-pressure;
and the reader that follows every worker's log."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time

import pytest

from shopsearch.events.log import LOG_DIR, EventLog
from shopsearch.events.records import Shown, decode_line, interaction_line, search_line
from shopsearch.events.searches import SearchLog


class Counting:
    def __init__(self) -> None:
        self.writes = 0
        self.lines = 0
        self.dropped = 0

    def log_written(self, lines: int, nbytes: int, seconds: float) -> None:
        self.writes += 1
        self.lines += lines

    def log_dropped(self, lines: int) -> None:
        self.dropped += lines


def _line(i: int) -> bytes:
    return interaction_line(f"r{i}", "u", "p", "click", i, 0.0)


def _records(folder) -> list[dict]:
    lines = b"".join(p.read_bytes() for p in sorted(folder.glob("*.wal"))).split(b"\n")[:-1]
    return [decode_line(line) for line in lines]


def test_concurrent_durable_writes_share_fsyncs(tmp_path):
    observer = Counting()
    log = EventLog(tmp_path / "log", observer=observer)
    log.start()

    async def post_all() -> None:
        await asyncio.gather(*(log.write(_line(i)) for i in range(200)))

    try:
        asyncio.run(post_all())
        assert len(_records(tmp_path / "log")) == 200  # on disk once write() returned
    finally:
        log.close()
    assert observer.lines == 200
    assert observer.writes < 200  # group commit


def test_submitted_lines_are_written_within_the_linger(tmp_path):
    log = EventLog(tmp_path / "log", linger_s=0.001)
    log.start()
    try:
        for i in range(50):
            assert log.submit(_line(i))
        log.flush()
        assert [r["request_id"] for r in _records(tmp_path / "log")] == [f"r{i}" for i in range(50)]
    finally:
        log.close()


def test_lines_submitted_within_the_linger_share_one_write(tmp_path):
    observer = Counting()
    log = EventLog(tmp_path / "log", linger_s=1.0, observer=observer)
    log.start()
    try:
        for i in range(20):
            assert log.submit(_line(i))
        deadline = time.monotonic() + 30
        while observer.lines < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        log.close()
    assert (observer.writes, observer.lines) == (1, 20)


def test_a_durable_write_does_not_wait_for_lingering_lines(tmp_path):
    log = EventLog(tmp_path / "log", linger_s=60.0)
    log.start()
    try:
        assert log.submit(_line(0))
        start = time.monotonic()
        asyncio.run(log.write(_line(1)))  # takes the lingering line along
        assert time.monotonic() - start < 30
        assert [r["request_id"] for r in _records(tmp_path / "log")] == ["r0", "r1"]
        assert log.submit(_line(2))
    finally:
        start = time.monotonic()
        log.close()  # writes what still lingers, without waiting out the linger
    assert time.monotonic() - start < 30
    assert [r["request_id"] for r in _records(tmp_path / "log")] == ["r0", "r1", "r2"]


def test_the_segment_is_locked_while_open_and_rotates_by_size(tmp_path):
    log = EventLog(tmp_path / "log", segment_bytes=1_000)
    log.start()
    first = log.segment
    assert first is not None
    fd = os.open(first, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for i in range(30):
            log.submit(_line(i))
            log.flush()
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # closed by the rotation: free
    finally:
        os.close(fd)
        log.close()
    assert len(list((tmp_path / "log").glob("*.wal"))) > 2
    assert len(_records(tmp_path / "log")) == 30
    assert not list((tmp_path / "log").glob(".*"))  # no half-created segment is left


def test_submit_drops_when_the_queue_is_full(tmp_path):
    observer = Counting()
    log = EventLog(tmp_path / "log", linger_s=10.0, max_queued_bytes=300, observer=observer)
    log.start()
    try:
        kept = sum(log.submit(_line(i)) for i in range(10))
        assert 0 < kept < 10
        assert observer.dropped == 10 - kept
    finally:
        log.close()  # closing writes what was queued at once
    assert len(_records(tmp_path / "log")) == kept


def test_a_closed_log_refuses_writes(tmp_path):
    log = EventLog(tmp_path / "log")
    with pytest.raises(RuntimeError, match="start"):
        log.submit(_line(0))
    log.start()
    log.close()
    log.close()
    with pytest.raises(RuntimeError):
        log.submit(_line(0))


def test_the_search_reader_keeps_an_event_read_before_its_search(workspace):
    folder = workspace.root / LOG_DIR
    folder.mkdir()
    (folder / "old.wal").write_bytes(_line(0))  # before start(): left to lookups
    reader = SearchLog(workspace)
    reader.start()
    try:
        (folder / "b.wal").write_bytes(interaction_line("r1", "u", "1", "click", 2, 0.0))
        reader.refresh()  # the event of another worker, before its search is read
        shown = [Shown("1", 1, None, {}, domain="us")]
        (folder / "a.wal").write_bytes(search_line("r1", "u", "us", "sofa", {}, 1, shown))
        reader.refresh()
        search = reader.get("r1")
        assert search is not None
        assert (search.domain, search.timestamp, search.shown) == ("us", 1, {"1": ["us"]})
        assert search.recorded.find(("r1", "1", "click", "u", 0.0), None) is not None
        assert reader.get("r0") is None  # not followed: it was there before start()
    finally:
        reader.close()
