"""Render products as each market lists them: titles, descriptions and attributes in its words.

A title is ``[Brand] [pre-noun attributes] Head[, post-noun attributes]``, e.g.
``"Norvik Grey Linen Mid-Century Sofa, 3-Seater"`` in Britain and
``"Norvik Gray Linen Mid-Century Couch, 3-Seater"`` in the US. Whether the brand and each
attribute appear is drawn once per product (``brand_title_rate``, each slot's ``title_rate``);
the regional word of the head noun and of regional values is drawn per market from the market's
title weights. Descriptions name every attribute; the ``attributes`` JSON holds them all.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, timedelta

import numpy as np
import orjson
import pyarrow as pa

from shopsearch.simulate.common import F64, US_PER_DAY, Bool
from shopsearch.simulate.config import SimulationConfig
from shopsearch.simulate.vocab import DESCRIPTION_EXTRAS, MAX_SLOTS, MarketSpec
from shopsearch.simulate.world import Brands, LeafInfo, Lexicon, Products
from shopsearch.store.schema import TABLES

_INTROS = ("{brand} {head}.", "{Head} by {brand}.", "{Head} from the {brand} range.")


def start_us(config: SimulationConfig) -> int:
    """The first instant of the logs (``config.start``, 00:00 UTC) in epoch microseconds."""
    start = datetime.combine(date.fromisoformat(config.start), datetime.min.time(), UTC)
    return int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def render_catalog(
    config: SimulationConfig,
    lexicon: Lexicon,
    brands: Brands,
    products: Products,
    specs: list[MarketSpec],
    carried: Bool,
    in_stock: Bool,
    price: F64,
    rng: np.random.Generator,
) -> pa.Table:
    """The ``products`` table of every market (rows by market, then product)."""
    n = len(products.ids)
    rates = np.zeros((n, MAX_SLOTS))
    for i, leaf in enumerate(lexicon.leaves):
        rates[products.leaf == i, : len(leaf.slot_title_rates)] = leaf.slot_title_rates
    show_slot = rng.random((n, MAX_SLOTS)) < rates
    show_brand = rng.random(n) < config.catalog.brand_title_rate
    intro = rng.integers(0, len(_INTROS), n)
    extras = rng.integers(0, len(DESCRIPTION_EXTRAS), (n, 2))
    variant_u = rng.random((len(specs), n, 1 + MAX_SLOTS))
    created = start_us(config) - (
        rng.uniform(1.0, config.catalog.history_days, n) * US_PER_DAY
    ).astype(np.int64)
    columns: dict[str, list[object]] = {name: [] for name in TABLES["products"].names}
    for m, spec in enumerate(specs):
        for g in np.flatnonzero(carried[m]).tolist():
            leaf = lexicon.leaves[int(products.leaf[g])]
            u = variant_u[m, g]
            head = _variant(lexicon, leaf.head, m, float(u[0]))
            values = [
                _variant(
                    lexicon, leaf.slot_values[s][int(products.attrs[g, s])], m, float(u[s + 1])
                )
                for s in range(len(leaf.slot_names))
            ]
            brand = brands.names[int(products.brand[g])]
            columns["domain"].append(spec.domain_id)
            columns["product_id"].append(products.ids[g])
            columns["title"].append(
                _title(leaf, brand if show_brand[g] else None, head, values, show_slot[g])
            )
            columns["description"].append(
                _description(leaf, spec.dialect, brand, head, values, int(intro[g]), extras[g])
            )
            columns["brand"].append(brand)
            columns["category"].append(list(leaf.path))
            columns["price"].append(float(price[m, g]))
            columns["attributes"].append(
                orjson.dumps(dict(zip(leaf.slot_names, values, strict=True))).decode()
            )
            columns["created_at"].append(int(created[g]))
            columns["in_stock"].append(bool(in_stock[m, g]))
    schema = TABLES["products"]
    arrays = [
        pa.array(columns["created_at"], pa.int64()).cast(f.type)
        if f.name == "created_at"
        else pa.array(columns[f.name], f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _variant(lexicon: Lexicon, term: int, market: int, u: float) -> str:
    cdf = lexicon.title_cdf[term][market]
    variants = lexicon.variants[term]
    return variants[min(bisect.bisect_right(cdf, u * cdf[-1]), len(variants) - 1)]


def _title(leaf: LeafInfo, brand: str | None, head: str, values: list[str], show: Bool) -> str:
    pre = [v for s, v in enumerate(values) if show[s] and leaf.slot_pre[s]]
    post = [v for s, v in enumerate(values) if show[s] and not leaf.slot_pre[s]]
    words = ([brand] if brand else []) + pre + [head]
    return " ".join(words) + ("".join(", " + v for v in post))


def _description(
    leaf: LeafInfo,
    dialect: str,
    brand: str,
    head: str,
    values: list[str],
    intro: int,
    extras: np.ndarray,
) -> str:
    sentences = [_INTROS[intro].format(brand=brand, head=head.lower(), Head=head)]
    for name, value in zip(leaf.slot_names, values, strict=True):
        key = "Colour" if name == "color" and dialect != "us" else name.capitalize()
        sentences.append(f"{key}: {value}.")
    sentences.extend(DESCRIPTION_EXTRAS[int(e)] for e in dict.fromkeys(extras.tolist()))
    return " ".join(sentences)
