"""JDsearch personalised product search dataset (JD.com, SIGIR 2023), tab-separated text.

Files, recognised by their header:

- product data: ``wid, name, brand_id, brand_name, cate_id_1, cate_name_1, … cate_id_4,
  cate_name_4, shop_id``.
- user behaviour (one line per user): ``query, candidate_wid_list`` (up to 200 products shown
  for the query, '_'-separated, top first)``, candidate_label_list`` (per candidate: 0.0 none,
  1.0 click, 2.0 add to cart, 3.0 purchase)``, history_qry_list, history_wid_list,
  history_type_list`` (ORD/CLICK/CART/FLW)``, history_time_list`` (seconds between successive
  behaviours, the first 0, one more entry than the history: the last is the test search).

Text fields (query, names) are anonymised term ids separated by the byte ``\\x18``; they are
turned into space-separated tokens. Other ids stay as written.

Mapping (domain ``jd``: Chinese, CNY):

- products: ``wid``, title the name tokens, brand the brand-name tokens, category the four
  category names (root first), attributes ``brand_id``, ``cate_id_1``–``4`` and ``shop_id``.
  Candidates missing from the product file (the dataset says some are) get no product row.
- requests: one per behaviour line, ``jdsearch:<file stem>:<line>``, user
  ``user:jdsearch:<file stem>:<line>`` (the data has no user ids; one line is one user), the
  query tokens, and a relative timestamp: the sum of ``history_time_list`` in seconds after
  1970-01-01 UTC (times are intervals from the user's first behaviour, not dates).
- impressions: the candidates at positions 1..n; no prices.
- interactions: labels are the deepest funnel level reached, so label 1 is a click, 2 a click
  and an add-to-cart, 3 a click, an add-to-cart and a purchase, all at the request's time.

The user histories (earlier queries and ORD/CLICK/CART/FLW behaviours) are not mapped: they are
not tied to a shown list; the stages that use them read the raw file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from shopsearch.datasets._cells import attributes_from, seconds_to_iso, source_id, split_list
from shopsearch.datasets._read import Kind, TextFormat, check_paths, classify, read_all, read_frame
from shopsearch.datasets._rows import concat, explode_shown, first_rows, flagged, objects
from shopsearch.datasets._schema import domain_rows, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS

FORMAT = "jdsearch"
DOMAIN = "jd"
TERM_SEPARATOR = "\x18"
TEXT = TextFormat(sep="\t", quoting=3)  # csv.QUOTE_NONE: names are never quoted
#: Interaction kinds implied by each label level (levels are cumulative).
FUNNEL = (("click", 1.0), ("add_to_cart", 2.0), ("purchase", 3.0))

BEHAVIOUR = Kind(
    "behaviour", ("query", "candidate_wid_list", "candidate_label_list"), "user behaviour file"
)
PRODUCTS = Kind("products", ("wid", "name"), "product data file")
CATEGORY_NAMES = tuple(f"cate_name_{i}" for i in range(1, 5))
ATTRIBUTE_COLUMNS = ("brand_id", "cate_id_1", "cate_id_2", "cate_id_3", "cate_id_4", "shop_id")


def tokens(values: pd.Series) -> pd.Series:
    """Anonymised term-id text with ``\\x18`` separators as space-separated tokens."""
    return values.astype(str).str.replace(TERM_SEPARATOR, " ", regex=False).str.strip()


@LOADERS.register("jdsearch")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read JDsearch product data and/or user behaviour files.

    Args:
        paths: Product data and/or user behaviour files, in any order.

    Returns:
        Domains, and products and/or requests, impressions and interactions.

    Raises:
        DataFormatError: A file is missing, unreadable or of neither kind.
    """
    found = classify(check_paths(paths, FORMAT), FORMAT, (BEHAVIOUR, PRODUCTS), TEXT)
    data = LoadedData(format=FORMAT)
    sources: list[pd.DataFrame] = []
    rows = read_all(found["products"], FORMAT, PRODUCTS, TEXT)
    if rows is not None:
        data.products = finish(_products(rows), "products")
        sources.append(rows[["_file", "_row"]])
    if found["behaviour"]:
        lines = concat([_read_behaviour(p) for p in found["behaviour"]])
        assert lines is not None
        shown = _candidates(lines)
        level = pd.to_numeric(shown["label"], errors="coerce").fillna(0.0)
        flags = [(kind, level >= threshold) for kind, threshold in FUNNEL]
        data.requests = finish(lines, "requests")
        data.impressions = finish(shown, "impressions")
        data.interactions = finish(flagged(shown, flags), "interactions")
        data.notes += [
            "labels are cumulative funnel levels: 1 = click, 2 = click + add_to_cart, "
            "3 = click + add_to_cart + purchase",
            "no user ids or dates: one line is one user; timestamp = sum of history_time_list "
            "seconds after 1970-01-01 UTC (relative time)",
            "user histories (history_* lists) are not mapped: they are not tied to a shown list",
        ]
        sources.append(lines[["_file", "_row"]])
    data.notes.append("term-id text (query, names) is written as space-separated tokens")
    data.domains = domains_frame(domain_rows(pd.concat(sources), DOMAIN, "JD.com", "zh", "CNY"))
    return data


def _products(rows: pd.DataFrame) -> pd.DataFrame:
    rows = first_rows(rows, "wid")
    names = [tokens(rows[c]) for c in CATEGORY_NAMES if c in rows.columns]
    levels = zip(*names, strict=True)
    category = objects(([n for n in lv if n] for lv in levels), rows.index) if names else None
    products = rows.assign(
        domain=DOMAIN,
        product_id=rows["wid"],
        title=tokens(rows["name"]),
        attributes=attributes_from(rows, {c: c for c in ATTRIBUTE_COLUMNS}),
    )
    if "brand_name" in rows.columns:
        products["brand"] = tokens(rows["brand_name"])
    if category is not None:
        products["category"] = category
    return products


def _read_behaviour(path: Path) -> pd.DataFrame:
    """One behaviour file: a request per line with ids, query tokens and relative time."""
    lines = read_frame(path, FORMAT, BEHAVIOUR.required, TEXT, BEHAVIOUR.label)
    request_id = source_id(FORMAT, path) + ":" + lines["_row"].astype(str)
    if "history_time_list" in lines.columns:
        seconds = pd.Series(
            [_total(v) for v in lines["history_time_list"].to_numpy(dtype=object)],
            index=lines.index,
            dtype="float64",
        )
    else:
        seconds = pd.Series(np.zeros(len(lines)), index=lines.index)
    return lines.assign(
        request_id=request_id,
        user_id="user:" + request_id,
        domain=DOMAIN,
        query=tokens(lines["query"]),
        timestamp=seconds_to_iso(seconds),
    )


def _total(value: object) -> float:
    """Sum of a '_'-separated list of seconds (parts that are not numbers count as 0)."""
    total = 0.0
    for part in split_list(value, "_"):
        try:
            total += float(part)
        except ValueError:
            continue
    return total


def _candidates(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate of each line, with its position and label."""
    keep = ["request_id", "user_id", "timestamp", "_file", "_row"]
    return explode_shown(lines, keep, "candidate_wid_list", "candidate_label_list", "label", "_")
