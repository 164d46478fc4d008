"""A text file's records as the :mod:`csv` module reads them, for what pandas does not say.

- :func:`record_lines`: the line on which each record starts, when records span lines;
- :func:`scan`: the malformed records (more fields than the header, a quoted value never closed)
  and where the good ones start; :class:`Without` streams the file without the malformed ones;
- :func:`decode_error`: where a file stops being text of an encoding, as a line and a byte offset
  within the whole file (pandas' offset is within its read buffer).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import numpy as np

from shopsearch.datasets.base import Malformed

#: A :mod:`csv` quoting constant: ``QUOTE_MINIMAL`` (0) ... ``QUOTE_NONE`` (3).
Quoting = Literal[0, 1, 2, 3]


def record_lines(path: Path, sep: str, quoting: Quoting, encoding: str, records: int) -> np.ndarray:
    """The 1-based line on which each data record starts (the header is line 1).

    When the file has one line per record (the usual case) this is ``2..n+1`` without reading the
    file again as text; otherwise (values spanning lines, blank lines) the records are re-read
    with the :mod:`csv` module, which follows the same quoting rules.
    """
    simple = np.arange(2, records + 2, dtype=np.int64)
    with path.open("rb") as handle:
        newlines = 0
        last = b""
        while chunk := handle.read(1 << 24):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    lines = newlines + (1 if last not in (b"\n", b"") else 0)
    if lines == records + 1:
        return simple
    starts: list[int] = []
    with long_fields(path), path.open(newline="", encoding=encoding) as handle:
        reader = csv.reader(handle, delimiter=sep, quoting=quoting)
        end = 0
        for record in reader:
            if record:
                starts.append(end + 1)
            end = reader.line_num
    starts = starts[1:]
    return np.asarray(starts, dtype=np.int64) if len(starts) == records else simple


@contextlib.contextmanager
def long_fields(path: Path) -> Iterator[None]:
    """Let the :mod:`csv` module read values as long as the file, as pandas does."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, path.stat().st_size))
    try:
        yield
    finally:
        csv.field_size_limit(limit)


class _Lines:
    """The lines of an open text file from line ``skip + 1`` on, for :mod:`csv`: knows the first
    line of the record being read and whether the reader went past the last line."""

    def __init__(self, handle: TextIO, skip: int) -> None:
        self._lines = itertools.islice(handle, skip, None)
        self.head: str | None = None
        self.past_end = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines, None)
        if line is None:
            self.past_end = True
            raise StopIteration
        if self.head is None:
            self.head = line
        return line

    def take_head(self) -> str:
        """The first line of the record just read (and start the next record)."""
        head, self.head = self.head or "", None
        return head


@dataclass
class Scan:
    """A text file's records: where each good one starts, the malformed ones, their lines."""

    starts: list[int]
    malformed: list[Malformed]
    bad_lines: set[int]

    def bad(self, path: Path, lines: range, head: str, reason: str) -> None:
        """Record the malformed record on ``lines`` (1-based), whose first line is ``head``."""
        self.malformed.append(Malformed(str(path), lines.start, shorten(head), reason))
        self.bad_lines.update(lines)


def scan(path: Path, sep: str, quoting: Quoting, encoding: str) -> Scan:
    """Find the malformed records of a text file with the :mod:`csv` module (pandas' quoting).

    A quoted value never closed makes the reader run to the end of the file: that record is
    malformed on its first line, and reading starts again on the next line.
    """
    found = Scan([], [], set())
    width: int | None = None
    skip = 0  # lines before the reader's first line
    while True:
        with long_fields(path), path.open(newline="", encoding=encoding) as handle:
            lines = _Lines(handle, skip)
            reader = csv.reader(lines, delimiter=sep, quoting=quoting)
            end = skip  # last line of the previous record
            for record in reader:
                first, end = end + 1, skip + reader.line_num
                head = lines.take_head()
                if lines.past_end:  # only an open quote reads past the last line
                    found.bad(path, range(first, first + 1), head, _open_quote(first))
                    break
                if not record:
                    continue
                if width is None:
                    width = len(record)
                elif len(record) > width:
                    reason = _too_many(first, len(record), width, sep)
                    found.bad(path, range(first, end + 1), head, reason)
                else:
                    found.starts.append(first)
            else:
                return found
        skip = first


def _open_quote(line: int) -> str:
    return (
        f'the quoted value starting on line {line} is never closed. Close it with a " '
        '(a " inside a quoted value is written twice)'
    )


def _too_many(line: int, fields: int, width: int, sep: str) -> str:
    return (
        f"the record on line {line} has {fields} fields, the header has {width}. Quote values "
        f"that contain the {sep_name(sep)} separator"
    )


class Without(io.TextIOBase):
    """An open text file without some of its lines, as a stream pandas reads."""

    def __init__(self, handle: TextIO, lines: set[int]) -> None:
        super().__init__()
        self._lines = (line for n, line in enumerate(handle, 1) if n not in lines)
        self._rest = ""

    def readable(self) -> bool:
        """A stream to read."""
        return True

    def read(self, size: int | None = -1, /) -> str:
        """Up to ``size`` characters (all that is left when ``size`` is negative or None)."""
        limit = -1 if size is None else size
        parts, have = [self._rest], len(self._rest)
        for line in self._lines:
            parts.append(line)
            have += len(line)
            if 0 <= limit <= have:
                break
        chunk = "".join(parts)
        cut = len(chunk) if limit < 0 else limit
        self._rest = chunk[cut:]
        return chunk[:cut]


def shorten(line: str, limit: int = 60) -> str:
    """A line without its line end, cut to ``limit`` characters."""
    line = line.rstrip("\r\n")
    return line if len(line) <= limit else line[: limit - 3] + "..."


#: Bytes of the line before an undecodable byte that :func:`decode_error` shows (half after it).
_AROUND = 40


def decode_error(path: Path, encoding: str) -> tuple[int, int, int, str] | None:
    """Where ``encoding`` first fails to decode ``path``: the byte offset in the file, the line,
    the byte and the text around it on its line (``None`` if the file decodes)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0  # bytes of the file before ``chunk``
    newlines = 0  # in the file before ``chunk``
    tail = b""  # the end of the line that ``chunk`` continues, up to _AROUND bytes
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                at = offset - len(pending) + exc.start
                data, cut = tail + chunk, len(tail) + at - offset
                newlines += data[:cut].count(b"\n")
                before = data[:cut].rsplit(b"\n", 1)[-1][-_AROUND:]
                after = data[cut:].split(b"\n", 1)[0][: _AROUND // 2]
                text = (before + after).decode(encoding, errors="replace")
                return at, newlines + 1, exc.object[exc.start], text
            if not chunk:
                return None
            newlines += chunk.count(b"\n")
            tail = (tail + chunk).rsplit(b"\n", 1)[-1][-_AROUND:]
            offset += len(chunk)


def sep_name(sep: str) -> str:
    """A separator by name: ``","`` is "comma"."""
    return {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}.get(sep, repr(sep))
