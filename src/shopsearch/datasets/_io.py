"""Helpers shared by the loaders: reading files with their source rows, finding each file's kind,
filling the columns a format lacks, and building the domains table.

Conventions every loader follows through these helpers:

- Text files are read with every column as a string (``keep_default_na=False``: an empty cell is
  ``""``, never NaN), so a bad value reaches ingest unchanged and is reported there with its row.
- ``_file`` is the path as given and ``_row`` the 1-based line where the record starts (the header
  is line 1, quoted values may span lines) or the 1-based row of a Parquet file.
- A file that is not of the format (missing, empty, wrong columns, not decodable, rows with more
  fields than the header) raises :class:`~shopsearch.errors.DataFormatError` naming the file, the
  expected and found columns, and the fix.
- :func:`finish` gives every table exactly the workspace columns (plus ``_file`` and ``_row``).
  Columns the format lacks, and missing cells of columns that have one, take the data model's
  default (:mod:`shopsearch.catalog.models`, :mod:`shopsearch.events.models`): description and
  brand ``""``, category ``[]``, attributes/filters/scores ``"{}"``, in_stock ``True``,
  created_at the load time, interaction value ``0.0``; price and session_id are null.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopsearch.errors import DataFormatError
from shopsearch.store.schema import TABLES

#: Extra columns every loaded table carries so ingest can point at the source of a bad row.
SOURCE_COLUMNS = ("_file", "_row")

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})

#: Start of the synthetic clock used when a format has no time at all (see :func:`seconds_to_iso`).
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


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


# -- building tables -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DomainRow:
    """One storefront a loader emits, with the source row that introduced it."""

    domain_id: str
    name: str
    language: str
    currency: str
    file: str
    row: int


def domains_frame(domains: Iterable[DomainRow]) -> pd.DataFrame:
    """The domains table for the given domains (first occurrence of each id kept)."""
    seen: dict[str, DomainRow] = {}
    for domain in domains:
        seen.setdefault(domain.domain_id, domain)
    frame = pd.DataFrame(
        {
            "domain_id": [d.domain_id for d in seen.values()],
            "name": [d.name for d in seen.values()],
            "language": [d.language for d in seen.values()],
            "currency": [d.currency for d in seen.values()],
            "_file": [d.file for d in seen.values()],
            "_row": pd.array([d.row for d in seen.values()], dtype="int64"),
        }
    )
    return finish(frame, "domains")


def domain_rows(
    frame: pd.DataFrame, domain_id: str, name: str, language: str, currency: str
) -> list[DomainRow]:
    """A format's one domain, introduced by the first row of ``frame`` (none if it is empty)."""
    if frame.empty:
        return []
    first = frame.iloc[0]
    return [DomainRow(domain_id, name, language, currency, str(first["_file"]), int(first["_row"]))]


def objects(values: Iterable[object], index: pd.Index) -> pd.Series:
    """Values of any kind (lists, dicts, None) as an object column aligned with ``index``."""
    return pd.Series(list(values), index=index, dtype=object)


def first_rows(frame: pd.DataFrame, key: str | list[str]) -> pd.DataFrame:
    """The first row of each distinct ``key`` value, in file order."""
    return frame.drop_duplicates(subset=key, keep="first").reset_index(drop=True)


def _defaults(load_time: str) -> dict[tuple[str, str], Callable[[int], list[Any]]]:
    return {
        ("domains", "language"): lambda n: ["en"] * n,
        ("domains", "currency"): lambda n: ["USD"] * n,
        ("products", "description"): lambda n: [""] * n,
        ("products", "brand"): lambda n: [""] * n,
        ("products", "category"): lambda n: [[] for _ in range(n)],
        ("products", "price"): lambda n: [None] * n,
        ("products", "attributes"): lambda n: ["{}"] * n,
        ("products", "created_at"): lambda n: [load_time] * n,
        ("products", "in_stock"): lambda n: [True] * n,
        ("requests", "session_id"): lambda n: [None] * n,
        ("requests", "filters"): lambda n: ["{}"] * n,
        ("impressions", "price"): lambda n: [None] * n,
        ("impressions", "scores"): lambda n: ["{}"] * n,
        ("interactions", "value"): lambda n: [0.0] * n,
    }


def finish(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``frame`` with exactly the columns of ``table`` plus ``_file`` and ``_row``, in order.

    Columns the frame lacks are filled with the data model's default, and so are missing cells
    (None, NaN or blank text) of the columns that have a default; other columns are kept as read.
    """
    frame = frame.reset_index(drop=True)
    n = len(frame)
    defaults = _defaults(datetime.now(UTC).isoformat())
    out: dict[str, Any] = {}
    for name in TABLES[table].names:
        fill = defaults.get((table, name))
        if name not in frame.columns:
            if fill is None:
                raise AssertionError(f"loader bug: table {table!r} built without column {name!r}")
            out[name] = pd.Series(fill(n), dtype=object)
            continue
        column = frame[name]
        if fill is not None:
            missing = _missing(column)
            if missing.any():
                column = column.astype(object)
                column[missing] = pd.Series(fill(int(missing.sum())), dtype=object).to_numpy()
        out[name] = column
    for name in SOURCE_COLUMNS:
        out[name] = frame[name]
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def _missing(column: pd.Series) -> np.ndarray:
    """Cells that are None/NaN or blank strings."""
    na: np.ndarray = column.isna().to_numpy(dtype=bool)
    if isinstance(column.dtype, pd.StringDtype):
        blank: np.ndarray = (column.str.strip() == "").fillna(False).to_numpy(dtype=bool)
        both: np.ndarray = na | blank
        return both
    if column.dtype == object:
        blanks = [isinstance(v, str) and not v.strip() for v in column.to_numpy(dtype=object)]
        either: np.ndarray = na | np.array(blanks, dtype=bool)
        return either
    return na


def stable_id(parts: pd.DataFrame | pd.Series, prefix: str, length: int = 16) -> pd.Series:
    """A short, stable id per row: ``prefix`` + the first ``length`` hex digits of a SHA-1.

    The hash is over the row's values as text joined by the unit separator, so equal rows get
    equal ids on every machine and pandas version.
    """
    if isinstance(parts, pd.Series):
        joined = parts.astype(str)
    else:
        joined = parts.astype(str).agg("\x1f".join, axis=1)
    ids = [
        prefix + hashlib.sha1(value.encode("utf-8")).hexdigest()[:length]
        for value in joined.to_numpy(dtype=object)
    ]
    return pd.Series(ids, index=parts.index, dtype=object)


def seconds_to_iso(seconds: pd.Series, origin: pd.Timestamp = EPOCH) -> pd.Series:
    """Seconds after ``origin`` as ISO-8601 UTC strings; a non-numeric value is kept as given.

    Keeping a bad value as text (instead of NaT) lets ingest report it with the value.
    """
    numbers = pd.to_numeric(seconds, errors="coerce")
    ok = numbers.notna() & np.isfinite(numbers.astype("float64"))
    iso = seconds.astype(object).copy()
    if ok.any():
        good = numbers[ok].astype("float64")
        stamps = origin + pd.to_timedelta(good, unit="s")
        whole = bool((good == np.floor(good)).all())
        pattern = "%Y-%m-%dT%H:%M:%SZ" if whole else "%Y-%m-%dT%H:%M:%S.%fZ"
        iso[ok] = stamps.dt.strftime(pattern).to_numpy(dtype=object)
    return iso


def json_objects(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each mapping as a compact JSON object string (keys sorted, values as text, empties out)."""
    return [
        json.dumps(
            {str(k): str(v) for k, v in record.items() if not _blank(v)},
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        for record in records
    ]


def _blank(value: object) -> bool:
    """None, NaN or empty text."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def attributes_from(frame: pd.DataFrame, columns: Mapping[str, str]) -> list[str]:
    """Per row, a JSON object of ``{attribute name: value}`` from ``{column: attribute name}``."""
    present = {name: col for col, name in columns.items() if col in frame.columns}
    if not present:
        return ["{}"] * len(frame)
    names = list(present)
    values = [frame[col].to_numpy(dtype=object) for col in present.values()]
    return json_objects(dict(zip(names, row, strict=True)) for row in zip(*values, strict=True))


def split_path(values: pd.Series, sep: str) -> pd.Series:
    """Category paths split on ``sep`` into lists of stripped, non-empty levels."""
    return pd.Series(
        [
            [level.strip() for level in str(value).split(sep) if level.strip()]
            if isinstance(value, str)
            else []
            for value in values.to_numpy(dtype=object)
        ],
        index=values.index,
        dtype=object,
    )


_TRUE = frozenset({"1", "1.0", "true", "t", "yes", "y"})


def truthy(values: pd.Series) -> pd.Series:
    """Which cells of a label column are set: a positive number, or true/t/yes/y (any case)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.fillna(False).astype(bool)
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    words = values.astype(str).str.strip().str.lower().isin(_TRUE)
    return (numbers.fillna(0.0) > 0) | words


def source_id(fmt: str, path: Path) -> str:
    """Prefix for ids derived from file rows, unique per format and file: ``fmt:stem``."""
    return f"{fmt}:{path.stem}"


def source_ids(fmt: str, files: pd.Series) -> pd.Series:
    """:func:`source_id` of each row's ``_file``."""
    prefixes = {f: source_id(fmt, Path(f)) for f in pd.unique(files)}
    return files.map(prefixes).astype(object)


_COUNTRY_TOKEN = re.compile(r"[^A-Za-z]+")


def name_tokens(path: Path) -> list[str]:
    """Lower-case alphabetic tokens of a file name and its folder (``AliExpress_NL`` → nl)."""
    text = f"{path.parent.name} {path.stem}"
    return [t.lower() for t in _COUNTRY_TOKEN.split(text) if t]


def concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame | None:
    """Concatenate non-empty lists of frames, or ``None`` when there are none."""
    if not frames:
        return None
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    return pd.concat(list(frames), ignore_index=True)


def flagged(
    rows: pd.DataFrame,
    flags: Sequence[tuple[str, pd.Series]],
    values: Mapping[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """Interaction rows from label masks: for each ``(kind, mask)`` the rows where it is set.

    ``value`` is taken from ``values`` for the kinds it names and left missing (the default 0.0)
    for the others.

    Args:
        rows: Source rows (aligned with the masks) carrying the interaction's other columns.
        flags: ``(interaction kind, boolean mask)`` pairs in funnel order.
        values: Optional ``{kind: value column}``, e.g. the purchase value.

    Returns:
        The rows with ``kind`` and ``value`` set, in the order of ``rows``, then funnel order.
    """
    parts = []
    rows = rows.reset_index(drop=True)
    for order, (kind, mask) in enumerate(flags):
        keep = mask.to_numpy(dtype=bool)
        hit = rows[keep].assign(kind=kind, _order=order, _source=rows.index[keep])
        given = values is not None and kind in values
        hit["value"] = values[kind][keep].to_numpy() if values is not None and given else None
        parts.append(hit)
    if not parts:
        return rows.iloc[:0].assign(kind=[], value=[])
    merged = pd.concat(parts, ignore_index=True).sort_values(["_source", "_order"], kind="stable")
    return merged.drop(columns=["_source", "_order"]).reset_index(drop=True)


def positions(request_ids: pd.Series) -> pd.Series:
    """1-based position of each row within its request, in row order."""
    return request_ids.groupby(request_ids, sort=False).cumcount() + 1


def line_clock(lines: pd.Series) -> pd.Series:
    """Synthetic time for formats without any: line ``n`` of a file is ``n`` seconds after
    1970-01-01 UTC, so the file order is kept (times of different files are not comparable)."""
    return seconds_to_iso(lines)


def split_list(value: object, sep: str) -> list[str]:
    """A separated list cell as stripped parts (``[]`` for a missing or blank cell)."""
    if not isinstance(value, str) or not value.strip():
        return []
    return [part.strip() for part in value.split(sep)]


def explode_shown(
    rows: pd.DataFrame,
    keep: Sequence[str],
    items: str,
    values: str,
    value_name: str,
    sep: str,
) -> pd.DataFrame:
    """One row per shown item: the ``sep``-separated lists ``items`` and ``values`` of each row
    side by side, as ``product_id`` and ``value_name``, with a 1-based ``position`` per request.

    ``values`` is cut or padded with ``""`` to the length of ``items``; ``keep`` columns (which
    must include ``request_id``, ``_file`` and ``_row``) are repeated on every item.
    """
    shown_items = [split_list(v, sep) for v in rows[items].to_numpy(dtype=object)]
    shown_values = [split_list(v, sep) for v in rows[values].to_numpy(dtype=object)]
    shown_values = [
        vals[: len(its)] + [""] * (len(its) - len(vals))
        for its, vals in zip(shown_items, shown_values, strict=True)
    ]
    lists = rows[list(keep)].copy()
    lists["product_id"] = objects(shown_items, lists.index)
    lists[value_name] = objects(shown_values, lists.index)
    shown = lists.explode(["product_id", value_name], ignore_index=True)
    shown = shown[shown["product_id"].notna()].reset_index(drop=True)
    shown["position"] = positions(shown["request_id"])
    return shown


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
