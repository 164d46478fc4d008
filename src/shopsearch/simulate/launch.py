"""New products and the long-term effect of their exposure (parameters:
:class:`~shopsearch.simulate.config.LaunchParams`).

A product is **new** when the products table shows it was created less than ``new_days`` days
before the start of the logs (:attr:`~shopsearch.simulate.world.World.new_items`), so a model
can tell new products only from logged data. A new product starts ``cold_start`` below its
latent quality and gains ``sales_growth * log(1 + sales)`` (at most ``max_gain``) from the
sales it made since launch: exposure that sells today makes it more attractive tomorrow, so
traffic allocation has long-term value. The sales are the world's state
(:attr:`~shopsearch.simulate.world.World.sales`), carried from day to day by
:func:`shopsearch.simulate.replay.replay_days`; the funnel, the choice of the wanted product and
the ground truth all read the effective quality through :func:`appeal`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shopsearch.simulate.common import F64, I32
from shopsearch.simulate.world import World


def quality_offset(world: World) -> F64:
    """Per product: what launch and sales add to the latent quality (0 for established ones)."""
    p = world.config.launch
    new = world.new_items
    sales = world.sales if world.sales is not None else np.zeros(new.size)
    gain = np.minimum(p.max_gain, p.sales_growth * np.log1p(sales))
    out: F64 = np.where(new, gain - p.cold_start, 0.0)
    return out


def appeal(world: World, items: I32) -> F64:
    """Effective latent quality of ``items``: quality plus :func:`quality_offset`."""
    p = world.config.launch
    quality = world.products.quality[items]
    if p.cold_start == 0.0 and p.sales_growth == 0.0:
        return quality
    out: F64 = quality + quality_offset(world)[items]
    return out


def with_sales(world: World, sales: F64 | None = None) -> World:
    """A copy of ``world`` whose products have made ``sales`` (default: none yet)."""
    start = np.zeros(len(world.products.ids)) if sales is None else np.asarray(sales, np.float64)
    return dataclasses.replace(world, sales=start.copy())


def count_sales(world: World, interactions: pa.Table) -> F64:
    """Purchases per product in ``interactions`` (workspace schema), by product index."""
    bought = interactions.filter(pc.equal(interactions.column("kind"), "purchase"))
    rows = world.products.index.get_indexer(bought.column("product_id").to_pylist())
    rows = rows[rows >= 0]
    out: F64 = np.bincount(rows, minlength=len(world.products.ids)).astype(np.float64)
    return out


__all__ = ["appeal", "count_sales", "quality_offset", "with_sales"]
