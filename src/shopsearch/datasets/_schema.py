"""Shaping loaded frames into the workspace schema: the exact columns, defaults, the domains table.

:func:`finish` gives every table exactly the workspace columns (plus ``_file`` and ``_row``).
Columns the format lacks, and missing cells of columns that have one, take the data model's
default (:mod:`shopsearch.catalog.models`, :mod:`shopsearch.events.models`): description and
brand ``""``, category ``[]``, attributes/filters/scores ``"{}"``, in_stock ``True``, created_at
the load time, interaction value ``0.0``; price and session_id are null. :func:`domains_frame`
builds the domains table from the storefronts a loader emits, marked ``_implied``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from shopsearch.store.schema import TABLES

#: Extra columns every loaded table carries so ingest can point at the source of a bad row.
SOURCE_COLUMNS = ("_file", "_row")


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
    """The domains table for the given domains (first occurrence of each id kept).

    Each row has ``_implied`` true: the format implies the domain, no domains file declares it,
    so ingest adds it when the workspace lacks it and never overwrites a stored one.
    """
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
    return finish(frame, "domains").assign(_implied=True)


def domain_rows(
    frame: pd.DataFrame, domain_id: str, name: str, language: str, currency: str
) -> list[DomainRow]:
    """A format's one domain, introduced by the first row of ``frame`` (none if it is empty)."""
    if frame.empty:
        return []
    first = frame.iloc[0]
    return [DomainRow(domain_id, name, language, currency, str(first["_file"]), int(first["_row"]))]


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
