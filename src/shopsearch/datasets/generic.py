"""The user's own data: products, judgments, domains and a search event log (CSV or Parquet).

Each file's kind is found from its columns (the first kind that matches, in this order), so the
files may be given in any order; a file that matches none is an error listing what each kind
needs. ``.parquet``/``.pq`` files are read as Parquet, ``.tsv``/``.tab`` as tab-separated, any
other as comma-separated UTF-8 CSV.

=========  ==================================================  ==================================
kind       required columns                                    optional columns
=========  ==================================================  ==================================
events     request_id, user_id, query, timestamp,              domain, session_id, filters (JSON),
           product_id, position                                price, clicked, added_to_cart,
                                                               purchased, value
judgments  query, product_id, grade                            domain
products   product_id, title                                   domain, description, brand,
                                                               category (``" > "`` path or list),
                                                               price, in_stock, created_at,
                                                               attributes (JSON object)
domains    domain_id, name                                     language, currency
=========  ==================================================  ==================================

Mapping:

- events: one row per shown product. Each distinct ``request_id`` is a request (its first row
  gives user, session, domain, query, filters and timestamp); every row is an impression at
  ``position`` with the shown ``price``; every set label (1/true/yes) is an interaction of that
  kind (``clicked`` → click, ``added_to_cart`` → add_to_cart, ``purchased`` → purchase) at the
  row's timestamp, a purchase carrying ``value``. Only what is flagged is emitted: a purchase
  does not imply a click or a cart.
- A file without a ``domain`` column puts its rows in domain ``default`` (English, USD), which is
  then emitted in the domains table as implied (ingest does not overwrite a stored one). Other
  domains come only from domains files: emitting guessed language/currency for them would
  overwrite the real ones already in the workspace. Ingest, which knows the workspace's domains,
  says which domains rows name that neither the workspace nor a domains file declares.
- Values are passed on as read; ingest validates them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from shopsearch.datasets._cells import truthy
from shopsearch.datasets._read import (
    CSV,
    TSV,
    Kind,
    TextFormat,
    check_paths,
    columns_of,
    read_frame,
)
from shopsearch.datasets._rows import concat, first_rows, flagged, objects
from shopsearch.datasets._schema import DomainRow, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS
from shopsearch.errors import DataFormatError

FORMAT = "generic"
DEFAULT_DOMAIN = "default"

EVENTS = Kind(
    "events",
    ("request_id", "user_id", "query", "timestamp", "product_id", "position"),
    "event log",
)
JUDGMENTS = Kind("judgments", ("query", "product_id", "grade"), "judgments file")
PRODUCTS = Kind("products", ("product_id", "title"), "products file")
DOMAINS = Kind("domains", ("domain_id", "name"), "domains file")
KINDS = (EVENTS, JUDGMENTS, PRODUCTS, DOMAINS)

#: Event-log label column → interaction kind, in funnel order.
LABELS = (("clicked", "click"), ("added_to_cart", "add_to_cart"), ("purchased", "purchase"))


@LOADERS.register("generic")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read any mix of events, judgments, products and domains files.

    Args:
        paths: The files, in any order; each file's kind is found from its columns.

    Returns:
        The tables of the kinds given, plus the domains table.

    Raises:
        DataFormatError: A file is missing, unreadable or has the columns of no kind.
    """
    return _load(paths, KINDS, FORMAT)


@LOADERS.register("products")
def load_products(paths: Sequence[Path]) -> LoadedData:
    """Like :func:`load` but every file must be a products file (``ingest products``)."""
    return _load(paths, (PRODUCTS,), "products")


@LOADERS.register("events")
def load_events(paths: Sequence[Path]) -> LoadedData:
    """Like :func:`load` but every file must be an event log (``ingest events``)."""
    return _load(paths, (EVENTS,), "events")


@LOADERS.register("judgments")
def load_judgments(paths: Sequence[Path]) -> LoadedData:
    """Like :func:`load` but every file must be a judgments file (``ingest judgments``)."""
    return _load(paths, (JUDGMENTS,), "judgments")


def _load(paths: Sequence[Path], kinds: Sequence[Kind], fmt: str) -> LoadedData:
    found: dict[str, list[pd.DataFrame]] = {kind.name: [] for kind in kinds}
    for path in check_paths(paths, fmt):
        text = _text_format(path)
        header = columns_of(path, fmt, text)
        kind = next((k for k in kinds if set(k.required) <= set(header)), None)
        if kind is None:
            raise DataFormatError(_mismatch(fmt, path, kinds, header))
        frame = read_frame(path, fmt, kind.required, text, kind.label)
        if kind is not DOMAINS and "domain" not in frame.columns:
            frame["domain"] = DEFAULT_DOMAIN
        found[kind.name].append(frame)

    data = LoadedData(format=fmt)
    used: dict[str, tuple[str, int]] = {}  # domain → first (file, row) using it
    if (events := concat(found.get("events", []))) is not None:
        data.requests, data.impressions, data.interactions = _events(events)
        _used_domains(used, events)
    if (judgments := concat(found.get("judgments", []))) is not None:
        data.judgments = finish(judgments, "judgments")
        _used_domains(used, judgments)
    if (products := concat(found.get("products", []))) is not None:
        data.products = finish(_products(products), "products")
        _used_domains(used, products)
    declared = concat(found.get("domains", []))
    data.domains, data.notes = _domains(declared, used)
    return data


def _text_format(path: Path) -> TextFormat:
    return TSV if path.suffix.lower() in {".tsv", ".tab"} else CSV


def _mismatch(fmt: str, path: Path, kinds: Sequence[Kind], header: list[str]) -> str:
    expected = "; ".join(f"{k.name}: {', '.join(k.required)}" for k in kinds)
    found = ", ".join(header) or "no columns"
    if fmt == FORMAT:
        fix = f"rename the columns of {path.name} to the required names"
    else:
        fix = f"'{fmt}' takes only {kinds[0].label}s; use the 'generic' format for other files"
    return (
        f"{fmt}: {path} has the columns of no file kind (required: {expected}); "
        f"found {found}. Fix: {fix}"
    )


def _used_domains(used: dict[str, tuple[str, int]], frame: pd.DataFrame) -> None:
    """Add the first (file, row) naming each domain of ``frame`` to ``used``."""
    firsts = first_rows(frame[["domain", "_file", "_row"]], "domain")
    for domain, file, row in zip(firsts["domain"], firsts["_file"], firsts["_row"], strict=True):
        if isinstance(domain, str) and domain.strip():
            used.setdefault(domain, (str(file), int(row)))


def _domains(
    declared: pd.DataFrame | None, used: dict[str, tuple[str, int]]
) -> tuple[pd.DataFrame, list[str]]:
    notes: list[str] = []
    frames: list[pd.DataFrame] = []
    known: set[str] = set()
    if declared is not None:
        frames.append(finish(declared, "domains"))
        known = set(declared["domain_id"].astype(str))
    if DEFAULT_DOMAIN in used and DEFAULT_DOMAIN not in known:
        file, row = used[DEFAULT_DOMAIN]
        frames.append(domains_frame([DomainRow(DEFAULT_DOMAIN, "Default", "en", "USD", file, row)]))
        notes.append(
            f"rows without a domain column are in domain {DEFAULT_DOMAIN!r} (added as en, USD "
            "if the workspace lacks it)"
        )
    frame = concat(frames)
    return (frame if frame is not None else domains_frame([])), notes


def _events(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    requests = finish(first_rows(rows, "request_id"), "requests")
    impressions = finish(rows, "impressions")
    flags = [(kind, truthy(rows[column])) for column, kind in LABELS if column in rows.columns]
    values = {"purchase": rows["value"]} if "value" in rows.columns else None
    interactions = finish(flagged(rows, flags, values), "interactions")
    return requests, impressions, interactions


def _products(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    if "category" in rows.columns:
        categories = (_category_cell(v) for v in rows["category"].to_numpy(dtype=object))
        rows["category"] = objects(categories, rows.index)
    if "attributes" in rows.columns:
        attributes = (_json_cell(v) for v in rows["attributes"].to_numpy(dtype=object))
        rows["attributes"] = objects(attributes, rows.index)
    return rows


def _category_cell(value: object) -> object:
    """A Parquet list (NumPy array) as a Python list; text and None as they are."""
    if isinstance(value, np.ndarray):
        return [str(v) for v in value.tolist()]
    return value


def _json_cell(value: object) -> object:
    """A Parquet struct (dict) or map (list of pairs) as a JSON object string; text as it is."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)
    if isinstance(value, dict):
        return json.dumps(
            {str(k): v for k, v in value.items() if v is not None},
            ensure_ascii=False,
            sort_keys=True,
            default=str,
        )
    return value
