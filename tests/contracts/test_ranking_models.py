"""The ranking-model contract, checked on every registered model (torch and LightGBM).

Parametrized over ``RANKING_MODELS.names()``: each model smoke-trains on the tiny simulated log
(``tiny_split`` of tests/conftest.py), scores finitely (probabilities in [0, 1] for torch models),
and scores identically after ``Ranker.save`` and ``Ranker.load``. A new model fails
:func:`test_every_model_has_smoke_settings` until :data:`SMOKE_KWARGS` lists it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from shopsearch.ranking.base import TASKS, RankingModel
from shopsearch.ranking.ranker import Ranker, train_ranker
from shopsearch.ranking.registry import RANKING_MODELS, is_torch_model
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig

#: Registered model name → constructor settings for a smoke training (``{}``: the defaults
#: train in well under a second on the tiny log). Add an entry when you register a model.
SMOKE_KWARGS: dict[str, dict[str, Any]] = {
    "dnn": {},
    "esmm": {},
    "mmoe": {},
    "ple": {},
    "seq-md": {},
    "aw-moe": {},
    "category-moe": {},
    "kfatt": {},
    "cdan-w": {},
    "pgtl": {},
    "shared-bottom": {},
    "star": {},
    "mmoe-domain": {},
    "lightgbm": {"n_estimators": 10},
}
SMOKE = TrainConfig(epochs=1, batch_size=512)
NAMES = RANKING_MODELS.names()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (and do not fight other jobs for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", NAMES)
def test_every_model_has_smoke_settings(name: str) -> None:
    assert name in SMOKE_KWARGS, (
        f"ranking model {name!r} is registered but has no entry in SMOKE_KWARGS "
        "(tests/contracts/test_ranking_models.py); add its smoke-training settings ({} for "
        "the defaults) so the contract checks it"
    )
    cls = RANKING_MODELS.get(name)
    assert cls.name == name  # a saved ranker records the name and loads the class by it
    if is_torch_model(name):
        assert issubclass(cls, RankingModel)


@pytest.mark.parametrize("name", NAMES)
def test_smoke_train_save_load_scores_identically(
    name: str, tiny_split: tuple[Samples, Samples], tmp_path: Path
) -> None:
    if name not in SMOKE_KWARGS:
        pytest.fail(f"add SMOKE_KWARGS[{name!r}] to tests/contracts/test_ranking_models.py")
    train, test = tiny_split
    ranker = train_ranker(train, name, "feature", SMOKE, model_kwargs=SMOKE_KWARGS[name])
    assert ranker.name == name
    scores = ranker.score(test)
    assert set(scores) == set(TASKS)
    for task in TASKS:
        assert scores[task].shape == (len(test),)
        assert np.isfinite(scores[task]).all(), f"{name}: non-finite {task} scores"
        if is_torch_model(name):  # funnel probabilities
            assert ((scores[task] >= 0) & (scores[task] <= 1)).all(), f"{name}: {task}"

    loaded = Ranker.load(ranker.save(tmp_path / name))
    assert loaded.name == name
    assert type(loaded.model) is type(ranker.model)
    if is_torch_model(name):
        assert not loaded.model.training  # type: ignore[union-attr]
    again = loaded.score(test)
    for task in TASKS:
        np.testing.assert_array_equal(again[task], scores[task], err_msg=f"{name}: {task}")
