"""Training and scoring the ranking models on click-only samples, for the trivago, Best Buy
and relevance-transfer suites (the samples themselves: :mod:`shopsearch.ranking.click_samples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from shopsearch.evaluate.metrics import FloatArray
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.progress import Say
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.ranker import train_ranker
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
    encoder = FeatureEncoder(train.seq_kinds.shape[1]).fit(train)
    train_batch, test_batch = encoder.transform(train), encoder.transform(test)
    for system, model in model_systems(models, lightgbm_name):
        say(f"training {system}")
        with report.timer(f"train/{system}"):
            ranker = train_ranker(
                train, model, position_bias, config, encoded=(encoder, train_batch)
            )
        score = ranker.score_batch(test_batch)["click"]
        run = ranked_lists(test.rows, score)
        evaluation = evaluate_run(run, qrels, metrics=metrics, seed=config.seed)
        report.add_evaluation(system, evaluation)


__all__ = ["model_systems", "ranked_lists", "train_and_add"]
