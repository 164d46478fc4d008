"""A synthetic multi-market shop and a user / click / funnel simulator, ground truth kept apart.

The rest of shopsearch trains on the simulator's logs and is evaluated on its ground truth, so the
simulator is calibrated to public figures, deterministic per seed, and honest: every preference it
uses shows up only in logged behaviour, prices and text, never in anything a model reads.

Generative story (parameters and defaults: :mod:`shopsearch.simulate.config`)
-----------------------------------------------------------------------------
1. **Universe** (:mod:`~shopsearch.simulate.worldgen`, :mod:`~shopsearch.simulate.vocab`): a
   3-level category tree with 24 leaves (Furniture > Living Room > Sofas, Electronics > Audio >
   Headphones, Apparel > Shoes > Running Shoes, ...), brands per top-level category with a latent
   quality, products with a leaf, a brand, 3-4 attributes (colour, material, size, style, ...), a
   latent quality and a log-normal price per leaf.
2. **Markets** (``domains``; us, gb, au, ca, ie, nz, in, sg): each carries an overlapping subset of
   the universe under the same product ids, in local currency and price level, with titles and
   descriptions in its regional words ("Couch"/"Sofa"/"Settee", "Sneakers"/"Trainers",
   "Cell Phone"/"Mobile", "Pants"/"Trousers", "Gray"/"Grey", "US 9"/"UK 8", ...), its own brand
   and category preferences, price sensitivity and traffic share (one data-rich market, the
   others 5-20x smaller: 0.78/0.14/0.08 for 3 markets). A few % of products are out of stock.
3. **Users**: a home market, heavy-tailed activity (many long-tail users with one or two
   sessions), category interests, a brand-taste vector, a price sensitivity around the market's
   and a personal click propensity.
4. **Sessions** (:mod:`~shopsearch.simulate.sessions`): over ``days`` days a user (by activity)
   has a need - a leaf from their interests and a wanted product chosen by brand affinity,
   quality and price fit - insisting on some of its brand/attributes. They type some of those in
   their market's words (the rest stay hidden), with typos (~7% of queries) and abbreviations, and
   refine the query up to 3 requests per session.
5. **Ranking**: a pluggable :class:`RankingPolicy` shows ``list_length`` products; by default
   :class:`LexicalNoisePolicy` (BM25 over the market's titles, Plackett-Luce noise per request,
   random completion when few titles match).
6. **Behaviour** (:mod:`~shopsearch.simulate.behaviour`, :mod:`~shopsearch.simulate.run`): each
   position is examined with a position bias; examined products are clicked, added to the cart
   and bought with logistic probabilities of the true grade (0-3: leaf and insisted-on fields
   matched), brand affinity, relative price times price sensitivity, and quality. Irrelevant
   items get clicked, relevant ones skipped; out-of-stock items are never bought. A purchase ends
   the session; otherwise the user may refine. **Appetite for variety** (issue 16;
   :class:`DiversityParams`): each user has a latent appetite in [0, 1] (Beta(0.5, 0.5):
   mostly clearly focused or clearly browsing); an examined product's click logit falls by
   ``satiation * appetite * redundancy``, its redundancy being its largest similarity (same leaf:
   half brand, half shared attribute values) to a product examined above it. Focused users
   judge each product alone; browsing users tire of near-duplicates, so a varied list earns
   them more clicks and purchases. The truth keeps every user's appetite
   (:meth:`GroundTruth.appetite`).
7. **Logs and truth**: the workspace tables (domains, products, requests, impressions,
   interactions) hold only what a shop would log; ``W/ground_truth/`` holds the config, the world
   and the need behind every request, and :class:`GroundTruth` answers true relevance and purchase
   propensity for any (request, product) pair.
8. **New products** (:mod:`~shopsearch.simulate.launch`): products created less than
   ``launch.new_days`` days before the logs begin start below their latent quality (no sales
   history) and become more attractive with every sale; a multi-day replay
   (:func:`replay_days`) carries their sales from day to day, so exposure has long-term value.

Calibration
-----------
Targets: clicked positions like the trivago RecSys 2019 clickouts (1: 31%, 2: 11%, 3: 7.5%,
4: 5.7%, 5: 5%, 23% beyond position 10 of 25 shown); a funnel like Ali-CCP (about 4% of
impressions clicked, carts in between, purchases on the order of 1% of clicks). Realised with the
defaults (3 domains, 2,000 products, 5,000 users, 20,000 sessions, seed 7, 20 shown; the
appetite for variety and new products' cold start both on): CTR 3.84%, carts 7.2% of clicks,
purchases 0.88% of clicks (12.3% of carts); clicked positions 1-5: 34.5%, 11.0%, 7.9%, 5.8%,
4.9%, beyond 10: 18.6% of clicks; CTR by true grade 0/1/2/3: 0.60%, 1.7%, 3.8%, 6.9%; typos in
6.9% of queries. Focused users (appetite < 0.5) click 4.07% of what they are shown, browsing
users 3.62% (the logging policy's lists are full of near-duplicates). New products (3.8% of
products) get 3.9% of impressions and 4.1%, 4.0% and 5.7% of clicks, carts and purchases (12 of
212 purchases). Each effect alone, the same run: the appetite for variety alone gave CTR 3.83%,
clicked positions 1-5 34.7%, 11.1%, 7.8%, 5.8%, 4.8%; the cold start alone CTR 4.18%, new
products' shares 3.9%, 3.1% and 3.0% of clicks, carts and purchases. Before either (``satiation
= 0`` reproduces the logs without the appetite exactly) it gave CTR
4.20%, carts 6.9% and purchases 0.85% of clicks, clicked positions 1-5 31.6%, 11.1%, 8.0%,
6.1%, 5.1%, beyond 10 20.0%, CTR by grade 0.66%, 1.9%, 4.3%, 7.4%: satiation moves the clicks
towards position 1 (nothing above it tires anyone), by 3 points, and lowers the CTR by 0.4
points; the tests' tolerances hold. Every simulation reports its own realised rates in
:class:`SimulationSummary` (also ``ground_truth/summary.json``).

Entry points: :func:`simulate` (world + logs + truth into a workspace), :func:`replay` (any
policy against the same simulated users; offline A/B tests), :class:`GroundTruth` (evaluation),
:func:`planned_truth` (truth of a replay's requests before it runs).
"""

from __future__ import annotations

from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import (
    BehaviourParams,
    CatalogParams,
    DiversityParams,
    LaunchParams,
    MarketParams,
    PolicyParams,
    QueryParams,
    SimulationConfig,
    UserParams,
)
from shopsearch.simulate.lexical import LexicalNoisePolicy
from shopsearch.simulate.persist import load_world, save_world
from shopsearch.simulate.policy import (
    RandomPolicy,
    Ranking,
    RankingPolicy,
    RankMatrix,
    RequestBatch,
)
from shopsearch.simulate.replay import (
    ReplayResult,
    SimulatedLogs,
    planned_truth,
    replay,
    replay_days,
)
from shopsearch.simulate.summary import DomainStats, SimulationSummary
from shopsearch.simulate.truth import GroundTruth
from shopsearch.simulate.world import World
from shopsearch.simulate.worldgen import generate_world

__all__ = [
    "BehaviourParams",
    "CatalogParams",
    "DiversityParams",
    "DomainStats",
    "GroundTruth",
    "LaunchParams",
    "LexicalNoisePolicy",
    "MarketParams",
    "PolicyParams",
    "QueryParams",
    "RandomPolicy",
    "RankMatrix",
    "Ranking",
    "RankingPolicy",
    "ReplayResult",
    "RequestBatch",
    "SimulatedLogs",
    "SimulationConfig",
    "SimulationSummary",
    "UserParams",
    "World",
    "generate_world",
    "load_world",
    "planned_truth",
    "replay",
    "replay_days",
    "save_world",
    "simulate",
]
