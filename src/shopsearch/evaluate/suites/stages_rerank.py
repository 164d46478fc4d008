"""The ``rerank`` part of ``shopsearch eval stages``: PODM-MI beside MMR, DPP and no re-ranking.

1. **Train**: PODM-MI is fitted on the workspace's logged lists (as ``shopsearch train --stage
   rerank`` does; :func:`~shopsearch.rerank.diversity.train.fit_podm_mi`).
2. **Lists to re-rank**: the requests of ``rerank_sessions`` replay sessions planned from
   ``seed`` (:func:`~shopsearch.simulate.replay.planned_truth`: the same simulated users, new
   needs) are searched with the current bundle, re-ranking switched off, keeping the top
   ``[rerank] depth`` (with the ranking stage when the bundle has one). Requests with fewer
   than 2 results are left out.
3. **Re-rank** each list with every system (the same facet similarity from the catalog) and
   score the first 10 against the ground truth:

   * ``ndcg@10``: graded (0-3) NDCG, ideal from the list's own candidates;
   * ``alpha_ndcg@10`` (alpha = 0.5; Clarke et al. 2008): the **subtopics** of a request are
     the facet values of its need's leaf - each brand and each (attribute slot, value) - and a
     candidate of the wanted leaf (grade >= 1) covers its own brand and values, weighted by
     grade / 3; candidates of other leaves cover nothing. Ideal by the usual greedy over the
     list's candidates;
   * ``alpha_ndcg@10_user``: the same with alpha = the requesting user's true appetite for
     variety (a focused user's is ~0: plain relevance; a browsing user's ~1);
   * ``ild``: intra-list diversity, the mean of ``1 - similarity`` over pairs of the first
     10, with the simulator's true similarity (:func:`~shopsearch.simulate.behaviour.
     similarity`: the one that tires browsing users);
   * ``coverage``: the share of the subtopics the list's relevant candidates cover that the
     relevant candidates of the first 10 cover (subtopic recall).

   95% bootstrap CIs over requests; ``extra.vs_no_rerank`` holds each metric's paired
   difference from ``baseline/no-rerank`` with its CI. Besides the configured baselines, MMR
   at lambda 0.5 / 0.9 and DPP at theta 0.5 / 0.9 show the baselines' trade-off curves
   (settings are never chosen on this truth). ``extra.model`` of PODM-MI holds the rank
   correlation of its learned per-user strength with the users' true appetite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.config import load_settings
from shopsearch.evaluate.metrics import bootstrap_ci
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.stages import StagesConfig
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.progress import Say
from shopsearch.rerank.diversity.base import (
    FACET_COLUMNS,
    DiversityReranker,
    ProductFacets,
    Reranked,
    facet_similarity,
    identity,
)
from shopsearch.rerank.diversity.dpp import DPPReranker
from shopsearch.rerank.diversity.mmr import MMRReranker
from shopsearch.rerank.diversity.podm_mi import PODMMIReranker, strength_of
from shopsearch.rerank.diversity.train import fit_podm_mi
from shopsearch.simulate.behaviour import similarity
from shopsearch.simulate.replay import planned_truth
from shopsearch.simulate.truth import GroundTruth
from shopsearch.simulate.world import World
from shopsearch.store.workspace import Workspace

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Cut-off of every metric.
K = 10
#: The standard alpha of alpha-NDCG.
ALPHA = 0.5
METRICS = ("ndcg@10", "alpha_ndcg@10", "alpha_ndcg@10_user", "ild", "coverage")


@dataclass(frozen=True)
class RankedList:
    """One request's list to re-rank and its truth."""

    request_id: str
    user: str
    keys: list[tuple[str, str]]
    scores: F64
    similarity: F64  # catalog facets, what the re-rankers see
    grade: I64
    items: I64  # world product indices
    appetite: float


class _Identity(DiversityReranker):
    name = "no-rerank"

    def _rerank(self, scores: F64, similarity: F64, user: str | None, k: int) -> Reranked:
        return identity(len(scores))


def _dcg_discount(n: int) -> F64:
    out: F64 = 1.0 / np.log2(np.arange(2, n + 2))
    return out


def ndcg(grades: I64, order: I64, k: int = K) -> float:
    """Graded NDCG@k of ``order`` (indices into ``grades``), ideal from the same candidates."""
    gains = (2.0 ** grades.astype(np.float64)) - 1.0
    top = gains[order[:k]]
    ideal = np.sort(gains)[::-1][:k]
    best = float((ideal * _dcg_discount(ideal.size)).sum())
    return float((top * _dcg_discount(top.size)).sum()) / best if best > 0 else 0.0


def subtopics(world: World, items: I64, grade: I64) -> tuple[list[list[int]], F64]:
    """Per candidate: the subtopic codes it covers (brand, then slot values; none when
    irrelevant) and its weight ``grade / 3``."""
    products = world.products
    covered: list[list[int]] = []
    for item, g in zip(items.tolist(), grade.tolist(), strict=True):
        if g <= 0:
            covered.append([])
            continue
        codes = [int(products.brand[item])]
        slots = int(world.lexicon.slot_counts[products.leaf[item]])
        codes += [
            1_000_000 * (s + 1) + int(products.attrs[item, s])
            for s in range(slots)
            if products.attrs[item, s] >= 0
        ]
        covered.append(codes)
    return covered, grade.astype(np.float64) / 3.0


def _alpha_dcg(order: list[int], covered: list[list[int]], weight: F64, alpha: float) -> float:
    seen: dict[int, int] = {}
    total = 0.0
    for rank, i in enumerate(order):
        gain = sum((1.0 - alpha) ** seen.get(t, 0) for t in covered[i]) * weight[i]
        total += gain / np.log2(rank + 2)
        if weight[i] > 0:
            for t in covered[i]:
                seen[t] = seen.get(t, 0) + 1
    return total


def alpha_ndcg(
    order: I64, covered: list[list[int]], weight: F64, alpha: float = ALPHA, k: int = K
) -> float:
    """alpha-NDCG@k of ``order``; the ideal is the greedy one over the same candidates."""
    got = _alpha_dcg(order[:k].tolist(), covered, weight, alpha)
    remaining = list(range(len(covered)))
    chosen: list[int] = []
    seen: dict[int, int] = {}
    for _ in range(min(k, len(remaining))):
        gains = [
            sum((1.0 - alpha) ** seen.get(t, 0) for t in covered[i]) * weight[i] for i in remaining
        ]
        best = remaining.pop(int(np.argmax(gains)))
        chosen.append(best)
        if weight[best] > 0:
            for t in covered[best]:
                seen[t] = seen.get(t, 0) + 1
    ideal = _alpha_dcg(chosen, covered, weight, alpha)
    return got / ideal if ideal > 0 else 0.0


def coverage(order: I64, covered: list[list[int]], k: int = K) -> float:
    """Share of the list's subtopics (of its relevant candidates) the first ``k`` cover."""
    every = {t for c in covered for t in c}
    if not every:
        return 0.0
    top = {t for i in order[:k].tolist() for t in covered[i]}
    return len(top) / len(every)


def ild(world: World, items: I64, order: I64, k: int = K) -> float:
    """Mean ``1 - similarity`` over pairs of the first ``k`` (the simulator's similarity)."""
    top = items[order[:k]].astype(np.int32)
    if top.size < 2:
        return 0.0
    sim = similarity(world, top[:, None], top[None, :])
    upper = np.triu_indices(top.size, 1)
    return float((1.0 - sim[upper]).mean())


def ranked_lists(ws: Workspace, truth: GroundTruth, depth: int, say: Say) -> list[RankedList]:
    """Search every planned request with the current bundle (re-ranking off)."""
    settings = load_settings(ws.root)
    settings = settings.model_copy(
        update={"rerank": settings.rerank.model_copy(update={"enabled": False})}
    )
    engine = Engine.load(ws, settings)
    facets = ProductFacets(ws.table("products", list(FACET_COLUMNS)))
    world = truth.world
    table = truth.requests
    ids = table.column("request_id").to_pylist()
    queries = table.column("query").to_pylist()
    domains = table.column("domain").to_pylist()
    users = table.column("user_id").to_pylist()
    appetite = truth.appetite(ids)
    size = min(depth, settings.search.max_size)
    out: list[RankedList] = []
    for n, (rid, query, domain, user) in enumerate(zip(ids, queries, domains, users, strict=True)):
        if n and n % 500 == 0:
            say(f"rerank: searched {n}/{len(ids)} requests")
        text = (query or "")[: settings.search.max_query_chars]
        if not text.strip():
            continue
        items = engine.search(SearchParams(text, domain=domain, user_id=user, size=size)).items
        keys = [(i.domain, i.product_id) for i in items if i.domain == domain]
        if len(keys) < 2:
            continue
        grade = truth.relevance([rid] * len(keys), keys).astype(np.int64)
        index = world.products.index.get_indexer(pd.Index([p for _, p in keys])).astype(np.int64)
        out.append(
            RankedList(
                request_id=rid,
                user=user,
                keys=keys,
                scores=np.array([i.score for i in items if i.domain == domain]),
                similarity=facet_similarity(facets.rows(keys, fallback=engine.products.get)),
                grade=grade,
                items=index,
                appetite=float(appetite[n]),
            )
        )
    return out


def _systems(
    settings_lambda: float, settings_theta: float, podm: PODMMIReranker
) -> dict[str, DiversityReranker]:
    systems: dict[str, DiversityReranker] = {
        "baseline/no-rerank": _Identity(),
        "baseline/mmr": MMRReranker(settings_lambda),
        "baseline/dpp": DPPReranker(settings_theta),
        "shopsearch/podm-mi": podm,
    }
    for lam in (0.5, 0.9):
        if lam != settings_lambda:
            systems[f"baseline/mmr-lambda{lam}"] = MMRReranker(lam)
    for theta in (0.5, 0.9):
        if theta != settings_theta:
            systems[f"baseline/dpp-theta{theta}"] = DPPReranker(theta)
    return systems


def score_lists(
    world: World, lists: list[RankedList], system: DiversityReranker
) -> tuple[dict[str, F64], float]:
    """Per-request values of every metric of one system, and the share of lists whose first
    10 changed."""
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    changed = 0
    for item in lists:
        order = system.rerank(item.scores, item.similarity, item.user, len(item.scores)).order
        covered, weight = subtopics(world, item.items, item.grade)
        values["ndcg@10"].append(ndcg(item.grade, order))
        values["alpha_ndcg@10"].append(alpha_ndcg(order, covered, weight))
        values["alpha_ndcg@10_user"].append(alpha_ndcg(order, covered, weight, item.appetite))
        values["ild"].append(ild(world, item.items, order))
        values["coverage"].append(coverage(order, covered))
        top = min(K, order.size)
        changed += int((order[:top] != np.arange(top)).any())
    return {m: np.array(v) for m, v in values.items()}, changed / max(len(lists), 1)


def measure(config: StagesConfig, report: Report, say: Say) -> None:
    """Train PODM-MI, re-rank the engine's lists with every system, add them to ``report``."""
    ws = Workspace.open(config.workspace)
    settings = load_settings(ws.root).rerank
    say("rerank: fitting PODM-MI on the logged lists")
    podm = fit_podm_mi(ws, settings, config.seed, say)
    truth = planned_truth(ws, config.rerank_sessions, config.seed)
    lists = ranked_lists(ws, truth, settings.depth, say)
    if not lists:
        say("rerank: no request had 2 or more results; nothing to re-rank")
        return
    world = truth.world
    users = sorted({item.user for item in lists})
    known = [u for u in users if u in set(podm.users_)]
    strength = strength_of(podm, known)
    true_appetite = world.users.variety[world.users.index.get_indexer(pd.Index(known))]
    rho = (
        float(
            np.corrcoef(np.argsort(np.argsort(strength)), np.argsort(np.argsort(true_appetite)))[
                0, 1
            ]
        )
        if len(known) > 2
        else float("nan")
    )
    browsing = true_appetite >= 0.5
    common = {
        "name": "rerank",
        "depth": settings.depth,
        "lists": len(lists),
        "sessions": config.rerank_sessions,
        "k": K,
        "alpha": ALPHA,
    }
    baseline: dict[str, F64] = {}
    for name, system in _systems(settings.mmr_lambda, settings.dpp_theta, podm).items():
        say(f"rerank: scoring {name}")
        values, changed = score_lists(world, lists, system)
        if name == "baseline/no-rerank":
            baseline = values
        metrics = {m: float(v.mean()) for m, v in values.items()}
        ci = {m: bootstrap_ci(v, config.n_resamples, seed=config.seed) for m, v in values.items()}
        diffs = {}
        for m, v in values.items():
            d = v - baseline[m]
            low, high = bootstrap_ci(d, config.n_resamples, seed=config.seed)
            diffs[m] = {"mean": float(d.mean()), "ci95": [low, high]}
        params = {key: getattr(system, key) for key in system.config_keys}
        extra: dict[str, object] = {
            "part": {**common, "method": system.name, "params": params},
            "vs_no_rerank": diffs,
            "changed_top10_share": {"value": changed},
        }
        if system is podm:
            extra["model"] = {
                **podm.info_,
                "beta": podm.beta_,
                "strength_appetite_spearman": rho,
                "users_compared": len(known),
                "mean_strength_focused": float(strength[~browsing].mean())
                if (~browsing).any()
                else None,
                "mean_strength_browsing": float(strength[browsing].mean())
                if browsing.any()
                else None,
            }
        report.add_system(name, metrics, ci, extra=extra)
