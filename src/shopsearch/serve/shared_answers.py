"""Answers shared between the workers of one ``shopsearch serve``.

Each worker keeps its own response cache (:attr:`Engine.responses`, anonymous searches), and
the kernel spreads connections over the workers, so with N workers a repeated search misses
once per worker, and each cache holds only the searches its own connections sent. Here every
answer a worker computes and caches is also appended to a journal of its own in the run's
folder (:meth:`SharedAnswers.publish`). Every :data:`READ_EVERY_S` each worker reads what the
others appended since (:meth:`SharedAnswers.absorb`), and once more before it starts serving
(what they answered while it loaded). It keeps their answers as the bytes read, by key, until
its cache misses one (:meth:`SharedAnswers.answer`, the cache's ``fallback``): only answers
asked for are unpickled, so the others' answers cost no objects for the garbage collector to
walk. An answer is only given for the bundle it was computed with, so a reload never serves
another bundle's answers.

A journal is a sequence of files ``<worker>-<n>.answers``, each record two 4-byte lengths, the
pickled ``(bundle, key)`` and the pickled answer; a writer starts a new file past
``max_file_bytes`` and deletes its file before the last, so a reader more than a whole file
behind skips what it missed (a cache loses nothing it needs). The files are written and read
only by the workers of one server, in the workspace; the server removes the folder when it
stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Generator, Hashable, Iterator
from pathlib import Path

from shopsearch.pipeline.request import SearchResponse

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")  # lengths of the pickled (bundle, key) and answer
_NAME = re.compile(r"^(?P<worker>[0-9a-z]+)-(?P<n>[0-9]{6})\.answers$")
#: Seconds between a worker's readings of the other workers' journals.
READ_EVERY_S = 0.1
#: Size at which a writer starts its next file.
MAX_FILE_BYTES = 16 << 20


def journal_folder(run_dir: Path, run_id: str) -> Path:
    """The folder of one server run's journals in its workspace's ``serve/`` folder."""
    return run_dir / f"answers-{run_id}"


class SharedAnswers:
    """One worker's journal of its answers, and its reading of the other workers' journals.

    Args:
        folder: the run's folder, shared by its workers (made if missing).
        worker: this worker's name in the folder (default: its pid and a random suffix, so a
            new process with a dead one's pid starts journals of its own).
        max_file_bytes: size at which a journal file is followed by the next.
        capacity: most of the others' answers kept waiting to be asked for (the oldest go).
    """

    def __init__(
        self,
        folder: Path,
        worker: str | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        capacity: int = 4096,
    ) -> None:
        self.folder = folder
        self.worker = worker or f"{os.getpid()}x{uuid.uuid4().hex[:8]}"
        self.max_file_bytes = max_file_bytes
        self.capacity = capacity
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._waiting: OrderedDict[Hashable, bytes] = OrderedDict()
        self._waiting_bundle = ""
        self._loads = 0
        #: The tag of the engine loaded last (:meth:`new_load`): what :meth:`absorb` keeps.
        self.tag = ""
        self._number = 0
        self._written = 0
        self._fd: int | None = self._open(0)
        # peers' journals as they are now are not read: their answers are for older traffic
        self._positions: dict[str, tuple[int, int]] = {}
        for worker_name, number, path in self._journals():
            if worker_name != self.worker:  # after the last whole record (one may be half written)
                self._positions[worker_name] = (number, _end_of_records(path))

    def new_load(self, bundle: str) -> str:
        """The tag of the answers of an engine just loaded from ``bundle``, from now on the one
        :meth:`absorb` keeps.

        Each load of a worker counts (a reload of the same bundle takes a new snapshot of the
        log for the ranking features), so answers are only shared between engines of the
        same bundle and the same reload: every worker follows each reload once.
        """
        with self._lock:
            self.tag = f"{bundle}#{self._loads}"
            self._loads += 1
            self._waiting.clear()
            self._waiting_bundle = self.tag
            return self.tag

    def _path(self, number: int) -> Path:
        return self.folder / f"{self.worker}-{number:06d}.answers"

    def _open(self, number: int) -> int:
        return os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def publish(self, tag: str, key: Hashable, answer: SearchResponse) -> None:
        """Append ``answer`` (cached under ``key`` by an engine of ``tag``) for the other
        workers. A failure (a full disk) is logged and ends publishing: the search that
        computed the answer is not failed for it."""
        try:
            meta = pickle.dumps((tag, key), protocol=pickle.HIGHEST_PROTOCOL)
            payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
            record = _HEADER.pack(len(meta), len(payload)) + meta + payload
            with self._lock:
                if self._fd is None:
                    return
                if self._written and self._written + len(record) > self.max_file_bytes:
                    self._next_file()
                written = os.write(self._fd, record)  # one write: readers see whole records
                self._written += written
                if written != len(record):
                    raise OSError(f"wrote {written} of {len(record)} bytes")
        except Exception:
            logger.warning("stopped sharing answers through %s", self.folder, exc_info=True)
            self.close()

    def _next_file(self) -> None:
        assert self._fd is not None
        new = self._open(self._number + 1)  # the old one stays until the new one is open
        os.close(self._fd)
        self._fd, self._number, self._written = new, self._number + 1, 0
        # readers still on the file before this one finish it; the one before that goes
        self._path(self._number - 2).unlink(missing_ok=True)

    def absorb(self, tag: str | None = None) -> int:
        """Read the other workers' new answers; keep those of ``tag`` (default: :attr:`tag`)
        until asked for. Everything new is read in one call.

        Returns:
            how many answers were kept.
        """
        tag = self.tag if tag is None else tag
        kept = 0
        for meta, payload in self._new_records():
            try:
                made_for, key = pickle.loads(meta)  # written by this server's workers
                if made_for != tag:
                    continue
                with self._lock:
                    if self._waiting_bundle != tag:
                        self._waiting.clear()
                        self._waiting_bundle = tag
                    self._waiting[key] = payload
                    self._waiting.move_to_end(key)
                    while len(self._waiting) > self.capacity:
                        self._waiting.popitem(last=False)
            except Exception:  # a record this worker cannot read is a cache entry less
                logger.warning("skipped an unreadable answer in %s", self.folder, exc_info=True)
                continue
            kept += 1
        return kept

    def answer(self, tag: str, key: Hashable) -> SearchResponse | None:
        """Another worker's answer under ``key`` for an engine of ``tag`` (``None``: none),
        once: the asking cache keeps it from then on."""
        with self._lock:
            if self._waiting_bundle != tag:
                return None
            payload = self._waiting.pop(key, None)
        if payload is None:
            return None
        try:
            answer: SearchResponse = pickle.loads(payload)
        except Exception:
            logger.warning("skipped an unreadable answer in %s", self.folder, exc_info=True)
            return None
        return answer

    def waiting(self) -> int:
        """How many of the others' answers wait to be asked for."""
        with self._lock:
            return len(self._waiting)

    def _journals(self) -> list[tuple[str, int, Path]]:
        found = []
        with contextlib.suppress(FileNotFoundError):
            for path in self.folder.iterdir():
                match = _NAME.match(path.name)
                if match:
                    found.append((match["worker"], int(match["n"]), path))
        return sorted(found)

    def _new_records(self) -> Iterator[tuple[bytes, bytes]]:
        files: dict[str, list[int]] = {}
        for worker_name, number, _ in self._journals():
            if worker_name != self.worker:
                files.setdefault(worker_name, []).append(number)
        for worker_name, numbers in files.items():
            number, offset = self._positions.get(worker_name, (numbers[0], 0))
            if number not in numbers:  # deleted while this reader was a whole file behind
                later = [n for n in numbers if n > number]
                if not later:
                    continue
                number, offset = later[0], 0
            while True:
                path = self.folder / f"{worker_name}-{number:06d}.answers"
                # complete if the listing above showed the next file: the writer made that
                # after its last record here
                offset = yield from _records(path, offset)
                if number + 1 not in numbers:
                    break
                number, offset = number + 1, 0
            self._positions[worker_name] = (number, offset)

    def close(self) -> None:
        """Stop publishing (the folder stays for the other workers until the server ends)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _end_of_records(path: Path) -> int:
    """The offset after the last whole record of ``path`` (0: none, or no file)."""
    records = _records(path, 0)
    while True:
        try:
            next(records)
        except StopIteration as end:
            return int(end.value)


def _records(path: Path, offset: int) -> Generator[tuple[bytes, bytes], None, int]:
    """The whole records of ``path`` from ``offset``, each ``(meta, answer)`` bytes; returns the
    offset after the last."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return offset
    at = 0
    while at + _HEADER.size <= len(data):
        meta_size, answer_size = _HEADER.unpack_from(data, at)
        start = at + _HEADER.size
        end = start + meta_size + answer_size
        if end > len(data):  # still being written
            break
        yield data[start : start + meta_size], data[start + meta_size : end]
        at = end
    return offset + at


__all__ = ["MAX_FILE_BYTES", "READ_EVERY_S", "SharedAnswers", "journal_folder"]
