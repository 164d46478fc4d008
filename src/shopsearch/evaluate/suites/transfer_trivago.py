"""``shopsearch eval transfer --dataset trivago``: multi-market transfer between trivago platforms.

Protocol
--------
* **Markets.** Each platform (country site) of the RecSys Challenge 2019 events is a market
  (the sample ``domain``). *Sources* are the large platforms: those with at least
  ``source_min_clickouts`` clickouts in the training file. *Targets* are the platforms named by
  ``--targets``, or else every other platform with at least ``target_min_test`` test clickouts
  (fewer make a per-platform MRR too noisy to report). Events of platforms in neither group are
  dropped from both files; their counts are in the report's ``dataset``.
* **Target fractions.** For a fraction ``f < 1``, each target platform keeps a seeded ``f`` of
  its training *sessions* (at least one); this is done on the events, before any feature is
  computed, so the dropped sessions feed no prior either. Systems trained with a fraction
  ``f < 1`` are named with the suffix ``@f``.
* **Samples.** :func:`~shopsearch.evaluate.suites.ranking_trivago.build_trivago_samples` per
  split (the ranking suite's position-free features, behaviour sequence and CTR priors; the test
  split's priors come from the training split of the same fraction). The priors of every method
  are computed from the same (subsampled) training log: ``zero-shot`` means no target row in the
  training loss, not a log without target events.
* **Methods.** Every method of :data:`~shopsearch.transfer.registry.METHODS` through
  :func:`~shopsearch.transfer.protocol.train_transfer` (click loss only, logged position as a
  training-time feature, scored at position 0), plus ``baseline/impression-order`` (the order
  shown, no training).
* **Metric.** ``mrr`` of the clicked item among the shown, on the test clickouts of each target
  platform (``by_domain``), and its mean over the target platforms (each platform weighs the
  same); the CI of the mean is a stratified bootstrap (clickouts resampled within each
  platform). Each ``shopsearch/`` system also reports ``vs``: its paired, stratified bootstrap
  difference in mean MRR against zero-shot, target-only, pooled, fine-tune and LightGBM-pooled
  at the same fraction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.click_samples import ranked_lists
from shopsearch.evaluate.suites.ranking_trivago import (
    RankingTrivagoConfig,
    build_trivago_samples,
    read_events,
)
from shopsearch.progress import Say
from shopsearch.ranking.click_samples import click_only_config
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.samples import Samples

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TransferTrivagoConfig:
    """Inputs of the trivago transfer protocol.

    Attributes:
        train: training events file (Parquet or CSV).
        test: test events file (other sessions).
        targets: target platforms (default: chosen by the rule of the module docstring).
        source_min_clickouts: training clickouts that make a platform a source.
        target_min_test: test clickouts a platform needs to be a target by default.
        fractions: target training fractions (each in (0, 1]).
        methods: transfer methods to train (default: every method).
        epochs: most epochs per model.
        batch_size: impressions per training step.
        seq_len: earlier session items in the behaviour sequence.
        alpha: pseudo-impressions of the CTR smoothing.
        n_resamples: bootstrap resamples of the CIs.
        seed: seed of subsampling, training and bootstraps.
    """

    train: Annotated[Path, option("Training events file")]
    test: Annotated[Path, option("Test events, other sessions")]
    targets: Annotated[
        tuple[str, ...], option("Comma list of target platforms", default_text="the rule")
    ] = ()
    source_min_clickouts: Annotated[
        int, option("Training clickouts that make a platform a source")
    ] = 500
    target_min_test: Annotated[int, option("Test clickouts a default target platform needs")] = 40
    fractions: Annotated[
        tuple[float, ...],
        option("Comma list of target training fractions", flags=("--target-train-fraction",)),
    ] = (1.0,)
    methods: Annotated[
        tuple[str, ...], option("Comma list of transfer methods", default_text="every method")
    ] = ()
    epochs: Annotated[int, option("Most training epochs per model")] = 3
    batch_size: Annotated[int, option("Impressions per training step")] = 1024
    seq_len: int = 10
    alpha: float = 20.0
    n_resamples: int = 1000
    seed: Annotated[int, option("Seed of subsampling, training and bootstrap")] = 0


def clickouts_per_platform(events: pd.DataFrame) -> pd.Series:
    """Clickouts that show an impression list, per platform (largest first)."""
    clicks = events[(events["action_type"] == "clickout item") & (events["impressions"] != "")]
    counts: pd.Series = (
        clicks.groupby("platform").size().sort_values(ascending=False, kind="stable")
    )
    return counts


def choose_markets(
    train_counts: pd.Series,
    test_counts: pd.Series,
    source_min: int,
    target_min_test: int,
    targets: Sequence[str] = (),
) -> tuple[list[str], list[str]]:
    """``(sources, targets)`` by the rule of the module docstring.

    Raises:
        InvalidInputError: when no platform is a source or a target, or a named target is a
            source or absent from the test file.
    """
    sources = sorted(str(p) for p in train_counts.index[train_counts >= source_min])
    if not sources:
        raise InvalidInputError(
            f"no platform has {source_min} training clickouts (largest: "
            f"{int(train_counts.max()) if len(train_counts) else 0}); lower "
            "--source-min-clickouts"
        )
    if targets:
        bad = [t for t in targets if t in sources or t not in test_counts.index]
        if bad:
            raise InvalidInputError(
                f"targets {bad} are sources or have no test clickouts; sources are {sources}"
            )
        chosen = list(targets)
    else:
        eligible = test_counts[(test_counts >= target_min_test) & ~test_counts.index.isin(sources)]
        chosen = sorted(str(p) for p in eligible.index)
    if not chosen:
        raise InvalidInputError(
            f"no non-source platform has {target_min_test} test clickouts; lower "
            "--target-min-test or name --targets"
        )
    return sources, chosen


def subsample_sessions(
    events: pd.DataFrame, targets: Sequence[str], fraction: float, seed: int
) -> pd.DataFrame:
    """Keep a seeded ``fraction`` of each target platform's sessions (at least one) and every
    event of the other platforms.

    Raises:
        InvalidInputError: for a fraction outside (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise InvalidInputError(f"fraction={fraction} is not allowed; use 0 < fraction <= 1")
    if fraction >= 1.0:
        return events
    rng = np.random.default_rng(seed)
    platform = events["platform"].to_numpy(object)
    session = events["session_id"].to_numpy(object)
    keep = ~np.isin(platform, list(targets))
    for target in targets:
        sessions = np.unique(session[platform == target].astype(str))
        if len(sessions) == 0:
            continue
        n = max(1, round(fraction * len(sessions)))
        chosen = rng.choice(sessions, size=n, replace=False)
        keep |= (platform == target) & np.isin(session.astype(str), chosen)
    return events[keep].reset_index(drop=True)


def macro_mrr(
    per_query: dict[str, F64], n_resamples: int, seed: int
) -> tuple[float, tuple[float, float] | None]:
    """Mean over platforms of each platform's mean, with a stratified bootstrap CI."""
    means = [float(v.mean()) for v in per_query.values()]
    value = float(np.mean(means))
    if not n_resamples:
        return value, None
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    for values in per_query.values():
        picks = rng.integers(0, len(values), size=(n_resamples, len(values)))
        total += values[picks].mean(axis=1)
    boot = total / len(per_query)
    low, high = np.percentile(boot, [2.5, 97.5])
    return value, (float(low), float(high))


def macro_paired_diff(
    a: dict[str, F64], b: dict[str, F64], n_resamples: int, seed: int
) -> dict[str, float]:
    """Difference of two systems' platform-mean MRR with a paired, stratified bootstrap
    (clickouts resampled jointly within each platform): ``{"mrr_diff", "low", "high"}``."""
    diff = {t: a[t] - b[t] for t in a}
    value = float(np.mean([v.mean() for v in diff.values()]))
    rng = np.random.default_rng(seed)
    total = np.zeros(max(n_resamples, 1))
    for values in diff.values():
        picks = rng.integers(0, len(values), size=(len(total), len(values)))
        total += values[picks].mean(axis=1)
    low, high = np.percentile(total / len(diff), [2.5, 97.5])
    return {"mrr_diff": value, "low": float(low), "high": float(high)}


def _add(
    report: Report,
    name: str,
    test: pd.DataFrame,
    score: F64,
    targets: Sequence[str],
    cfg: TransferTrivagoConfig,
    extra: dict[str, Any] | None = None,
) -> dict[str, F64]:
    """MRR per target platform and averaged, added to ``report`` as system ``name``; returns
    the per-clickout MRR of each target platform."""
    run = ranked_lists(test, score)
    per_query: dict[str, F64] = {}
    for target in targets:
        clicked = test[(test["domain"] == target) & (test["click"] == 1)]
        qrels = {
            str(r): {str(p): 1.0}
            for r, p in zip(clicked["request_id"], clicked["product_id"], strict=True)
        }
        if not qrels:
            continue
        evaluation = evaluate_run(run, qrels, metrics=("mrr",), n_resamples=0)
        per_query[target] = evaluation.per_query["mrr"]
    value, ci = macro_mrr(per_query, cfg.n_resamples, cfg.seed)
    by_domain = {t: {"mrr": float(v.mean())} for t, v in per_query.items()}
    report.add_system(
        name,
        {"mrr": value},
        {"mrr": ci} if ci is not None else None,
        {"by_domain": by_domain, **(extra or {})},
    )
    return per_query


def run_transfer_trivago(cfg: TransferTrivagoConfig, say: Say | None = None) -> Report:
    """Run the protocol of the module docstring and return its report."""
    from shopsearch.transfer.protocol import train_transfer
    from shopsearch.transfer.registry import METHODS, check_method, report_name

    tell = say or (lambda _message: None)
    methods = tuple(check_method(m) for m in (cfg.methods or METHODS))
    fractions = tuple(sorted(set(cfg.fractions)))
    for fraction in fractions:
        if not 0.0 < fraction <= 1.0:
            raise InvalidInputError(f"fraction={fraction} is not allowed; use 0 < fraction <= 1")
    samples_cfg = RankingTrivagoConfig(
        cfg.train, cfg.test, epochs=cfg.epochs, seq_len=cfg.seq_len, alpha=cfg.alpha, seed=cfg.seed
    )
    report = Report(suite="transfer", primary_metric=TransferTrivagoSuite.primary_metric)
    with report.timer("read"):
        tell("reading events")
        train_events, test_events = read_events(cfg.train), read_events(cfg.test)
        train_counts = clickouts_per_platform(train_events)
        test_counts = clickouts_per_platform(test_events)
        sources, targets = choose_markets(
            train_counts, test_counts, cfg.source_min_clickouts, cfg.target_min_test, cfg.targets
        )
        markets = [*sources, *targets]
        train_events = train_events[train_events["platform"].isin(markets)]
        test_events = test_events[test_events["platform"].isin(markets)]
    tell(f"sources {sources}; targets {targets}")
    report.config = {
        "dataset": "trivago",
        "train": cfg.train,
        "test": cfg.test,
        "sources": sources,
        "targets": targets,
        "rule": (
            f"sources: >= {cfg.source_min_clickouts} training clickouts; targets: "
            + ("named by --targets" if cfg.targets else f">= {cfg.target_min_test} test clickouts")
        ),
        "target_train_fractions": list(fractions),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "alpha": cfg.alpha,
        "seed": cfg.seed,
        "labels": "click only (cart / purchase losses off)",
        "position_bias": "feature (training only; scored at position 0)",
    }
    report.dataset = {
        "train_clickouts": {str(k): int(v) for k, v in train_counts.items() if k in markets},
        "test_clickouts": {str(k): int(v) for k, v in test_counts.items() if k in markets},
        "dropped_train_clickouts": int(train_counts[~train_counts.index.isin(markets)].sum()),
        "dropped_test_clickouts": int(test_counts[~test_counts.index.isin(markets)].sum()),
    }
    baseline_done = False
    found: dict[str, dict[str, F64]] = {}
    for fraction in fractions:
        suffix = fraction if fraction < 1.0 else None
        with report.timer(f"samples@{fraction:g}"):
            tell(f"building samples (target fraction {fraction:g})")
            events = subsample_sessions(train_events, targets, fraction, cfg.seed)
            train = build_trivago_samples(events, None, samples_cfg)
            test_all = build_trivago_samples(test_events, train.rows, samples_cfg)
            test = test_all.subset(test_all.rows["domain"].isin(targets).to_numpy())
        report.dataset[f"train_requests@{fraction:g}"] = {
            str(k): int(v) for k, v in train.rows.groupby("domain")["request_id"].nunique().items()
        }
        if not baseline_done:
            report.dataset["test_requests"] = {
                str(k): int(v)
                for k, v in test.rows.groupby("domain")["request_id"].nunique().items()
            }
            order = -test.rows["position"].to_numpy(np.float64)
            _add(report, "baseline/impression-order", test.rows, order, targets, cfg)
            baseline_done = True
        present = set(train.rows["domain"])
        missing = [t for t in targets if t not in present]
        if missing:
            raise InvalidInputError(
                f"targets {missing} have no training clickout; name other --targets"
            )
        encoder = FeatureEncoder(train.seq_kinds.shape[1]).fit(train)
        encoded = (encoder, encoder.transform(train))
        config = replace(click_only_config(cfg.epochs, cfg.seed), batch_size=cfg.batch_size)
        for method in methods:
            name = report_name(method, suffix)
            tell(f"training {name}")
            with report.timer(f"train/{name}"):
                scorer = train_transfer(
                    method, train, sources, targets, config, position_bias="feature",
                    encoded=encoded,
                )  # fmt: skip
            score = _scores(scorer.score, test)
            info = {k: v.get("best_epoch") for k, v in scorer.info.items()}
            found[name] = _add(report, name, test.rows, score, targets, cfg, {"best_epoch": info})
            tell(f"{name}: mrr={report.systems[name]['mrr']:.4f}")
        for method in methods:
            name = report_name(method, suffix)
            if not name.startswith("shopsearch/"):
                continue
            versus = {
                other: macro_paired_diff(found[name], found[other], cfg.n_resamples, cfg.seed)
                for other in (
                    report_name(m, suffix)
                    for m in ("zero-shot", "target-only", "pooled", "fine-tune", "lightgbm-pooled")
                )
                if other in found
            }
            if versus:
                report.systems[name]["vs"] = versus
    return report


def _scores(score: Callable[[Samples], F64], test: Samples) -> F64:
    """Scores of ``test`` with NaN (no model for a domain) replaced by the lowest score."""
    values = np.asarray(score(test), np.float64)
    return np.where(np.isfinite(values), values, -np.inf)


@SUITES.register()
class TransferTrivagoSuite(Suite[TransferTrivagoConfig]):
    """Multi-market transfer between trivago platforms: large platforms are sources, small ones
    targets; MRR per target platform and averaged.

    Example: shopsearch eval transfer --dataset trivago --train A.parquet --test B.parquet
    --report r.json
    """

    name = "transfer/trivago"
    config_type = TransferTrivagoConfig
    primary_metric = "mrr"

    def run(self, config: TransferTrivagoConfig, say: Say) -> Report:
        """:func:`run_transfer_trivago`."""
        return run_transfer_trivago(config, say)


__all__ = [
    "TransferTrivagoConfig",
    "TransferTrivagoSuite",
    "choose_markets",
    "clickouts_per_platform",
    "macro_mrr",
    "macro_paired_diff",
    "run_transfer_trivago",
    "subsample_sessions",
]
