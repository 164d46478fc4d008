"""``shopsearch eval transfer --dataset sim``: cross-market transfer on a simulated shop.

Protocol (issue 7):

1. The workspace's impressions become samples (:mod:`shopsearch.ranking.samples`); the last
   ``test_fraction`` of requests by time are the test split (as in ``eval ranking --dataset
   sim``).
2. The *source* market is ``--source`` (default: the market with the most training requests —
   ``us`` in the default 3-market simulation, 78% of traffic); the others are *targets*.
3. For each target fraction ``f`` (default 1%, 5%, 20%, 100%), every target market keeps a
   seeded ``f`` of its *training requests* (:func:`~shopsearch.transfer.protocol.subsample_target`);
   the source keeps all of them. A feature encoder is fitted on that training set and every
   method of :data:`~shopsearch.transfer.registry.METHODS` is trained on it
   (:func:`~shopsearch.transfer.protocol.train_transfer`); ``zero-shot`` never sees target rows,
   so it is trained once (fraction 1 encoder) and reported without a fraction.
4. On the target markets' test impressions, scored as at serving (position unknown):
   ``auc`` (click AUC), ``gauc`` (click AUC per request, impression-weighted) and ``ndcg@10`` of
   each request's shown items ordered by the ranking value (``1 p_click + 2 p_cart + 4
   p_purchase``) against the simulator's *true* relevance grade (requests with a positive grade).
   Each metric is computed per target market (``by_domain``, with a 95% bootstrap CI of NDCG@10
   over requests) and the system's value is the mean over the target markets. An AUC or GAUC
   that a market's test rows leave undefined (clicks of one class only) is ``null`` there with
   the reason under ``undefined``; the system's mean is then undefined too, and says why.
   ``baseline/logging-policy`` (the logged order) is the reference.

Limitation, stated honestly: subsampling removes target *training labels* (requests), not the
target's logged history that the count features (popularity, CTR priors) are computed from; the
samples are built once from the full logs. The report's ``config`` records the simulator's
configuration, the fractions, the source and the targets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.metrics import UndefinedMetricError, auc, bootstrap_ci, gauc
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import UNDEFINED_KEY, Report
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.ranking_sim import ndcg_per_request
from shopsearch.progress import Say
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.samples import Samples, build_samples, split_by_time
from shopsearch.ranking.train import TrainConfig
from shopsearch.ranking.value import RankingValue
from shopsearch.simulate.truth import GroundTruth
from shopsearch.store.workspace import Workspace
from shopsearch.transfer.protocol import subsample_target, train_transfer
from shopsearch.transfer.registry import METHODS, check_method, report_name

F64 = npt.NDArray[np.float64]
Scores = dict[str, F64]


@dataclass(frozen=True)
class TransferSimConfig:
    """Inputs of the simulated transfer suite.

    Attributes:
        workspace: a simulated workspace with several markets (``shopsearch simulate``).
        fractions: target training fractions.
        source: the data-rich market (``None``: the one with most training requests).
        methods: methods to run (default: all of ``METHODS``).
        test_fraction: share of the latest requests held out.
        epochs: most training epochs per model.
        batch_size: impressions per training step.
        n_resamples: bootstrap resamples of the per-domain NDCG@10 CI.
        seed: seed of subsampling, training and bootstraps.
    """

    workspace: Annotated[
        Path, option("Simulated workspace", flags=("--workspace", "-w"), metavar="W")
    ]
    fractions: Annotated[tuple[float, ...], option("Comma list of target training fractions")] = (
        0.01,
        0.05,
        0.2,
        1.0,
    )
    source: Annotated[str | None, option("Source market", default_text="the largest")] = None
    methods: Annotated[
        tuple[str, ...], option("Comma list of transfer methods", default_text="every method")
    ] = ()
    test_fraction: float = 0.2
    epochs: Annotated[int, option("Most training epochs per model")] = 2
    batch_size: Annotated[int, option("Impressions per training step")] = 1024
    n_resamples: int = 200
    seed: Annotated[int, option("Seed of subsampling, training and bootstrap")] = 0


@dataclass
class _Target:
    rows: pd.DataFrame
    grade: F64


def _domain_metrics(target: _Target, scores: Scores, cfg: TransferSimConfig) -> dict[str, Any]:
    rows = target.rows
    value = RankingValue().score(scores["click"], scores["cart"], scores["purchase"])
    labels = rows["click"].to_numpy()
    groups = rows["request_id"].to_numpy()
    out: dict[str, Any] = {}
    undefined: dict[str, str] = {}  # a metric the rows leave undefined: null, with the reason
    try:
        out["auc"] = auc(labels, scores["click"])
    except UndefinedMetricError as exc:
        out["auc"], undefined["auc"] = None, str(exc)
    try:
        out["gauc"] = gauc(labels, scores["click"], groups)
    except UndefinedMetricError as exc:
        out["gauc"], undefined["gauc"] = None, str(exc)
    if undefined:
        out[UNDEFINED_KEY] = undefined
    per = ndcg_per_request(rows, value, target.grade)
    out["ndcg@10"] = float(per.mean()) if per.size else 0.0
    out["requests"] = float(rows["request_id"].nunique())
    if per.size:
        out["ci95"] = {"ndcg@10": list(bootstrap_ci(per, cfg.n_resamples, seed=cfg.seed))}
    return out


def _add(
    report: Report,
    name: str,
    targets: dict[str, _Target],
    scores: dict[str, Scores],
    cfg: TransferSimConfig,
    extra: dict[str, Any] | None = None,
) -> dict[str, float]:
    by_domain = {d: _domain_metrics(t, scores[d], cfg) for d, t in targets.items()}
    metrics: dict[str, float] = {}
    undefined: dict[str, str] = {}
    for key in ("ndcg@10", "auc", "gauc"):
        missing = {d: m[UNDEFINED_KEY][key] for d, m in by_domain.items() if m.get(key) is None}
        if missing:
            undefined[key] = "the mean over the target markets is undefined: " + "; ".join(
                f"{d}: {reason}" for d, reason in missing.items()
            )
        else:
            metrics[key] = float(np.mean([m[key] for m in by_domain.values()]))
    report.add_system(name, metrics, None, {"by_domain": by_domain, **(extra or {})}, undefined)
    return metrics


def _split_targets(samples: Samples, targets: list[str]) -> dict[str, npt.NDArray[np.bool_]]:
    domains = samples.rows["domain"].to_numpy(object)
    return {d: domains == d for d in targets}


def run_transfer_sim_suite(cfg: TransferSimConfig, say: Say | None = None) -> Report:
    """Run the simulated transfer protocol (see the module docstring)."""
    tell = say or (lambda _message: None)
    methods = cfg.methods or METHODS
    for method in methods:
        check_method(method)
    for fraction in cfg.fractions:
        if not 0.0 < fraction <= 1.0:
            raise InvalidInputError(f"fraction {fraction} is not allowed; use 0 < f <= 1")
    ws = Workspace.open(cfg.workspace)
    sim_config = ws.dir("ground_truth") / "config.json"
    if not sim_config.exists():
        raise InvalidInputError(
            f"{cfg.workspace} is not a simulated workspace (no ground truth); build one with "
            f"'shopsearch simulate -w {cfg.workspace} --domains 3'"
        )
    start_all = time.perf_counter()
    report = Report(suite="transfer", primary_metric=TransferSimSuite.primary_metric)
    with report.timer("samples"):
        tell("building samples")
        samples = build_samples(ws.connect())
        train, test = split_by_time(samples, cfg.test_fraction)
    counts = train.rows.groupby("domain")["request_id"].nunique().sort_values(ascending=False)
    if len(counts) < 2:
        raise InvalidInputError(
            f"{cfg.workspace} has {len(counts)} market(s); transfer needs a source and a target "
            "(simulate with --domains 3)"
        )
    source = cfg.source or str(counts.index[0])
    if source not in counts.index:
        raise InvalidInputError(
            f"--source {source!r} is not a market; use one of {list(counts.index)}"
        )
    targets = [str(d) for d in counts.index if d != source]
    with report.timer("ground_truth"):
        truth = GroundTruth.load(ws)
        masks = _split_targets(test, targets)
        target_sets: dict[str, _Target] = {}
        for domain, mask in masks.items():
            rows = test.rows.loc[mask].reset_index(drop=True)
            keys = np.stack(
                [rows["domain"].to_numpy(object), rows["product_id"].to_numpy(object)], 1
            )
            funnel = truth.funnel(rows["request_id"].tolist(), keys)
            target_sets[domain] = _Target(rows, np.asarray(funnel.grade, np.float64))
    test_targets = test.subset(np.isin(test.rows["domain"].to_numpy(object), targets))
    target_domain = test_targets.rows["domain"].to_numpy(object)
    report.config = {
        "dataset": "sim",
        "source": source,
        "targets": targets,
        "fractions": list(cfg.fractions),
        "test_fraction": cfg.test_fraction,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "value": "linear 1*p_click + 2*p_cart + 4*p_purchase",
        "metrics": "mean over the target markets; by_domain per market",
        "simulator": orjson.loads(sim_config.read_bytes()).get("config", {}),
    }
    report.dataset = {
        "train_requests": {str(d): int(n) for d, n in counts.items()},
        "test_requests": {d: int(t.rows["request_id"].nunique()) for d, t in target_sets.items()},
        "test_impressions": {d: len(t.rows) for d, t in target_sets.items()},
    }
    logged = {
        d: {k: -t.rows["position"].to_numpy(np.float64) for k in ("click", "cart", "purchase")}
        for d, t in target_sets.items()
    }
    _add(report, "baseline/logging-policy", target_sets, logged, cfg)
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed)
    fractions = sorted(cfg.fractions)
    for fraction in fractions:
        part = subsample_target(train, targets, fraction, seed=cfg.seed)
        n_target = {
            d: int(part.rows.loc[part.rows["domain"] == d, "request_id"].nunique()) for d in targets
        }
        tell(f"fraction {fraction:g}: target training requests {n_target}")
        with report.timer(f"encode@{fraction:g}"):
            encoder = FeatureEncoder(part.seq_kinds.shape[1]).fit(part)
            batch = encoder.transform(part)
            test_batch = encoder.transform(test_targets)
        for method in methods:
            if method == "zero-shot" and fraction != fractions[-1]:
                continue
            name = report_name(method) if method == "zero-shot" else report_name(method, fraction)
            tell(f"training {name}")
            start = time.perf_counter()
            scorer = train_transfer(
                method, part, [source], targets, train_cfg, encoded=(encoder, batch)
            )
            report.timing(f"train/{name}", time.perf_counter() - start)
            scores = scorer.scores_batch(test_batch, target_domain)
            per_domain = {d: {k: v[target_domain == d] for k, v in scores.items()} for d in targets}
            metrics = _add(
                report,
                name,
                target_sets,
                per_domain,
                cfg,
                {"target_train_requests": n_target},
            )
            tell(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    report.timing("total", time.perf_counter() - start_all)
    return report


@SUITES.register()
class TransferSimSuite(Suite[TransferSimConfig]):
    """Cross-market transfer on a simulated shop: CDAN-W, PGTL and the baselines trained on a
    fraction of the target markets' requests; target AUC / GAUC / NDCG@10.

    The baselines: target-only, pooled, zero-shot, shared-bottom, STAR and MMoE with domain
    gates.

    Example: shopsearch eval transfer --dataset sim --workspace W --report r.json
    --fractions 0.01,0.05,0.2,1.0
    """

    name = "transfer/sim"
    config_type = TransferSimConfig
    primary_metric = "ndcg@10"

    def run(self, config: TransferSimConfig, say: Say) -> Report:
        """:func:`run_transfer_sim_suite`."""
        return run_transfer_sim_suite(config, say)


__all__ = ["TransferSimConfig", "TransferSimSuite", "run_transfer_sim_suite"]
