"""The simulator's truth as evaluation labels: graded products of each logged request."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from shopsearch.catalog.candidates import ProductKey
from shopsearch.simulate.behaviour import grades
from shopsearch.simulate.truth import GroundTruth


def truth_qrels(
    truth: GroundTruth, products: pa.Table, request_ids: Sequence[str]
) -> dict[str, dict[ProductKey, float]]:
    """True grades > 0 of every product of each request's market (only its leaf can score)."""
    world = truth.world
    domains = products.column("domain").to_pylist()
    pids = products.column("product_id").to_pylist()
    items = world.products.index.get_indexer(pids)
    leaf_of = np.where(items >= 0, world.products.leaf[np.maximum(items, 0)], -1)
    by_market_leaf: dict[tuple[str, int], list[int]] = {}
    for row, lf in enumerate(leaf_of.tolist()):
        if lf >= 0:
            by_market_leaf.setdefault((domains[row], int(lf)), []).append(row)
    rows_of = {k: np.asarray(v, np.int64) for k, v in by_market_leaf.items()}
    table = truth.requests
    index = {rid: i for i, rid in enumerate(table.column("request_id").to_pylist())}
    leaf = table.column("leaf").to_numpy()
    brand = table.column("brand_code").to_numpy()
    codes = table.column("attribute_codes").combine_chunks()
    attrs = np.asarray(codes.flatten()).reshape(-1, codes.type.list_size).astype(np.int16)
    market = table.column("domain").to_pylist()
    out: dict[str, dict[ProductKey, float]] = {}
    for rid in request_ids:
        i = index[rid]
        rows = rows_of.get((market[i], int(leaf[i])), np.zeros(0, np.int64))
        graded = grades(
            world,
            np.asarray(leaf[i], np.int32),
            np.asarray(brand[i], np.int32),
            attrs[i],
            items[rows].astype(np.int32),
        )
        out[rid] = {
            (domains[r], pids[r]): float(g)
            for r, g in zip(rows.tolist(), graded.tolist(), strict=True)
            if g > 0
        }
    return out


__all__ = ["truth_qrels"]
