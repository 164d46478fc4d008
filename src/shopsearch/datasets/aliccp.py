"""Alibaba Click and Conversion Prediction (Ali-CCP), the CSV layout of torch-rechub's samples.

Columns: ``click, purchase`` (0/1 labels), then the feature fields by their Ali-CCP numbers —
user side ``101`` (user id), ``121``–``129`` (profile, gender, age, consumption, occupation,
geography); item side ``205`` (item id), ``206`` (category id), ``207`` (shop id), ``210``
(intention node id), ``216`` (brand id); user×item combinations ``508, 509, 702, 853``; context
``301`` (the scenario, used as the domain); and dense ``D…`` / history ``…_14`` columns. All
values are anonymised integer codes.

Mapping:

- domains: one per scenario value ``v`` of field 301, ``aliccp-<v>`` (Chinese, CNY: Taobao).
- requests: the data has no request ids or times, so consecutive rows of the same user (101) in
  the same scenario form one request, ``aliccp:<file stem>:<first line>``; the user is 101, the
  query empty (recommendation traffic, no query text), and the timestamp synthetic — line ``n``
  of the file is ``n`` seconds after 1970-01-01 UTC — keeping file order only.
- impressions: every row, at its 1-based position within its request; no prices.
- interactions: a click for each clicked row and a purchase for each purchased row (Ali-CCP only
  records a purchase after a click, so a purchase also implies a click). There is no cart stage.
- products: one per (scenario, item id 205), titled ``item <id>`` (no text in the data), with
  category ``[206]``, brand ``216`` and attributes ``shop_id`` (207) and ``intention_node``
  (210); no prices. Item id ``0`` is the samples' code for an unknown item and is kept as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shopsearch.datasets._cells import attributes_from, line_clock, source_ids, truthy
from shopsearch.datasets._read import CSV, Kind, load_single_kind
from shopsearch.datasets._rows import first_rows, flagged, objects, positions
from shopsearch.datasets._schema import DomainRow, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS

FORMAT = "aliccp"
USER, ITEM, CATEGORY, SHOP, NODE, BRAND, SCENARIO = "101", "205", "206", "207", "210", "216", "301"
ROWS = Kind("rows", ("click", "purchase", USER, ITEM, CATEGORY, SCENARIO), "Ali-CCP CSV")


def domain_id(scenario: object) -> str:
    """The domain id of an Ali-CCP scenario value (``1`` → ``aliccp-1``; blank → ``""``)."""
    value = str(scenario).strip()
    return f"aliccp-{value}" if value else ""


@LOADERS.register("aliccp")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read Ali-CCP CSV files into requests, impressions, clicks/purchases and products.

    Args:
        paths: One or more Ali-CCP CSV files (e.g. the train and test samples).

    Returns:
        Domains, products, requests, impressions and interactions.

    Raises:
        DataFormatError: A file is missing, unreadable or lacks the Ali-CCP columns.
    """
    _, rows = load_single_kind(paths, FORMAT, ROWS, CSV)
    rows = _requests(rows)
    clicked, purchased = truthy(rows["click"]), truthy(rows["purchase"])
    interactions = flagged(rows, [("click", clicked | purchased), ("purchase", purchased)])

    items = first_rows(rows, ["domain", "product_id"])
    products = items.assign(
        title="item " + items["product_id"].astype(str),
        category=objects(([c] for c in items[CATEGORY]), items.index),
        attributes=attributes_from(items, {SHOP: "shop_id", NODE: "intention_node"}),
    )
    if BRAND in items.columns:
        products["brand"] = items[BRAND]

    scenarios = first_rows(rows[rows["domain"] != ""], "domain")
    domains = [
        DomainRow(domain_id(s), f"Ali-CCP scenario {str(s).strip()}", "zh", "CNY", str(f), int(r))
        for s, f, r in zip(scenarios[SCENARIO], scenarios["_file"], scenarios["_row"], strict=True)
    ]
    return LoadedData(
        format=FORMAT,
        domains=domains_frame(domains),
        products=finish(products, "products"),
        requests=finish(first_rows(rows, "request_id"), "requests"),
        impressions=finish(rows, "impressions"),
        interactions=finish(interactions, "interactions"),
        notes=[
            "no request ids: consecutive rows of the same user (101) and scenario (301) form one "
            "request; positions are the row order within it",
            "no times: line n of a file is n seconds after 1970-01-01 UTC (file order only)",
            "no query text (empty queries) and no cart stage; a purchase also counts as a click",
            "products are titled 'item <id>' (205) with category [206], brand 216 and "
            "attributes shop_id (207) and intention_node (210); no prices",
        ],
    )


def _requests(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with request ids, positions, users, domains and synthetic times.

    A request starts at each row whose user, scenario or file differs from the previous row's.
    """
    user, scenario, file = rows[USER], rows[SCENARIO], rows["_file"]
    starts = (user != user.shift()) | (scenario != scenario.shift()) | (file != file.shift())
    first_line = rows["_row"].where(starts).ffill().astype("int64")
    request_id = source_ids(FORMAT, file) + ":" + first_line.astype(str)
    return rows.assign(
        request_id=request_id,
        position=positions(request_id),
        user_id=user,
        domain=scenario.map(domain_id),
        query="",
        timestamp=line_clock(first_line),
        product_id=rows[ITEM],
    )
