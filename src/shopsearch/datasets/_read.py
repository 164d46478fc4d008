"""Reading the loaders' source files: CSV/TSV or Parquet with their source rows, and their kinds.

Conventions every loader follows through these helpers:

- Text files are read with every column as a string (``keep_default_na=False``: an empty cell is
  ``""``, never NaN), trying each of the format's encodings in turn, so a bad value reaches
  ingest unchanged and is reported there with its row.
- ``_file`` is the path as given and ``_row`` the 1-based line where the record starts (the header
  is line 1, quoted values may span lines) or the 1-based row of a Parquet file.
- A file that is not of the format (missing, empty, wrong columns, not decodable, rows with more
  fields than the header) raises :class:`~shopsearch.errors.DataFormatError` naming the file, the
  expected and found columns, and the fix.
- A format's files are told apart by their columns (:class:`Kind`, :func:`classify`);
  :func:`load_single_kind` checks and reads the files of a format with one kind.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsearch.datasets._rows import concat
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
    quoting: Literal[0, 1, 2, 3] = 0


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
        frame, encoding = _read_text(path, fmt, text)
        rows = _record_lines(path, text, encoding, len(frame))
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


def _read_text(
    path: Path, fmt: str, text: TextFormat, nrows: int | None = None
) -> tuple[pd.DataFrame, str]:
    """Read a delimited text file as strings, trying each encoding in turn; also the encoding."""
    last_error: UnicodeDecodeError | None = None
    for encoding in text.encodings:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(
                    path,
                    sep=text.sep,
                    encoding=encoding,
                    quoting=text.quoting,
                    dtype=str,
                    keep_default_na=False,
                    index_col=False,
                    nrows=nrows,
                )
        except UnicodeDecodeError as exc:
            last_error = exc
            continue
        except pd.errors.EmptyDataError:
            raise DataFormatError(
                f"{fmt}: {path} is empty; a {fmt} file starts with a header line of column names"
            ) from None
        except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
            where = _long_record(path, text, encoding) or _first_line(exc)
            raise DataFormatError(
                f"{fmt}: {path} cannot be parsed as a {_sep_name(text.sep)}-separated file: "
                f"{where}. Quote values that contain the separator, or check that this is the "
                "right file and format"
            ) from None
        return frame, encoding
    assert last_error is not None
    raise DataFormatError(
        f"{fmt}: {path} is not {' or '.join(text.encodings)} text (byte "
        f"{last_error.object[last_error.start : last_error.start + 1]!r} at offset "
        f"{last_error.start}); re-save it as UTF-8"
    )


def _record_lines(path: Path, text: TextFormat, encoding: str, records: int) -> np.ndarray:
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
    with path.open(newline="", encoding=encoding) as handle:
        reader = csv.reader(handle, delimiter=text.sep, quoting=text.quoting)
        end = 0
        for record in reader:
            if record:
                starts.append(end + 1)
            end = reader.line_num
    starts = starts[1:]
    return np.asarray(starts, dtype=np.int64) if len(starts) == records else simple


def _long_record(path: Path, text: TextFormat, encoding: str) -> str | None:
    """Where the first record with more fields than the header starts, as a phrase."""
    try:
        with path.open(newline="", encoding=encoding) as handle:
            reader = csv.reader(handle, delimiter=text.sep, quoting=text.quoting)
            end = 0
            width = None
            for record in reader:
                start, end = end + 1, reader.line_num
                if width is None:
                    width = len(record)
                elif len(record) > width:
                    return (
                        f"the record on line {start} has {len(record)} fields, "
                        f"the header has {width}"
                    )
    except (csv.Error, UnicodeDecodeError):
        return None
    return None


def _sep_name(sep: str) -> str:
    return {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}.get(sep, repr(sep))


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
