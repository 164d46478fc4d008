"""Click-only ranking samples built outside a workspace (trivago, Best Buy suites).

The registry's models read :class:`~shopsearch.ranking.samples.Samples` through the
:class:`~shopsearch.ranking.features.FeatureEncoder`, whose dense columns are fixed
(:data:`~shopsearch.ranking.features.DENSE_FEATURES`). A suite fills the columns it has a
signal for (and documents which signal sits in which column); every other column is zero, which
standardisation keeps at zero. Labels are clicks only (cart and purchase are zero), and models
are trained with the cart / purchase losses switched off (:func:`click_only_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.evaluate.metrics import FloatArray
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.ranking.features import DENSE_FEATURES, SPARSE_FEATURES, FeatureEncoder
from shopsearch.ranking.ranker import train_ranker
from shopsearch.ranking.registry import LIGHTGBM, MODEL_NAMES, check_model_name
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig

Say = Callable[[str], None]


def click_only_config(epochs: int, seed: int) -> TrainConfig:
    """Training loop settings with only the click loss switched on."""
    return TrainConfig(
        epochs=epochs,
        seed=seed,
        task_weights={"click": 1.0, "cart": 0.0, "purchase": 0.0},
    )


def make_samples(
    rows: pd.DataFrame,
    sequences: npt.NDArray[np.object_],
    seq_age: npt.NDArray[np.float32] | None = None,
    extra_dense: Sequence[str] = (),
) -> Samples:
    """Samples of click-labelled candidate ``rows``.

    Args:
        rows: one row per (request, candidate) with ``request_id``, ``product_id``, ``click``,
            ``position`` and ``req`` (row index into ``sequences``), plus any of the dense and
            sparse feature columns; missing ones are filled (dense 0, sparse ``""``).
            Rows of one request must be contiguous.
        sequences: object ``[n_requests, L]`` of earlier item ids, most recent first
            (``""`` = padding).
        seq_age: float ``[n_requests, L]`` ages of the behaviours (default 0).
        extra_dense: further numeric columns of ``rows`` the models read after
            :data:`~shopsearch.ranking.features.DENSE_FEATURES` (the samples' ``dense_names``).

    Returns:
        Samples with cart and purchase labels 0 and no long-tail flag.
    """
    out = rows.reset_index(drop=True).copy()
    for name in DENSE_FEATURES:
        if name not in out:
            out[name] = 0.0
    for name in SPARSE_FEATURES:
        if name not in out:
            out[name] = ""
    for name in ("brand", "leaf"):
        if name not in out:
            out[name] = ""
    out["cart"] = 0
    out["purchase"] = 0
    out["long_tail"] = False
    kinds = (sequences != "").astype(np.int8)
    age = seq_age if seq_age is not None else np.zeros(sequences.shape, np.float32)
    return Samples(
        rows=out,
        seq_items=sequences,
        seq_leaves=np.full(sequences.shape, "", dtype=object),
        seq_kinds=kinds,
        seq_age=age.astype(np.float32),
        dense_names=(*DENSE_FEATURES, *extra_dense) if extra_dense else None,
    )


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
    for name in models or MODEL_NAMES:
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


__all__ = ["click_only_config", "make_samples", "model_systems", "ranked_lists", "train_and_add"]
