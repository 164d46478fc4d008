"""Simulate planned sessions against a ranking policy, chunk by chunk, vectorised over sessions.

For each chunk and each request slot (1..``max_requests``) the still-active sessions issue their
planned query, the policy ranks, and every shown position is examined with the position bias;
examined products are clicked (less often by users with an appetite for variety when they are
like a product examined above: satiation), carted and bought through the funnel of
:mod:`shopsearch.simulate.behaviour`. A session ends after a purchase, or else continues with
``refine_satisfied`` / ``refine_unsatisfied`` (after / without a click on a product of grade
>= 2). Each chunk's logs go to a sink as Arrow tables in the workspace schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shopsearch.errors import InvalidInputError
from shopsearch.simulate.behaviour import Funnel, funnel, redundancy, satiated_click
from shopsearch.simulate.common import F32, F64, I32, I64, US_PER_S, Bool
from shopsearch.simulate.config import BehaviourParams
from shopsearch.simulate.policy import RankingPolicy, RankMatrix, RequestBatch
from shopsearch.simulate.sessions import Draws, SessionChunk, SessionPlanner
from shopsearch.simulate.summary import Counters
from shopsearch.simulate.truth import truth_table
from shopsearch.simulate.world import World
from shopsearch.store.schema import TABLES, TIMESTAMP, empty_table

KINDS = ("click", "add_to_cart", "purchase")


@dataclass
class ChunkLogs:
    """One chunk's logs (workspace schema) and the ground truth of its requests."""

    requests: pa.Table
    impressions: pa.Table
    interactions: pa.Table
    truth: pa.Table
    stream: pa.Table = field(default_factory=lambda: empty_table("stream"))


@dataclass
class _Slot:
    """What happened in one request slot of a chunk (arrays over the slot's requests)."""

    rows: I64
    request_ids: list[str]
    queries: list[str]
    time: I64
    items: I32
    scores: dict[str, F32]
    events: tuple[Bool, Bool, Bool]
    event_time: tuple[I64, I64, I64]


def run_sessions(
    world: World,
    planner: SessionPlanner,
    policy: RankingPolicy,
    sink: Callable[[int, ChunkLogs], None],
    progress: Callable[[int, int], None] | None = None,
) -> Counters:
    """Simulate every chunk of ``planner`` against ``policy``; each chunk's logs go to ``sink``."""
    counters = Counters(world)
    done = 0
    for c in range(planner.n_chunks):
        plan = planner.chunk(c)
        counters.add_sessions(plan.market.astype(np.int64), plan.user.astype(np.int64))
        slots = _simulate_chunk(world, planner, plan, c, policy, counters)
        logs = _chunk_logs(world, plan, slots)
        logs.stream = policy.take_stream()
        sink(c, logs)
        done += len(plan)
        if progress is not None:
            progress(done, planner.sessions)
    return counters


def _simulate_chunk(
    world: World,
    planner: SessionPlanner,
    plan: SessionChunk,
    chunk: int,
    policy: RankingPolicy,
    counters: Counters,
) -> list[_Slot]:
    config = world.config
    b = config.behaviour
    bias = np.asarray(config.position_bias())
    active = np.ones(len(plan), dtype=bool)
    time = plan.start.copy()
    slots: list[_Slot] = []
    for slot in range(b.max_requests):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        draws = planner.draws(chunk, slot)
        queries, typos = plan.queries(world, slot, rows)
        request_ids = plan.request_ids(slot, rows)
        batch = RequestBatch(
            request_ids=request_ids,
            session_ids=[plan.session_ids[i] for i in rows.tolist()],
            user_ids=[world.users.ids[u] for u in plan.user[rows].tolist()],
            domains=[world.domain_ids[m] for m in plan.market[rows].tolist()],
            queries=queries,
            timestamps=time[rows].astype("datetime64[us]"),
        )
        matrix = _checked(world, policy, batch, plan.market[rows])
        items = matrix.items
        valid = items >= 0
        market = plan.market[rows][:, None]
        outcome = funnel(
            world,
            plan.user[rows][:, None],
            market,
            plan.leaf[rows][:, None],
            plan.brand[rows][:, None],
            plan.attrs[rows][:, None, :],
            np.maximum(items, 0),
        )
        request_time = time[rows]
        appetite = world.users.variety[plan.user[rows]][:, None]
        events, event_time = _behave(
            b, bias, draws, rows, request_time, valid, outcome, _satiation(world, items, appetite)
        )
        click, _, purchase = events
        last = np.max(np.where(np.stack(events), np.stack(event_time), 0), axis=(0, 2))
        gap = (5.0 + b.query_gap_s * draws.gap[rows]) * US_PER_S
        time[rows] = np.maximum(last, request_time) + gap.astype(np.int64)
        satisfied = (click & (outcome.grade >= 2)).any(axis=1)
        p_more = np.where(
            purchase.any(axis=1),
            0.0,
            np.where(satisfied, b.refine_satisfied, b.refine_unsatisfied),
        )
        active[rows] = draws.refine[rows] < p_more
        prices = world.catalog.price[market, np.maximum(items, 0)]
        _count(counters, plan.market[rows], valid, outcome, events, prices, typos)
        slots.append(
            _Slot(
                rows, request_ids, queries, request_time, items, matrix.scores, events, event_time
            )
        )
    return slots


def _satiation(world: World, items: I32, appetite: F64) -> Callable[[F64, Bool], F64]:
    """Click probabilities given what was examined: the users' satiation (no-op when off)."""

    def sated(click: F64, examined: Bool) -> F64:
        if world.config.diversity.satiation == 0.0 or not appetite.any():
            return click
        return satiated_click(world, click, appetite, redundancy(world, items, examined))

    return sated


def _behave(
    b: BehaviourParams,
    bias: F64,
    draws: Draws,
    rows: I64,
    request_time: I64,
    valid: Bool,
    outcome: Funnel,
    sated: Callable[[F64, Bool], F64] | None = None,
) -> tuple[tuple[Bool, Bool, Bool], tuple[I64, I64, I64]]:
    """Examination and funnel draws, and the time of each event; ``sated`` turns the click
    probabilities into those given what each user examined (satiation)."""
    k = valid.shape[1]
    examined = valid & (draws.exam[rows] < bias[None, :k])
    p_click = outcome.click if sated is None else sated(outcome.click, examined)
    click = examined & (draws.click[rows] < p_click)
    cart = click & (draws.cart[rows] < outcome.cart)
    purchase = cart & (draws.purchase[rows] < outcome.purchase)
    delay = draws.delay[rows]
    position = np.arange(1, k + 1)[None, :]
    t_click = request_time[:, None] + (
        (2.0 + 1.5 * position + b.click_delay_s * delay[..., 0]) * US_PER_S
    ).astype(np.int64)
    t_cart = t_click + ((10.0 + b.cart_delay_s * delay[..., 1]) * US_PER_S).astype(np.int64)
    t_buy = t_cart + ((30.0 + b.purchase_delay_s * delay[..., 2]) * US_PER_S).astype(np.int64)
    return (click, cart, purchase), (t_click, t_cart, t_buy)


def _checked(world: World, policy: RankingPolicy, batch: RequestBatch, market: I32) -> RankMatrix:
    """The policy's ranking, left-packed, after checking it only lists carried, distinct items."""
    k = world.config.list_length
    matrix = policy.rank_matrix(batch, k, world.products.index)
    items = np.asarray(matrix.items)
    if items.ndim != 2 or items.shape[0] != len(batch) or items.shape[1] > k:
        raise InvalidInputError(
            f"policy {policy.name!r} returned rankings of shape {items.shape} for "
            f"{len(batch)} requests; return at most k={k} products per request"
        )
    if items.shape[1] < k:
        items = np.pad(items, ((0, 0), (0, k - items.shape[1])), constant_values=-1)
    n_products = len(world.products.ids)
    if ((items < -1) | (items >= n_products)).any():
        raise InvalidInputError(
            f"policy {policy.name!r} returned product indices outside 0..{n_products - 1}"
        )
    order = np.argsort(items < 0, axis=1, kind="stable")
    items = np.take_along_axis(items, order, 1).astype(np.int32)
    scores = {
        name: np.take_along_axis(
            np.pad(np.asarray(s, dtype=np.float32), ((0, 0), (0, k - s.shape[1]))), order, 1
        )
        for name, s in matrix.scores.items()
    }
    shown = items >= 0
    foreign = shown & ~world.catalog.carried[market[:, None], np.maximum(items, 0)]
    if foreign.any():
        r, c = np.argwhere(foreign)[0]
        raise InvalidInputError(
            f"policy {policy.name!r} ranked product {world.products.ids[items[r, c]]!r} for "
            f"request {batch.request_ids[r]!r} in domain {batch.domains[r]!r}, which does not "
            "carry it; rank only products of the request's domain"
        )
    ordered = np.sort(items, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        r = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise InvalidInputError(
            f"policy {policy.name!r} listed a product twice for request "
            f"{batch.request_ids[r]!r}; list each product at most once"
        )
    return RankMatrix(items, scores)


def _count(
    counters: Counters,
    market: I32,
    valid: Bool,
    outcome: Funnel,
    events: tuple[Bool, Bool, Bool],
    prices: F64,
    typos: Bool,
) -> None:
    d = counters.sessions.size
    click, cart, purchase = events
    m = market.astype(np.int64)
    counters.requests += np.bincount(m, minlength=d)
    counters.impressions += np.bincount(m, weights=valid.sum(axis=1), minlength=d).astype(np.int64)
    counters.clicks += np.bincount(m, weights=click.sum(axis=1), minlength=d).astype(np.int64)
    counters.carts += np.bincount(m, weights=cart.sum(axis=1), minlength=d).astype(np.int64)
    counters.purchases += np.bincount(m, weights=purchase.sum(axis=1), minlength=d).astype(np.int64)
    spent = np.where(purchase, prices, 0.0).sum(axis=1)
    counters.gmv += np.bincount(m, weights=spent, minlength=d)
    counters.clicked_positions += click.sum(axis=0)
    grade = outcome.grade.astype(np.int64)
    counters.grade_impressions += np.bincount(grade[valid], minlength=4)
    counters.grade_clicks += np.bincount(grade[click], minlength=4)
    counters.typos += int(typos.sum())


@dataclass(frozen=True)
class _Ids:
    """Product and user ids as Arrow arrays, for ``take``."""

    products: pa.Array
    users: pa.Array


def _chunk_logs(world: World, plan: SessionChunk, slots: list[_Slot]) -> ChunkLogs:
    requests, impressions, interactions, truth = [], [], [], []
    ids = _Ids(pa.array(world.products.ids, pa.string()), pa.array(world.users.ids, pa.string()))
    for number, s in enumerate(slots):
        market = plan.market[s.rows]
        request_ids = pa.array(s.request_ids, pa.string())
        requests.append(
            pa.table(
                {
                    "request_id": request_ids,
                    "session_id": pa.array([plan.session_ids[i] for i in s.rows.tolist()]),
                    "user_id": pa.array([world.users.ids[u] for u in plan.user[s.rows].tolist()]),
                    "domain": pa.array([world.domain_ids[m] for m in market.tolist()]),
                    "query": pa.array(s.queries, pa.string()),
                    "filters": pa.array(["{}"] * s.rows.size, pa.string()),
                    "timestamp": pa.array(s.time, pa.int64()).cast(TIMESTAMP),
                }
            )
        )
        r, c = np.nonzero(s.items >= 0)
        product_ids = ids.products.take(pa.array(s.items[r, c]))
        prices = world.catalog.price[market[r], s.items[r, c]]
        impressions.append(
            pa.table(
                {
                    "request_id": request_ids.take(pa.array(r)),
                    "product_id": product_ids,
                    "position": pa.array(c + 1, pa.int32()),
                    "price": pa.array(prices, pa.float64()),
                    "scores": _scores_json({n: v[r, c] for n, v in s.scores.items()}, r.size),
                    "_time": pa.array(s.time[r], pa.int64()),
                }
            )
        )
        interactions.append(_interactions(world, s, request_ids, plan, ids))
        truth.append(truth_table(world, plan, s.rows, number, request_ids))
    req = pa.concat_tables(requests)
    imp = pa.concat_tables(impressions)
    inter = pa.concat_tables(interactions)
    req = req.take(pc.sort_indices(req, [("timestamp", "ascending")]))
    order = [("_time", "ascending"), ("request_id", "ascending"), ("position", "ascending")]
    imp = imp.take(pc.sort_indices(imp, order)).drop_columns(["_time"])
    inter = inter.take(pc.sort_indices(inter, [("timestamp", "ascending")]))
    return ChunkLogs(
        req.cast(TABLES["requests"]),
        imp.cast(TABLES["impressions"]),
        inter.cast(TABLES["interactions"]),
        pa.concat_tables(truth),
    )


def _interactions(
    world: World, s: _Slot, request_ids: pa.Array, plan: SessionChunk, ids: _Ids
) -> pa.Table:
    parts = []
    market = plan.market[s.rows]
    for kind, happened, when in zip(KINDS, s.events, s.event_time, strict=True):
        r, c = np.nonzero(happened)
        items = s.items[r, c]
        value = world.catalog.price[market[r], items] if kind == "purchase" else np.zeros(r.size)
        parts.append(
            pa.table(
                {
                    "request_id": request_ids.take(pa.array(r)),
                    "user_id": ids.users.take(pa.array(plan.user[s.rows][r])),
                    "product_id": ids.products.take(pa.array(items)),
                    "kind": pa.array([kind] * r.size, pa.string()),
                    "timestamp": pa.array(when[r, c], pa.int64()).cast(TIMESTAMP),
                    "value": pa.array(value, pa.float64()),
                }
            )
        )
    return pa.concat_tables(parts)


def _scores_json(scores: dict[str, np.ndarray], n: int) -> pa.Array:
    """``{"name": value, ...}`` per row, built column-wise by Arrow."""
    if not scores:
        return pa.array(["{}"] * n, pa.string())
    parts: list[object] = []
    for i, (name, values) in enumerate(scores.items()):
        clean = np.round(np.nan_to_num(values.astype(np.float64), posinf=0.0, neginf=0.0), 4)
        parts.append(("{" if i == 0 else ",") + orjson.dumps(name).decode() + ":")
        parts.append(pc.cast(pa.array(clean), pa.string()))
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")
