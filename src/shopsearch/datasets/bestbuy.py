"""Best Buy "Data Mining Hackathon on (20 mb of) Best Buy data" (Kaggle, 2012), Xbox queries.

File: ``train.csv`` (comma-separated, UTF-8) with ``user, sku, category, query, click_time,
query_time`` — one row per search that ended in a click on ``sku`` (times are
``YYYY-MM-DD HH:MM:SS.fff``, no time zone; taken as UTC).

Mapping (domain ``bestbuy``: English, USD):

- products: one per distinct ``sku``. The log has no product names, so the title is the sku
  itself and the category the row's category code (``[category]``); no prices or brands.
- requests: one per row, ``request_id`` = ``bestbuy:<file stem>:<line>``, user ``user``, query
  ``query``, timestamp ``query_time``; no sessions.
- impressions: the log records only the clicked sku, not the result list, so each request gets
  one impression — the clicked sku at position 1 (the real position is unknown).
- interactions: one click on the sku at ``click_time``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shopsearch.datasets._cells import source_ids
from shopsearch.datasets._read import CSV, Kind, load_single_kind
from shopsearch.datasets._rows import first_rows, objects
from shopsearch.datasets._schema import domain_rows, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS

FORMAT = "bestbuy"
DOMAIN = "bestbuy"
CLICKS = Kind(
    "clicks", ("user", "sku", "category", "query", "click_time", "query_time"), "train.csv"
)


@LOADERS.register("bestbuy")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read Best Buy click logs into products, requests, impressions and clicks.

    Args:
        paths: One or more ``train.csv`` files.

    Returns:
        Domains, products, requests, impressions and interactions.

    Raises:
        DataFormatError: A file is missing, unreadable or lacks the Best Buy columns.
    """
    _, rows = load_single_kind(paths, FORMAT, CLICKS, CSV)
    rows = rows.assign(
        request_id=source_ids(FORMAT, rows["_file"]) + ":" + rows["_row"].astype(str),
        domain=DOMAIN,
        product_id=rows["sku"],
        user_id=rows["user"],
    )

    first = first_rows(rows, "sku")
    categories = objects(([c] for c in first["category"]), first.index)
    products = first.assign(title=first["sku"], category=categories)
    requests = rows.assign(timestamp=rows["query_time"])
    impressions = rows.assign(position=1)
    interactions = rows.assign(kind="click", timestamp=rows["click_time"])

    return LoadedData(
        format=FORMAT,
        domains=domains_frame(domain_rows(rows, DOMAIN, "Best Buy", "en", "USD")),
        products=finish(products, "products"),
        requests=finish(requests, "requests"),
        impressions=finish(impressions, "impressions"),
        interactions=finish(interactions, "interactions"),
        notes=[
            "no product names in the Best Buy log: title = the sku, category = [category code]",
            "only the clicked sku is logged: each request has one impression, the clicked sku "
            "at position 1 (its real position is unknown), and one click at click_time",
            "times have no zone and are taken as UTC; no sessions, prices or brands",
        ],
    )
