"""CrowdFlower Search Results Relevance (Kaggle, 2015).

File: ``train.csv`` (comma-separated, UTF-8) with ``id, query, product_title,
product_description, median_relevance, relevance_variance`` — one rated (query, product) pair
per row; ``median_relevance`` is the median of the raters' 1 (irrelevant) … 4 (perfect) scores.
``test.csv`` has the same columns without the two relevance columns.

Mapping (domain ``crowdflower``: English, USD):

- products: the file has no product ids, so a product is identified by its text: the id is
  ``cf-`` + the first 16 hex digits of the SHA-1 of the normalised title and description
  (lower case, whitespace collapsed, joined by a newline). Equal texts get the same id on every
  run; the first row of each id gives title and description. No prices, brands or categories.
- judgments: ``(query, product id, median_relevance)`` of every rated row, the grade kept as
  the raw 1–4 median; ``relevance_variance`` is not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shopsearch.datasets._cells import stable_id
from shopsearch.datasets._read import CSV, Kind, load_single_kind
from shopsearch.datasets._rows import first_rows
from shopsearch.datasets._schema import domain_rows, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS

FORMAT = "crowdflower"
DOMAIN = "crowdflower"
ROWS = Kind("rows", ("query", "product_title", "product_description"), "train.csv or test.csv")


def product_ids(titles: pd.Series, descriptions: pd.Series) -> pd.Series:
    """The stable product id of each (title, description) pair; see the module docstring."""
    text = _normalise(titles) + "\n" + _normalise(descriptions)
    return stable_id(text, prefix="cf-")


def _normalise(values: pd.Series) -> pd.Series:
    return values.astype(str).str.lower().str.split().str.join(" ")


@LOADERS.register("crowdflower")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read CrowdFlower files into products and judgments.

    Args:
        paths: One or more ``train.csv`` / ``test.csv`` files.

    Returns:
        Domains, products and (for files with ``median_relevance``) judgments.

    Raises:
        DataFormatError: A file is missing, unreadable or lacks the CrowdFlower columns.
    """
    _, rows = load_single_kind(paths, FORMAT, ROWS, CSV)
    rows["product_id"] = product_ids(rows["product_title"], rows["product_description"])
    notes = [
        "no product ids in CrowdFlower: product_id = 'cf-' + SHA-1 of the normalised "
        "title + description (16 hex digits); no prices, brands or categories"
    ]

    first = first_rows(rows, "product_id")
    products = pd.DataFrame(
        {
            "domain": DOMAIN,
            "product_id": first["product_id"],
            "title": first["product_title"],
            "description": first["product_description"],
            "_file": first["_file"],
            "_row": first["_row"],
        }
    )
    judgments = None
    if "median_relevance" in rows.columns:
        judged = rows[rows["median_relevance"].notna()]  # NaN: rows of a test.csv
        judgments = finish(
            pd.DataFrame(
                {
                    "domain": DOMAIN,
                    "query": judged["query"],
                    "product_id": judged["product_id"],
                    "grade": judged["median_relevance"],
                    "_file": judged["_file"],
                    "_row": judged["_row"],
                }
            ),
            "judgments",
        )
        notes.append("grade = median_relevance, 1 (irrelevant) to 4 (perfect match)")
    else:
        notes.append("no median_relevance column (test.csv): products only, no judgments")

    domain = domain_rows(rows, DOMAIN, "CrowdFlower search results", "en", "USD")
    return LoadedData(
        format=FORMAT,
        domains=domains_frame(domain),
        products=finish(products, "products"),
        judgments=judgments,
        notes=notes,
    )
