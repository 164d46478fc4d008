"""Row-by-row validation of bulk data, vectorised over whole columns.

Every workspace table has a :class:`FieldSpec` per column. :func:`validate_frame` coerces a raw
pandas frame (strings, numbers, dicts, lists as loaders produced them) to the table's Arrow
schema, keeps the rows whose every field is valid, and returns one reject record per bad field
(file, row, table, field, value, reason).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from shopsearch.catalog.limits import LIMITS, id_problem
from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.errors import DataFormatError
from shopsearch.events.models import INTERACTION_KINDS
from shopsearch.store.schema import TABLES

Kind = Literal["id", "text", "float", "int", "bool", "timestamp", "category", "json", "kind"]

_MISSING = object()


@dataclass(frozen=True)
class FieldSpec:
    """How to coerce and check one column.

    Attributes:
        kind: the value type.
        required: a missing value rejects the row (otherwise ``default`` is used).
        default: value for missing cells or a missing column (``_MISSING``: column required).
        max_chars: longest accepted text.
        min_chars: shortest accepted text (a missing value takes ``default`` first).
        min_value: smallest accepted number.
        known_domain: the value must be a known domain id.
    """

    kind: Kind
    required: bool = False
    default: Any = _MISSING
    max_chars: int | None = None
    min_chars: int | None = None
    min_value: float | None = None
    known_domain: bool = False


_ID = FieldSpec("id", required=True, max_chars=LIMITS.max_id_chars)
_DOMAIN = FieldSpec("id", required=True, max_chars=LIMITS.max_id_chars, known_domain=True)

SPECS: dict[str, dict[str, FieldSpec]] = {
    "domains": {
        "domain_id": _ID,
        "name": FieldSpec("text", default="", max_chars=LIMITS.max_name_chars),
        # The limits of catalog.models.Domain, so that every stored domain can be read.
        "language": FieldSpec("text", default="en", min_chars=2, max_chars=16),
        "currency": FieldSpec("text", default="USD", min_chars=3, max_chars=3),
    },
    "products": {
        "domain": _DOMAIN,
        "product_id": _ID,
        "title": FieldSpec("text", required=True, max_chars=LIMITS.max_title_chars),
        "description": FieldSpec("text", default="", max_chars=LIMITS.max_text_chars),
        "brand": FieldSpec("text", default="", max_chars=LIMITS.max_name_chars),
        "category": FieldSpec("category", default=None),
        "price": FieldSpec("float", default=None, min_value=0.0),
        "attributes": FieldSpec("json", default="{}", max_chars=LIMITS.max_text_chars),
        "created_at": FieldSpec("timestamp", default=None),
        "in_stock": FieldSpec("bool", default=True),
    },
    "requests": {
        "request_id": _ID,
        "session_id": FieldSpec("id", default=None, max_chars=LIMITS.max_id_chars),
        "user_id": _ID,
        "domain": _DOMAIN,
        "query": FieldSpec("text", default="", max_chars=LIMITS.max_query_chars),
        "filters": FieldSpec("json", default="{}", max_chars=LIMITS.max_text_chars),
        "timestamp": FieldSpec("timestamp", required=True),
    },
    "impressions": {
        "request_id": _ID,
        "product_id": _ID,
        "position": FieldSpec("int", required=True, min_value=1),
        "price": FieldSpec("float", default=None, min_value=0.0),
        "scores": FieldSpec("json", default="{}", max_chars=LIMITS.max_text_chars),
    },
    "interactions": {
        "request_id": _ID,
        "user_id": _ID,
        "product_id": _ID,
        "kind": FieldSpec("kind", required=True),
        "timestamp": FieldSpec("timestamp", required=True),
        "value": FieldSpec("float", default=0.0, min_value=0.0),
    },
    "judgments": {
        "domain": _DOMAIN,
        "query": FieldSpec("text", required=True, max_chars=LIMITS.max_query_chars),
        "product_id": _ID,
        "grade": FieldSpec("float", required=True),
    },
}

REJECT_COLUMNS = ["file", "row", "table", "field", "value", "reason"]


@dataclass
class _Checked:
    values: pd.Series
    reasons: pd.Series  # "" where valid


def _is_blank(series: pd.Series) -> pd.Series:
    blank = series.isna()
    as_str = series.astype("string")
    return blank | as_str.str.strip().eq("").fillna(True)


def show(value: object) -> str:
    """A value as the rejects report shows it: text, cut to 60 characters."""
    text = "" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reason_where(mask: pd.Series, reason: str | pd.Series, index: pd.Index) -> pd.Series:
    out = pd.Series("", index=index, dtype=object)
    if isinstance(reason, pd.Series):
        out[mask] = reason[mask]
    else:
        out[mask] = reason
    return out


def _check_text(series: pd.Series, spec: FieldSpec, blank: pd.Series) -> _Checked:
    if spec.kind == "text":
        filled = series.where(~blank, spec.default if isinstance(spec.default, str) else "")
    else:
        filled = series.where(~blank, None)
    values = filled.map(lambda v: None if v is None else str(v))
    reasons = pd.Series("", index=series.index, dtype=object)
    lengths = values.map(lambda v: 0 if v is None else len(v))
    if spec.max_chars is not None:
        too_long = lengths > spec.max_chars
        reasons[too_long] = lengths[too_long].map(
            lambda n: f"too long: {n} characters, the limit is {spec.max_chars}"
        )
    if spec.min_chars is not None:
        too_short = ~blank & (lengths < spec.min_chars)
        reasons[too_short] = lengths[too_short].map(
            lambda n: f"too short: {n} characters, at least {spec.min_chars}"
        )
    return _Checked(values, reasons)


def _check_id(series: pd.Series, spec: FieldSpec, blank: pd.Series) -> _Checked:
    """Ids follow the one id rule of the HTTP API too (:func:`id_problem`)."""
    values = series.where(~blank, None).map(lambda v: None if v is None else str(v))
    limit = LIMITS.max_id_chars if spec.max_chars is None else spec.max_chars
    reasons = values.map(lambda v: "" if v is None else id_problem(v, limit) or "")
    return _Checked(values, reasons.astype(object))


def _check_number(series: pd.Series, spec: FieldSpec, blank: pd.Series) -> _Checked:
    if series.dtype == bool:
        series = series.astype(object)
    numbers = pd.to_numeric(series.where(~blank), errors="coerce").astype(float)
    bad = ~blank & ~np.isfinite(numbers.fillna(0.0)) | (~blank & numbers.isna())
    reasons = _reason_where(bad, series.map(lambda v: f"not a number: {show(v)!r}"), series.index)
    if spec.kind == "int":
        frac = ~bad & ~blank & (numbers % 1 != 0)
        reasons[frac] = numbers[frac].map(lambda v: f"not a whole number: {v}")
        bad = bad | frac
    if spec.min_value is not None:
        low = ~bad & ~blank & (numbers < spec.min_value)
        word = "negative" if spec.min_value == 0 else f"below {spec.min_value:g}"
        reasons[low] = numbers[low].map(
            lambda v: f"{word}: {v:g}; use a value >= {spec.min_value:g}"
        )
    return _Checked(numbers, reasons)


_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def _check_bool(series: pd.Series, spec: FieldSpec, blank: pd.Series) -> _Checked:
    text = series.map(lambda v: str(v).strip().lower())
    values = pd.Series(spec.default, index=series.index, dtype=object)
    values[text.isin(_TRUE)] = True
    values[text.isin(_FALSE)] = False
    bad = ~blank & ~text.isin(_TRUE | _FALSE)
    reasons = _reason_where(bad, series.map(lambda v: f"not true/false: {show(v)!r}"), series.index)
    return _Checked(values, reasons)


def _check_timestamp(series: pd.Series, spec: FieldSpec, blank: pd.Series) -> _Checked:
    present = series.where(~blank)
    numeric = pd.to_numeric(present, errors="coerce")
    is_epoch = numeric.notna() & ~present.map(lambda v: isinstance(v, pd.Timestamp | datetime))
    parsed = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
    if is_epoch.any():
        parsed[is_epoch] = pd.to_datetime(numeric[is_epoch], unit="s", utc=True, errors="coerce")
    rest = ~blank & ~is_epoch
    if rest.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parsed[rest] = pd.to_datetime(present[rest], utc=True, errors="coerce", format="mixed")
    bad = ~blank & parsed.isna()
    reasons = _reason_where(
        bad, series.map(lambda v: f"unparsable timestamp: {show(v)!r}"), series.index
    )
    if not spec.required and spec.default is None:
        parsed = parsed.fillna(pd.Timestamp(datetime.now(UTC)))
    return _Checked(parsed, reasons)


def _to_category(value: object) -> list[str]:
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v).strip() for v in value if str(v).strip()]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [part.strip() for part in str(value).split(CATEGORY_SEPARATOR.strip()) if part.strip()]


def _check_category(series: pd.Series, spec: FieldSpec, blank: pd.Series) -> _Checked:
    values = series.map(_to_category)
    return _Checked(values, pd.Series("", index=series.index, dtype=object))


def _json_object(value: object) -> tuple[str | None, str]:
    if isinstance(value, dict):
        return orjson.dumps({str(k): v for k, v in value.items()}).decode(), ""
    try:
        parsed = orjson.loads(str(value))
    except orjson.JSONDecodeError:
        return None, f"not a JSON object: {show(value)!r}"
    if not isinstance(parsed, dict):
        return None, f"not a JSON object: {show(value)!r}"
    return orjson.dumps(parsed).decode(), ""


def _check_json(series: pd.Series, spec: FieldSpec, blank: pd.Series) -> _Checked:
    pairs = series.where(~blank, "{}").map(_json_object)
    values = pairs.map(lambda p: p[0] if p[0] is not None else "{}")
    reasons = pairs.map(lambda p: p[1]).astype(object)
    if spec.max_chars is not None:
        long = values.str.len() > spec.max_chars
        reasons[long] = f"too long: more than {spec.max_chars} characters"
    return _Checked(values, reasons)


def _check_kind(series: pd.Series, spec: FieldSpec, blank: pd.Series) -> _Checked:
    text = series.map(lambda v: str(v).strip().lower())
    bad = ~blank & ~text.isin(INTERACTION_KINDS)
    allowed = ", ".join(INTERACTION_KINDS)
    reasons = _reason_where(
        bad, series.map(lambda v: f"{show(v)!r} is not one of {allowed}"), series.index
    )
    return _Checked(text, reasons)


def _unknown_domain(value: object, known: set[str]) -> str:
    listed = ", ".join(sorted(known)) or "none yet"
    return (
        f"unknown domain {value!r} (known: {listed}); declare it in a domains file or ingest "
        "with --add-domains"
    )


_CHECKS: dict[str, Callable[[pd.Series, FieldSpec, pd.Series], _Checked]] = {
    "id": _check_id,
    "text": _check_text,
    "float": _check_number,
    "int": _check_number,
    "bool": _check_bool,
    "timestamp": _check_timestamp,
    "category": _check_category,
    "json": _check_json,
    "kind": _check_kind,
}


@dataclass
class Validated:
    """The good rows of a frame as an Arrow table, where each came from, and the rejects.

    ``rejects`` has one record per bad field; ``rejected`` counts the rows they reject.
    """

    table: pa.Table
    files: list[str]
    rows: list[int]
    rejects: list[dict[str, object]]
    rejected: int

    def reject(self, keep: list[bool], field: str, reason: Callable[[int], str]) -> Validated:
        """Reject more rows after validation: those with ``keep[i]`` False, for ``reason(i)``."""
        new = [
            {
                "file": self.files[i],
                "row": self.rows[i],
                "table": "",
                "field": field,
                "value": "",
                "reason": reason(i),
            }
            for i, ok in enumerate(keep)
            if not ok
        ]
        return Validated(
            self.table.filter(pa.array(keep, type=pa.bool_())),
            [f for f, ok in zip(self.files, keep, strict=True) if ok],
            [r for r, ok in zip(self.rows, keep, strict=True) if ok],
            self.rejects + new,
            self.rejected + len(new),
        )


def validate_frame(table: str, frame: pd.DataFrame, known_domains: set[str]) -> Validated:
    """Coerce ``frame`` to the schema of ``table``; keep the good rows, one reject per bad field.

    Raises:
        DataFormatError: a column that has no default is absent from the frame.
    """
    specs = SPECS[table]
    missing = [name for name, spec in specs.items() if name not in frame.columns and spec.required]
    if missing:
        raise DataFormatError(
            f"{table} rows have no column(s) {', '.join(missing)}; columns present: "
            f"{', '.join(c for c in frame.columns if not c.startswith('_'))}"
        )
    frame = frame.reset_index(drop=True)
    files = frame["_file"] if "_file" in frame else pd.Series("", index=frame.index)
    rows = frame["_row"] if "_row" in frame else pd.Series(frame.index + 1, index=frame.index)
    columns: dict[str, pd.Series] = {}
    rejects: list[dict[str, object]] = []
    bad_rows = pd.Series(False, index=frame.index)
    for name, spec in specs.items():
        if name not in frame.columns:
            default = None if spec.default is _MISSING else spec.default
            raw = pd.Series([default] * len(frame), index=frame.index, dtype=object)
        else:
            raw = frame[name]
        blank = _is_blank(raw) if spec.kind != "category" else raw.isna()
        checked = _CHECKS[spec.kind](raw, spec, blank)
        reasons = checked.reasons.copy()
        if spec.required:
            reasons[blank] = "missing"
        if spec.known_domain:
            unknown = ~blank & ~checked.values.isin(known_domains)
            reasons[unknown] = checked.values[unknown].map(
                lambda v: _unknown_domain(v, known_domains)
            )
        failed = reasons.ne("")
        if failed.any():
            bad_rows |= failed
            for i in map(int, np.flatnonzero(failed.to_numpy())):
                rejects.append(
                    {
                        "file": str(files.iat[i]),
                        "row": int(str(rows.iat[i])),
                        "table": table,
                        "field": name,
                        "value": show(raw.iat[i]),
                        "reason": reasons.iat[i],
                    }
                )
        columns[name] = checked.values
    good = pd.DataFrame(columns)[~bad_rows]
    if table == "domains":
        good["name"] = good["name"].where(good["name"] != "", good["domain_id"])
    schema = TABLES[table]
    arrays = [pa.array(good[f.name].tolist(), type=f.type) for f in schema]
    keep = ~bad_rows.to_numpy()
    return Validated(
        pa.Table.from_arrays(arrays, schema=schema),
        [str(f) for f in files.to_numpy()[keep]],
        [int(r) for r in rows.to_numpy()[keep]],
        rejects,
        int(bad_rows.sum()),
    )
