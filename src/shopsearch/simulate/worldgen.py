"""Generate a :class:`~shopsearch.simulate.world.World` from a config (deterministic per seed).

The story, in order (each step draws from its own random stream):

1. **Vocabulary**: each market starts from its dialect's title and query weights of every
   regional term and jitters them log-normally (``vocabulary_sigma``).
2. **Markets**: traffic shares; a preference offset per brand (``brand_sigma``); category
   popularity = global popularity (Dirichlet(4)) times a log-normal market factor
   (``category_sigma``).
3. **Brands**: ``brands_per_root`` per top-level category, each with a latent quality ~ N(0, 1),
   a taste vector ~ N(0, I/K), a size (log-normal) and the leaves of its root it makes
   (each with ``brand_leaf_rate``, at least 3 brands per leaf).
4. **Products**: a leaf by global popularity (every leaf gets some), a brand of that leaf by
   size, each attribute by a per-leaf Dirichlet(3) distribution over its values, latent quality
   ``quality_brand_weight * brand quality + quality_noise * N(0, 1)``, a US-dollar price
   ``median_leaf * exp(sigma_leaf * N(0, 1) + price_quality_weight * quality)``.
5. **Catalogs**: each market carries each product with ``carry_rate`` (every product somewhere),
   in stock with ``in_stock_rate``, at ``base * fx * price_level * exp(price_noise * N(0, 1))``
   rounded to a .99 price; titles and descriptions in the market's words
   (:mod:`shopsearch.simulate.render`).
6. **Users**: home market by traffic share, activity log-normal(0, ``activity_sigma``), price
   sensitivity = the market's level times log-normal(0, ``price_sensitivity_sigma``), a click
   bias ~ N(0, ``click_bias_sigma``), a taste vector ~ N(0, I) and category interests
   ~ Dirichlet(``category_concentration`` * market popularity) over the leaves the market sells.
7. **Appetite for variety** (its own stream, so adding it left every other draw unchanged):
   ~ Beta(``appetite_a``, ``appetite_b``) per user (:class:`~shopsearch.simulate.config.
   DiversityParams`).
"""

from __future__ import annotations

import numpy as np

from shopsearch.simulate.common import F64, I16, I32, WORLD, Bool, format_ids, id_width, stream
from shopsearch.simulate.config import SimulationConfig
from shopsearch.simulate.render import render_catalog
from shopsearch.simulate.vocab import (
    BRAND_HEADS,
    BRAND_TAILS,
    DIALECTS,
    LEAVES,
    MARKETS,
    MAX_SLOTS,
    MarketSpec,
    Term,
)
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

#: Minimum brands making each leaf (fewer if the root has fewer brands).
MIN_BRANDS_PER_LEAF = 3


def generate_world(config: SimulationConfig) -> World:
    """Generate the world of ``config`` (the same config always gives the same world)."""
    seed = config.seed
    specs = list(MARKETS[: config.domains])
    lexicon = compile_lexicon(specs, config.markets.vocabulary_sigma, stream(seed, WORLD, 1))
    global_popularity = stream(seed, WORLD, 2).dirichlet(np.full(len(LEAVES), 4.0))
    brands, leaf_brands, brand_size = make_brands(config, stream(seed, WORLD, 3))
    markets = make_markets(
        config, specs, len(brands.names), global_popularity, stream(seed, WORLD, 4)
    )
    products = make_products(
        config, global_popularity, brands, leaf_brands, brand_size, stream(seed, WORLD, 5)
    )
    carried, in_stock, price = make_prices(config, specs, products, stream(seed, WORLD, 6))
    leaf_median = leaf_medians(specs, lexicon.leaves, products.leaf, carried, price)
    table = render_catalog(
        config, lexicon, brands, products, specs, carried, in_stock, price, stream(seed, WORLD, 7)
    )
    catalog = Catalog(carried, price, in_stock, leaf_median, table)
    users = make_users(config, markets, carried, products.leaf, stream(seed, WORLD, 8))
    users.variety = make_variety(config, stream(seed, WORLD, 9))
    return World(config, lexicon, markets, brands, products, catalog, users)


def compile_lexicon(specs: list[MarketSpec], sigma: float, rng: np.random.Generator) -> Lexicon:
    """Number every term of :data:`LEAVES` and jitter its weights per market."""
    ids: dict[Term, int] = {}
    variants: list[tuple[str, ...]] = []
    title: list[F64] = []
    query: list[F64] = []

    def term_id(term: Term) -> int:
        if term not in ids:
            ids[term] = len(variants)
            variants.append(term.variants)
            title.append(_market_weights(term.title, specs, sigma, rng))
            query.append(_market_weights(term.query, specs, sigma, rng))
        return ids[term]

    leaves = [
        LeafInfo(
            path=leaf.path,
            head=term_id(leaf.head),
            slot_names=tuple(s.name for s in leaf.slots),
            slot_pre=tuple(s.pre for s in leaf.slots),
            slot_title_rates=tuple(s.title_rate for s in leaf.slots),
            slot_values=tuple(tuple(term_id(v) for v in s.values) for s in leaf.slots),
            price_median=leaf.price_median,
            price_sigma=leaf.price_sigma,
        )
        for leaf in LEAVES
    ]
    return Lexicon(variants, title, query, leaves)


def _market_weights(
    per_dialect: tuple[tuple[float, ...], ...],
    specs: list[MarketSpec],
    sigma: float,
    rng: np.random.Generator,
) -> F64:
    base = np.array([per_dialect[DIALECTS.index(s.dialect)] for s in specs], dtype=np.float64)
    if base.shape[1] > 1:
        base = base * np.exp(rng.normal(0.0, sigma, base.shape))
    out: F64 = base / base.sum(axis=1, keepdims=True)
    return out


def make_markets(
    config: SimulationConfig,
    specs: list[MarketSpec],
    n_brands: int,
    global_popularity: F64,
    rng: np.random.Generator,
) -> Markets:
    """Traffic shares, brand offsets and category popularity of each market."""
    params = config.markets
    d = len(specs)
    offset = rng.normal(0.0, params.brand_sigma, (d, n_brands))
    pop = global_popularity[None, :] * np.exp(
        rng.normal(0.0, params.category_sigma, (d, len(global_popularity)))
    )
    pop /= pop.sum(axis=1, keepdims=True)
    return Markets(specs, np.array(params.shares(d)), offset, pop)


def _roots() -> list[str]:
    return list(dict.fromkeys(leaf.path[0] for leaf in LEAVES))


def make_brands(
    config: SimulationConfig, rng: np.random.Generator
) -> tuple[Brands, list[I32], F64]:
    """Brands per root with quality and taste; returns them, each leaf's brands, brand sizes."""
    per_root = config.catalog.brands_per_root
    roots = _roots()
    n = per_root * len(roots)
    combos = [h + t for h in BRAND_HEADS for t in BRAND_TAILS]
    names = [combos[i] for i in rng.permutation(len(combos))[:n]]
    root = [r for r in roots for _ in range(per_root)]
    quality = rng.normal(0.0, 1.0, n)
    k = config.user.taste_dims
    taste = rng.normal(0.0, 1.0 / np.sqrt(k), (n, k))
    size = rng.lognormal(0.0, 0.8, n)
    leaf_brands: list[I32] = []
    for leaf in LEAVES:
        start = roots.index(leaf.path[0]) * per_root
        own = np.arange(start, start + per_root, dtype=np.int32)
        chosen = own[rng.random(per_root) < config.catalog.brand_leaf_rate]
        need = min(MIN_BRANDS_PER_LEAF, per_root)
        if chosen.size < need:
            rest = own[~np.isin(own, chosen)]
            extra = rng.choice(rest, need - chosen.size, replace=False)
            chosen = np.sort(np.concatenate([chosen, extra])).astype(np.int32)
        leaf_brands.append(chosen)
    return Brands(names, root, quality, taste), leaf_brands, size


def make_products(
    config: SimulationConfig,
    global_popularity: F64,
    brands: Brands,
    leaf_brands: list[I32],
    brand_size: F64,
    rng: np.random.Generator,
) -> Products:
    """The global universe: leaf, brand, attributes, quality and base price per product."""
    n = config.products
    n_leaves = len(LEAVES)
    floor = int(0.3 * n / n_leaves)
    leaf = np.concatenate(
        [
            np.repeat(np.arange(n_leaves), floor),
            rng.choice(n_leaves, n - floor * n_leaves, p=global_popularity),
        ]
    )
    leaf = rng.permutation(leaf).astype(np.int32)
    brand = np.empty(n, dtype=np.int32)
    attrs: I16 = np.full((n, MAX_SLOTS), -1, dtype=np.int16)
    for index, spec in enumerate(LEAVES):
        rows = np.flatnonzero(leaf == index)
        choices = leaf_brands[index]
        weights = brand_size[choices] / brand_size[choices].sum()
        brand[rows] = rng.choice(choices, rows.size, p=weights)
        for s, slot in enumerate(spec.slots):
            value_weights = rng.dirichlet(np.full(len(slot.values), 3.0))
            attrs[rows, s] = rng.choice(len(slot.values), rows.size, p=value_weights)
    params = config.catalog
    quality = params.quality_brand_weight * brands.quality[brand] + params.quality_noise * (
        rng.normal(0.0, 1.0, n)
    )
    median = np.array([leaf.price_median for leaf in LEAVES])[leaf]
    sigma = np.array([leaf.price_sigma for leaf in LEAVES])[leaf]
    base = median * np.exp(sigma * rng.normal(0.0, 1.0, n) + params.price_quality_weight * quality)
    ids = format_ids("p", np.arange(n), id_width(n))
    return Products(ids, leaf, brand, attrs, quality, base)


def make_prices(
    config: SimulationConfig, specs: list[MarketSpec], products: Products, rng: np.random.Generator
) -> tuple[Bool, Bool, F64]:
    """Which markets carry which products, stock, and local prices (``nan`` if not carried)."""
    d, n = len(specs), len(products.ids)
    carried = rng.random((d, n)) < config.catalog.carry_rate
    orphans = np.flatnonzero(~carried.any(axis=0))
    carried[rng.integers(0, d, orphans.size), orphans] = True
    in_stock = carried & (rng.random((d, n)) < config.catalog.in_stock_rate)
    level = np.array([s.fx * s.price_level for s in specs])[:, None]
    raw = (
        products.base_price[None, :]
        * level
        * np.exp(rng.normal(0.0, config.catalog.price_noise, (d, n)))
    )
    price = np.where(raw >= 10.0, np.ceil(raw) - 0.01, np.round(raw, 2))
    price = np.where(carried, price, np.nan)
    return carried, in_stock, price


def make_users(
    config: SimulationConfig,
    markets: Markets,
    carried: Bool,
    product_leaf: I32,
    rng: np.random.Generator,
) -> Users:
    """Users with home market, activity, price sensitivity, click bias, taste, interests."""
    params = config.user
    u, d = config.users, len(markets.specs)
    counts = _apportion(u, markets.shares)
    market = rng.permutation(np.repeat(np.arange(d), counts)).astype(np.int32)
    activity = rng.lognormal(0.0, params.activity_sigma, u)
    level = np.array([s.price_sensitivity for s in markets.specs])
    sensitivity = level[market] * rng.lognormal(0.0, params.price_sensitivity_sigma, u)
    click_bias = rng.normal(0.0, params.click_bias_sigma, u)
    taste = rng.normal(0.0, 1.0, (u, params.taste_dims))
    n_leaves = markets.leaf_popularity.shape[1]
    sold = np.stack(
        [np.bincount(product_leaf[carried[m]], minlength=n_leaves) > 0 for m in range(d)]
    )
    popularity = markets.leaf_popularity * sold
    popularity /= popularity.sum(axis=1, keepdims=True)
    shape = np.maximum(params.category_concentration * popularity[market], 1e-6)
    interest = rng.gamma(shape) * sold[market]
    totals = interest.sum(axis=1, keepdims=True)
    safe = np.where(totals > 0, totals, 1.0)
    interest = np.where(totals > 0, interest / safe, popularity[market])  # all-zero draws
    ids = format_ids("u", np.arange(u), id_width(u, 6))
    return Users(ids, market, activity, sensitivity, click_bias, taste, interest)


def make_variety(config: SimulationConfig, rng: np.random.Generator) -> F64:
    """Each user's appetite for variety in [0, 1] (0: focused, 1: browsing)."""
    d = config.diversity
    out: F64 = rng.beta(d.appetite_a, d.appetite_b, config.users)
    return out


def _apportion(total: int, shares: F64) -> I32:
    """Split ``total`` by ``shares`` (largest remainders), at least 1 each."""
    raw = shares * (total - len(shares))
    counts = np.floor(raw).astype(np.int32)
    remainder = total - len(shares) - int(counts.sum())
    counts[np.argsort(-(raw - counts), kind="stable")[:remainder]] += 1
    out: I32 = counts + 1
    return out
