"""Position bias: EM recovers known examination probabilities; the PAL tower is training-only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.models.baselines import DNN
from shopsearch.ranking.position_bias import PositionBiasModel, check_mode, estimate_propensities
from shopsearch.ranking.samples import Samples


def test_em_recovers_examination_probabilities() -> None:
    rng = np.random.default_rng(0)
    theta = np.array([1.0, 0.7, 0.5, 0.35, 0.25, 0.2])
    n_pairs, shows = 400, 60
    gamma = rng.uniform(0.05, 0.6, n_pairs)
    pair = np.repeat(np.arange(n_pairs), shows)
    position = rng.integers(1, len(theta) + 1, pair.size)
    click = rng.random(pair.size) < theta[position - 1] * gamma[pair]
    props = estimate_propensities(pair, position, click)
    np.testing.assert_allclose(props.theta, theta, atol=0.06)
    weights = props.weights(position, click)
    assert weights.mean() == pytest.approx(1.0, abs=1e-5)
    assert weights[click & (position == 6)].mean() > weights[click & (position == 1)].mean()


def test_em_rejects_clickless_logs() -> None:
    with pytest.raises(InvalidInputError):
        estimate_propensities([1, 2], [1, 2], [0, 0])
    with pytest.raises(InvalidInputError):
        check_mode("sometimes")


def test_feature_tower_is_dropped_at_serving(
    tiny_split: tuple[Samples, Samples], tiny_encoder: FeatureEncoder
) -> None:
    batch = tiny_encoder.transform(tiny_split[0])
    model = PositionBiasModel(DNN(tiny_encoder.spec_), "feature")
    with torch.no_grad():
        model.bias.weight[1:] = torch.linspace(1.0, -3.0, model.bias.weight.shape[0] - 1)[:, None]
        logged = model(batch)
        inner = model.inner(batch)
        batch.position = torch.zeros_like(batch.position)
        served = model(batch)
    assert not torch.allclose(logged.p_click, served.p_click)
    # The inner model always sees position 1; with position 0 the tower adds nothing.
    batch.position = torch.ones_like(batch.position)
    with torch.no_grad():
        assert torch.allclose(served.p_click, model.inner(batch).p_click)
    assert inner.p_click.shape == logged.p_click.shape
