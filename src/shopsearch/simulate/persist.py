"""Save and load a :class:`~shopsearch.simulate.world.World` in the ground-truth folder.

Layout of ``W/ground_truth/`` (never read by models)::

    config.json        every parameter and the seed (SimulationConfig.to_dict())
    world.json         markets, brand names, the lexicon (regional weights per market)
    brands.parquet     brand, name, root, quality, taste
    products.parquet   product_id, category, leaf, brand, attribute_codes, quality, base_price_usd
    catalog.parquet    the products table as every market lists it (prices, stock, titles)
    users.parquet      user_id, domain, activity, price_sensitivity, click_bias, taste, interest,
                       variety (appetite for variety; absent in older worlds: read as 0)
    requests/*.parquet one row per logged request: the need behind it (see truth.py)
    summary.json       the simulation summary
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shopsearch.errors import WorkspaceError
from shopsearch.simulate.common import F64
from shopsearch.simulate.config import SimulationConfig
from shopsearch.simulate.vocab import MarketSpec
from shopsearch.simulate.world import (
    Brands,
    Catalog,
    LeafInfo,
    Lexicon,
    Markets,
    Products,
    Users,
    World,
    leaf_medians,
)
from shopsearch.store.atomic import write_json, write_parquet

FORMAT = "shopsearch-simulation"
VERSION = 1


def _matrix(values: np.ndarray) -> pa.Array:
    """A 2-D array as a fixed-size-list column."""
    flat = pa.array(np.ascontiguousarray(values).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _unmatrix(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    width = array.type.list_size
    return np.asarray(array.flatten()).reshape(-1, width)


def save_world(world: World, folder: Path) -> None:
    """Write ``world`` to ``folder`` (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / "config.json",
        {"format": FORMAT, "version": VERSION, "config": world.config.to_dict()},
    )
    lex = world.lexicon
    write_json(
        folder / "world.json",
        {
            "markets": [
                {**asdict(spec), "traffic_share": share}
                for spec, share in zip(world.markets.specs, world.markets.shares, strict=True)
            ],
            "brand_offset": world.markets.brand_offset,
            "leaf_popularity": world.markets.leaf_popularity,
            "lexicon": {
                "variants": lex.variants,
                "title_weights": lex.title_weights,
                "query_weights": lex.query_weights,
                "leaves": [asdict(leaf) for leaf in lex.leaves],
            },
        },
    )
    brands = world.brands
    write_parquet(
        folder / "brands.parquet",
        pa.table(
            {
                "brand": np.arange(len(brands.names), dtype=np.int32),
                "name": brands.names,
                "root": brands.root,
                "quality": brands.quality,
                "taste": _matrix(brands.taste),
            }
        ),
    )
    p = world.products
    write_parquet(
        folder / "products.parquet",
        pa.table(
            {
                "product_id": p.ids,
                "category": [list(lex.leaves[i].path) for i in p.leaf.tolist()],
                "leaf": p.leaf,
                "brand": p.brand,
                "attribute_codes": _matrix(p.attrs),
                "quality": p.quality,
                "base_price_usd": p.base_price,
            }
        ),
    )
    write_parquet(folder / "catalog.parquet", world.catalog.table)
    u = world.users
    write_parquet(
        folder / "users.parquet",
        pa.table(
            {
                "user_id": u.ids,
                "domain": [world.domain_ids[m] for m in u.market.tolist()],
                "activity": u.activity,
                "price_sensitivity": u.price_sensitivity,
                "click_bias": u.click_bias,
                "taste": _matrix(u.taste),
                "interest": _matrix(u.interest),
                "variety": u.variety,
            }
        ),
    )


def load_world(folder: Path) -> World:
    """Read a world written by :func:`save_world`."""
    meta_path = folder / "config.json"
    if not (folder / "world.json").exists() or not meta_path.exists():
        raise WorkspaceError(
            f"no simulated world in {folder}; ground truth exists only in workspaces made by "
            "'shopsearch simulate' (or simulate())"
        )
    meta = orjson.loads(meta_path.read_bytes())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise WorkspaceError(
            f"{meta_path} is not a version-{VERSION} {FORMAT} config; re-run the simulation "
            "with this shopsearch"
        )
    config = SimulationConfig.from_dict(meta["config"])
    data: dict[str, Any] = orjson.loads((folder / "world.json").read_bytes())
    specs = [
        MarketSpec(**{k: v for k, v in m.items() if k != "traffic_share"}) for m in data["markets"]
    ]
    markets = Markets(
        specs,
        np.array([m["traffic_share"] for m in data["markets"]]),
        np.array(data["brand_offset"], dtype=np.float64).reshape(len(specs), -1),
        np.array(data["leaf_popularity"], dtype=np.float64),
    )
    lex_data = data["lexicon"]
    leaves = [_leaf(leaf) for leaf in lex_data["leaves"]]
    lexicon = Lexicon(
        [tuple(v) for v in lex_data["variants"]],
        [np.array(w, dtype=np.float64) for w in lex_data["title_weights"]],
        [np.array(w, dtype=np.float64) for w in lex_data["query_weights"]],
        leaves,
    )
    b = pq.read_table(folder / "brands.parquet")
    brands = Brands(
        b.column("name").to_pylist(),
        b.column("root").to_pylist(),
        b.column("quality").to_numpy(),
        _unmatrix(b.column("taste")).astype(np.float64),
    )
    p = pq.read_table(folder / "products.parquet")
    products = Products(
        p.column("product_id").to_pylist(),
        p.column("leaf").to_numpy().astype(np.int32),
        p.column("brand").to_numpy().astype(np.int32),
        _unmatrix(p.column("attribute_codes")).astype(np.int16),
        p.column("quality").to_numpy(),
        p.column("base_price_usd").to_numpy(),
    )
    table = pq.read_table(folder / "catalog.parquet")
    catalog = _catalog(table, specs, leaves, products)
    u = pq.read_table(folder / "users.parquet")
    index = {s.domain_id: i for i, s in enumerate(specs)}
    users = Users(
        u.column("user_id").to_pylist(),
        np.array([index[d] for d in u.column("domain").to_pylist()], dtype=np.int32),
        u.column("activity").to_numpy(),
        u.column("price_sensitivity").to_numpy(),
        u.column("click_bias").to_numpy(),
        _unmatrix(u.column("taste")).astype(np.float64),
        _unmatrix(u.column("interest")).astype(np.float64),
        u.column("variety").to_numpy() if "variety" in u.column_names else np.zeros(u.num_rows),
    )
    return World(config, lexicon, markets, brands, products, catalog, users)


def _leaf(data: dict[str, Any]) -> LeafInfo:
    return LeafInfo(
        path=(data["path"][0], data["path"][1], data["path"][2]),
        head=int(data["head"]),
        slot_names=tuple(data["slot_names"]),
        slot_pre=tuple(data["slot_pre"]),
        slot_title_rates=tuple(data["slot_title_rates"]),
        slot_values=tuple(tuple(v) for v in data["slot_values"]),
        price_median=float(data["price_median"]),
        price_sigma=float(data["price_sigma"]),
    )


def _catalog(
    table: pa.Table, specs: list[MarketSpec], leaves: list[LeafInfo], products: Products
) -> Catalog:
    d, n = len(specs), len(products.ids)
    index = {s.domain_id: i for i, s in enumerate(specs)}
    market = np.array([index[x] for x in table.column("domain").to_pylist()], dtype=np.int64)
    item = products.index.get_indexer(table.column("product_id").to_pylist())
    carried = np.zeros((d, n), dtype=bool)
    carried[market, item] = True
    price: F64 = np.full((d, n), np.nan)
    price[market, item] = table.column("price").to_numpy(zero_copy_only=False)
    in_stock = np.zeros((d, n), dtype=bool)
    in_stock[market, item] = table.column("in_stock").to_numpy(zero_copy_only=False)
    medians = leaf_medians(specs, leaves, products.leaf, carried, price)
    return Catalog(carried, price, in_stock, medians, table)
