"""What the event log says about each served search: its market, its time, the products it
showed and the events already recorded for it, as ``POST /events`` needs them on any worker.

A :class:`SearchLog` learns searches and events from two places:

- **following** the log (:meth:`SearchLog.refresh`): every worker's segment (``W/log/*.wal``)
  is read as it grows, from where it stood when :meth:`SearchLog.start` ran (segments created
  later from their start), each line once per process; the newest :data:`RECENT` searches are
  kept, with their events;
- **looking up** a search it does not hold (:meth:`SearchLog.lookup`: logged before this process
  started, or forgotten): its lines are searched for in every segment from the start and its
  rows in the ``requests``, ``impressions`` and ``interactions`` tables.

No event is missed in between: reading and looking up take turns, a lookup reads each segment
to its current end (at or past where following stands, so the two overlap rather than leave a
gap), segments are read before the tables (compaction adds a batch to the tables before it
deletes its segments), and an event read before its search (the two were in different segments)
waits in a bounded list until the search arrives. Recording an event twice is harmless: it is a
set. Event ids are not stored in the tables, so after compaction an event id is recognised only
by a process that read it from the log.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopsearch.events.log import LOG_DIR, SEGMENT_SUFFIX
from shopsearch.events.records import (
    EventFields,
    RecordedEvents,
    decode_line,
    event_fields,
    search_request_id,
)
from shopsearch.store.workspace import Workspace

#: Searches kept in memory per process (about 1 KB each); older ones are looked up again.
RECENT = 20_000
_POLL_S = 0.05


@dataclass
class LoggedSearch:
    """One served search as the log has it.

    Attributes:
        request_id: the id the search answered with.
        domain: the market searched (``*``: every market).
        timestamp: when it was served (UTC microseconds).
        shown: each shown product id → the markets it was shown in, in order.
        recorded: the events recorded for it so far (see :class:`RecordedEvents`).
    """

    request_id: str
    domain: str
    timestamp: int
    shown: dict[str, list[str]] = field(default_factory=dict)
    recorded: RecordedEvents = field(default_factory=RecordedEvents)

    def show(self, product_id: str, market: str) -> None:
        """Note that the search showed ``product_id`` of ``market``."""
        markets = self.shown.setdefault(product_id, [])
        if market not in markets:
            markets.append(market)


@dataclass
class _Tail:
    fd: int
    offset: int


_Event = tuple[EventFields, str | None]


class SearchLog:
    """The served searches of a workspace and their recorded events, read from its event log.

    Thread-safe: :attr:`lock` guards the searches and their events (hold it while checking and
    then changing :attr:`LoggedSearch.recorded`); reading the disk happens outside it.

    Args:
        workspace: the workspace whose ``W/log`` and tables are read.
        recent: searches kept in memory.
    """

    def __init__(self, workspace: Workspace, *, recent: int = RECENT) -> None:
        self.workspace = workspace
        self.directory = workspace.root / LOG_DIR
        self.recent = recent
        self.lock = threading.Lock()
        self._reading = threading.Lock()
        self._searches: OrderedDict[str, LoggedSearch] = OrderedDict()
        self._early: OrderedDict[str, list[_Event]] = OrderedDict()
        self._tails: dict[str, _Tail] = {}

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Follow the log from here on: existing segments from their current end."""
        with self._reading:
            for path in self._segments():
                with contextlib.suppress(FileNotFoundError):
                    fd = os.open(path, os.O_RDONLY)
                    self._tails[path.name] = _Tail(fd, os.fstat(fd).st_size)

    def close(self) -> None:
        """Stop following the log."""
        with self._reading:
            for tail in self._tails.values():
                os.close(tail.fd)
            self._tails.clear()

    # -- reading ---------------------------------------------------------------------------------
    def get(self, request_id: str) -> LoggedSearch | None:
        """The search if it is in memory (no disk access)."""
        with self.lock:
            return self._searches.get(request_id)

    def refresh(self) -> None:
        """Read what every segment gained since the last read."""
        with self._reading:
            lines: list[bytes] = []
            present = {path.name: path for path in self._segments()}
            for name, path in present.items():
                if name not in self._tails:
                    with contextlib.suppress(FileNotFoundError):
                        self._tails[name] = _Tail(os.open(path, os.O_RDONLY), 0)
            for name, tail in list(self._tails.items()):
                data = _read_from(tail.fd, tail.offset)
                end = data.rfind(b"\n") + 1
                tail.offset += end
                lines.extend(data[:end].split(b"\n")[:-1])
                if name not in present:  # compacted and deleted: read to its end
                    os.close(tail.fd)
                    del self._tails[name]
            self._learn(_records(lines))

    def lookup(self, request_id: str) -> LoggedSearch | None:
        """The search from the whole log and the tables (slow: for searches not in memory)."""
        with self._reading:
            known = self.get(request_id)
            if known is not None:
                return known
            records = list(_records(self._scan_segments(request_id)))
            search = _from_tables(self.workspace, request_id)
            if search is not None:
                with self.lock:
                    self._keep(search)
            self._learn(records)  # the search itself, if it is not in the tables yet
            return self.get(request_id)

    def find(self, request_id: str, wait_s: float) -> LoggedSearch | None:
        """The search from memory, the newest lines, or a lookup; waits up to ``wait_s`` for a
        search another worker served a moment ago and has not written yet."""
        self.refresh()
        search = self.get(request_id) or self.lookup(request_id)
        deadline = time.monotonic() + wait_s
        while search is None and time.monotonic() < deadline:
            time.sleep(_POLL_S)
            self.refresh()
            search = self.get(request_id)
        return search

    # -- internals -------------------------------------------------------------------------------
    def _segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"*{SEGMENT_SUFFIX}"))

    def _scan_segments(self, request_id: str) -> Iterator[bytes]:
        needle = request_id.encode()
        for path in self._segments():
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # compacted meanwhile: its rows are in the tables
                continue
            at = data.find(needle)
            while at >= 0:
                start = data.rfind(b"\n", 0, at) + 1
                end = data.find(b"\n", at)
                if end < 0:
                    break  # a line still being written
                yield data[start:end]
                at = data.find(needle, end)

    def _learn(self, records: Iterable[dict[str, Any]]) -> None:
        """Add searches first, then events (an event may come before its search)."""
        searches: list[LoggedSearch] = []
        events: list[tuple[str, _Event]] = []
        for record in records:
            try:
                if record["type"] == "search":
                    searches.append(_from_record(record))
                else:
                    fields = event_fields(record)
                    events.append((search_request_id(fields[0]), (fields, record.get("event_id"))))
            except (KeyError, TypeError, ValueError):  # not of this format: compaction skips it
                continue
        with self.lock:
            for search in searches:
                if search.request_id not in self._searches:
                    self._keep(search)
            for request_id, event in events:
                known = self._searches.get(request_id)
                if known is None:
                    self._early.setdefault(request_id, []).append(event)
                    while len(self._early) > self.recent:
                        self._early.popitem(last=False)
                else:
                    known.recorded.add(*event)

    def _keep(self, search: LoggedSearch) -> None:
        """Hold ``search`` (under :attr:`lock`) with the events that came before it."""
        for event in self._early.pop(search.request_id, []):
            search.recorded.add(*event)
        self._searches[search.request_id] = search
        while len(self._searches) > self.recent:
            self._searches.popitem(last=False)


def _read_from(fd: int, offset: int) -> bytes:
    chunks = []
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _records(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        record = decode_line(line)
        if record is not None and record.get("type") in ("search", "interaction"):
            yield record


def _from_record(record: dict[str, Any]) -> LoggedSearch:
    request = record["request"]
    search = LoggedSearch(request["request_id"], request["domain"], int(request["timestamp"]))
    for impression in record["impressions"]:
        search.show(impression["product_id"], impression.get("domain") or search.domain)
    return search


_TABLES_SQL = """
SELECT request_id, domain, epoch_us(timestamp) FROM requests
WHERE request_id = $id OR starts_with(request_id, $prefix)
"""


def _from_tables(workspace: Workspace, request_id: str) -> LoggedSearch | None:
    """The search's compacted rows: its requests (one per market), impressions and events."""
    with workspace.connect() as con:
        ids = {"id": request_id, "prefix": f"{request_id}@"}
        requests = con.execute(_TABLES_SQL, ids).fetchall()
        if not requests:
            return None
        stored = [row[0] for row in requests]
        shown = con.execute(
            "SELECT request_id, product_id FROM impressions WHERE list_contains($ids, request_id) "
            "ORDER BY position",
            {"ids": stored},
        ).fetchall()
        events = con.execute(
            "SELECT request_id, product_id, kind, user_id, value FROM interactions "
            "WHERE list_contains($ids, request_id)",
            {"ids": stored},
        ).fetchall()
    market = {rid: domain for rid, domain, _ in requests}
    own = [row for row in requests if row[0] == request_id]
    searched = own[0][1] if own else "*"
    search = LoggedSearch(request_id, searched, min(int(row[2]) for row in requests))
    for rid, product_id in shown:
        search.show(product_id, market[rid])
    for rid, product_id, kind, user_id, value in events:
        search.recorded.add((rid, product_id, kind, user_id, float(value)), None)
    return search
