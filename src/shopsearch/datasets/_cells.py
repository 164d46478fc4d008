"""Converting the loaders' cell values: stable ids, times, JSON attributes, paths, labels, lists.

The helpers turn a format's values into those of the workspace schema. A time that is not a
number stays as given (:func:`seconds_to_iso`), so ingest reports it with its row.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Start of the synthetic clock used when a format has no time at all (see :func:`seconds_to_iso`).
EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


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


def line_clock(lines: pd.Series) -> pd.Series:
    """Synthetic time for formats without any: line ``n`` of a file is ``n`` seconds after
    1970-01-01 UTC, so the file order is kept (times of different files are not comparable)."""
    return seconds_to_iso(lines)


def split_list(value: object, sep: str) -> list[str]:
    """A separated list cell as stripped parts (``[]`` for a missing or blank cell)."""
    if not isinstance(value, str) or not value.strip():
        return []
    return [part.strip() for part in value.split(sep)]
