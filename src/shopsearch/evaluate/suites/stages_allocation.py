"""The allocation part of ``shopsearch eval stages``: MODRL-TA beside fixed-weight blends and no
allocation, over a multi-day replay of the simulator.

Every policy ranks with the workspace's current bundle with allocation switched off (its
``window`` first results, computed once per distinct request and shared by all policies), then
re-orders that window:

* ``baseline/no-allocation``: the ranked order;
* ``baseline/blend-<w>``: the fixed-weight blend ``(1 - w) / log2(2 + rank) + w * new``
  (:func:`~shopsearch.rerank.allocation.blend_order`), one per weight of
  ``allocation_blends``;
* ``shopsearch/modrl-ta``: :class:`~shopsearch.rerank.allocation.MODRLTA` trained on the
  workspace's logs (interactions simulated from them), then re-trained after every replayed
  day on the logs plus the live days so far (progressive data augmentation), serving one
  ensemble member per request (exploration) while it learns; its fusion weights are chosen on
  the ranked windows of the last 300 logged requests, then on the windows it served that day.

Each policy meets the same simulated users for ``allocation_days`` days of
``allocation_sessions`` sessions (:func:`~shopsearch.simulate.replay.replay_days`: day ``d`` has
the same users, needs and random numbers for every policy, and new products' sales carry over
from day to day, so exposure today can pay tomorrow). Metrics per 1,000 requests over all days:
``clicks_per_1k``, ``purchases_per_1k``, ``new_item_exposure_per_1k`` (impressions of new
products), ``new_item_purchases_per_1k``, and ``ndcg@10`` (true grades of the shown top 10
against the best 10 of the ranked window), each with a 95% bootstrap CI over sessions (the same
resamples for every policy, so differences are paired). The Pareto front of no-allocation and
the blends in (purchases, exposure) is drawn with MODRL-TA in ``<report stem>-pareto.png``; the
report gives MODRL-TA's exposure gap to the front at equal purchases and its purchase gap at
equal exposure (linear interpolation between front points), with paired CIs, and its paired
difference to every baseline in each metric (``paired_diff_vs``: difference, CI low, CI high).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.config import Settings, load_settings
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.stages import StagesConfig
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.progress import Say
from shopsearch.rerank.allocation import MODRLTA, blend_order
from shopsearch.rerank.allocation.logs import (
    allocation_frames,
    make_model,
    new_since,
    recent_requests,
)
from shopsearch.rerank.allocation.modrl_ta import LOG_COLUMNS
from shopsearch.simulate.persist import load_world
from shopsearch.simulate.policy import Ranking, RankingPolicy, RequestBatch
from shopsearch.simulate.replay import ReplayResult, replay_days
from shopsearch.simulate.world import World
from shopsearch.store.workspace import Workspace

F64 = npt.NDArray[np.float64]
Key = tuple[str, str]
METRICS = (
    "clicks_per_1k",
    "purchases_per_1k",
    "new_item_exposure_per_1k",
    "new_item_purchases_per_1k",
)
DAY = pd.Timedelta(days=1)
#: Recent logged requests whose ranked windows the first fusion weights are chosen on.
CEM_REQUESTS = 300


class BaseLists:
    """The engine's ranked window per distinct (query, domain, user), computed once."""

    def __init__(self, engine: Engine, window: int) -> None:
        self.engine = engine
        self.window = window
        self.cache: dict[tuple[str, str, str], list[Key]] = {}
        #: request id → its ranked window (for the ideal of ndcg@10).
        self.by_request: dict[str, list[Key]] = {}

    def get(self, request_id: str, query: str, domain: str, user: str) -> list[Key]:
        """The ranked window of one request."""
        key = (query, domain, user)
        if key not in self.cache:
            limits = self.engine.settings.search
            size = min(self.window, limits.max_size)
            params = SearchParams(
                query=query[: limits.max_query_chars], domain=domain, user_id=user, size=size
            )
            items = self.engine.search(params).items
            self.cache[key] = [(i.domain, i.product_id) for i in items if i.domain == domain]
        self.by_request[request_id] = self.cache[key]
        return self.cache[key]


class WindowPolicy(RankingPolicy):
    """Ranks with :class:`BaseLists` and re-orders each window with ``reorder``."""

    name: ClassVar[str] = "allocation"

    def __init__(
        self,
        base: BaseLists,
        reorder: Callable[[str, list[Key]], npt.NDArray[np.int64]],
    ) -> None:
        self.base = base
        self.reorder = reorder

    def rank(self, batch: RequestBatch, k: int) -> Ranking:
        """The re-ordered window's first ``k`` per request."""
        lists: list[list[str]] = []
        for rid, query, domain, user in zip(
            batch.request_ids, batch.queries, batch.domains, batch.user_ids, strict=True
        ):
            keys = self.base.get(rid, query, domain, user)
            order = self.reorder(rid, keys) if len(keys) > 1 else np.arange(len(keys))
            lists.append([keys[i][1] for i in order[:k].tolist()])
        return Ranking(lists)


def day_logs(
    result: ReplayResult, new: set[Key], start: pd.Timestamp, sim_days: int, day_start: pd.Timestamp
) -> pd.DataFrame:
    """One replayed day's impressions as allocation logs, timestamps mapped into that day."""
    assert result.logs is not None
    logs = result.logs
    requests = logs.requests.select(["request_id", "domain", "timestamp"]).to_pandas()
    shown = logs.impressions.select(["request_id", "product_id", "position"]).to_pandas()
    acts_frame = logs.interactions.select(["request_id", "product_id", "kind"]).to_pandas()
    acts_frame = acts_frame[acts_frame["kind"].isin(["click", "purchase"])]
    flags = pd.crosstab(
        [acts_frame["request_id"], acts_frame["product_id"]], acts_frame["kind"]
    ).reindex(columns=["click", "purchase"], fill_value=0)
    frame = shown.merge(requests, on="request_id")
    frame = frame.merge(flags.reset_index(), on=["request_id", "product_id"], how="left")
    frame["clicked"] = frame["click"].fillna(0).to_numpy() > 0
    frame["purchased"] = frame["purchase"].fillna(0).to_numpy() > 0
    keys = zip(frame["domain"], frame["product_id"], strict=True)
    frame["new"] = [k in new for k in keys]
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    frame["timestamp"] = day_start + (ts - start) / sim_days
    out: pd.DataFrame = frame[list(LOG_COLUMNS)]
    return out


def session_table(
    results: list[ReplayResult], new: set[Key], windows: dict[str, list[Key]]
) -> pd.DataFrame:
    """Per session over every day: requests, clicks, purchases, new-item impressions and
    purchases, judged requests and their summed ndcg@10."""
    frames = []
    for result in results:
        assert result.logs is not None
        logs = result.logs
        req = logs.requests.select(["request_id", "session_id", "domain"]).to_pandas()
        imp = logs.impressions.select(["request_id", "product_id", "position"]).to_pandas()
        imp = imp.merge(req[["request_id", "domain"]], on="request_id")
        imp["new"] = [k in new for k in zip(imp["domain"], imp["product_id"], strict=True)]
        acts = logs.interactions.select(["request_id", "product_id", "kind"]).to_pandas()
        acts = acts.merge(req[["request_id", "domain"]], on="request_id")
        acts["new"] = [k in new for k in zip(acts["domain"], acts["product_id"], strict=True)]
        ndcg = _ndcg(result, imp, windows)
        per_request = pd.DataFrame({"request_id": req["request_id"]})
        per_request["session_id"] = req["session_id"]
        per_request["requests"] = 1.0
        counts = {
            "clicks": acts[acts["kind"] == "click"].groupby("request_id").size(),
            "purchases": acts[acts["kind"] == "purchase"].groupby("request_id").size(),
            "new_purchases": acts[(acts["kind"] == "purchase") & acts["new"]]
            .groupby("request_id")
            .size(),
            "new_impressions": imp[imp["new"]].groupby("request_id").size(),
            "judged": (ndcg > -1).astype(np.float64),
            "ndcg": ndcg.clip(lower=0.0),
        }
        for name, series in counts.items():
            per_request[name] = per_request["request_id"].map(series).fillna(0.0)
        frames.append(per_request.drop(columns="request_id"))
    out = pd.concat(frames).groupby("session_id").sum()
    return out.astype(np.float64)


def _ndcg(result: ReplayResult, imp: pd.DataFrame, windows: dict[str, list[Key]]) -> pd.Series:
    """ndcg@10 per request id (``-1``: no relevant product in the window)."""
    rids: list[str] = []
    keys: list[Key] = []
    for rid in pd.unique(imp["request_id"]).tolist():
        for key in windows.get(rid, []):
            rids.append(rid)
            keys.append(key)
    grades = result.truth.relevance(rids, np.array(keys, dtype=object).reshape(-1, 2))
    table = pd.DataFrame({"request_id": rids, "domain": [k[0] for k in keys]})
    table["product_id"] = [k[1] for k in keys]
    table["gain"] = 2.0 ** grades.astype(np.float64) - 1.0
    ideal = (
        table.sort_values(["request_id", "gain"], ascending=[True, False])
        .groupby("request_id")
        .head(10)
    )
    ideal = ideal.assign(rank=ideal.groupby("request_id").cumcount() + 1)
    idcg = (ideal["gain"] / np.log2(1.0 + ideal["rank"])).groupby(ideal["request_id"]).sum()
    top = imp[imp["position"] <= 10].merge(table, on=["request_id", "domain", "product_id"])
    dcg = (top["gain"] / np.log2(1.0 + top["position"])).groupby(top["request_id"]).sum()
    ratio = dcg.reindex(idcg.index, fill_value=0.0) / idcg.where(idcg > 0)
    out: pd.Series = ratio.fillna(-1.0)
    return out


def rates(frame: pd.DataFrame, counts: npt.NDArray[np.int64] | None) -> dict[str, F64]:
    """Per-1k rates and ndcg@10 for the sample (``None``) or each bootstrap resample."""
    weights = np.ones((1, len(frame))) if counts is None else counts.astype(np.float64)
    requests = np.maximum(weights @ frame["requests"].to_numpy(), 1.0)
    judged = np.maximum(weights @ frame["judged"].to_numpy(), 1.0)

    def per_1k(column: str) -> F64:
        out: F64 = 1000.0 * (weights @ frame[column].to_numpy()) / requests
        return out

    return {
        "ndcg@10": (weights @ frame["ndcg"].to_numpy()) / judged,
        "clicks_per_1k": per_1k("clicks"),
        "purchases_per_1k": per_1k("purchases"),
        "new_item_exposure_per_1k": per_1k("new_impressions"),
        "new_item_purchases_per_1k": per_1k("new_purchases"),
    }


def front(points: F64) -> F64:
    """The Pareto front (both coordinates higher is better) of ``(n, 2)`` points, sorted by
    the first coordinate."""
    keep = [
        i
        for i, p in enumerate(points)
        if not any(
            (q[0] >= p[0]) and (q[1] >= p[1]) and ((q[0] > p[0]) or (q[1] > p[1])) for q in points
        )
    ]
    chosen = points[keep]
    out: F64 = chosen[np.argsort(chosen[:, 0], kind="stable")]
    return out


def gaps(point: F64, points: F64) -> tuple[float, float]:
    """``point``'s exposure above the front's at equal purchases and its purchases above the
    front's at equal exposure (linear between front points; beyond the front's range the
    nearest end point); positive: outside the front."""
    edge = front(points)
    exposure_at = float(np.interp(point[0], edge[:, 0], edge[:, 1]))
    by_exposure = edge[np.argsort(edge[:, 1], kind="stable")]
    purchases_at = float(np.interp(point[1], by_exposure[:, 1], by_exposure[:, 0]))
    return float(point[1] - exposure_at), float(point[0] - purchases_at)


def measure(config: StagesConfig, report: Report, say: Say) -> None:
    """Run the allocation part (see the module docstring)."""
    ws = Workspace.open(config.workspace)
    world = load_world(ws.dir("ground_truth"))
    settings = load_settings(ws.root)
    off = settings.allocation.model_copy(update={"enabled": False})
    engine = Engine.load(ws, settings.model_copy(update={"allocation": off}))
    base = BaseLists(engine, settings.allocation.window)
    con = ws.connect()
    since = new_since(con, settings.allocation.new_days)
    logs, catalog = allocation_frames(con, since)
    if logs.empty:
        raise InvalidInputError(f"{config.workspace} has no logged impressions")
    new = {
        (str(d), str(p))
        for d, p, n in catalog[["domain", "product_id", "new"]].itertuples(index=False)
        if n
    }
    days, sessions = config.allocation_days, config.allocation_sessions
    say(f"allocation: {len(new)} new products; {days} days x {sessions} sessions per policy")
    tables: dict[str, pd.DataFrame] = {}
    extras: dict[str, dict[str, Any]] = {}

    def run(
        name: str, policy: WindowPolicy, after: Callable[[int, ReplayResult], None] | None
    ) -> None:
        say(f"allocation: replaying {name}")
        with report.timer(f"allocation/{name}"):
            results = replay_days(world, policy, days, sessions, config.seed, after_day=after)
        tables[name] = session_table(results, new, base.by_request)

    def is_new(keys: list[Key]) -> npt.NDArray[np.bool_]:
        return np.array([k in new for k in keys], dtype=bool)

    run(
        "baseline/no-allocation",
        WindowPolicy(base, lambda _rid, keys: np.arange(len(keys))),
        None,
    )

    def blend(w: float) -> Callable[[str, list[Key]], npt.NDArray[np.int64]]:
        return lambda _rid, keys: blend_order(is_new(keys), w)

    for w in config.allocation_blends:
        run(f"baseline/blend-{w:g}", WindowPolicy(base, blend(w)), None)
        extras[f"baseline/blend-{w:g}"] = {"blend": {"weight": w}}
    recent = recent_requests(con, CEM_REQUESTS)
    windows = [base.get(f"logged-{i}", *r) for i, r in enumerate(recent)]
    model, history = _modrl(config, settings, logs, catalog, windows, say)
    members = model.members
    served: list[list[Key]] = []

    def allocate(rid: str, keys: list[Key]) -> npt.NDArray[np.int64]:
        member = zlib.crc32(rid.encode()) % members
        served.append(keys)
        return model_box[0].allocate(model_box[0].state(keys), member=member).order

    model_box = [model]
    live = [logs]
    end = pd.Timestamp(logs["timestamp"].max())
    first_live = end.normalize() + DAY
    start = pd.Timestamp(world.config.start, tz="UTC")

    def after_day(day: int, result: ReplayResult) -> None:
        live.append(day_logs(result, new, start, world.config.days, first_live + day * DAY))
        if day + 1 < days:
            refit = make_model(settings.allocation, config.seed).fit(
                pd.concat(live, ignore_index=True), catalog, end, model_box[0].weights_, served
            )
            served.clear()
            model_box[0] = refit
            history.append({"day": day + 1, **refit.info_})

    run("shopsearch/modrl-ta", WindowPolicy(base, allocate), after_day)
    extras["shopsearch/modrl-ta"] = {"fits": {"by_day": history}, "params": model.config()}
    _report(config, report, settings, world, tables, extras, say)


def _modrl(
    config: StagesConfig,
    settings: Settings,
    logs: pd.DataFrame,
    catalog: pd.DataFrame,
    windows: list[list[Key]],
    say: Say,
) -> tuple[MODRLTA, list[dict[str, Any]]]:
    """MODRL-TA fitted on the workspace's logs (simulated interactions only), its fusion
    weights chosen on ``windows``."""
    say("allocation: fitting MODRL-TA on the logs")
    model = make_model(settings.allocation, config.seed).fit(logs, catalog, None, None, windows)
    return model, [{"day": 0, **model.info_}]


def _report(
    config: StagesConfig,
    report: Report,
    settings: Settings,
    world: World,
    tables: dict[str, pd.DataFrame],
    extras: dict[str, dict[str, Any]],
    say: Say,
) -> None:
    ids = tables["baseline/no-allocation"].index
    for name in tables:
        ids = ids.union(tables[name].index)
    aligned = {n: t.reindex(ids, fill_value=0.0) for n, t in tables.items()}
    rng = np.random.default_rng(config.seed)
    counts = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), config.n_resamples)
    point = {n: {m: float(v[0]) for m, v in rates(t, None).items()} for n, t in aligned.items()}
    boot = {n: rates(t, counts) for n, t in aligned.items()}
    part = {
        "name": "allocation",
        "days": config.allocation_days,
        "sessions_per_day": config.allocation_sessions,
        "allocation": settings.allocation.model_dump(mode="json"),
        "simulator_launch": world.config.to_dict()["launch"],
    }
    blends = [n for n in tables if n != "shopsearch/modrl-ta"]
    coords = ("purchases_per_1k", "new_item_exposure_per_1k")
    pareto: dict[str, Any] = {}
    if "shopsearch/modrl-ta" in tables:
        pts = np.array([[point[n][c] for c in coords] for n in blends])
        me = np.array([point["shopsearch/modrl-ta"][c] for c in coords])
        gap_exposure, gap_purchases = gaps(me, pts)
        boot_gaps = np.array(
            [
                gaps(
                    np.array([boot["shopsearch/modrl-ta"][c][r] for c in coords]),
                    np.array([[boot[n][c][r] for c in coords] for n in blends]),
                )
                for r in range(config.n_resamples)
            ]
        )
        dominated_by = [
            n
            for n, p in zip(blends, pts, strict=True)
            if p[0] >= me[0] and p[1] >= me[1] and (p[0] > me[0] or p[1] > me[1])
        ]
        front_names = [
            n for n, p in zip(blends, pts, strict=True) if any((p == f).all() for f in front(pts))
        ]
        paired = {
            n: {
                m: [
                    point["shopsearch/modrl-ta"][m] - point[n][m],
                    *_interval(boot["shopsearch/modrl-ta"][m] - boot[n][m]),
                ]
                for m in ("ndcg@10", *METRICS)
            }
            for n in blends
        }
        pareto = {
            "paired_diff_vs": paired,
            "front": front_names,
            "dominated_by": dominated_by,
            "exposure_gap_at_equal_purchases": gap_exposure,
            "exposure_gap_ci95": _interval(boot_gaps[:, 0]),
            "purchases_gap_at_equal_exposure": gap_purchases,
            "purchases_gap_ci95": _interval(boot_gaps[:, 1]),
            "outside_front": bool(
                _interval(boot_gaps[:, 0])[0] > 0 or _interval(boot_gaps[:, 1])[0] > 0
            ),
        }
        say(f"allocation: MODRL-TA vs the blends' front: {pareto}")
    for name in tables:
        ci = {m: _interval(v) for m, v in boot[name].items()}
        extra: dict[str, Any] = {"part": part, **extras.get(name, {})}
        if name == "shopsearch/modrl-ta":
            extra["pareto"] = pareto
        report.add_system(name, point[name], ci, extra)
    report.dataset["allocation"] = {
        "sessions": len(ids),
        "new_products": int(world.new_items.sum()),
        **{f"requests/{n}": int(t["requests"].sum()) for n, t in tables.items()},
    }
    if config.report_path is not None:
        png = _plot(config.report_path, point, boot, blends)
        report.dataset["allocation"]["pareto_png"] = str(png)


def _interval(values: F64) -> tuple[float, float]:
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def _plot(
    report_path: Path,
    point: dict[str, dict[str, float]],
    boot: dict[str, dict[str, F64]],
    blends: list[str],
) -> Path:
    """Purchases vs new-item exposure per 1k requests: the blends, their front, MODRL-TA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = "purchases_per_1k", "new_item_exposure_per_1k"
    fig, ax = plt.subplots(figsize=(7, 5))
    pts = np.array([[point[n][x], point[n][y]] for n in blends])
    edge = front(pts)
    ax.plot(edge[:, 0], edge[:, 1], "-", color="grey", label="Pareto front of the blends")
    for name in [*blends, "shopsearch/modrl-ta"]:
        if name not in point:
            continue
        bx, by = _interval(boot[name][x]), _interval(boot[name][y])
        px, py = point[name][x], point[name][y]
        ours = name.startswith("shopsearch/")
        ax.errorbar(
            px,
            py,
            xerr=[[px - bx[0]], [bx[1] - px]],
            yerr=[[py - by[0]], [by[1] - py]],
            fmt="*" if ours else "o",
            color="tab:red" if ours else "tab:blue",
            markersize=12 if ours else 6,
            capsize=2,
            alpha=0.8,
        )
        ax.annotate(name.split("/", 1)[1], (px, py), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("purchases per 1,000 requests")
    ax.set_ylabel("new-item impressions per 1,000 requests")
    ax.set_title("Traffic allocation: blends vs MODRL-TA (95% CIs)")
    ax.legend(loc="best")
    fig.tight_layout()
    out = report_path.with_name(f"{report_path.stem}-pareto.png")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
