"""Compaction: the event log's segments → Parquet parts of ``requests``, ``impressions`` and
``interactions``, exactly once, whatever crashes.

State, in ``W/log/manifest.json`` (replaced atomically)::

    {"offsets": {segment: bytes already compacted}, "pending": null | batch}

One compaction, holding the workspace write lock (so one at a time across processes):

1. **Recover**: a ``pending`` batch left by a crash is applied (step 4) and finished (step 5).
2. **Read** every segment from its offset to its last complete line. A segment whose ``flock``
   can be taken is finished (its writer closed it or died; see :mod:`.event_log`) and is locked
   while it is read, so it is read to its end and a torn last line is skipped; a live segment
   is read up to its last newline and the rest is left for later. Lines that do not verify are
   skipped and counted, and so are repeated events (:class:`~.records.LogRows`: the first of
   each is kept; ``POST /events`` refuses to log repeats, but two workers may both log one at
   the same instant). What a batch keeps depends only on the lines it read, so a re-run after
   a crash keeps the same events.
3. **Stage**: the rows go to ``W/log/staging/<batch>/<table>.parquet`` (each written atomically),
   then the manifest is replaced with ``pending`` = the batch id, each table's part name, the
   segments' new offsets and the finished segments. This write is the commit point: before
   it the staged files are garbage (removed by the next run) and the offsets are unchanged.
4. **Apply**, per table: if the table's manifest does not yet name the batch's part, the staged
   file is copied into the table as that part and the table manifest is replaced with the part
   appended (the workspace's own atomic write order). The part name is the test, so applying
   twice adds nothing.
5. **Finish**: finished segments are deleted, then the manifest is replaced with the new offsets,
   without the deleted segments and with ``pending`` null; the staging folder is removed.

Crash safety: a crash before step 3's manifest write changes no table and no offset, so the
next run reads the same lines again; after it, the batch is recorded with its rows on disk and
step 4 adds each table's part exactly once (by name) however often it is re-run; offsets move
only together with the batch that holds those lines, and a segment is forgotten only after it is
deleted. So every line that was fsync'd before an acknowledgement ends up in the tables once
(or, if it repeats an event of the same batch, as that one event).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shopsearch.errors import WorkspaceError
from shopsearch.events.log import LOG_DIR, SEGMENT_SUFFIX
from shopsearch.events.records import LOG_TABLES, LogRows, decode_line
from shopsearch.store.atomic import atomic_path, fsync_dir, write_json, write_parquet
from shopsearch.store.tables import new_part_name, table_folder, write_manifest
from shopsearch.store.workspace import Workspace

MANIFEST = "manifest.json"
STAGING = "staging"

logger = logging.getLogger(__name__)


@dataclass
class CompactionResult:
    """What one compaction moved into the tables."""

    requests: int = 0
    impressions: int = 0
    interactions: int = 0
    stream: int = 0
    segments_read: int = 0
    segments_removed: int = 0
    bad_lines: int = 0
    repeats: int = 0
    recovered: bool = False

    @property
    def rows(self) -> int:
        """Rows added to the tables."""
        return self.requests + self.impressions + self.interactions + self.stream


@dataclass
class _Read:
    rows: LogRows = field(default_factory=LogRows)
    offsets: dict[str, int] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    bad_lines: int = 0


def compact_event_log(workspace: Workspace) -> CompactionResult:
    """Move everything the servers of ``workspace`` logged so far into its tables.

    Safe to call at any time from any process, also while servers run (their segments are read
    up to the last complete line). Commands that read requests, impressions or interactions call
    this first so that served traffic is included.

    Returns:
        Counts of the rows added, segments read and removed, and lines skipped.
    """
    log_dir = workspace.root / LOG_DIR
    if not log_dir.is_dir() or not _has_work(log_dir):
        return CompactionResult()
    with workspace.lock():
        return _compact(workspace, log_dir)


def _has_work(log_dir: Path) -> bool:
    if (log_dir / STAGING).exists() or any(log_dir.glob(f"*{SEGMENT_SUFFIX}")):
        return True
    manifest = _read_manifest(log_dir)
    return manifest["pending"] is not None


def _compact(workspace: Workspace, log_dir: Path) -> CompactionResult:
    manifest = _read_manifest(log_dir)
    result = CompactionResult()
    if manifest["pending"] is not None:
        _apply(workspace, log_dir, manifest["pending"])
        manifest = _finish(log_dir, manifest)
        result.recovered = True
    _clear_staging(log_dir)
    read = _read_segments(log_dir, manifest["offsets"])
    result.segments_read = len(read.offsets) + len(read.finished)
    result.bad_lines = read.bad_lines
    result.repeats = read.rows.repeats
    if not read.offsets and not read.finished:
        return result
    batch = uuid.uuid4().hex
    staging = log_dir / STAGING / batch
    parts: dict[str, str] = {}
    for name in LOG_TABLES:
        table = read.rows.table(name)
        setattr(result, name, table.num_rows)
        if table.num_rows:
            write_parquet(staging / f"{name}.parquet", table)
            parts[name] = new_part_name(batch)
    pending = {"batch": batch, "parts": parts, "offsets": read.offsets, "finished": read.finished}
    manifest = {**manifest, "pending": pending}
    write_json(log_dir / MANIFEST, manifest)  # the commit point
    _apply(workspace, log_dir, pending)
    _finish(log_dir, manifest)
    result.segments_removed = len(read.finished)
    return result


def _read_manifest(log_dir: Path) -> dict[str, Any]:
    path = log_dir / MANIFEST
    if not path.exists():
        return {"offsets": {}, "pending": None}
    try:
        manifest: dict[str, Any] = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise WorkspaceError(
            f"{path} is not valid JSON ({exc}); it is only ever replaced atomically, so the disk "
            "or a person changed it; restore it from a backup"
        ) from exc
    return manifest


def _read_segments(log_dir: Path, offsets: dict[str, int]) -> _Read:
    read = _Read()
    for path in sorted(log_dir.glob(f"*{SEGMENT_SUFFIX}")):
        start = int(offsets.get(path.name, 0))
        with _finished_lock(path) as finished, path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].split(b"\n")[:-1]:
            record = decode_line(line)
            if record is None or not _add(read.rows, record):
                read.bad_lines += 1
        if finished:
            if end < len(data):
                read.bad_lines += 1  # a torn last line: its writer is gone
            read.finished.append(path.name)
        elif end:
            read.offsets[path.name] = start + end
    return read


def _add(rows: LogRows, record: dict[str, Any]) -> bool:
    try:
        return rows.add(record)
    except (KeyError, TypeError, ValueError):
        return False


@contextlib.contextmanager
def _finished_lock(path: Path) -> Iterator[bool]:
    """Yields whether ``path`` is finished (nobody holds its lock); holds the lock if so."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def _apply(workspace: Workspace, log_dir: Path, pending: dict[str, Any]) -> None:
    staging = log_dir / STAGING / pending["batch"]
    for name, part in pending["parts"].items():
        folder = table_folder(workspace, name)
        live = [p.name for p in workspace.parts(name)]
        if part in live:
            continue
        staged = staging / f"{name}.parquet"
        if not staged.exists():
            raise WorkspaceError(
                f"event-log batch {pending['batch']} is committed but its staged file {staged} is "
                "gone; restore it from a backup, or drop 'pending' from "
                f"{log_dir / MANIFEST} to lose that batch"
            )
        with atomic_path(folder / part) as tmp:
            shutil.copyfile(staged, tmp)
        write_manifest(workspace, name, [*live, part])


def _finish(log_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    pending = manifest["pending"]
    offsets = {**manifest["offsets"], **pending["offsets"]}
    for name in pending["finished"]:
        (log_dir / name).unlink(missing_ok=True)
    fsync_dir(log_dir)
    alive = {p.name for p in log_dir.glob(f"*{SEGMENT_SUFFIX}")}
    done = {"offsets": {k: v for k, v in offsets.items() if k in alive}, "pending": None}
    write_json(log_dir / MANIFEST, done)
    shutil.rmtree(log_dir / STAGING / pending["batch"], ignore_errors=True)
    return done


def _clear_staging(log_dir: Path) -> None:
    staging = log_dir / STAGING
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)
