"""Reading the loaders' source files: CSV/TSV or Parquet with their source rows, and their kinds.

Conventions every loader follows through these helpers:

- Text files are read with every column as a string (``keep_default_na=False``: an empty cell is
  ``""``, never NaN), trying each of the format's encodings in turn, so a bad value reaches
  ingest unchanged and is reported there with its row.
- ``_file`` is the path as given and ``_row`` the 1-based line where the record starts (the header
  is line 1, quoted values may span lines) or the 1-based row of a Parquet file.
- A file that is not of the format (missing, empty, wrong columns, not decodable) raises
  :class:`~shopsearch.errors.DataFormatError` naming the file, the expected and found columns (or
  the line and byte offset that does not decode), and the fix.
- A record with more fields than the header, or whose quoted value is never closed, is malformed.
  Within :func:`keeping_malformed` it is listed (:class:`~shopsearch.datasets.base.Malformed`)
  and the file's other records are read; otherwise, or when no record of the file is good, it
  raises :class:`~shopsearch.errors.DataFormatError` naming its line.
- A format's files are told apart by their columns (:class:`Kind`, :func:`classify`);
  :func:`load_single_kind` checks and reads the files of a format with one kind.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsearch.datasets._records import (
    Quoting,
    Without,
    decode_error,
    record_lines,
    scan,
    sep_name,
)
from shopsearch.datasets._rows import concat
from shopsearch.datasets.base import Malformed
from shopsearch.errors import DataFormatError

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})


@dataclass(frozen=True)
class TextFormat:
    """How a format's text files are written.

    Attributes:
        sep: Field separator.
        encodings: Encodings to try in order; the first that decodes the whole file wins.
        quoting: A :mod:`csv` quoting constant: ``QUOTE_MINIMAL`` (0, the default) or
            ``QUOTE_NONE`` (3) for files that never quote.
    """

    sep: str = ","
    encodings: tuple[str, ...] = ("utf-8",)
    quoting: Quoting = 0


CSV = TextFormat()
TSV = TextFormat(sep="\t")


@dataclass(frozen=True)
class Kind:
    """One kind of file a format accepts, recognised by its columns.

    Attributes:
        name: Short name used in messages and as the key of :func:`classify`'s result.
        required: Columns a file of this kind must have.
        label: How the user knows the file, e.g. ``"train.csv"``.
    """

    name: str
    required: tuple[str, ...]
    label: str


# -- paths and columns ---------------------------------------------------------------------------
def check_paths(paths: Sequence[Path | str], fmt: str) -> list[Path]:
    """The paths as :class:`Path`, or a clear error if none are given or one is not a file."""
    if not paths:
        raise DataFormatError(f"{fmt}: no input file given; pass at least one file path")
    checked = [Path(p) for p in paths]
    for path in checked:
        if not path.exists():
            raise DataFormatError(f"{fmt}: file not found: {path}; check the path")
        if not path.is_file():
            raise DataFormatError(f"{fmt}: {path} is not a file; give the data file itself")
    return checked


def is_parquet(path: Path) -> bool:
    """Whether a path is read as Parquet (by its suffix)."""
    return path.suffix.lower() in PARQUET_SUFFIXES


def columns_of(path: Path, fmt: str, text: TextFormat = CSV) -> list[str]:
    """The column names of a file (the header of a text file, the schema of a Parquet file)."""
    if is_parquet(path):
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as exc:
            raise DataFormatError(
                f"{fmt}: {path} is not a readable Parquet file ({exc}); "
                "give a Parquet file or a CSV file without the .parquet suffix"
            ) from None
    frame, _ = _read_text(path, fmt, text, nrows=0)
    return [str(c) for c in frame.columns]


def classify(
    paths: Sequence[Path], fmt: str, kinds: Sequence[Kind], text: TextFormat = CSV
) -> dict[str, list[Path]]:
    """Group the paths by kind: each file is the first kind whose required columns it has.

    Raises:
        DataFormatError: A file has the columns of none of the kinds; the message lists each
            kind's expected columns and the columns found.
    """
    found: dict[str, list[Path]] = {kind.name: [] for kind in kinds}
    for path in paths:
        header = columns_of(path, fmt, text)
        columns = set(header)
        for kind in kinds:
            if set(kind.required) <= columns:
                found[kind.name].append(path)
                break
        else:
            raise DataFormatError(
                f"{fmt}: {path} does not match the {fmt} format: expected the columns of "
                + " or ".join(f"{k.label} ({', '.join(k.required)})" for k in kinds)
                + f"; found {_listing(header)}. Give the files of the {fmt} format unchanged"
                + (", or load your own data with the 'generic' format" if fmt != "generic" else "")
            )
    return found


def require(
    found: Mapping[str, list[Path]], fmt: str, kinds: Collection[str], because: str
) -> None:
    """Fail clearly unless at least one file of one of ``kinds`` was given."""
    if not any(found.get(k) for k in kinds):
        raise DataFormatError(f"{fmt}: {because}")


# -- reading -------------------------------------------------------------------------------------
_MALFORMED: ContextVar[list[Malformed] | None] = ContextVar("malformed", default=None)


@contextlib.contextmanager
def keeping_malformed() -> Iterator[list[Malformed]]:
    """Read past malformed records: within the block, :func:`read_frame` lists them in the list
    this yields and reads the file's other records, instead of raising ``DataFormatError``."""
    found: list[Malformed] = []
    token = _MALFORMED.set(found)
    try:
        yield found
    finally:
        _MALFORMED.reset(token)


def read_frame(
    path: Path, fmt: str, required: Iterable[str], text: TextFormat = CSV, what: str = "file"
) -> pd.DataFrame:
    """Read a text or Parquet file with ``_file`` and ``_row`` columns; check required columns.

    Text files are read as strings (empty cells are ``""``); Parquet columns keep their types.
    """
    if is_parquet(path):
        try:
            frame: pd.DataFrame = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise DataFormatError(
                f"{fmt}: {path} is not a readable Parquet file ({exc}); give a valid Parquet file"
            ) from None
        rows = np.arange(1, len(frame) + 1, dtype=np.int64)
    else:
        frame, rows = _read_text(path, fmt, text)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataFormatError(
            f"{fmt}: {path} is missing the column(s) {', '.join(missing)} of a {what}; "
            f"found {_listing(frame.columns)}. Give the {what} with its original header"
        )
    frame = frame.reset_index(drop=True)
    frame["_file"] = str(path)
    frame["_row"] = rows
    return frame


def _parse(
    source: Path | Without, text: TextFormat, encoding: str, nrows: int | None
) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(
            source,
            sep=text.sep,
            encoding=encoding,
            quoting=text.quoting,
            dtype=str,
            keep_default_na=False,
            index_col=False,
            nrows=nrows,
        )


def _read_text(
    path: Path, fmt: str, text: TextFormat, nrows: int | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a delimited text file as strings, trying each encoding in turn; the frame and the
    line each record starts on (``nrows=0``: the header only)."""
    for encoding in text.encodings:
        try:
            try:
                frame = _parse(path, text, encoding, nrows)
            except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
                return _read_around_malformed(path, fmt, text, encoding, exc, nrows == 0)
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError:
            raise DataFormatError(
                f"{fmt}: {path} is empty; a {fmt} file starts with a header line of column names"
            ) from None
        if nrows == 0:
            return frame, np.zeros(0, dtype=np.int64)
        return frame, record_lines(path, text.sep, text.quoting, encoding, len(frame))
    raise DataFormatError(_undecodable(path, fmt, text.encodings))


def _read_around_malformed(
    path: Path, fmt: str, text: TextFormat, encoding: str, error: Exception, header_only: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a file pandas could not parse: without its malformed records when the caller keeps
    them (:func:`keeping_malformed`) and some record is good; otherwise a clear error."""
    found = scan(path, text.sep, text.quoting, encoding)
    keep = _MALFORMED.get()
    if found.malformed and found.starts and keep is not None:
        with path.open(newline="", encoding=encoding) as handle:
            try:
                frame = _parse(Without(handle, found.bad_lines), text, encoding, None)
            except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
                error = exc
            else:
                if len(frame) == len(found.starts):
                    if not header_only:
                        keep.extend(found.malformed)
                    return frame, np.asarray(found.starts, dtype=np.int64)
    if found.malformed:
        where = found.malformed[0].reason
    else:
        where = f"{_first_line(error)}. Quote values that contain the separator"
    raise DataFormatError(
        f"{fmt}: {path} cannot be parsed as a {sep_name(text.sep)}-separated file: {where}, "
        "or check that this is the right file and format"
    )


def _undecodable(path: Path, fmt: str, encodings: Sequence[str]) -> str:
    """Why no encoding of the format reads ``path``: where the last one tried fails."""
    encoding = encodings[-1]
    what = f"{fmt}: {path} is not {' or '.join(encodings)} text"
    failed = decode_error(path, encoding)
    if failed is None:
        return f"{what}; re-save it as UTF-8"
    offset, line, byte, head = failed
    return (
        f"{what}: byte 0x{byte:02x} on line {line} (byte offset {offset} of the file) is not "
        f"{encoding}, in {head!r}; re-save it as UTF-8"
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def _listing(columns: Iterable[object]) -> str:
    names = [str(c) for c in columns]
    if not names:
        return "no columns"
    shown = ", ".join(names[:20])
    return shown + (f", ... ({len(names)} columns)" if len(names) > 20 else "")


def read_all(
    paths: Sequence[Path], fmt: str, kind: Kind, text: TextFormat = CSV
) -> pd.DataFrame | None:
    """The files of one kind read and concatenated in order (``None`` when there are none)."""
    return concat([read_frame(p, fmt, kind.required, text, kind.label) for p in paths])


def load_single_kind(
    paths: Sequence[Path], fmt: str, kind: Kind, text: TextFormat = CSV
) -> tuple[list[Path], pd.DataFrame]:
    """For formats of one file kind: check and read every path; the paths and their rows."""
    checked = classify(check_paths(paths, fmt), fmt, (kind,), text)[kind.name]
    rows = read_all(checked, fmt, kind, text)
    if rows is None:  # check_paths guarantees a path, classify that it is of this kind
        raise DataFormatError(f"{fmt}: no {kind.label} given")
    return checked, rows
