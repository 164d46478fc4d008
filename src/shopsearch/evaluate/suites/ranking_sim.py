"""``shopsearch eval ranking --dataset sim``: ranking models on simulated logs vs ground truth.

The workspace's impressions become samples (:mod:`shopsearch.ranking.samples`); the last
``test_fraction`` of requests by time are the test split, everything earlier trains. Every model
of the registry is trained on the training split with its default position-bias handling
(``feature``); ``dnn`` is also trained with ``none`` and ``ipw`` (``shopsearch/dnn-pb-none``,
``shopsearch/dnn-pb-ipw``). On test impressions (scored as at serving, position unknown):

* ``auc_click``, ``auc_cart``, ``auc_purchase`` — AUC of each task's probability against the
  logged label; ``gauc_click`` — click AUC per request, impression-weighted;
* ``ndcg@10`` — NDCG@10 of the model's order (by the ranking value) of each test request's
  shown items against the simulator's *true* relevance grade, and ``ndcg@10_purchase`` against
  the true purchase propensity (requests with a positive grade / propensity only);
* the same per market (``by_domain``) and on long-tail users (``long_tail``: at most 2 earlier
  behaviours).

An AUC or GAUC the test rows leave undefined (e.g. no purchase among them) is ``null``, with the
reason under ``undefined`` (:class:`~shopsearch.evaluate.metrics.UndefinedMetricError`); any
other error of the metrics propagates.

CIs are 95% bootstraps over requests. Baselines: ``baseline/logging-policy`` (the logged order)
and ``baseline/lightgbm`` (LambdaMART on the same features). The simulator's configuration is
copied into the report's ``config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.metrics import (
    JudgedRun,
    UndefinedMetricError,
    auc,
    auc_ci,
    bootstrap_ci,
    gauc,
    gauc_ci,
)
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import UNDEFINED_KEY, Report
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.click_samples import EncodedSamples, train_and_score
from shopsearch.progress import Say
from shopsearch.ranking.ranker import Scores
from shopsearch.ranking.registry import LIGHTGBM, check_model_name, model_names
from shopsearch.ranking.samples import Samples, build_samples, split_by_time
from shopsearch.ranking.train import TrainConfig
from shopsearch.ranking.value import RankingValue
from shopsearch.simulate.truth import GroundTruth
from shopsearch.store.workspace import Workspace

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RankingSimConfig:
    """Inputs of the simulated ranking suite.

    Attributes:
        workspace: a simulated workspace (``shopsearch simulate``).
        models: registry names to train (default: all).
        test_fraction: share of the latest requests held out.
        epochs: most training epochs per torch model.
        n_resamples: bootstrap resamples of each CI.
        seed: seed of training and bootstraps.
    """

    workspace: Annotated[
        Path, option("Simulated workspace", flags=("--workspace", "-w"), metavar="W")
    ]
    models: Annotated[
        tuple[str, ...], option("Comma list of registry models", default_text="every model")
    ] = ()
    test_fraction: Annotated[float, option("Share of latest requests tested")] = 0.2
    epochs: Annotated[int, option("Most training epochs per torch model")] = 2
    n_resamples: int = 200
    seed: Annotated[int, option("Seed for training and bootstrap")] = 0


@dataclass
class _Test:
    samples: Samples
    grade: F64
    propensity: F64


def _systems(models: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """``(report name, model, position bias)`` of every system to train."""
    out: list[tuple[str, str, str]] = []
    for name in models or model_names():
        check_model_name(name)
        if name == LIGHTGBM:
            out.append(("baseline/lightgbm", name, "none"))
            continue
        out.append((f"shopsearch/{name}", name, "feature"))
        if name == "dnn":
            out.append(("shopsearch/dnn-pb-none", name, "none"))
            out.append(("shopsearch/dnn-pb-ipw", name, "ipw"))
    return out


def ndcg_per_request(rows: pd.DataFrame, score: F64, gains: F64, k: int = 10) -> F64:
    """NDCG@k per request with a positive gain, ranking each request's rows by ``score``."""
    frame = pd.DataFrame(
        {
            "r": rows["request_id"].to_numpy(),
            "p": rows["product_id"].to_numpy(),
            "s": score,
            "g": gains,
        }
    )
    frame = frame[frame.groupby("r")["g"].transform("max") > 0]
    if frame.empty:
        return np.zeros(0)
    frame = frame.sort_values(["r", "s"], ascending=[True, False], kind="stable")
    run: dict[str, list[str]] = {}
    qrels: dict[str, dict[str, float]] = {}
    for request, product, gain in zip(frame["r"], frame["p"], frame["g"], strict=True):
        run.setdefault(str(request), []).append(str(product))
        qrels.setdefault(str(request), {})[str(product)] = float(gain)
    values: F64 = JudgedRun(run, qrels, depth=k).ndcg(k)
    return values


@dataclass
class _Metrics:
    """One system's metrics on some test rows; ``undefined``: metric → why it has no value."""

    values: dict[str, float]
    ci: dict[str, tuple[float, float]]
    undefined: dict[str, str]

    def entry(self) -> dict[str, Any]:
        """The metrics as a nested report object: undefined ones ``None`` with their reason."""
        out: dict[str, Any] = {**self.values, **dict.fromkeys(self.undefined)}
        if self.ci:
            out["ci95"] = {k: list(v) for k, v in self.ci.items()}
        if self.undefined:
            out[UNDEFINED_KEY] = dict(self.undefined)
        return out


def _metrics(
    rows: pd.DataFrame,
    scores: Scores,
    value: F64,
    grade: F64,
    propensity: F64,
    n_resamples: int,
    seed: int,
    with_ci: bool,
) -> _Metrics:
    """AUC per task, click GAUC and NDCG@10 of the rows; a metric the rows leave undefined (one
    class only) is recorded with the reason, never dropped."""
    out = _Metrics({}, {}, {})
    groups = rows["request_id"].to_numpy()
    for task in ("click", "cart", "purchase"):
        labels = rows[task].to_numpy()
        key = f"auc_{task}"
        try:
            out.values[key] = auc(labels, scores[task])
        except UndefinedMetricError as exc:
            out.undefined[key] = str(exc)
            continue
        if with_ci:
            out.ci[key] = auc_ci(labels, scores[task], groups, n_resamples, seed=seed)
    clicks = rows["click"].to_numpy()
    try:
        out.values["gauc_click"] = gauc(clicks, scores["click"], groups)
    except UndefinedMetricError as exc:
        out.undefined["gauc_click"] = str(exc)
    else:
        if with_ci:
            out.ci["gauc_click"] = gauc_ci(clicks, scores["click"], groups, n_resamples, seed=seed)
    for key, gains in (("ndcg@10", grade), ("ndcg@10_purchase", propensity)):
        per = ndcg_per_request(rows, value, gains)
        out.values[key] = float(per.mean()) if per.size else 0.0
        if with_ci and per.size:
            out.ci[key] = bootstrap_ci(per, n_resamples, seed=seed)
    out.values["requests"] = float(rows["request_id"].nunique())
    return out


def _evaluate(
    report: Report, name: str, test: _Test, scores: Scores, cfg: RankingSimConfig
) -> None:
    rows = test.samples.rows
    price = rows["price"].to_numpy()
    value = RankingValue().score(scores["click"], scores["cart"], scores["purchase"], price)
    whole = _metrics(
        rows, scores, value, test.grade, test.propensity, cfg.n_resamples, cfg.seed, True
    )
    whole.values.pop("requests")  # the report's dataset counts them; slices keep their count
    extra: dict[str, Any] = {"by_domain": {}}
    slices: list[tuple[str, npt.NDArray[np.bool_]]] = [
        (f"by_domain/{d}", (rows["domain"] == d).to_numpy()) for d in sorted(set(rows["domain"]))
    ]
    slices.append(("long_tail", rows["long_tail"].to_numpy(bool)))
    for key, mask in slices:
        if not mask.any():
            continue
        sub = rows.loc[mask].reset_index(drop=True)
        sub_scores = {k: v[mask] for k, v in scores.items()}
        entry = _metrics(
            sub,
            sub_scores,
            value[mask],
            test.grade[mask],
            test.propensity[mask],
            cfg.n_resamples,
            cfg.seed,
            key == "long_tail",
        ).entry()
        if key == "long_tail":
            extra["long_tail"] = entry
        else:
            extra["by_domain"][key.split("/", 1)[1]] = entry
    report.add_system(name, whole.values, whole.ci, extra, whole.undefined)


def run_ranking_sim_suite(cfg: RankingSimConfig, say: Say | None = None) -> Report:
    """Train every model on the workspace's logs and evaluate it (see the module docstring)."""
    tell = say or (lambda _message: None)
    ws = Workspace.open(cfg.workspace)
    sim_config = ws.dir("ground_truth") / "config.json"
    if not sim_config.exists():
        raise InvalidInputError(
            f"{cfg.workspace} is not a simulated workspace (no ground truth); build one with "
            f"'shopsearch simulate -w {cfg.workspace}'"
        )
    report = Report(
        suite="ranking",
        primary_metric=RankingSimSuite.primary_metric,
        config={
            "dataset": "sim",
            "test_fraction": cfg.test_fraction,
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "value": "linear 1*p_click + 2*p_cart + 4*p_purchase",
            "simulator": orjson.loads(sim_config.read_bytes()).get("config", {}),
        },
    )
    with report.timer("samples"):
        tell("building samples")
        samples = build_samples(ws.connect())
        train, test_samples = split_by_time(samples, cfg.test_fraction)
    with report.timer("ground_truth"):
        truth = GroundTruth.load(ws)
        rows = test_samples.rows
        keys = np.stack([rows["domain"].to_numpy(object), rows["product_id"].to_numpy(object)], 1)
        funnel = truth.funnel(rows["request_id"].tolist(), keys)
        test = _Test(
            test_samples,
            np.asarray(funnel.grade, np.float64),
            np.asarray(funnel.purchase_propensity, np.float64),
        )
    with report.timer("encode"):
        data = EncodedSamples.fit(train, test_samples)
    report.dataset = {
        "train_impressions": len(train),
        "train_requests": train.n_requests,
        "test_impressions": len(test_samples),
        "test_requests": test_samples.n_requests,
        "test_clicks": int(rows["click"].sum()),
        "test_carts": int(rows["cart"].sum()),
        "test_purchases": int(rows["purchase"].sum()),
        "long_tail_test_impressions": int(rows["long_tail"].sum()),
    }
    logged = -rows["position"].to_numpy(np.float64)
    _evaluate(
        report,
        "baseline/logging-policy",
        test,
        {"click": logged, "cart": logged, "purchase": logged},
        cfg,
    )
    systems = _systems(cfg.models)
    tell(f"training {', '.join(name for name, _, _ in systems)}")
    train_cfg = TrainConfig(epochs=cfg.epochs, seed=cfg.seed)
    trained = train_and_score(data, [(m, bias) for _, m, bias in systems], train_cfg)
    for (name, _, _), (scores, seconds) in zip(systems, trained, strict=True):
        report.timing(f"train/{name}", seconds)
        _evaluate(report, name, test, scores, cfg)
    return report


@SUITES.register()
class RankingSimSuite(Suite[RankingSimConfig]):
    """Ranking models on simulated logs: AUC / GAUC, and NDCG@10 vs the simulator's truth.

    Example: shopsearch eval ranking --dataset sim --workspace W --report r.json
    """

    name = "ranking/sim"
    config_type = RankingSimConfig
    primary_metric = "ndcg@10"

    def run(self, config: RankingSimConfig, say: Say) -> Report:
        """:func:`run_ranking_sim_suite`."""
        return run_ranking_sim_suite(config, say)


__all__ = ["RankingSimConfig", "RankingSimSuite", "ndcg_per_request", "run_ranking_sim_suite"]
