"""Counts and realised rates of a simulation or replay, per domain and overall."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shopsearch.simulate.common import F64, I64
from shopsearch.simulate.world import World


@dataclass(frozen=True)
class DomainStats:
    """Counts of one domain (or of all, with GMV converted to US dollars).

    Attributes:
        domain: domain id, or ``"all"``.
        currency: currency of ``gmv``.
        products: products the domain carries.
        users: users with at least one session.
        sessions, requests, impressions, clicks, carts, purchases: counts.
        gmv: value of the purchases.
    """

    domain: str
    currency: str
    products: int
    users: int
    sessions: int
    requests: int
    impressions: int
    clicks: int
    carts: int
    purchases: int
    gmv: float

    @property
    def ctr(self) -> float:
        """Clicks per impression."""
        return self.clicks / max(self.impressions, 1)

    @property
    def cart_per_click(self) -> float:
        """Add-to-carts per click."""
        return self.carts / max(self.clicks, 1)

    @property
    def purchase_per_click(self) -> float:
        """Purchases per click."""
        return self.purchases / max(self.clicks, 1)

    @property
    def purchase_per_cart(self) -> float:
        """Purchases per add-to-cart."""
        return self.purchases / max(self.carts, 1)

    def per_1k_requests(self) -> dict[str, float]:
        """Clicks, carts, purchases and GMV per 1,000 requests."""
        scale = 1000.0 / max(self.requests, 1)
        return {
            "clicks": self.clicks * scale,
            "carts": self.carts * scale,
            "purchases": self.purchases * scale,
            "gmv": self.gmv * scale,
        }

    def to_dict(self) -> dict[str, Any]:
        """Counts, rates and per-1,000-request figures."""
        return {
            **asdict(self),
            "ctr": self.ctr,
            "cart_per_click": self.cart_per_click,
            "purchase_per_click": self.purchase_per_click,
            "purchase_per_cart": self.purchase_per_cart,
            "per_1k_requests": self.per_1k_requests(),
        }


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation (or a replay) produced.

    Attributes:
        policy: name of the ranking policy that was logged.
        seed: the seed of the sessions.
        elapsed_seconds: wall time.
        domains: per-domain counts, in domain order.
        total: all domains together (GMV in USD).
        clicked_position_share: share of clicks at positions 1..list_length.
        ctr_by_grade: clicks per impression for true grades 0, 1, 2, 3.
        impressions_by_grade: impressions of each true grade.
        typo_share: share of requests whose query has a typo.
        long_tail_user_share: share of active users with at most 2 sessions.
    """

    policy: str
    seed: int
    elapsed_seconds: float
    domains: list[DomainStats]
    total: DomainStats
    clicked_position_share: list[float]
    ctr_by_grade: list[float]
    impressions_by_grade: list[int]
    typo_share: float
    long_tail_user_share: float

    @property
    def share_clicks_beyond_10(self) -> float:
        """Share of clicks at positions 11 and later."""
        return float(sum(self.clicked_position_share[10:]))

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values."""
        return {
            "policy": self.policy,
            "seed": self.seed,
            "elapsed_seconds": self.elapsed_seconds,
            "domains": {d.domain: d.to_dict() for d in self.domains},
            "total": self.total.to_dict(),
            "clicked_position_share": self.clicked_position_share,
            "share_clicks_beyond_10": self.share_clicks_beyond_10,
            "ctr_by_grade": self.ctr_by_grade,
            "impressions_by_grade": self.impressions_by_grade,
            "typo_share": self.typo_share,
            "long_tail_user_share": self.long_tail_user_share,
        }

    def describe(self) -> str:
        """A few lines for people: per-domain counts, funnel rates, clicked positions."""
        rows = [*self.domains, self.total]
        lines = [
            f"simulated with policy {self.policy!r}, seed {self.seed}, "
            f"in {self.elapsed_seconds:.1f} s",
            f"{'domain':<7}{'products':>8}{'users':>7}{'sessions':>10}{'requests':>10}"
            f"{'impressions':>12}{'clicks':>10}{'carts':>8}{'buys':>7}",
        ]
        lines += [
            f"{d.domain:<7}{d.products:>8,}{d.users:>7,}{d.sessions:>10,}{d.requests:>10,}"
            f"{d.impressions:>12,}{d.clicks:>10,}{d.carts:>8,}{d.purchases:>7,}"
            for d in rows
        ]
        lines.append(
            f"{'domain':<7}{'CTR':>8}{'cart/click':>12}{'buy/click':>11}{'buy/cart':>10}"
            f"{'GMV/1k requests':>17}"
        )
        lines += [
            f"{d.domain:<7}{d.ctr:>8.2%}{d.cart_per_click:>12.2%}{d.purchase_per_click:>11.2%}"
            f"{d.purchase_per_cart:>10.1%}{d.per_1k_requests()['gmv']:>13,.0f} {d.currency}"
            for d in rows
        ]
        shares = ", ".join(f"{s:.1%}" for s in self.clicked_position_share[:5])
        lines.append(
            f"clicked positions 1-5: {shares}; beyond 10: {self.share_clicks_beyond_10:.1%}"
        )
        grade_ctr = ", ".join(f"{g}: {c:.2%}" for g, c in enumerate(self.ctr_by_grade))
        lines.append(f"CTR by true grade {grade_ctr}")
        lines.append(
            f"typos in {self.typo_share:.1%} of queries; {self.long_tail_user_share:.0%} of "
            "active users have at most 2 sessions"
        )
        return "\n".join(lines)


class Counters:
    """Accumulates counts while sessions are simulated."""

    def __init__(self, world: World) -> None:
        d = len(world.domain_ids)
        k = world.config.list_length
        self.world = world
        self.sessions: I64 = np.zeros(d, dtype=np.int64)
        self.requests: I64 = np.zeros(d, dtype=np.int64)
        self.impressions: I64 = np.zeros(d, dtype=np.int64)
        self.clicks: I64 = np.zeros(d, dtype=np.int64)
        self.carts: I64 = np.zeros(d, dtype=np.int64)
        self.purchases: I64 = np.zeros(d, dtype=np.int64)
        self.gmv: F64 = np.zeros(d)
        self.clicked_positions: I64 = np.zeros(k, dtype=np.int64)
        self.grade_impressions: I64 = np.zeros(4, dtype=np.int64)
        self.grade_clicks: I64 = np.zeros(4, dtype=np.int64)
        self.typos = 0
        self.user_sessions: I64 = np.zeros(len(world.users.ids), dtype=np.int64)

    def add_sessions(self, market: I64, user: I64) -> None:
        """Count started sessions."""
        self.sessions += np.bincount(market, minlength=self.sessions.size)
        self.user_sessions += np.bincount(user, minlength=self.user_sessions.size)

    def summary(self, policy: str, seed: int, elapsed: float) -> SimulationSummary:
        """The counts as a :class:`SimulationSummary`."""
        world = self.world
        users = np.bincount(
            world.users.market, weights=self.user_sessions > 0, minlength=self.sessions.size
        ).astype(np.int64)
        products = world.catalog.carried.sum(axis=1)
        specs = world.markets.specs
        domains = [
            DomainStats(
                domain=spec.domain_id,
                currency=spec.currency,
                products=int(products[m]),
                users=int(users[m]),
                sessions=int(self.sessions[m]),
                requests=int(self.requests[m]),
                impressions=int(self.impressions[m]),
                clicks=int(self.clicks[m]),
                carts=int(self.carts[m]),
                purchases=int(self.purchases[m]),
                gmv=round(float(self.gmv[m]), 2),
            )
            for m, spec in enumerate(specs)
        ]
        fx = np.array([s.fx for s in specs])
        total = DomainStats(
            domain="all",
            currency="USD",
            products=int(world.catalog.carried.any(axis=0).sum()),
            users=int(users.sum()),
            sessions=int(self.sessions.sum()),
            requests=int(self.requests.sum()),
            impressions=int(self.impressions.sum()),
            clicks=int(self.clicks.sum()),
            carts=int(self.carts.sum()),
            purchases=int(self.purchases.sum()),
            gmv=round(float((self.gmv / fx).sum()), 2),
        )
        active = self.user_sessions[self.user_sessions > 0]
        return SimulationSummary(
            policy=policy,
            seed=seed,
            elapsed_seconds=round(elapsed, 3),
            domains=domains,
            total=total,
            clicked_position_share=(
                self.clicked_positions / max(int(self.clicked_positions.sum()), 1)
            ).tolist(),
            ctr_by_grade=(self.grade_clicks / np.maximum(self.grade_impressions, 1)).tolist(),
            impressions_by_grade=self.grade_impressions.tolist(),
            typo_share=self.typos / max(int(self.requests.sum()), 1),
            long_tail_user_share=float((active <= 2).mean()) if active.size else 0.0,
        )
