"""AliExpress Searching System Dataset (Tianchi 74690), the CSV layout of torch-rechub's samples.

Columns: ``search_id`` (one search result page), ``categorical_1`` … ``categorical_16``,
``numerical_1`` … ``numerical_63`` (anonymised feature codes / normalised values), ``click``,
``conversion`` (0/1). One row is one product shown on the page, in display order. The columns
that differ between products of one page are the item side: ``categorical_10``–``15`` and
``numerical_24``–``63``; the others (``categorical_1``–``9``, ``16``, ``numerical_1``–``23``)
are the same for a whole page, i.e. user and query features.

Mapping:

- domain: one file is one country. A country code (nl, es, fr, us, ru) among the words of the
  file or folder name (``AliExpress_NL/train.csv``) gives ``aliexpress-<cc>``; otherwise the
  domain is ``aliexpress`` (English, USD).
- requests: one per ``search_id`` of a file, ``aliexpress:<file stem>:<search_id>``. The data
  has no query text (empty query), no user ids (the user is ``anon-<search id>``: each search is
  an anonymous visitor) and no times (line ``n`` of the file is ``n`` seconds after
  1970-01-01 UTC, keeping file order only).
- impressions: the rows of a search in file order at positions 1..n; no prices.
- interactions: a click per clicked row and a purchase per converted row (a conversion follows a
  click on the page, so it also counts as a click). There is no cart stage.
- products: there is no item id, so a product is a fingerprint of its item-side features:
  ``ae-`` + 16 hex digits of the SHA-1 of ``categorical_10``–``15`` and ``numerical_24``–``63``.
  Rows with identical item features share a product; since the numerical features differ from
  page to page, in practice nearly every impression is its own product. Title ``item <id>``;
  the item-side features are the attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shopsearch.datasets._cells import (
    attributes_from,
    line_clock,
    name_tokens,
    source_ids,
    stable_id,
    truthy,
)
from shopsearch.datasets._read import CSV, Kind, load_single_kind
from shopsearch.datasets._rows import first_rows, flagged, positions
from shopsearch.datasets._schema import DomainRow, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS

FORMAT = "aliexpress"
ITEM_COLUMNS = tuple(f"categorical_{i}" for i in range(10, 16)) + tuple(
    f"numerical_{i}" for i in range(24, 64)
)
ROWS = Kind("rows", ("search_id", "click", "conversion", *ITEM_COLUMNS), "AliExpress CSV")
#: Country code → (language, currency).
COUNTRIES = {
    "nl": ("nl", "EUR"),
    "es": ("es", "EUR"),
    "fr": ("fr", "EUR"),
    "us": ("en", "USD"),
    "ru": ("ru", "RUB"),
}


def country_domain(path: Path) -> DomainRow:
    """The domain of a file: from a country code among the words of its name or folder."""
    codes = [t for t in name_tokens(path) if t in COUNTRIES]
    if not codes:
        return DomainRow(FORMAT, "AliExpress", "en", "USD", str(path), 2)
    code = codes[-1]
    language, currency = COUNTRIES[code]
    name = f"AliExpress {code.upper()}"
    return DomainRow(f"{FORMAT}-{code}", name, language, currency, str(path), 2)


@LOADERS.register("aliexpress")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read AliExpress CSV files into requests, impressions, clicks/purchases and products.

    Args:
        paths: One or more AliExpress CSV files (one country each).

    Returns:
        Domains, products, requests, impressions and interactions.

    Raises:
        DataFormatError: A file is missing, unreadable or lacks the AliExpress columns.
    """
    files, rows = load_single_kind(paths, FORMAT, ROWS, CSV)
    domains = [country_domain(path) for path in files]
    rows = _requests(rows, {str(f): d.domain_id for f, d in zip(files, domains, strict=True)})
    clicked, converted = truthy(rows["click"]), truthy(rows["conversion"])
    interactions = flagged(rows, [("click", clicked | converted), ("purchase", converted)])

    items = first_rows(rows, ["domain", "product_id"])
    products = items.assign(
        title="item " + items["product_id"].astype(str),
        attributes=attributes_from(items, {c: c for c in ITEM_COLUMNS}),
    )
    return LoadedData(
        format=FORMAT,
        domains=domains_frame(domains),
        products=finish(products, "products"),
        requests=finish(first_rows(rows, "request_id"), "requests"),
        impressions=finish(rows, "impressions"),
        interactions=finish(interactions, "interactions"),
        notes=[
            "no item ids: product_id = 'ae-' + SHA-1 of the item-side features (categorical_10-15,"
            " numerical_24-63), so nearly every impression is its own product",
            "domain from the country code in the file or folder name "
            f"({', '.join(d.domain_id for d in domains)})",
            "no query text, user ids or times: empty query, user 'anon-<search_id>', line n of a "
            "file = n seconds after 1970-01-01 UTC; no cart stage, a conversion is a purchase "
            "and also counts as a click",
        ],
    )


def _requests(rows: pd.DataFrame, domains: dict[str, str]) -> pd.DataFrame:
    """Rows with request ids, positions, product ids, domains and synthetic times."""
    search = rows["search_id"].astype(str)
    request_id = source_ids(FORMAT, rows["_file"]) + ":" + search
    first_line = rows.groupby(request_id, sort=False)["_row"].transform("min")
    return rows.assign(
        request_id=request_id,
        position=positions(request_id),
        user_id="anon-" + search,
        domain=rows["_file"].map(domains),
        query="",
        timestamp=line_clock(first_line),
        product_id=stable_id(rows[list(ITEM_COLUMNS)], prefix="ae-"),
    )
