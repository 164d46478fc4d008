"""Wayfair ANnotation DataSet (WANDS), tab-separated files named ``.csv``.

Files, recognised by their columns:

- ``product.csv``: ``product_id, product_name, product_class, category hierarchy``
  ('/'-separated path)``, product_description, product_features`` ('|'-separated
  ``key:value`` pairs)``, rating_count, average_rating, review_count``.
- ``query.csv``: ``query_id, query, query_class``.
- ``label.csv``: ``id, query_id, product_id, label`` (Exact / Partial / Irrelevant).

Mapping (domain ``wayfair``: English, USD):

- products: title ``product_name``, description, category the hierarchy split on '/', and the
  attributes: every ``product_features`` pair plus ``product_class``, ``rating_count``,
  ``average_rating`` and ``review_count``. WANDS has no prices or brands.
- judgments: one per label row with the query text of its ``query_id`` and grade Exact = 2,
  Partial = 1, Irrelevant = 0 (the WANDS paper's gains); another label is passed on as written,
  for ingest to reject. ``label.csv`` needs ``query.csv`` in the same call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shopsearch.datasets._cells import json_objects, split_path
from shopsearch.datasets._read import TSV, Kind, check_paths, classify, read_all
from shopsearch.datasets._rows import first_rows
from shopsearch.datasets._schema import domain_rows, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS
from shopsearch.errors import DataFormatError

FORMAT = "wands"
DOMAIN = "wayfair"
#: WANDS label → graded relevance.
GRADES = {"exact": 2.0, "partial": 1.0, "irrelevant": 0.0}
EXTRA_ATTRIBUTES = ("product_class", "rating_count", "average_rating", "review_count")

LABELS = Kind("labels", ("query_id", "product_id", "label"), "label.csv")
QUERIES = Kind("queries", ("query_id", "query"), "query.csv")
PRODUCTS = Kind("products", ("product_id", "product_name"), "product.csv")


@LOADERS.register("wands")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read WANDS products and/or judgments.

    Args:
        paths: ``product.csv``, and/or ``label.csv`` with ``query.csv``, in any order.

    Returns:
        Domains, and products and/or judgments.

    Raises:
        DataFormatError: A file is missing, unreadable or of no WANDS kind, or label.csv and
            query.csv were not given together.
    """
    found = classify(check_paths(paths, FORMAT), FORMAT, (LABELS, QUERIES, PRODUCTS), TSV)
    if bool(found["labels"]) != bool(found["queries"]):
        given, missing = ("label.csv", "query.csv")
        if found["queries"]:
            given, missing = missing, given
        raise DataFormatError(
            f"{FORMAT}: {given} was given without {missing}; judgments need both (label.csv "
            f"names queries by query_id, query.csv has their text): give {missing} too"
        )
    data = LoadedData(format=FORMAT)
    sources: list[pd.DataFrame] = []
    rows = read_all(found["products"], FORMAT, PRODUCTS, TSV)
    if rows is not None:
        data.products = finish(_products(rows), "products")
        data.notes.append("WANDS has no prices or brands; features are attributes")
        sources.append(rows)
    labels = read_all(found["labels"], FORMAT, LABELS, TSV)
    queries = read_all(found["queries"], FORMAT, QUERIES, TSV)
    if labels is not None and queries is not None:
        data.judgments = finish(_judgments(labels, queries, data.notes), "judgments")
        sources.append(labels)
    data.domains = domains_frame(domain_rows(pd.concat(sources), DOMAIN, "Wayfair", "en", "USD"))
    return data


def _products(rows: pd.DataFrame) -> pd.DataFrame:
    rows = first_rows(rows, "product_id")
    features = rows["product_features"] if "product_features" in rows.columns else None
    extras = [c for c in EXTRA_ATTRIBUTES if c in rows.columns]
    records: list[dict[str, object]] = []
    for i in range(len(rows)):
        record: dict[str, object] = dict(_features(features.iat[i]) if features is not None else {})
        record.update({c: rows[c].iat[i] for c in extras})
        records.append(record)
    rows = rows.assign(domain=DOMAIN, title=rows["product_name"], attributes=json_objects(records))
    if "product_description" in rows.columns:
        rows["description"] = rows["product_description"]
    if "category hierarchy" in rows.columns:
        rows["category"] = split_path(rows["category hierarchy"], "/")
    return rows


def _features(value: object) -> dict[str, str]:
    """``"a:1|b:2"`` → ``{"a": "1", "b": "2"}`` (a pair without ':' is skipped)."""
    if not isinstance(value, str):
        return {}
    pairs = (part.split(":", 1) for part in value.split("|") if ":" in part)
    return {key.strip(): val.strip() for key, val in pairs if key.strip()}


def _judgments(labels: pd.DataFrame, queries: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    text = first_rows(queries, "query_id").set_index("query_id")["query"]
    query = labels["query_id"].map(text)
    unknown_query = int(query.isna().sum())
    if unknown_query:
        notes.append(f"{unknown_query} label(s) name a query_id not in query.csv (query empty)")
    grade = labels["label"].astype(str).str.strip().str.lower().map(GRADES).astype(object)
    unknown = grade.isna()
    grade[unknown] = labels["label"][unknown]
    notes.append("grades: Exact = 2, Partial = 1, Irrelevant = 0")
    return labels.assign(domain=DOMAIN, query=query, grade=grade)
