"""Plan sessions before any policy sees them: who searches, when, for what, and what they type.

Everything a session would do *independently of the ranking shown* is drawn here, per chunk of
sessions, from streams keyed by (seed, chunk): the market (by traffic share), the user (by
activity within the market), the start time (uniform over the period, chunks in time order),
the need, the query of every possible request, and the behavioural random numbers of every
position of every possible request. Two policies replayed with the same seed therefore meet the
same users with the same needs and the same random numbers (common random numbers), and only
the ranking differs.

A **need**: a leaf drawn from the user's category interests, then a wanted product among the
market's products of that leaf by ``target_brand * affinity + target_quality * quality -
target_price * sensitivity * relative price + Gumbel noise``; the user insists on its brand with
``brand_intent_rate`` and on each of its attributes with ``attribute_intent_rate``.

**Queries**: request 1 types each insisted-on field with ``visible_rate``; each refinement types
one more hidden field, or (nothing hidden left) drops one (``broaden_rate``) or rephrases the head
noun with another regional word. The head noun's regional word is drawn from the market's query
weights (kept across refinements with ``keep_head_variant_rate``), as is every regional value.
Then abbreviations and typos (:mod:`shopsearch.simulate.queries`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopsearch.simulate.behaviour import affinity_table, relative_price
from shopsearch.simulate.common import (
    BEHAVIOUR,
    F32,
    F64,
    I16,
    I32,
    I64,
    US_PER_DAY,
    Bool,
    format_ids,
    id_width,
    stream,
)
from shopsearch.simulate.launch import appeal as launch_appeal
from shopsearch.simulate.queries import abbreviate, add_typo, compose
from shopsearch.simulate.render import start_us
from shopsearch.simulate.vocab import MAX_SLOTS
from shopsearch.simulate.world import World


@dataclass
class Draws:
    """Behavioural uniforms/exponentials of one request slot of a chunk, per session row."""

    exam: F32
    click: F32
    cart: F32
    purchase: F32
    delay: F32
    refine: F32
    gap: F32


@dataclass
class SessionChunk:
    """The planned sessions of one chunk (arrays by session row; ``(R, n, ...)`` per request).

    Attributes:
        session_ids: session ids.
        market, user: market and user index.
        start: session start, epoch microseconds.
        leaf, brand, attrs, target: the need (``-1`` = brand/attribute not insisted on) and the
            wanted product.
        visible: ``(R, n, 1 + MAX_SLOTS)`` which fields request ``r`` types (brand, then
            each attribute slot).
        head_variant: ``(R, n)`` regional variant of the head noun typed.
        value_variant: ``(R, n, MAX_SLOTS)`` regional variant of each attribute value typed.
        include_head, head_first, shorten, typo: ``(R, n)`` query-form flags.
        typo_u: ``(R, n, 3)`` uniforms placing the typo.
    """

    session_ids: list[str]
    market: I32
    user: I32
    start: I64
    leaf: I32
    brand: I32
    attrs: I16
    target: I32
    visible: Bool
    head_variant: I32
    value_variant: I32
    include_head: Bool
    head_first: Bool
    shorten: Bool
    typo: Bool
    typo_u: F64

    def __len__(self) -> int:
        return len(self.session_ids)

    def request_ids(self, slot: int, rows: I64) -> list[str]:
        """Ids of request ``slot`` (0-based) of the sessions in ``rows``: ``<session>-<n>``."""
        return [f"{self.session_ids[i]}-{slot + 1}" for i in rows.tolist()]

    def queries(self, world: World, slot: int, rows: I64) -> tuple[list[str], Bool]:
        """What the sessions in ``rows`` type in request ``slot``, and which have a typo."""
        forms = self.query_forms(world, slot, rows)
        return forms.typed, forms.typo

    def query_forms(self, world: World, slot: int, rows: I64) -> QueryForms:
        """What the sessions in ``rows`` type in request ``slot``, and what they meant to."""
        lex = world.lexicon
        names = world.brands.names
        out: list[str] = []
        clean: list[str] = []
        typos: list[bool] = []
        shortened: list[bool] = []
        columns = zip(
            self.leaf[rows].tolist(),
            self.brand[rows].tolist(),
            self.attrs[rows].tolist(),
            self.visible[slot, rows].tolist(),
            self.value_variant[slot, rows].tolist(),
            self.head_variant[slot, rows].tolist(),
            self.include_head[slot, rows].tolist(),
            self.head_first[slot, rows].tolist(),
            self.shorten[slot, rows].tolist(),
            self.typo[slot, rows].tolist(),
            self.typo_u[slot, rows].tolist(),
            strict=True,
        )
        for (
            leaf_id,
            brand,
            attrs,
            visible,
            variants,
            head,
            with_head,
            first,
            short,
            typo,
            u,
        ) in columns:
            leaf = lex.leaves[leaf_id]
            pre: list[str] = []
            post: list[str] = []
            for s in range(len(leaf.slot_names)):
                if visible[1 + s]:
                    word = lex.variants[leaf.slot_values[s][attrs[s]]][variants[s]]
                    (pre if leaf.slot_pre[s] else post).append(word)
            query = compose(
                names[brand] if visible[0] else None,
                pre,
                lex.variants[leaf.head][head] if with_head else None,
                post,
                first,
            )
            clean.append(query)
            if short:
                query = abbreviate(query)
            shortened.append(query != clean[-1])
            made = False
            if typo:
                query, made = add_typo(query, u[0], u[1], u[2])
            out.append(query)
            typos.append(made)
        return QueryForms(out, clean, np.array(typos, dtype=bool), np.array(shortened, dtype=bool))


@dataclass(frozen=True)
class QueryForms:
    """The queries of one request slot: as typed, as meant (before abbreviation and typo),
    and which were abbreviated or mistyped (ground truth of query understanding)."""

    typed: list[str]
    clean: list[str]
    typo: Bool
    abbreviated: Bool


class SessionPlanner:
    """Plans ``sessions`` sessions in chunks, deterministically from ``seed`` and ``keys``.

    Args:
        world: the world the sessions happen in.
        sessions: total sessions.
        seed: the random seed.
        keys: stream keys separating this run from others of the same seed.
        prefix: session id prefix (ids are ``<prefix><number>``).
    """

    def __init__(
        self, world: World, sessions: int, seed: int, keys: tuple[int, ...], prefix: str
    ) -> None:
        self.world = world
        self.sessions = sessions
        self.seed = seed
        self.keys = keys
        self.prefix = prefix
        self.chunk_sessions = world.config.chunk_sessions
        self.width = id_width(sessions, 8)

    @property
    def n_chunks(self) -> int:
        """Number of chunks."""
        return -(-self.sessions // self.chunk_sessions)

    def bounds(self, chunk: int) -> tuple[int, int]:
        """First session number of ``chunk`` and its number of sessions."""
        first = chunk * self.chunk_sessions
        return first, min(self.chunk_sessions, self.sessions - first)

    def draws(self, chunk: int, slot: int) -> Draws:
        """Behavioural random numbers of request ``slot`` for every session of ``chunk``."""
        n = self.bounds(chunk)[1]
        k = self.world.config.list_length
        rng = stream(self.seed, *self.keys, chunk, BEHAVIOUR, slot)
        f32 = np.float32
        return Draws(
            exam=rng.random((n, k), dtype=f32),
            click=rng.random((n, k), dtype=f32),
            cart=rng.random((n, k), dtype=f32),
            purchase=rng.random((n, k), dtype=f32),
            delay=rng.standard_exponential((n, k, 3), dtype=f32),
            refine=rng.random(n, dtype=f32),
            gap=rng.standard_exponential(n, dtype=f32),
        )

    def chunk(self, chunk: int) -> SessionChunk:
        """Plan the sessions of ``chunk``."""
        world = self.world
        config = world.config
        first, n = self.bounds(chunk)
        rng = stream(self.seed, *self.keys, chunk)
        market = rng.choice(len(world.domain_ids), n, p=world.markets.shares).astype(np.int32)
        user = np.empty(n, dtype=np.int32)
        for m, (users, cumulative) in enumerate(world.market_users):
            rows = np.flatnonzero(market == m)
            pick = np.searchsorted(cumulative, rng.random(rows.size) * cumulative[-1], "right")
            user[rows] = users[np.minimum(pick, users.size - 1)]
        span = config.days * US_PER_DAY
        low = start_us(config) + span * first // self.sessions
        high = start_us(config) + span * (first + n) // self.sessions
        start = np.sort(rng.integers(low, max(high, low + 1), n)).astype(np.int64)
        leaf = _pick_leaf(world.users.interest[user], rng.random(n))
        target = self._targets(market, user, leaf, rng)
        products = world.products
        q = config.queries
        brand_required = rng.random(n) < q.brand_intent_rate
        has_slot = np.arange(MAX_SLOTS)[None, :] < world.lexicon.slot_counts[leaf][:, None]
        attr_required = has_slot & (rng.random((n, MAX_SLOTS)) < q.attribute_intent_rate)
        brand = np.where(brand_required, products.brand[target], -1).astype(np.int32)
        attrs = np.where(attr_required, products.attrs[target], -1).astype(np.int16)
        required = np.concatenate([brand_required[:, None], attr_required], axis=1)
        visible, rephrase = self._visible(required, rng)
        head_variant = self._head_variants(market, leaf, rephrase, rng)
        value_variant = self._value_variants(market, leaf, products.attrs[target], rng)
        r = config.behaviour.max_requests
        include_head = ~visible.any(axis=2) | (rng.random((r, n)) < q.head_rate)
        return SessionChunk(
            session_ids=format_ids(self.prefix, np.arange(first, first + n), self.width),
            market=market,
            user=user,
            start=start,
            leaf=leaf,
            brand=brand,
            attrs=attrs,
            target=target,
            visible=visible,
            head_variant=head_variant,
            value_variant=value_variant,
            include_head=include_head,
            head_first=rng.random((r, n)) < q.head_first_rate,
            shorten=rng.random((r, n)) < q.abbreviation_rate,
            typo=rng.random((r, n)) < q.typo_rate,
            typo_u=rng.random((r, n, 3)),
        )

    def _targets(self, market: I32, user: I32, leaf: I32, rng: np.random.Generator) -> I32:
        world = self.world
        b = world.config.behaviour
        n_leaves = len(world.lexicon.leaves)
        key = market.astype(np.int64) * n_leaves + leaf
        target = np.empty(market.size, dtype=np.int32)
        for k in np.unique(key).tolist():
            m, lf = divmod(k, n_leaves)
            rows = np.flatnonzero(key == k)
            cands = world.market_leaf_products[m][lf]
            users = user[rows]
            market = np.full(cands.size, m, dtype=np.int32)
            appeal = b.target_quality * launch_appeal(world, cands)
            price = b.target_price * relative_price(world, market, cands)
            utility = (
                b.target_brand * affinity_table(world, users, m, world.products.brand[cands])
                + appeal[None, :]
                - world.users.price_sensitivity[users][:, None] * price[None, :]
                + rng.gumbel(size=(rows.size, cands.size))
            )
            target[rows] = cands[utility.argmax(axis=1)]
        return target

    def _visible(self, required: Bool, rng: np.random.Generator) -> tuple[Bool, Bool]:
        q = self.world.config.queries
        r = self.world.config.behaviour.max_requests
        n = required.shape[0]
        rows = np.arange(n)
        visible = np.zeros((r, *required.shape), dtype=bool)
        rephrase = np.zeros((r, n), dtype=bool)
        current = required & (rng.random(required.shape) < q.visible_rate)
        visible[0] = current
        for slot in range(1, r):
            u = rng.random(required.shape)
            hidden = required & ~current
            has_hidden = hidden.any(axis=1)
            broaden = ~has_hidden & current.any(axis=1) & (rng.random(n) < q.broaden_rate)
            reveal = np.where(hidden, u, -1.0).argmax(axis=1)
            drop = np.where(current, u, -1.0).argmax(axis=1)
            current = current.copy()
            current[rows[has_hidden], reveal[has_hidden]] = True
            current[rows[broaden], drop[broaden]] = False
            rephrase[slot] = ~has_hidden & ~broaden
            visible[slot] = current
        return visible, rephrase

    def _head_variants(
        self, market: I32, leaf: I32, rephrase: Bool, rng: np.random.Generator
    ) -> I32:
        lex = self.world.lexicon
        q = self.world.config.queries
        heads = np.array([leaf_info.head for leaf_info in lex.leaves])[leaf]
        weights = lex.padded_query_weights[heads, market]
        out = np.empty(rephrase.shape, dtype=np.int32)
        out[0] = _draw(weights, rng.random(market.size))
        rows = np.arange(market.size)
        for slot in range(1, rephrase.shape[0]):
            keep = ~rephrase[slot] & (rng.random(market.size) < q.keep_head_variant_rate)
            other = weights.copy()
            other[rows, out[slot - 1]] = 0.0
            alternatives = rephrase[slot] & (other.sum(axis=1) > 0)
            redraw = np.where(alternatives[:, None], other, weights)
            out[slot] = np.where(keep, out[slot - 1], _draw(redraw, rng.random(market.size)))
        return out

    def _value_variants(
        self, market: I32, leaf: I32, target_attrs: I16, rng: np.random.Generator
    ) -> I32:
        lex = self.world.lexicon
        slots = np.arange(MAX_SLOTS)[None, :]
        terms = lex.value_terms[leaf[:, None], slots, np.maximum(target_attrs, 0)]
        weights = lex.padded_query_weights[np.maximum(terms, 0), market[:, None]]
        r = self.world.config.behaviour.max_requests
        u = rng.random((r, *terms.shape))
        return np.stack([_draw(weights, u[slot]) for slot in range(r)])


def _draw(weights: F64, u: F64) -> I32:
    """Index drawn from (unnormalised, last-axis) ``weights`` with uniforms ``u``."""
    cumulative = np.cumsum(weights, axis=-1)
    threshold = u * cumulative[..., -1]
    index = (cumulative <= threshold[..., None]).sum(axis=-1)
    last_positive = weights.shape[-1] - 1 - np.argmax(weights[..., ::-1] > 0, axis=-1)
    out: I32 = np.minimum(index, last_positive).astype(np.int32)
    return out


def _pick_leaf(interest: F64, u: F64) -> I32:
    leaf = _draw(interest, u)
    bad = interest[np.arange(leaf.size), leaf] <= 0
    leaf[bad] = interest[bad].argmax(axis=1)
    return leaf
