"""Logged lists for learning diversity preferences: who saw which list and what they clicked.

One row per logged request (its shown products in position order, up to ``k``): the user, the
shown positions, **relevance controls** (the product's and its category's click rate for the
same query in every other logged request: they keep "like the product above" from passing for
"relevant", since a product like a relevant one above tends to be relevant too), each
product's **base rank** (its rank by the score the logging ranker gave it,
read from the impression's ``scores``; the shown position when none was logged), whether it was
clicked, and its **redundancy** per facet: the largest facet similarity (:mod:`.base`) to a
product shown above it in the same list. Only what a shop logs is read: impressions, requests,
click events and the products table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import orjson

from shopsearch.errors import InvalidInputError
from shopsearch.rerank.diversity.base import (
    FACETS,
    FacetCodes,
    ProductFacets,
    attributes_of,
    similarity_of_codes,
)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class LoggedLists:
    """Logged lists as arrays (``L`` lists of at most ``k`` shown products).

    Attributes:
        users: user ids; ``user`` indexes them.
        user: ``(L,)`` the user of each list.
        position: ``(L, k)`` 0-based shown position.
        base_rank: ``(L, k)`` 1-based rank by the logging ranker's score.
        redundancy: ``(L, k, len(FACETS))`` largest facet similarity to a product above.
        control: ``(L, k, N_CONTROLS)`` relevance controls: log-odds of the smoothed click
            rate of the product, and of its category, for the same query in the same domain
            in every *other* logged request (leave-one-out); whether the query names the
            product's brand; the share of its attribute values the query names.
        click: ``(L, k)`` 1 where clicked.
        mask: ``(L, k)`` which slots hold a product.
    """

    users: list[str]
    user: I64
    position: I64
    base_rank: F64
    redundancy: F32
    control: F32
    click: F32
    mask: Bool

    def __len__(self) -> int:
        return int(self.user.size)


def redundancy_above(similarity: F64, mask: Bool) -> F64:
    """``(L, k, F)``: per slot and facet, the largest similarity to a shown slot above it
    (``similarity`` ``(L, F, k, k)``)."""
    k = mask.shape[1]
    above = np.tril(np.ones((k, k), dtype=bool), -1)
    seen = above[None, None] & mask[:, None, None, :]
    out: F64 = np.where(seen, similarity, 0.0).max(axis=-1, initial=0.0)
    return np.moveaxis(out, 1, -1)


def _first_score(text: object) -> float:
    if not isinstance(text, str) or not text:
        return float("nan")
    try:
        data: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return float("nan")
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, int | float):
                return float(value)
    return float("nan")


#: Pseudo-impressions of the smoothing of the product's and the category's click rates.
SMOOTHING = (5.0, 20.0)


def _click_rates(rows: dict[str, Any]) -> F32:
    """``(n, 2)`` leave-one-out log-odds of the product's and the category's click rate."""
    clicked = np.asarray(rows["clicked"], dtype=np.float64)
    prior = float(np.clip(clicked.mean(), 1e-4, 1 - 1e-4))
    out = np.empty((clicked.size, 2), np.float32)
    for j, (name, a) in enumerate(zip(("product", "category"), SMOOTHING, strict=True)):
        c = np.asarray(rows[f"{name}_clicks"], dtype=np.float64)
        n = np.asarray(rows[f"{name}_shown"], dtype=np.float64)
        rate = (c + a * prior) / (n + a)
        out[:, j] = np.log(rate / (1.0 - rate)) - np.log(prior / (1.0 - prior))
    return out


#: Relevance controls per shown product (see :class:`LoggedLists`).
N_CONTROLS = 4


def _query_match(queries: npt.NDArray[np.object_], rows: list[Any]) -> F32:
    """``(n, 2)``: whether the query names the product's brand, and the share of its
    attribute values the query names."""
    out = np.zeros((len(rows), 2), np.float32)
    for i, (q, row) in enumerate(zip(queries.tolist(), rows, strict=True)):
        if row is None or not q:
            continue
        words = f" {q} "
        brand = str(row.get("brand") or "").lower()
        out[i, 0] = float(bool(brand) and f" {brand} " in words)
        values = [v.lower() for v in attributes_of(row.get("attributes")).values() if v]
        if values:
            out[i, 1] = sum(v in q for v in values) / len(values)
    return out


def logged_lists(
    con: duckdb.DuckDBPyConnection,
    products: ProductFacets,
    k: int = 20,
    max_lists: int = 200_000,
    chunk: int = 2048,
) -> LoggedLists:
    """The most recent ``max_lists`` logged requests with a user, as :class:`LoggedLists`.

    Raises:
        InvalidInputError: the log holds no impressions.
    """
    rows = con.execute(
        """
        WITH chosen AS (
            SELECT request_id, user_id, domain, lower(trim(query)) AS q FROM requests
            WHERE user_id IS NOT NULL AND user_id <> ''
            ORDER BY timestamp DESC LIMIT ?
        ), clicks AS (
            SELECT DISTINCT request_id, product_id FROM interactions WHERE kind = 'click'
        ), shown AS (
            SELECT i.request_id, r.domain, lower(trim(r.query)) AS q, i.product_id,
                   p.category AS category, (cl.product_id IS NOT NULL)::INTEGER AS c
            FROM impressions i JOIN requests r USING (request_id)
            LEFT JOIN products p ON p.domain = r.domain AND p.product_id = i.product_id
            LEFT JOIN clicks cl ON cl.request_id = i.request_id AND cl.product_id = i.product_id
        ), by_product AS (
            SELECT domain, q, product_id, sum(c) AS c, count(*) AS n FROM shown GROUP BY ALL
        ), by_category AS (
            SELECT domain, q, category, sum(c) AS c, count(*) AS n FROM shown GROUP BY ALL
        )
        SELECT s.request_id, ch.user_id, s.domain, s.product_id, i.position, i.scores, s.q,
               s.c AS clicked, bp.c - s.c AS product_clicks, bp.n - 1 AS product_shown,
               bc.c - s.c AS category_clicks, bc.n - 1 AS category_shown
        FROM shown s JOIN chosen ch USING (request_id)
        JOIN impressions i ON i.request_id = s.request_id AND i.product_id = s.product_id
        JOIN by_product bp ON bp.domain = s.domain AND bp.q = s.q
            AND bp.product_id = s.product_id
        JOIN by_category bc ON bc.domain = s.domain AND bc.q = s.q
            AND bc.category IS NOT DISTINCT FROM s.category
        WHERE i.position <= ?
        ORDER BY s.request_id, i.position
        """,
        [max_lists, k],
    ).fetchnumpy()
    if rows["request_id"].size == 0:
        raise InvalidInputError(
            "the log holds no impressions of requests with a user; log searches (or simulate "
            "some) before training the re-ranking stage"
        )
    request = np.asarray(rows["request_id"], dtype=object)
    starts = np.flatnonzero(np.r_[True, request[1:] != request[:-1]])
    list_of = np.cumsum(np.r_[True, request[1:] != request[:-1]]) - 1
    slot = np.arange(request.size) - starts[list_of]
    n_lists = starts.size
    user_ids = np.asarray(rows["user_id"], dtype=object)[starts]
    users, user = np.unique(user_ids.astype(str), return_inverse=True)
    keys = list(
        zip(
            np.asarray(rows["domain"], dtype=object).tolist(),
            np.asarray(rows["product_id"], dtype=object).tolist(),
            strict=True,
        )
    )
    codes = FacetCodes.from_rows(products.rows(keys))
    n_keys = codes.attributes.shape[1]
    category = np.full((n_lists, k), -1, np.int64)
    brand = np.full((n_lists, k), -1, np.int64)
    attributes = np.full((n_lists, k, n_keys), -1, np.int64)
    category[list_of, slot] = codes.category
    brand[list_of, slot] = codes.brand
    attributes[list_of, slot] = codes.attributes
    mask = np.zeros((n_lists, k), dtype=bool)
    mask[list_of, slot] = True
    control = np.zeros((n_lists, k, N_CONTROLS), np.float32)
    control[list_of, slot, :2] = _click_rates(rows)
    control[list_of, slot, 2:4] = _query_match(
        np.asarray(rows["q"], dtype=object), products.rows(keys)
    )
    click = np.zeros((n_lists, k), np.float32)
    click[list_of, slot] = np.asarray(rows["clicked"], dtype=np.float32)
    position = np.zeros((n_lists, k), np.int64)
    position[list_of, slot] = np.asarray(rows["position"], dtype=np.int64) - 1
    score = np.full((n_lists, k), -np.inf)
    logged = np.array([_first_score(t) for t in np.asarray(rows["scores"], dtype=object)])
    score[list_of, slot] = np.where(np.isnan(logged), -position[list_of, slot], logged)
    # rank by logged score, ties (and lists without scores) by shown position
    order = np.argsort(-score, axis=1, kind="stable")  # slots are in position order
    base_rank = np.empty((n_lists, k))
    np.put_along_axis(base_rank, order, np.arange(1, k + 1, dtype=np.float64)[None, :], axis=1)
    redundancy = np.zeros((n_lists, k, len(FACETS)), np.float32)
    for first in range(0, n_lists, chunk):
        part = slice(first, first + chunk)
        sim = similarity_of_codes(category[part], brand[part], attributes[part])
        redundancy[part] = redundancy_above(sim, mask[part])
    return LoggedLists(
        users=users.tolist(),
        user=user.astype(np.int64),
        position=position,
        base_rank=base_rank,
        redundancy=redundancy,
        control=control,
        click=click,
        mask=mask,
    )


__all__ = ["LoggedLists", "logged_lists", "redundancy_above"]
