"""The simulated world: vocabulary, markets, brands, products, market catalogs and users.

A :class:`World` is generated once per seed by :func:`shopsearch.simulate.worldgen.generate_world`
and saved to the workspace's ``ground_truth/`` folder by :mod:`shopsearch.simulate.persist`.
Everything here is latent truth (qualities, tastes, sensitivities) that models never read; what
models see is the ``products`` table rendered from it (:attr:`Catalog.table`) and the logs.

Indices: products ``0..N-1`` in the order of :attr:`Products.ids`, markets ``0..D-1`` in the
order of :attr:`Markets.specs`, users ``0..U-1``, brands ``0..B-1``, leaf categories ``0..L-1``
and terms ``0..T-1`` of the :class:`Lexicon`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from shopsearch.simulate.common import F64, I16, I32, US_PER_DAY, US_PER_S, Bool
from shopsearch.simulate.config import SimulationConfig
from shopsearch.simulate.vocab import MAX_SLOTS, MarketSpec


@dataclass(frozen=True)
class LeafInfo:
    """A leaf category in id form: its path, head-noun term and attribute slots."""

    path: tuple[str, str, str]
    head: int
    slot_names: tuple[str, ...]
    slot_pre: tuple[bool, ...]
    slot_title_rates: tuple[float, ...]
    slot_values: tuple[tuple[int, ...], ...]
    price_median: float
    price_sigma: float


@dataclass
class Lexicon:
    """Every term with its variants and each market's title and query weights.

    Attributes:
        variants: display forms per term.
        title_weights: per term, a ``(D, variants)`` array of title weights (rows sum to 1).
        query_weights: per term, a ``(D, variants)`` array of query weights (rows sum to 1).
        leaves: the leaf categories.
    """

    variants: list[tuple[str, ...]]
    title_weights: list[F64]
    query_weights: list[F64]
    leaves: list[LeafInfo]

    @cached_property
    def title_cdf(self) -> list[list[list[float]]]:
        """``[term][market]``: cumulative title weights, for drawing a variant with bisect."""
        return [np.cumsum(w, axis=1).tolist() for w in self.title_weights]

    @cached_property
    def padded_query_weights(self) -> F64:
        """``(T, D, V)`` query weights, zero-padded to the most variants of any term."""
        width = max(len(v) for v in self.variants)
        out = np.zeros((len(self.variants), self.query_weights[0].shape[0], width))
        for t, weights in enumerate(self.query_weights):
            out[t, :, : weights.shape[1]] = weights
        return out

    @cached_property
    def value_terms(self) -> I32:
        """``(L, MAX_SLOTS, values)`` term id of each attribute value, ``-1`` where none."""
        width = max((len(v) for leaf in self.leaves for v in leaf.slot_values), default=1)
        out = np.full((len(self.leaves), MAX_SLOTS, width), -1, dtype=np.int32)
        for i, leaf in enumerate(self.leaves):
            for s, values in enumerate(leaf.slot_values):
                out[i, s, : len(values)] = values
        return out

    @cached_property
    def slot_counts(self) -> I32:
        """Number of attribute slots per leaf."""
        return np.array([len(leaf.slot_names) for leaf in self.leaves], dtype=np.int32)


@dataclass
class Markets:
    """Market parameters.

    Attributes:
        specs: the preset market of each domain.
        shares: traffic share per market (sums to 1).
        brand_offset: ``(D, B)`` market preference offset per brand.
        leaf_popularity: ``(D, L)`` category popularity per market (rows sum to 1).
    """

    specs: list[MarketSpec]
    shares: F64
    brand_offset: F64
    leaf_popularity: F64

    @property
    def ids(self) -> list[str]:
        """Domain ids, in market-index order."""
        return [s.domain_id for s in self.specs]


@dataclass
class Brands:
    """Brands: display name, top-level category, latent quality and taste vector."""

    names: list[str]
    root: list[str]
    quality: F64
    taste: F64


@dataclass
class Products:
    """The global product universe (market-independent truth).

    Attributes:
        ids: product ids (the same in every market that carries the product).
        leaf: leaf category index.
        brand: brand index.
        attrs: ``(N, MAX_SLOTS)`` value index per attribute slot of the leaf, ``-1`` past the
            leaf's slots.
        quality: latent quality (drives carts and purchases, raises prices).
        base_price: price in US dollars before market price levels and noise.
    """

    ids: list[str]
    leaf: I32
    brand: I32
    attrs: I16
    quality: F64
    base_price: F64

    @cached_property
    def index(self) -> pd.Index:
        """product id → product index."""
        return pd.Index(self.ids)


@dataclass
class Catalog:
    """What each market sells and for how much.

    Attributes:
        carried: ``(D, N)`` whether the market carries the product.
        price: ``(D, N)`` local price (``nan`` where not carried).
        in_stock: ``(D, N)`` stock flag (``False`` where not carried).
        leaf_median: ``(D, L)`` median local price of the market's products per leaf.
        table: the ``products`` table as logged (workspace schema), all markets.
    """

    carried: Bool
    price: F64
    in_stock: Bool
    leaf_median: F64
    table: pa.Table


@dataclass
class Users:
    """Users and their persistent latent preferences.

    Attributes:
        ids: user ids.
        market: home market index.
        activity: relative activity (heavy-tailed); sessions pick users in proportion to it.
        price_sensitivity: weight of relative log-price in the user's utilities.
        click_bias: the user's own click-logit offset.
        taste: ``(U, K)`` brand-taste vector.
        interest: ``(U, L)`` category interests (rows sum to 1).
        variety: appetite for variety in [0, 1] (0: focused, 1: browsing; see
            :class:`~shopsearch.simulate.config.DiversityParams`); empty in worlds saved before
            it existed, read as 0 (no satiation).
    """

    ids: list[str]
    market: I32
    activity: F64
    price_sensitivity: F64
    click_bias: F64
    taste: F64
    interest: F64
    variety: F64 = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if self.variety.size != len(self.ids):
            self.variety = np.zeros(len(self.ids))

    @cached_property
    def index(self) -> pd.Index:
        """user id → user index."""
        return pd.Index(self.ids)


@dataclass
class World:
    """Everything latent about the simulated shop, plus its rendered catalog.

    ``sales`` is the only state that changes: the sales of each product since the start of a
    multi-day replay (:mod:`shopsearch.simulate.launch`; ``None``: none yet).
    """

    config: SimulationConfig
    lexicon: Lexicon
    markets: Markets
    brands: Brands
    products: Products
    catalog: Catalog
    users: Users
    sales: F64 | None = None

    @cached_property
    def new_items(self) -> Bool:
        """Per product: created less than ``config.launch.new_days`` days before ``start``
        (what the ``created_at`` column of the products table shows)."""
        table = self.catalog.table
        created = table.column("created_at").cast(pa.int64()).to_numpy()
        day = datetime.combine(date.fromisoformat(self.config.start), time(), UTC)
        start = round(day.timestamp()) * US_PER_S
        rows = self.products.index.get_indexer(table.column("product_id").to_pylist())
        out = np.zeros(len(self.products.ids), dtype=bool)
        out[rows] = created >= start - self.config.launch.new_days * US_PER_DAY
        return out

    @cached_property
    def domain_ids(self) -> list[str]:
        """Domain ids in market-index order."""
        return self.markets.ids

    @cached_property
    def market_index(self) -> dict[str, int]:
        """domain id → market index."""
        return {d: i for i, d in enumerate(self.domain_ids)}

    @cached_property
    def market_leaf_products(self) -> list[list[I32]]:
        """``[m][l]``: indices of the products market ``m`` carries in leaf ``l``."""
        n_leaves = len(self.lexicon.leaves)
        out: list[list[I32]] = []
        for m in range(len(self.domain_ids)):
            carried = np.flatnonzero(self.catalog.carried[m]).astype(np.int32)
            leaves = self.products.leaf[carried]
            out.append([carried[leaves == leaf] for leaf in range(n_leaves)])
        return out

    @cached_property
    def market_users(self) -> list[tuple[I32, F64]]:
        """Per market: its users and their cumulative activity (for sampling by activity)."""
        out: list[tuple[I32, F64]] = []
        for m in range(len(self.domain_ids)):
            users = np.flatnonzero(self.users.market == m).astype(np.int32)
            out.append((users, np.cumsum(self.users.activity[users])))
        return out


def leaf_medians(
    specs: list[MarketSpec], leaves: list[LeafInfo], product_leaf: I32, carried: Bool, price: F64
) -> F64:
    """``(D, L)`` median local price of each market's products per leaf (the leaf's nominal
    median, converted, where the market sells none)."""
    out = np.empty((len(specs), len(leaves)))
    for m, spec in enumerate(specs):
        for index, leaf in enumerate(leaves):
            rows = (product_leaf == index) & carried[m]
            fallback = leaf.price_median * spec.fx * spec.price_level
            out[m, index] = float(np.median(price[m, rows])) if rows.any() else fallback
    return out
