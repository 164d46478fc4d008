"""``shopsearch bench ranking``: model inference time for 200 candidates, one request at a time.

Features are precomputed (encoded sample rows of the workspace's logs, 200 rows per request);
only the model's forward pass (torch, no grad, one thread) or LightGBM's prediction is timed, as
the ranking stage runs it per request. The target is at most 2 ms per request for every model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from shopsearch.bench.timing import measure
from shopsearch.ranking.base import RankingBatch
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.lightgbm_ranker import LightGBMRanker
from shopsearch.ranking.position_bias import PositionBiasModel
from shopsearch.ranking.registry import MODEL_NAMES, TORCH_MODELS
from shopsearch.ranking.samples import build_samples
from shopsearch.store.workspace import Workspace

#: Per-request latency target of the ranking stage's model, in milliseconds.
TARGET_MS = 2.0


def _requests(batch: RankingBatch, candidates: int, n: int, seed: int) -> list[RankingBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        rows = torch.from_numpy(rng.choice(len(batch), size=candidates, replace=False))
        part = batch.index(rows)
        part.position = torch.zeros_like(part.position)
        out.append(part)
    return out


def run_ranking_bench(
    workspace: Workspace,
    requests: int = 500,
    candidates: int = 200,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """p50 / p99 of scoring ``candidates`` per request for every registered model."""
    tell = say or (lambda _message: None)
    tell("building samples")
    samples = build_samples(workspace.connect())
    encoder = FeatureEncoder(samples.seq_kinds.shape[1]).fit(samples)
    batch = encoder.transform(samples)
    inputs = _requests(batch, min(candidates, len(batch)), requests, seed)
    torch.set_num_threads(1)
    systems: dict[str, dict[str, float]] = {}
    for name in MODEL_NAMES:
        tell(f"timing {name}")
        if name in TORCH_MODELS:
            torch.manual_seed(seed)
            model = PositionBiasModel(TORCH_MODELS[name](encoder.spec_), "feature").eval()

            def call(part: RankingBatch, model: PositionBiasModel = model) -> object:
                with torch.no_grad():
                    return model(part)

            systems[name] = measure(call, inputs)
        else:
            train = batch.index(torch.arange(min(len(batch), 50_000)))
            gbdt = LightGBMRanker(seed=seed, threads=1).fit(train)
            systems[name] = measure(gbdt.predict, inputs)
        systems[name]["within_target"] = float(systems[name]["p99_ms"] <= TARGET_MS)
    return {
        "suite": "ranking-inference",
        "candidates": candidates,
        "requests": requests,
        "target_ms": TARGET_MS,
        "threads": 1,
        "systems": systems,
    }


__all__ = ["TARGET_MS", "run_ranking_bench"]
