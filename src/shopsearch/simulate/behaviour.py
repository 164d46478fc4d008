"""The user model: true relevance grades and the click → add-to-cart → purchase funnel.

The simulator and :class:`~shopsearch.simulate.truth.GroundTruth` both call these functions, so
the ground truth is exactly what generated the logs. Every function broadcasts its array
arguments (e.g. one intent per request against ``(requests, positions)`` products).

**Grade** of a product for a need (intent = leaf category + the brand/attributes the user
insists on, some of them never typed): 0 if the product is of another leaf; otherwise
3 if it matches every insisted-on field, 2 if it misses one, 1 if it misses two or more.

**Funnel** (given the product is examined): logistic click, cart-given-click and
purchase-given-cart probabilities from the grade, the user's brand affinity
(``taste_scale * taste_user . taste_brand + market offset of the brand``), the relative log-price
(log of the local price over the market's median price in the leaf) times the user's price
sensitivity, and the product's latent quality (new products' changed by launch and sales:
:mod:`~shopsearch.simulate.launch`; weights in
:class:`~shopsearch.simulate.config.BehaviourParams`). Out-of-stock products can be clicked but
never carted or bought.

**Satiation** (:func:`satiated_click`; users' appetite for variety, see
:class:`~shopsearch.simulate.config.DiversityParams`): the click probability of an examined
product is lowered, in logit, by ``satiation * appetite * redundancy``, where redundancy is
the product's largest :func:`similarity` to a product examined above it in the same list.
Focused users (appetite near 0) are unaffected; browsing users tire of near-duplicates.
Satiation depends on the whole list, so it is applied where lists are simulated
(:mod:`shopsearch.simulate.run`); :class:`Funnel` is the per-product part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopsearch.simulate.common import F64, I8, I16, I32, Bool
from shopsearch.simulate.launch import appeal
from shopsearch.simulate.world import World


def grades(world: World, leaf: I32, brand: I32, attrs: I16, items: I32) -> I8:
    """True relevance grade 0-3 of ``items`` for the needs (``attrs`` has a trailing slot axis).

    ``brand`` and ``attrs`` use ``-1`` for "not insisted on".
    """
    products = world.products
    misses = ((brand >= 0) & (products.brand[items] != brand)).astype(np.int8)
    item_attrs = products.attrs[items]
    misses += ((attrs >= 0) & (item_attrs != attrs)).sum(axis=-1, dtype=np.int8)
    grade = np.where(misses == 0, 3, np.where(misses == 1, 2, 1)).astype(np.int8)
    out: I8 = np.where(products.leaf[items] == leaf, grade, 0).astype(np.int8)
    return out


def affinity(world: World, user: I32, market: I32, brand: I32) -> F64:
    """Brand affinity of users for brands in their market (arguments broadcast)."""
    taste = np.einsum("...k,...k->...", world.users.taste[user], world.brands.taste[brand])
    out: F64 = world.config.user.taste_scale * taste + world.markets.brand_offset[market, brand]
    return out


def affinity_table(world: World, users: I32, market: int, brands: I32) -> F64:
    """``(users, brands)`` brand affinity of users of one market for a set of brands."""
    taste = world.users.taste[users] @ world.brands.taste[brands].T
    out: F64 = world.config.user.taste_scale * taste + world.markets.brand_offset[market, brands]
    return out


def relative_price(world: World, market: I32, items: I32) -> F64:
    """Log of the local price over the market's median price of the item's leaf."""
    catalog = world.catalog
    leaf = world.products.leaf[items]
    out: F64 = np.log(catalog.price[market, items] / catalog.leaf_median[market, leaf])
    return out


@dataclass(frozen=True)
class Funnel:
    """Per (need, product): grade and the funnel probabilities given examination."""

    grade: I8
    click: F64
    cart: F64
    purchase: F64

    @property
    def purchase_propensity(self) -> F64:
        """P(purchase | examined) = click * cart * purchase."""
        out: F64 = self.click * self.cart * self.purchase
        return out


def _sigmoid(x: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-x))
    return out


def funnel(
    world: World,
    user: I32,
    market: I32,
    leaf: I32,
    brand: I32,
    attrs: I16,
    items: I32,
) -> Funnel:
    """Grades and funnel probabilities of ``items`` for the users' needs in their markets.

    ``items`` must be carried by ``market`` (their price is used).
    """
    p = world.config.behaviour
    grade = grades(world, leaf, brand, attrs, items)
    aff = affinity(world, user, market, world.products.brand[items])
    price = world.users.price_sensitivity[user] * relative_price(world, market, items)
    quality = appeal(world, items)
    stock = world.catalog.in_stock[market, items]
    click = (
        p.click_intercept
        + np.asarray(p.click_grade)[grade]
        + p.click_brand * aff
        - p.click_price * price
        + p.click_quality * quality
        + world.users.click_bias[user]
    )
    cart = (
        p.cart_intercept
        + np.asarray(p.cart_grade)[grade]
        + p.cart_brand * aff
        - p.cart_price * price
        + p.cart_quality * quality
    )
    purchase = (
        p.purchase_intercept
        + np.asarray(p.purchase_grade)[grade]
        + p.purchase_brand * aff
        - p.purchase_price * price
        + p.purchase_quality * quality
    )
    return Funnel(
        grade=grade,
        click=_sigmoid(click),
        cart=np.where(stock, _sigmoid(cart), 0.0),
        purchase=np.where(stock, _sigmoid(purchase), 0.0),
    )


def similarity(world: World, a: I32, b: I32) -> F64:
    """Similarity in [0, 1] of products ``a`` and ``b`` (broadcast): 0 across leaves; within a
    leaf ``brand_weight * [same brand] + (1 - brand_weight) * (share of the leaf's attribute
    slots with the same value)``."""
    products = world.products
    weight = world.config.diversity.brand_weight
    leaf = products.leaf[a]
    same_brand = products.brand[a] == products.brand[b]
    attrs_a = products.attrs[a]
    same_attrs = ((attrs_a == products.attrs[b]) & (attrs_a >= 0)).sum(axis=-1)
    slots = np.maximum(world.lexicon.slot_counts[leaf], 1)
    within = weight * same_brand + (1.0 - weight) * same_attrs / slots
    out: F64 = np.where(leaf == products.leaf[b], within, 0.0)
    return out


def redundancy(world: World, items: I32, examined: Bool) -> F64:
    """``(n, k)``: each position's largest similarity to a product examined above it in its
    list (``items`` ``(n, k)``, ``-1`` for an empty slot; 0 where nothing above was examined)."""
    safe = np.maximum(items, 0)
    sim = similarity(world, safe[:, :, None], safe[:, None, :])
    k = items.shape[1]
    above = np.tril(np.ones((k, k), dtype=bool), -1)[None, :, :]
    seen = examined[:, None, :] & (items[:, None, :] >= 0) & above
    out: F64 = np.where(seen, sim, 0.0).max(axis=2, initial=0.0) * (items >= 0)
    return out


def satiated_click(world: World, click: F64, appetite: F64, redundant: F64) -> F64:
    """Click probabilities ``click`` with the satiation penalty: logit lowered by
    ``satiation * appetite * redundancy`` (``appetite`` broadcasts against ``click``)."""
    strength = world.config.diversity.satiation * appetite * redundant
    p = np.clip(click, 1e-9, 1.0 - 1e-9)
    return _sigmoid(np.log(p / (1.0 - p)) - strength)
