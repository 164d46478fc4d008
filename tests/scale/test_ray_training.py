"""Ranking and two-tower models trained on a local Ray cluster (started here on 127.0.0.1, 2 CPUs):
one worker equals local training (torch weights, LightGBM trees, two-tower weights); with two
workers the gradient exchange gives the step of the union of the workers' mini-batches, and the
two-tower encoder's sparse table learns as well as locally."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.position_bias import PositionBiasModel
from shopsearch.ranking.ranker import train_ranker
from shopsearch.ranking.registry import torch_model_class
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig, fit
from shopsearch.retrieval.mmse import TwoTowerEncoder
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.training.distributed_train import RayTraining
from shopsearch.transfer.protocol import train_transfer

from ..retrieval.test_sci import encoder, toy_log

ray = pytest.importorskip("ray")
# Ray's own modules warn about their deprecated settings on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dnn", "cdan-w", "lightgbm"])
def test_one_worker_equals_local_training(
    cluster: None, name: str, tiny_split: tuple[Samples, Samples]
) -> None:
    train, test = tiny_split
    cfg = TrainConfig(epochs=2, batch_size=256, threads=1)
    local = train_ranker(train, name, "feature", cfg)
    epochs: list[int] = []

    def progress(done: int, total: int, train_loss: float, valid_loss: float) -> None:
        epochs.append(done)

    on_ray = train_ranker(
        train, name, "feature", cfg, progress=progress, backend=RayTraining(workers=1)
    )
    if name == "lightgbm":
        trees = local.model.booster_.dump_model()["tree_info"]  # type: ignore[union-attr]
        assert on_ray.model.booster_.dump_model()["tree_info"] == trees  # type: ignore[union-attr]
    else:
        mine, theirs = local.model.state_dict(), on_ray.model.state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
        assert [h["valid_loss"] for h in on_ray.info["history"]] == [
            h["valid_loss"] for h in local.info["history"]
        ]
        assert epochs == list(range(1, len(local.info["history"]) + 1))
    for task, scores in local.score(test).items():
        np.testing.assert_array_equal(on_ray.score(test)[task], scores)


@pytest.mark.slow
def test_two_workers_step_equals_the_step_on_all_their_rows(
    cluster: None, tiny_split: tuple[Samples, Samples], tiny_encoder: FeatureEncoder
) -> None:
    batch = tiny_encoder.transform(tiny_split[0])
    torch.manual_seed(0)
    model = PositionBiasModel(torch_model_class("dnn")(tiny_encoder.spec_), "feature")
    start = copy.deepcopy(model).state_dict()
    on_ray = copy.deepcopy(model)
    # one step: each worker's whole share of the requests is its mini-batch
    cfg = TrainConfig(epochs=1, batch_size=len(batch), threads=1)
    fit(model, batch, None, cfg)
    RayTraining(workers=2).fit(on_ray, batch, None, cfg)
    mine, theirs = model.state_dict(), on_ray.state_dict()
    assert max(float((mine[k] - start[k]).abs().max()) for k in mine) > 1e-3  # it moved
    for key in mine:
        torch.testing.assert_close(theirs[key], mine[key], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_two_lightgbm_workers_grow_the_trees_together(
    cluster: None, tiny_split: tuple[Samples, Samples]
) -> None:
    train, test = tiny_split
    cfg = TrainConfig(epochs=1, threads=1)
    local = train_ranker(train, "lightgbm", config=cfg).score(test)["click"]
    two = train_ranker(train, "lightgbm", config=cfg, backend=RayTraining(workers=2))
    scores = two.score(test)["click"]
    assert np.isfinite(scores).all()
    # the same trees up to the workers' own feature bins: nearly the same ranking
    assert np.corrcoef(np.argsort(np.argsort(scores)), np.argsort(np.argsort(local)))[0, 1] > 0.8


@pytest.mark.slow
def test_transfer_regime_on_one_worker_equals_local(
    cluster: None, tiny_split: tuple[Samples, Samples]
) -> None:
    train, test = tiny_split
    source, target = sorted(train.rows["domain"].unique())
    cfg = TrainConfig(epochs=1, batch_size=256, threads=1)
    # fine-tune: the zero-shot DNN on the source rows, then trained further on the target rows
    local = train_transfer("fine-tune", train, [source], [target], cfg, min_steps=0)
    on_ray = train_transfer(
        "fine-tune", train, [source], [target], cfg, min_steps=0, backend=RayTraining(workers=1)
    )
    for part in ("all", "target"):
        losses = [(h["train_loss"], h["valid_loss"]) for h in local.info[part]["history"]]
        assert [(h["train_loss"], h["valid_loss"]) for h in on_ray.info[part]["history"]] == losses
    for task, scores in local.scores(test).items():
        np.testing.assert_array_equal(on_ray.scores(test)[task], scores)


def _top_is_positive(model: TwoTowerEncoder, samples: StagedSamples) -> float:
    """Share of queries whose highest-scored item is one of their positives (stage >= 2)."""
    scores = model.encode_queries(samples.queries) @ model.encode_items(samples.items).T
    best = scores.argmax(1)
    positive = {
        (int(q), int(i))
        for q, i, stage in zip(samples.query_index, samples.item_index, samples.stage, strict=True)
        if stage >= 2
    }
    return float(np.mean([(q, int(best[q])) in positive for q in range(len(best))]))


@pytest.mark.slow
def test_two_tower_on_one_worker_equals_local_and_on_two_learns(cluster: None) -> None:
    samples, _ = toy_log()
    local = encoder().fit(samples)
    steps: list[tuple[int, int]] = []
    one = RayTraining(workers=1).fit_two_tower(encoder(), samples, lambda *a: steps.append(a))
    mine, theirs = local.net_.state_dict(), one.net_.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert one.history_ == local.history_
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert one.path is None
    assert one.version == local.version
    two = RayTraining(workers=2).fit_two_tower(encoder(), samples)
    assert two.history_[-1] < two.history_[0]
    assert _top_is_positive(two, samples) == _top_is_positive(local, samples) == 1.0


def test_workers_below_one_and_missing_ray_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, tiny_split: tuple[Samples, Samples]
) -> None:
    with pytest.raises(InvalidInputError, match="workers=0"):
        RayTraining(workers=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(InvalidInputError, match=r'pip install "shopsearch\[ray\]"'):
        train_ranker(tiny_split[0], "lightgbm", backend=RayTraining(workers=1))
