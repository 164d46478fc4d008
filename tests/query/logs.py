"""Tiny query-understanding data written by the tests: a catalog and a click log as
:class:`~shopsearch.query.data.QueryData`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from shopsearch.query.data import QueryData

#: (market, product id, title, brand, category path)
Product = tuple[str, str, str, str, str]
#: (market, query, products clicked after it, times typed)
Search = tuple[str, str, list[str], int]


def query_data(products: Sequence[Product], log: Sequence[Search]) -> QueryData:
    """``products`` as the catalog (the description repeats the title and brand) and every
    search of ``log`` typed its number of times, each a request whose user clicked its
    products."""
    catalog = pd.DataFrame(
        [(d, p, t, b, c, f"{t}. Made by {b}.") for d, p, t, b, c in products],
        columns=["domain", "product_id", "title", "brand", "category", "description"],
    )
    category = {(d, p): c for d, p, _, _, c in products}
    queries, outcomes = [], []
    for domain, query, clicked, times in log:
        for n in range(times):
            request = f"{domain}-{query}-{n}"
            queries.append((request, request, "u", domain, query, len(queries)))
            outcomes += [(request, domain, query, p, 1, category[(domain, p)]) for p in clicked]
    return QueryData(
        catalog,
        pd.DataFrame(queries, columns=["request_id", "session_id", "user_id", "domain", "query",
                                       "timestamp"]),
        pd.DataFrame(outcomes, columns=["request_id", "domain", "query", "product_id", "stage",
                                        "category"]),
        "events",
    )  # fmt: skip
