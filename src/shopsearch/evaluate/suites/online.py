"""``shopsearch eval online``: an offline A/B test of two rankers on the simulator.

:func:`~shopsearch.simulate.replay.replay` plans ``sessions`` new sessions of the workspace's
simulated world from ``seed`` and lets each policy rank for them; both policies meet the same
users with the same needs and random numbers, so their difference is the effect of the ranking.
Policies:

* ``logging``: the simulator's own lexical policy (the one that logged the workspace);
* ``engine``: the workspace's current bundle, retrieval only (ranking stage switched off);
* ``engine+ranking``: the current bundle with its ranking stage (``shopsearch train --stage
  ranking``); fails clearly when the bundle has none;
* ``random``: random products of the request's domain;
* ``engine:FILE.toml``: the current bundle served with the settings of ``FILE.toml`` (any
  pipeline configuration: a pre-ranking, re-ranking or allocation stage switched on or off).

Metrics per policy: ``clicks``, ``carts``, ``purchases``, ``gmv`` (USD) and
``new_item_exposure`` (impressions of new products) per 1,000 requests, with 95% bootstrap CIs
over sessions (ratio of sums, sessions resampled). The entry
``shopsearch/diff`` (B - A) holds the paired difference and its CI (the same resampled
sessions in both arms). Policy systems are named ``baseline/<name>`` for ``logging`` and
``random`` and ``shopsearch/<name>`` for the engine policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.progress import Say
from shopsearch.simulate.policy import Ranking, RankingPolicy, RequestBatch
from shopsearch.simulate.replay import ReplayResult, replay
from shopsearch.store.workspace import Workspace

if TYPE_CHECKING:
    from shopsearch.pipeline.engine import Engine

F64 = npt.NDArray[np.float64]
POLICIES: tuple[str, ...] = ("logging", "engine", "engine+ranking", "random")
METRICS: tuple[str, ...] = ("clicks", "carts", "purchases", "gmv")
#: Also reported when the session totals have it: impressions of new products (created less
#: than the simulator's ``launch.new_days`` days before the logs began) per 1,000 requests.
NEW_ITEMS = "new_item_exposure"
#: Prefix of a policy serving the current bundle with a settings file: ``engine:FILE.toml``.
CONFIGURED = "engine:"


def _known() -> str:
    return f"{', '.join(POLICIES)} or {CONFIGURED}FILE.toml"


@dataclass(frozen=True)
class OnlineConfig:
    """Inputs of the online suite.

    Attributes:
        workspace: a simulated workspace with an index (``shopsearch index``).
        policies: the two policies ``(A, B)``; see :data:`POLICIES`.
        sessions: sessions replayed per policy.
        seed: seed of the replayed sessions and the bootstraps.
        n_resamples: bootstrap resamples.
    """

    workspace: Annotated[
        Path, option("Simulated workspace", flags=("--workspace", "-w"), metavar="W")
    ]
    policies: Annotated[
        tuple[str, str],
        option(
            "Two policies A,B: logging, engine, engine+ranking, random or engine:FILE.toml "
            "(the current bundle with those settings)"
        ),
    ] = ("logging", "engine")
    sessions: Annotated[int, option("Sessions replayed per policy")] = 2000
    seed: Annotated[int, option("Seed of the replayed sessions and bootstrap")] = 0
    n_resamples: int = 1000


class EnginePolicy(RankingPolicy):
    """The search engine as a simulator policy: each request's query searched in its domain.

    Args:
        engine: a loaded :class:`~shopsearch.pipeline.engine.Engine`.
        stream_sample: share of requests whose stream (what each stage passed on) is kept
            (:meth:`~shopsearch.simulate.policy.RankingPolicy.take_stream`).
    """

    name: ClassVar[str] = "engine"

    def __init__(self, engine: Engine, stream_sample: float = 0.0) -> None:
        self.engine = engine
        self.stream_sample = stream_sample

    def rank(self, batch: RequestBatch, k: int) -> Ranking:
        """The engine's top ``k`` (at most its page size limit) per request."""
        from shopsearch.pipeline.engine import SearchParams

        limits = self.engine.settings.search
        size = min(k, limits.max_size)
        lists: list[list[str]] = []
        for rid, query, domain, user in zip(
            batch.request_ids, batch.queries, batch.domains, batch.user_ids, strict=True
        ):
            params = SearchParams(
                query=query[: limits.max_query_chars],
                domain=domain,
                user_id=user,
                size=size,
                record_stream=self.sampled(rid),
            )
            response = self.engine.search(params)
            lists.append([item.product_id for item in response.items if item.domain == domain])
            for entry in response.stream or ():
                kept = [i for i, key in enumerate(entry.keys) if key[0] == domain]
                self.record_stream(
                    rid,
                    domain,
                    entry.stage,
                    [entry.keys[i][1] for i in kept],
                    [entry.scores[i] for i in kept],
                )
        return Ranking(lists)


def make_policy(name: str, ws: Workspace) -> RankingPolicy:
    """The policy called ``name`` for the workspace (see the module docstring).

    Raises:
        InvalidInputError: for an unknown name or ``engine+ranking`` without a ranking stage.
    """
    from shopsearch.simulate.lexical import LexicalNoisePolicy
    from shopsearch.simulate.persist import load_world
    from shopsearch.simulate.policy import RandomPolicy

    world = load_world(ws.dir("ground_truth"))
    if name == "logging":
        return LexicalNoisePolicy(world.catalog.table, world.config.policy, seed=world.config.seed)
    if name == "random":
        return RandomPolicy(world.catalog.table, seed=world.config.seed)
    from shopsearch.config import load_settings
    from shopsearch.pipeline.engine import Engine

    if name.startswith(CONFIGURED):
        path = Path(name.removeprefix(CONFIGURED))
        if not path.is_file():
            raise InvalidInputError(f"policy {name!r}: settings file {path} does not exist")
        return EnginePolicy(Engine.load(ws, load_settings(ws.root, path)))
    if name not in ("engine", "engine+ranking"):
        raise InvalidInputError(f"policy {name!r} is not known; use one of {_known()}")
    settings = load_settings(ws.root)
    ranking = settings.ranking.model_copy(update={"enabled": name == "engine+ranking"})
    engine = Engine.load(ws, settings.model_copy(update={"ranking": ranking}))
    if name == "engine+ranking" and engine.ranking is None:
        raise InvalidInputError(
            f"the current bundle of {ws.root} has no ranking stage; train one with "
            f"'shopsearch train -w {ws.root} --stage ranking --model dnn'"
        )
    return EnginePolicy(engine)


def session_totals(
    result: ReplayResult, fx: dict[str, float], new_products: frozenset[str] | None = None
) -> pd.DataFrame:
    """Per session: requests, clicks, carts, purchases and GMV (USD), indexed by session id;
    with ``new_products``, also the impressions of those products (``new_item_exposure``)."""
    if result.logs is None:
        raise InvalidInputError("the replay kept no logs; replay with keep_logs=True")
    requests = result.logs.requests.select(["request_id", "session_id", "domain"]).to_pandas()
    acts = result.logs.interactions.select(["request_id", "kind", "value"]).to_pandas()
    acts = acts.merge(requests, on="request_id")
    acts["usd"] = acts["value"] / acts["domain"].map(fx).fillna(1.0)
    out = pd.DataFrame({"requests": requests.groupby("session_id").size()})
    for metric, kind in (("clicks", "click"), ("carts", "add_to_cart"), ("purchases", "purchase")):
        out[metric] = acts[acts["kind"] == kind].groupby("session_id").size()
    out["gmv"] = acts[acts["kind"] == "purchase"].groupby("session_id")["usd"].sum()
    if new_products is not None:
        shown = result.logs.impressions.select(["request_id", "product_id"]).to_pandas()
        shown = shown[shown["product_id"].isin(new_products)].merge(requests, on="request_id")
        out[NEW_ITEMS] = shown.groupby("session_id").size()
    return out.fillna(0.0).astype(np.float64)


def _per_1k(frame: pd.DataFrame, counts: npt.NDArray[np.int64] | None) -> dict[str, F64]:
    """Per-1,000-request rates, for the sample (``counts=None``) or each bootstrap resample."""
    weights = np.ones((1, len(frame))) if counts is None else counts.astype(np.float64)
    requests = weights @ frame["requests"].to_numpy()
    return {
        m: 1000.0 * (weights @ frame[m].to_numpy()) / np.maximum(requests, 1.0)
        for m in _metrics(frame)
    }


def _metrics(frame: pd.DataFrame) -> tuple[str, ...]:
    return METRICS + ((NEW_ITEMS,) if NEW_ITEMS in frame.columns else ())


def compare(
    a: pd.DataFrame, b: pd.DataFrame, n_resamples: int, seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, tuple[float, float]]]]:
    """Rates, CIs and the paired difference (B - A) of two replays' session totals.

    Sessions are aligned by id (a session missing from one arm counts zero there).

    Returns:
        ``(metrics, ci)`` keyed by ``"a"``, ``"b"`` and ``"diff"``.
    """
    ids = a.index.union(b.index)
    a, b = a.reindex(ids, fill_value=0.0), b.reindex(ids, fill_value=0.0)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=n_resamples)
    point = {"a": _per_1k(a, None), "b": _per_1k(b, None)}
    boot = {"a": _per_1k(a, counts), "b": _per_1k(b, counts)}
    point["diff"] = {m: point["b"][m] - point["a"][m] for m in _metrics(a)}
    boot["diff"] = {m: boot["b"][m] - boot["a"][m] for m in _metrics(a)}
    metrics = {arm: {m: float(v[0]) for m, v in values.items()} for arm, values in point.items()}
    ci = {
        arm: {
            m: (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975)))
            for m, v in values.items()
        }
        for arm, values in boot.items()
    }
    return metrics, ci


def system_name(policy: str) -> str:
    """``baseline/`` for the simulator's policies, ``shopsearch/`` for the engine's."""
    return f"{'baseline' if policy in ('logging', 'random') else 'shopsearch'}/{policy}"


def run_online_suite(cfg: OnlineConfig, say: Say | None = None) -> Report:
    """Replay both policies on the same sessions and compare them (see the module docstring)."""
    tell = say or (lambda _message: None)
    first, second = cfg.policies
    for name in cfg.policies:
        if name not in POLICIES and not name.startswith(CONFIGURED):
            raise InvalidInputError(f"policy {name!r} is not known; use one of {_known()}")
    if first == second:
        raise InvalidInputError(f"both policies are {first!r}; compare two different policies")
    if cfg.sessions < 2:
        raise InvalidInputError(f"sessions={cfg.sessions} is not allowed; use sessions >= 2")
    ws = Workspace.open(cfg.workspace)
    sim_config = ws.dir("ground_truth") / "config.json"
    if not sim_config.exists():
        raise InvalidInputError(
            f"{cfg.workspace} is not a simulated workspace; build one with "
            f"'shopsearch simulate -w {cfg.workspace}'"
        )
    from shopsearch.simulate.persist import load_world

    world = load_world(ws.dir("ground_truth"))
    fx = {s.domain_id: float(s.fx) for s in world.markets.specs}
    new_products = frozenset(np.asarray(world.products.ids, dtype=object)[world.new_items])
    report = Report(
        suite="online",
        primary_metric=OnlineSuite.primary_metric,
        config={
            "workspace": cfg.workspace,
            "policies": list(cfg.policies),
            "sessions": cfg.sessions,
            "seed": cfg.seed,
            "n_resamples": cfg.n_resamples,
            "simulator": orjson.loads(sim_config.read_bytes()).get("config", {}),
        },
    )
    totals: list[pd.DataFrame] = []
    for name in cfg.policies:
        tell(f"replaying {cfg.sessions} sessions with {name}")
        with report.timer(f"replay/{name}"):
            policy = make_policy(name, ws)
            result = replay(world, policy, cfg.sessions, cfg.seed, keep_logs=True)
        totals.append(session_totals(result, fx, new_products))
    metrics, ci = compare(totals[0], totals[1], cfg.n_resamples, cfg.seed)
    for arm, name in (("a", first), ("b", second)):
        report.add_system(system_name(name), metrics[arm], ci[arm])
    report.add_system(
        "shopsearch/diff", metrics["diff"], ci["diff"], {"of": {"b": second, "a": first}}
    )
    report.dataset = {
        "sessions": cfg.sessions,
        **{
            f"requests/{n}": int(t["requests"].sum())
            for n, t in zip(cfg.policies, totals, strict=True)
        },
    }
    return report


@SUITES.register()
class OnlineSuite(Suite[OnlineConfig]):
    """Offline A/B test: the simulator replays the same sessions against two policies; clicks,
    carts, purchases and GMV per 1,000 requests with CIs and the paired difference B - A.

    Example: shopsearch eval online -w W --policies logging,engine+ranking --report r.json
    """

    name = "online"
    config_type = OnlineConfig
    primary_metric = "gmv"

    def run(self, config: OnlineConfig, say: Say) -> Report:
        """:func:`run_online_suite`."""
        return run_online_suite(config, say)


__all__ = [
    "POLICIES",
    "EnginePolicy",
    "OnlineConfig",
    "OnlineSuite",
    "compare",
    "make_policy",
    "run_online_suite",
    "session_totals",
]
