"""Training and scoring the ranking models, for the ranking suites (sim, trivago, Best Buy) and
the relevance-transfer suite (the click-only samples: :mod:`shopsearch.ranking.click_samples`).

:func:`train_and_score` trains each model as one task of :func:`~shopsearch.evaluate.parallel.
parallel_map`: on a Ray cluster the models train at once, one per CPU.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from shopsearch.evaluate.metrics import FloatArray
from shopsearch.evaluate.parallel import parallel_map
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.progress import Say
from shopsearch.ranking.base import RankingBatch
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.ranker import Scores, train_ranker
from shopsearch.ranking.registry import LIGHTGBM, check_model_name, model_names
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig


def ranked_lists(rows: pd.DataFrame, score: FloatArray) -> dict[str, list[str]]:
    """``{request_id: [product_id, ...]}`` best first (ties broken by product id)."""
    frame = pd.DataFrame(
        {"r": rows["request_id"].to_numpy(), "p": rows["product_id"].astype(str), "s": score}
    ).sort_values(["r", "s", "p"], ascending=[True, False, True], kind="stable")
    run: dict[str, list[str]] = {}
    for request, product in zip(frame["r"], frame["p"], strict=True):
        run.setdefault(str(request), []).append(product)
    return run


def model_systems(
    models: Sequence[str], lightgbm_name: str = "baseline/lightgbm"
) -> list[tuple[str, str]]:
    """``(report name, registry model)`` of the models to train (default: every model)."""
    out: list[tuple[str, str]] = []
    for name in models or model_names():
        check_model_name(name)
        out.append((lightgbm_name if name == LIGHTGBM else f"shopsearch/{name}", name))
    return out


@dataclass(frozen=True)
class EncodedSamples:
    """Training samples, the feature encoder fitted on them, and its transforms of the training
    and test samples: what every model of a suite trains and is scored on."""

    train: Samples
    encoder: FeatureEncoder
    train_batch: RankingBatch
    test_batch: RankingBatch

    @classmethod
    def fit(cls, train: Samples, test: Samples) -> EncodedSamples:
        """Fit the encoder on ``train`` and transform both sample sets."""
        encoder = FeatureEncoder(train.seq_kinds.shape[1]).fit(train)
        return cls(train, encoder, encoder.transform(train), encoder.transform(test))


def _train_and_score(
    data: EncodedSamples, system: tuple[str, str, TrainConfig]
) -> tuple[Scores, float]:
    model, position_bias, config = system
    start = time.perf_counter()
    ranker = train_ranker(
        data.train, model, position_bias, config, encoded=(data.encoder, data.train_batch)
    )
    seconds = time.perf_counter() - start
    return ranker.score_batch(data.test_batch), seconds


def train_and_score(
    data: EncodedSamples, systems: Sequence[tuple[str, str]], config: TrainConfig
) -> list[tuple[Scores, float]]:
    """Train each ``(model, position bias)`` on ``data`` and score its test batch.

    The models are independent tasks (:func:`~shopsearch.evaluate.parallel.parallel_map`): in
    order here, at once on a Ray cluster, with the same scores.

    Returns:
        Per system, in order: its test scores and its training time in seconds.
    """
    tasks = [(model, position_bias, config) for model, position_bias in systems]
    return parallel_map(_train_and_score, tasks, data)


def train_and_add(
    report: Report,
    train: Samples,
    test: Samples,
    qrels: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    models: Sequence[str],
    config: TrainConfig,
    position_bias: str,
    say: Say,
    lightgbm_name: str = "baseline/lightgbm",
) -> None:
    """Train every model on ``train`` (click labels), rank ``test`` and add it to ``report``.

    Args:
        report: the report to fill.
        train: training samples.
        test: test samples (their position column is never read: scoring sets it to 0).
        qrels: ``{request_id: {clicked product_id: 1}}`` of the test requests.
        metrics: the metric names to evaluate.
        models: registry names (empty = all).
        config: the training loop settings.
        position_bias: the torch models' position-bias mode.
        say: progress messages.
        lightgbm_name: the report name of the LightGBM model.
    """
    systems = model_systems(models, lightgbm_name)
    say(f"training {', '.join(system for system, _ in systems)}")
    data = EncodedSamples.fit(train, test)
    trained = train_and_score(data, [(m, position_bias) for _, m in systems], config)
    for (system, _), (scores, seconds) in zip(systems, trained, strict=True):
        report.timing(f"train/{system}", seconds)
        run = ranked_lists(test.rows, scores["click"])
        evaluation = evaluate_run(run, qrels, metrics=metrics, seed=config.seed)
        report.add_evaluation(system, evaluation)


__all__ = [
    "EncodedSamples",
    "model_systems",
    "ranked_lists",
    "train_and_add",
    "train_and_score",
]
