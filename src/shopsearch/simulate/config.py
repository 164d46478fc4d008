"""Every parameter of the simulator, with its default and meaning.

The defaults are calibrated to public figures (see :mod:`shopsearch.simulate`): clicked positions
shaped like the trivago RecSys 2019 clickouts, a funnel like Ali-CCP (about 4% of impressions
clicked, purchases on the order of 1% of clicks). They are not tuned to favour any model.
All configs are frozen dataclasses; :meth:`SimulationConfig.to_dict` is what ``config.json`` in
the ground-truth folder holds and :meth:`SimulationConfig.from_dict` reads it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shopsearch.errors import InvalidInputError
from shopsearch.simulate.vocab import MARKETS

#: Examination probability by 1-based position (index 0 is position 1); positions past the end
#: use the last value: 0.95 at position 1, then ``0.33 * (k / 2) ** -0.8`` at position k.
#: Calibrated so that, under the default logging policy, the clicked-position distribution has
#: the shape of the trivago RecSys 2019 clickouts (position 1: 31%, 2: 11%, 3: 7.5%, 4: 5.7%,
#: 5: 5%, then a slow decay with 23% beyond position 10 of 25 shown); the realised distribution
#: is in the docstring of :mod:`shopsearch.simulate` and in every simulation summary.
DEFAULT_POSITION_BIAS: tuple[float, ...] = (
    0.95,
    *(round(0.33 * (k / 2) ** -0.8, 3) for k in range(2, 26)),
)


def _check(name: str, value: float, low: float, high: float, fix: str | None = None) -> None:
    if not low <= value <= high:  # also rejects NaN
        hint = fix or f"use {low} <= {name} <= {high}"
        raise InvalidInputError(f"{name}={value} is out of range; {hint}")


def _check_prob(name: str, value: float) -> None:
    _check(name, value, 0.0, 1.0)


@dataclass(frozen=True)
class CatalogParams:
    """How the global product universe and each market's catalog are generated.

    Attributes:
        brands_per_root: brands per top-level category (each carries a latent quality).
        brand_leaf_rate: chance a brand of a root also makes each leaf category of that root.
        brand_title_rate: chance a product title starts with its brand.
        quality_brand_weight: weight of the brand's quality in a product's latent quality.
        quality_noise: standard deviation of the product's own quality term.
        price_quality_weight: log-price increase per unit of latent quality.
        carry_rate: chance a market carries a product of the universe (overlap of two markets
            is about its square; every product is carried by at least one market).
        in_stock_rate: chance a carried product is in stock in that market.
        price_noise: standard deviation of the per-market log-price deviation.
        history_days: products were created uniformly over this many days before the start.
    """

    brands_per_root: int = 8
    brand_leaf_rate: float = 0.6
    brand_title_rate: float = 0.9
    quality_brand_weight: float = 0.7
    quality_noise: float = 0.7
    price_quality_weight: float = 0.2
    carry_rate: float = 0.85
    in_stock_rate: float = 0.97
    price_noise: float = 0.08
    history_days: int = 730

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an out-of-range value."""
        _check("brands_per_root", self.brands_per_root, 1, 80)
        for name in ("brand_leaf_rate", "brand_title_rate", "carry_rate", "in_stock_rate"):
            _check_prob(name, getattr(self, name))
        for name in ("quality_brand_weight", "quality_noise", "price_quality_weight"):
            _check(name, getattr(self, name), 0.0, 5.0)
        _check("price_noise", self.price_noise, 0.0, 2.0)
        _check("history_days", self.history_days, 1, 36_500)


@dataclass(frozen=True)
class MarketParams:
    """How markets differ.

    Attributes:
        traffic_shares: share of sessions per market, largest first; ``None`` gives the default
            ``w_1 = 1, w_k = 0.18 (k - 1) ** -0.75`` normalised (0.78/0.14/0.08 for 3 markets).
        brand_sigma: standard deviation of a market's preference offset for each brand.
        category_sigma: standard deviation of a market's log-popularity offset per category.
        vocabulary_sigma: log-normal jitter of each market's regional word weights around its
            dialect's (so even markets of one dialect differ a little).
    """

    traffic_shares: tuple[float, ...] | None = None
    brand_sigma: float = 0.5
    category_sigma: float = 0.5
    vocabulary_sigma: float = 0.3

    def validate(self, domains: int) -> None:
        """Raise :class:`InvalidInputError` for an out-of-range value."""
        if self.traffic_shares is not None:
            shares = self.traffic_shares
            if len(shares) != domains or any(s <= 0 for s in shares):
                raise InvalidInputError(
                    f"traffic_shares={shares} must give one positive share per domain "
                    f"({domains} domains); use e.g. {default_traffic_shares(domains)}"
                )
        for name in ("brand_sigma", "category_sigma", "vocabulary_sigma"):
            _check(name, getattr(self, name), 0.0, 5.0)

    def shares(self, domains: int) -> tuple[float, ...]:
        """Traffic shares of the ``domains`` markets, summing to 1."""
        raw = self.traffic_shares or default_traffic_shares(domains)
        total = sum(raw)
        return tuple(s / total for s in raw)


def default_traffic_shares(domains: int) -> tuple[float, ...]:
    """One data-rich market, the others 5-20x smaller: ``w_k = 0.18 (k - 1) ** -0.75``."""
    weights = [1.0] + [0.18 * (k - 1) ** -0.75 for k in range(2, domains + 1)]
    total = sum(weights)
    return tuple(round(w / total, 4) for w in weights)


@dataclass(frozen=True)
class UserParams:
    """Persistent latent preferences of users.

    Attributes:
        activity_sigma: log-normal sigma of a user's activity (heavy tail: most users have few
            sessions, a few have many).
        category_concentration: Dirichlet concentration of a user's category interests around
            the market's category popularity (small: users care about few categories).
        taste_dims: dimensions of the latent brand-taste space.
        taste_scale: scale of the user-brand taste affinity ``taste_u . taste_b``.
        price_sensitivity_sigma: log-normal sigma of a user's price sensitivity around the
            market's level.
        click_bias_sigma: standard deviation of a user's own click-logit offset (some users
            click a lot, others rarely).
    """

    activity_sigma: float = 1.3
    category_concentration: float = 1.5
    taste_dims: int = 4
    taste_scale: float = 1.0
    price_sensitivity_sigma: float = 0.4
    click_bias_sigma: float = 0.4

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an out-of-range value."""
        _check("activity_sigma", self.activity_sigma, 0.0, 5.0)
        _check("category_concentration", self.category_concentration, 0.01, 1000.0)
        _check("taste_dims", self.taste_dims, 1, 64)
        for name in ("taste_scale", "price_sensitivity_sigma", "click_bias_sigma"):
            _check(name, getattr(self, name), 0.0, 5.0)


@dataclass(frozen=True)
class QueryParams:
    """How a need becomes queries.

    Attributes:
        brand_intent_rate: chance the need insists on the wanted product's brand.
        attribute_intent_rate: chance the need insists on each attribute of the wanted product.
        visible_rate: chance an insisted-on brand/attribute is typed in the first query (the rest
            stay hidden: relevance still depends on them).
        head_rate: chance the query names the product type (head noun) when it names anything
            else; a query with nothing else always names it.
        head_first_rate: chance the head noun is typed first ("sofa grey linen").
        keep_head_variant_rate: chance a refined query keeps the regional word of the previous.
        broaden_rate: chance a refinement with nothing hidden left drops a word instead of
            rephrasing.
        typo_rate: chance a query has one typo (drop, swap, doubled or neighbouring-key letter)
            in a word of 4+ letters.
        abbreviation_rate: chance an abbreviable phrase ("bluetooth" → "bt") is abbreviated.
    """

    brand_intent_rate: float = 0.3
    attribute_intent_rate: float = 0.4
    visible_rate: float = 0.7
    head_rate: float = 0.95
    head_first_rate: float = 0.15
    keep_head_variant_rate: float = 0.7
    broaden_rate: float = 0.3
    typo_rate: float = 0.07
    abbreviation_rate: float = 0.25

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an out-of-range value."""
        for f in dataclasses.fields(self):
            _check_prob(f.name, getattr(self, f.name))


@dataclass(frozen=True)
class BehaviourParams:
    """The user model: which product is wanted, examination, the click/cart/purchase funnel.

    Logits of the funnel for a shown product with true grade ``g`` (0-3), brand affinity ``a``,
    relative log-price ``r`` (log of price over the category's median price in the market),
    the user's price sensitivity ``s`` and the product's latent quality ``q``::

        click    = click_intercept + click_grade[g] + click_brand a - click_price s r
                   + click_quality q + user click bias
        cart     = cart_intercept + cart_grade[g] + cart_brand a - cart_price s r + cart_quality q
        purchase = purchase_intercept + purchase_grade[g] + purchase_brand a
                   - purchase_price s r + purchase_quality q

    Attributes:
        position_bias: examination probability per position (see :data:`DEFAULT_POSITION_BIAS`).
        target_brand: weight of brand affinity when the wanted product is chosen.
        target_quality: weight of latent quality when the wanted product is chosen.
        target_price: weight of ``s r`` (price disutility) when the wanted product is chosen.
        click_intercept: see the formula above; likewise the other ``click_*``, ``cart_*``,
            ``purchase_*`` weights. ``*_grade`` give one value per grade 0, 1, 2, 3.
        refine_unsatisfied: chance of another query after a request without a click on a
            product of grade >= 2 (and without a purchase).
        refine_satisfied: chance of another query after such a click (without a purchase).
        max_requests: most requests per session.
        click_delay_s: mean seconds from a request to a click (plus 2 + 1.5 per position).
        cart_delay_s: mean seconds from a click to the add-to-cart (plus 10).
        purchase_delay_s: mean seconds from the add-to-cart to the purchase (plus 30).
        query_gap_s: mean seconds between a request's last event and the next query (plus 5).
    """

    position_bias: tuple[float, ...] = DEFAULT_POSITION_BIAS
    target_brand: float = 1.0
    target_quality: float = 0.5
    target_price: float = 1.0
    click_intercept: float = -0.3
    click_grade: tuple[float, float, float, float] = (-3.0, -1.8, -0.8, 0.0)
    click_brand: float = 0.3
    click_price: float = 0.4
    click_quality: float = 0.15
    cart_intercept: float = -2.9
    cart_grade: tuple[float, float, float, float] = (-2.0, -1.2, -0.5, 0.0)
    cart_brand: float = 0.4
    cart_price: float = 0.8
    cart_quality: float = 0.4
    purchase_intercept: float = -3.1
    purchase_grade: tuple[float, float, float, float] = (-1.5, -1.0, -0.4, 0.0)
    purchase_brand: float = 0.3
    purchase_price: float = 1.0
    purchase_quality: float = 0.5
    refine_unsatisfied: float = 0.6
    refine_satisfied: float = 0.2
    max_requests: int = 3
    click_delay_s: float = 8.0
    cart_delay_s: float = 40.0
    purchase_delay_s: float = 120.0
    query_gap_s: float = 20.0

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an out-of-range value."""
        if not self.position_bias:
            raise InvalidInputError("position_bias=() is empty; give one probability or more")
        for i, p in enumerate(self.position_bias):
            _check_prob(f"position_bias[{i}]", p)
        for name in ("click_grade", "cart_grade", "purchase_grade"):
            if len(getattr(self, name)) != 4:
                raise InvalidInputError(
                    f"{name}={getattr(self, name)} needs 4 values, one per grade 0-3"
                )
        _check_prob("refine_unsatisfied", self.refine_unsatisfied)
        _check_prob("refine_satisfied", self.refine_satisfied)
        _check("max_requests", self.max_requests, 1, 9)
        for name in ("click_delay_s", "cart_delay_s", "purchase_delay_s", "query_gap_s"):
            _check(name, getattr(self, name), 0.0, 86_400.0)


@dataclass(frozen=True)
class PolicyParams:
    """The default logging policy: BM25 over each market's titles, perturbed per request.

    Attributes:
        temperature: Plackett-Luce temperature over BM25 scores normalised by the request's best
            score; each request's list is a Gumbel-top-k sample (0 = deterministic BM25 order).
        candidates: BM25 candidates cached per distinct (domain, query).
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
        cache_size: most distinct (domain, query) entries cached before the cache is cleared.
        stream_sample: share of requests whose stream (the BM25 candidates with their scores,
            stage ``retrieve``) is logged into the ``stream`` table, as the engine does for
            ``[pipeline] stream_sample``; drawn from the request id, so it changes no other draw.
    """

    temperature: float = 0.25
    candidates: int = 100
    k1: float = 1.2
    b: float = 0.75
    cache_size: int = 100_000
    stream_sample: float = 0.05

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an out-of-range value."""
        _check("temperature", self.temperature, 0.0, 100.0)
        _check("candidates", self.candidates, 1, 10_000)
        _check("k1", self.k1, 0.0, 10.0)
        _check_prob("b", self.b)
        _check("cache_size", self.cache_size, 1, 100_000_000)
        _check_prob("stream_sample", self.stream_sample)


@dataclass(frozen=True)
class DiversityParams:
    """Users' appetite for variety (focused vs browsing) and the satiation it causes.

    Each user has a latent appetite ``v`` in [0, 1] drawn once from Beta(``appetite_a``,
    ``appetite_b``) (U-shaped by default: most users are clearly focused, v near 0, or clearly
    browsing, v near 1). When a user examines a product, its click logit falls by
    ``satiation * v * r``, where ``r`` in [0, 1] is the product's **redundancy**: its largest
    similarity to a product the user examined above it in the same list. Similarity of two
    products of the same leaf is ``brand_weight * [same brand] + (1 - brand_weight) * (share
    of the leaf's attribute slots with the same value)``; products of different leaves have
    similarity 0. So a focused user reacts to each product on its own, while a browsing user
    tires of near-duplicates and clicks (and therefore carts and buys) more from a varied list.

    Why: diversity re-ranking (PODM-MI, MMR, DPP; issue 16) can only help if some users gain
    from variety, and a personalised diversifier only beats a global one if users differ.
    Calibration: no public log reports a variety appetite, so the effect is kept moderate and
    the existing targets (CTR, clicked-position shape, funnel) stay within their tolerances;
    the realised CTR of focused (v < 0.5) and browsing users is in the docstring of
    :mod:`shopsearch.simulate`. ``satiation = 0`` switches the effect off.

    Attributes:
        appetite_a: first Beta parameter of the users' appetite for variety.
        appetite_b: second Beta parameter.
        satiation: click-logit penalty per unit of appetite times redundancy.
        brand_weight: weight of the brand in the similarity (the rest: attribute slots).
    """

    appetite_a: float = 0.5
    appetite_b: float = 0.5
    satiation: float = 1.0
    brand_weight: float = 0.5

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an out-of-range value."""
        _check("appetite_a", self.appetite_a, 0.01, 100.0)
        _check("appetite_b", self.appetite_b, 0.01, 100.0)
        _check("satiation", self.satiation, 0.0, 10.0)
        _check_prob("brand_weight", self.brand_weight)


@dataclass(frozen=True)
class LaunchParams:
    """New products and the long-term effect of their exposure (:mod:`shopsearch.simulate.launch`).

    Why: traffic allocation (MODRL-TA) gives exposure to new products now so that they grow
    later; without a long-term effect of exposure, allocation could only trade purchases today
    for exposure today. A product launched recently has no sales history (no reviews, no sales
    rank), so it starts less attractive than its latent quality; each sale makes it more
    attractive (social proof), up to a cap. Effective quality of a new product::

        quality - cold_start + min(max_gain, sales_growth * log(1 + sales since launch))

    The sales are counted over the days of a multi-day replay
    (:func:`shopsearch.simulate.replay.replay_days`, updated after each day); within one
    ``simulate`` or ``replay`` call they stay as they were (zero for the logs).

    Calibration: with the defaults 3.8% of products are new (30 of 730 history days). The
    deficit (0.6, about half the spread of latent quality) lowers a new product's click logit by
    0.09 and its cart and purchase logits by 0.24 and 0.3. The growth follows the public figure
    that a product with five reviews is bought about 3.7 times as often as one with none
    (Spiegel Research Center, 2017); taking a product's first sales as what brings its first
    reviews, and staying below that figure, five sales raise a new product's quality by
    ``0.5 * log 6 = 0.9`` (its purchase probability per examination about 2.5x that of no
    sales); about 3 sales undo the deficit and 10 reach the cap (+0.6 above the latent
    quality). Realised with the defaults of :mod:`shopsearch.simulate` (logs without
    carried-over sales): new products get 3.9% of impressions and 3.9%/3.1%/3.0% of clicks,
    carts and purchases (4.2%/3.8%/4.1% without the effect); CTR 4.18% (4.20%), purchases
    0.89% of clicks (0.85%).
    Set ``cold_start = sales_growth = 0`` to switch the effect off (``new_days`` then only
    defines which products are new).

    Attributes:
        new_days: a product created less than this many days before ``start`` is new.
        cold_start: latent-quality deficit of a new product without sales.
        sales_growth: quality gained per ``log(1 + sales)`` of a new product.
        max_gain: most quality a new product gains from its sales.
    """

    new_days: int = 30
    cold_start: float = 0.6
    sales_growth: float = 0.5
    max_gain: float = 1.2

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for an out-of-range value."""
        _check("new_days", self.new_days, 0, 36_500)
        for name in ("cold_start", "sales_growth", "max_gain"):
            _check(name, getattr(self, name), 0.0, 5.0)


#: Number of preset markets (see :data:`shopsearch.simulate.vocab.MARKETS`).
MAX_DOMAINS = len(MARKETS)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulation; the same config gives identical tables.

    Attributes:
        domains: number of markets (1-8): us, gb, au, ca, ie, nz, in, sg in that order.
        products: products in the global universe (each market carries a subset).
        users: users over all markets (assigned to markets by traffic share).
        sessions: search sessions to simulate (1-3 requests each).
        seed: random seed.
        list_length: products shown per request.
        days: sessions are spread uniformly over this many days from ``start``.
        start: first day of the logs, ISO date (UTC).
        chunk_sessions: sessions simulated and written per chunk (bounds memory).
        catalog, markets, user, queries, behaviour, policy, diversity, launch: the parameter
            groups.
    """

    domains: int = 3
    products: int = 2000
    users: int = 5000
    sessions: int = 20_000
    seed: int = 0
    list_length: int = 20
    days: int = 60
    start: str = "2024-01-01"
    chunk_sessions: int = 100_000
    catalog: CatalogParams = field(default_factory=CatalogParams)
    markets: MarketParams = field(default_factory=MarketParams)
    user: UserParams = field(default_factory=UserParams)
    queries: QueryParams = field(default_factory=QueryParams)
    behaviour: BehaviourParams = field(default_factory=BehaviourParams)
    policy: PolicyParams = field(default_factory=PolicyParams)
    diversity: DiversityParams = field(default_factory=DiversityParams)
    launch: LaunchParams = field(default_factory=LaunchParams)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the value, the limit and the fix."""
        _check(
            "domains", self.domains, 1, MAX_DOMAINS, f"use 1 <= domains <= {MAX_DOMAINS} markets"
        )
        _check("products", self.products, 100, 10_000_000, "use products >= 100")
        _check(
            "users", self.users, self.domains, 100_000_000, f"use users >= domains ({self.domains})"
        )
        _check("sessions", self.sessions, 0, 1_000_000_000)
        _check("seed", self.seed, 0, 2**63 - 1, "use a seed >= 0")
        _check("list_length", self.list_length, 1, 100)
        _check("days", self.days, 1, 3650)
        _check("chunk_sessions", self.chunk_sessions, 1, 10_000_000)
        try:
            date.fromisoformat(self.start)
        except ValueError:
            raise InvalidInputError(
                f"start={self.start!r} is not an ISO date; use e.g. '2024-01-01'"
            ) from None
        self.catalog.validate()
        self.markets.validate(self.domains)
        self.user.validate()
        self.queries.validate()
        self.behaviour.validate()
        self.policy.validate()
        self.diversity.validate()
        self.launch.validate()

    def to_dict(self) -> dict[str, Any]:
        """Every parameter as plain JSON-ready values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationConfig:
        """Read back :meth:`to_dict`'s output (lists become tuples again)."""
        groups: dict[str, type[Any]] = {
            "catalog": CatalogParams,
            "markets": MarketParams,
            "user": UserParams,
            "queries": QueryParams,
            "behaviour": BehaviourParams,
            "policy": PolicyParams,
            "diversity": DiversityParams,
            "launch": LaunchParams,
        }
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in groups:
                values[key] = groups[key](**{k: _tuples(v) for k, v in value.items()})
            else:
                values[key] = value
        return cls(**values)

    def position_bias(self) -> tuple[float, ...]:
        """Examination probability for positions 1..list_length."""
        bias = self.behaviour.position_bias
        return tuple(bias[min(i, len(bias) - 1)] for i in range(self.list_length))


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
