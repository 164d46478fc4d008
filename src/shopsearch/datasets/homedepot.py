"""Home Depot Product Search Relevance (Kaggle, 2016).

Files (comma-separated, latin-1 encoded; UTF-8 copies are read too):

- ``train.csv``: ``id, product_uid, product_title, search_term, relevance`` — one judged
  (query, product) pair per row; ``relevance`` is the mean of at least three raters from
  1 (irrelevant) to 3 (exact match). ``test.csv`` has the same columns without ``relevance``.
- ``product_descriptions.csv`` (optional): ``product_uid, product_description``.
- ``attributes.csv`` (optional): ``product_uid, name, value``, one attribute per row.

Mapping (domain ``homedepot``: English, USD):

- products: one per distinct ``product_uid`` of train/test, titled ``product_title``; the
  description comes from ``product_descriptions.csv``, the attributes (a JSON object
  ``{name: value}``, first value of a repeated name kept) from ``attributes.csv``, and the brand
  from its ``MFG Brand Name`` attribute. The data has no prices (price is null) and no
  categories.
- judgments: ``(search_term, product_uid, relevance)`` of every train row, the grade kept as the
  raw 1–3 mean. Unjudged pairs are unknown, not irrelevant.

Each file's kind is found from its columns, so the files may be given in any order; descriptions
and attributes only add to the products of a train or test file given in the same call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shopsearch.datasets._cells import json_objects
from shopsearch.datasets._read import Kind, TextFormat, check_paths, classify, read_all, require
from shopsearch.datasets._rows import first_rows
from shopsearch.datasets._schema import domain_rows, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS

FORMAT = "homedepot"
DOMAIN = "homedepot"
BRAND_ATTRIBUTE = "MFG Brand Name"
TEXT = TextFormat(encodings=("utf-8", "latin-1"))

PAIRS = Kind("pairs", ("product_uid", "product_title", "search_term"), "train.csv or test.csv")
DESCRIPTIONS = Kind(
    "descriptions", ("product_uid", "product_description"), "product_descriptions.csv"
)
ATTRIBUTES = Kind("attributes", ("product_uid", "name", "value"), "attributes.csv")


@LOADERS.register("homedepot")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read Home Depot files into products and judgments.

    Args:
        paths: ``train.csv`` and/or ``test.csv``, optionally with ``product_descriptions.csv``
            and ``attributes.csv``, in any order.

    Returns:
        Domains, products and (when a file has ``relevance``) judgments.

    Raises:
        DataFormatError: A file is missing, unreadable or of none of the kinds above, or only
            descriptions/attributes were given.
    """
    found = classify(check_paths(paths, FORMAT), FORMAT, (PAIRS, DESCRIPTIONS, ATTRIBUTES), TEXT)
    require(
        found,
        FORMAT,
        ["pairs"],
        "product_descriptions.csv and attributes.csv only add to the products of train.csv or "
        "test.csv; give train.csv (or test.csv) in the same call",
    )
    pairs = read_all(found["pairs"], FORMAT, PAIRS, TEXT)
    assert pairs is not None  # required above
    notes = ["Home Depot has no prices or categories: price is null and category empty"]

    products = first_rows(pairs, "product_uid")
    products = pd.DataFrame(
        {
            "domain": DOMAIN,
            "product_id": products["product_uid"],
            "title": products["product_title"],
            "_file": products["_file"],
            "_row": products["_row"],
        }
    )
    keys = _key(products["product_id"])
    descriptions = read_all(found["descriptions"], FORMAT, DESCRIPTIONS, TEXT)
    if descriptions is not None:
        by_key = first_rows(descriptions.assign(_key=_key(descriptions["product_uid"])), "_key")
        products["description"] = keys.map(by_key.set_index("_key")["product_description"])
        unused = int((~by_key["_key"].isin(set(keys))).sum())
        if unused:
            notes.append(f"{unused} description(s) of products not in train/test were skipped")
    attributes = read_all(found["attributes"], FORMAT, ATTRIBUTES, TEXT)
    if attributes is not None:
        products["attributes"], products["brand"] = _attributes(attributes, keys, notes)

    judgments = None
    if "relevance" in pairs.columns:
        judged = pairs[pairs["relevance"].notna()]  # NaN: rows of a test.csv given alongside
        judgments = finish(
            pd.DataFrame(
                {
                    "domain": DOMAIN,
                    "query": judged["search_term"],
                    "product_id": judged["product_uid"],
                    "grade": judged["relevance"],
                    "_file": judged["_file"],
                    "_row": judged["_row"],
                }
            ),
            "judgments",
        )
        notes.append("grade = relevance, the mean rating from 1 (irrelevant) to 3 (exact match)")
    else:
        notes.append("no relevance column (test.csv): products only, no judgments")

    return LoadedData(
        format=FORMAT,
        domains=domains_frame(domain_rows(pairs, DOMAIN, "The Home Depot", "en", "USD")),
        products=finish(products, "products"),
        judgments=judgments,
        notes=notes,
    )


def _key(ids: pd.Series) -> pd.Series:
    """Product ids as join keys: stripped, and ``100001.0`` (a float-written id) as ``100001``."""
    return ids.astype(str).str.strip().str.replace(r"\.0+$", "", regex=True)


def _attributes(
    attributes: pd.DataFrame, keys: pd.Series, notes: list[str]
) -> tuple[pd.Series, pd.Series]:
    """Per product (aligned with ``keys``): the attributes JSON and the brand attribute."""
    attributes = attributes.assign(_key=_key(attributes["product_uid"]))
    no_id = int((attributes["_key"] == "").sum())
    if no_id:
        notes.append(f"{no_id} attribute row(s) without a product_uid were skipped")
    known = set(keys)
    attributes = attributes[attributes["_key"].isin(known)]
    attributes = attributes.drop_duplicates(subset=["_key", "name"], keep="first")
    grouped: dict[str, dict[str, str]] = {}
    for key, name, value in zip(
        attributes["_key"], attributes["name"], attributes["value"], strict=True
    ):
        grouped.setdefault(key, {})[name] = value
    per_product = [grouped.get(k, {}) for k in keys]
    brand = pd.Series([a.get(BRAND_ATTRIBUTE, "") for a in per_product], index=keys.index)
    return pd.Series(json_objects(per_product), index=keys.index), brand
