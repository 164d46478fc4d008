"""Every registered model smoke-trains on a tiny log; LightGBM; save/load round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.position_bias import PositionBiasModel
from shopsearch.ranking.ranker import Ranker, train_ranker
from shopsearch.ranking.registry import is_torch_model, model_names, torch_model_class
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig, fit, split_by_group
from shopsearch.ranking.value import RankingValue


def test_registry_lists_every_model() -> None:
    assert {"dnn", "esmm", "mmoe", "ple", "lightgbm"} <= set(model_names())


@pytest.mark.parametrize("name", sorted(n for n in model_names() if is_torch_model(n)))
def test_torch_model_smoke(
    name: str, tiny_split: tuple[Samples, Samples], tiny_encoder: FeatureEncoder
) -> None:
    batch = tiny_encoder.transform(tiny_split[0])
    torch.manual_seed(0)
    model = PositionBiasModel(torch_model_class(name)(tiny_encoder.spec_), "feature")
    fit_part, valid_part = split_by_group(batch, 0.2)
    result = fit(model, fit_part, valid_part, TrainConfig(epochs=2, batch_size=256))
    losses = [h["train_loss"] for h in result.history]
    assert all(np.isfinite(losses))
    with torch.no_grad():
        out = model(batch)
    for task in ("click", "cart", "purchase"):
        p = out.of(task)
        assert p.shape == (len(batch),)
        assert bool(((p >= 0) & (p <= 1)).all())


@pytest.mark.parametrize("mode", ["none", "feature", "ipw"])
def test_train_save_load_round_trip(
    mode: str, tmp_path: Path, tiny_split: tuple[Samples, Samples]
) -> None:
    train, test = tiny_split
    ranker = train_ranker(train, "dnn", mode, TrainConfig(epochs=1, batch_size=512))
    before = ranker.score(test)
    loaded = Ranker.load(ranker.save(tmp_path / "ranking"))
    after = loaded.score(test)
    for task in ("click", "cart", "purchase"):
        np.testing.assert_allclose(before[task], after[task], rtol=1e-5, atol=1e-7)
    assert loaded.info["position_bias"] == mode
    assert (tmp_path / "ranking" / "model.safetensors").exists()


def test_lightgbm_smoke_and_round_trip(tmp_path: Path, tiny_split: tuple[Samples, Samples]) -> None:
    train, test = tiny_split
    ranker = train_ranker(
        train, "lightgbm", config=TrainConfig(), model_kwargs={"n_estimators": 10}
    )
    scores = ranker.score(test)["click"]
    assert scores.shape == (len(test),)
    assert np.isfinite(scores).all()
    loaded = Ranker.load(ranker.save(tmp_path / "gbdt"))
    np.testing.assert_allclose(loaded.score(test)["click"], scores)


def test_ranking_value() -> None:
    value = RankingValue("gmv").score([0.5], [0.2], [0.1], [30.0])
    assert value[0] == pytest.approx(3.0)
    assert RankingValue("ctr").score([0.5], [0.2], [0.1])[0] == 0.5
    mix = RankingValue("linear", 1.0, 2.0, 4.0).score([0.5], [0.2], [0.1])
    assert mix[0] == pytest.approx(1.3)
