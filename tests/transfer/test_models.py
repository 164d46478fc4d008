"""The transfer models: smoke training, save/load, and the Wasserstein regulariser's effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.ranker import Ranker, train_ranker
from shopsearch.ranking.registry import torch_model_class
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig, fit
from shopsearch.transfer.baselines import PartitionedNorm
from shopsearch.transfer.cdan_w import CDANW
from shopsearch.transfer.layers import per_domain, sliced_wasserstein
from shopsearch.transfer.pgtl import PGTL
from shopsearch.transfer.registry import JOINT_MODELS


def test_transfer_models_are_ranking_models() -> None:
    assert set(JOINT_MODELS) == {
        "cdan-w",
        "pgtl",
        "shared-bottom",
        "star",
        "mmoe-domain",
        "seq-md",
    }
    for name in JOINT_MODELS:
        assert torch_model_class(name).name == name


def test_sliced_wasserstein_is_a_distance_estimate() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 8, generator=gen)
    b = torch.randn(300, 8, generator=gen)
    shifted = b + 2.0
    same = sliced_wasserstein(a, b, 64, torch.Generator().manual_seed(1))
    far = sliced_wasserstein(a, shifted, 64, torch.Generator().manual_seed(1))
    assert float(same) < 0.1 < float(far)
    # a shift of 2 along every axis moves each unit direction's projection by 2 * sum(theta)
    assert float(far) == pytest.approx(4.0, rel=0.5)


def test_per_domain_keeps_row_order() -> None:
    x = torch.arange(6.0).view(6, 1)
    domain = torch.tensor([2, 1, 2, 0, 1, 2])
    out = per_domain(x, domain, lambda rows, d: rows * 10 + d)
    assert out.squeeze(1).tolist() == [2.0, 11.0, 22.0, 30.0, 41.0, 52.0]


def test_star_partitioned_norm_keeps_each_domains_statistics() -> None:
    torch.manual_seed(0)
    norm = PartitionedNorm(n_domains=3, width=4, momentum=1.0)
    domain = torch.tensor([1] * 50 + [2] * 50 + [0])
    x = torch.randn(101, 4)
    x[domain == 1] += 10.0
    x[domain == 2] = x[domain == 2] * 5.0 - 3.0
    out = norm(x, domain)  # training: each domain with its own batch statistics
    for d in (1, 2):
        rows = out[domain == d]
        assert torch.allclose(rows.mean(0), torch.zeros(4), atol=1e-4)
        assert torch.allclose(rows.var(0, unbiased=False), torch.ones(4), atol=1e-3)
    # domain 0 had one row: its moving averages stay at their start and normalise it
    assert torch.equal(norm.running_mean[0], torch.zeros(4))
    assert torch.allclose(out[domain == 0], x[domain == 0] / (1 + 1e-5) ** 0.5)
    assert torch.allclose(norm.running_mean[1], x[domain == 1].mean(0))
    norm.eval()  # inference: each domain's moving averages
    evaluated = norm(x, domain)
    assert torch.allclose(evaluated[domain == 1].mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(evaluated[domain == 2].mean(0), torch.zeros(4), atol=1e-4)


@pytest.mark.parametrize("name", sorted(JOINT_MODELS))
def test_train_ranker_save_load_round_trip(
    name: str, tmp_path: Path, two_domain_split: tuple[Samples, Samples]
) -> None:
    train, test = two_domain_split
    ranker = train_ranker(train, name, "feature", TrainConfig(epochs=1, batch_size=256))
    before = ranker.score(test)
    loaded = Ranker.load(ranker.save(tmp_path / "ranking"))
    after = loaded.score(test)
    for task in ("click", "cart", "purchase"):
        assert np.isfinite(before[task]).all()
        np.testing.assert_allclose(before[task], after[task], rtol=1e-5, atol=1e-6)


def _shared_distance(model: CDANW, encoder: FeatureEncoder, samples: Samples) -> float:
    """Sliced-Wasserstein distance between the two domains' shared representations, relative
    to their overall spread (so shrinking every representation does not count)."""
    batch = encoder.transform(samples)
    model.eval()
    with torch.no_grad():
        shared, _, _ = model.encode(batch)
    ids = torch.unique(batch.domain)
    assert len(ids) == 2
    a, b = shared[batch.domain == ids[0]], shared[batch.domain == ids[1]]
    spread = float(shared.var(dim=0).sum()) + 1e-9
    distance = sliced_wasserstein(a, b, 128, torch.Generator().manual_seed(7))
    return float(distance) / spread


def test_wasserstein_regulariser_pulls_shared_representations_together(
    two_domain_split: tuple[Samples, Samples], two_domain_encoder: FeatureEncoder
) -> None:
    train, _ = two_domain_split
    batch = two_domain_encoder.transform(train)
    spec = two_domain_encoder.spec_
    cfg = TrainConfig(epochs=4, batch_size=256, seed=0)
    distances = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = CDANW(spec, wasserstein_weight=weight, difference_weight=0.0)
        if weight == 0.0:
            initial = _shared_distance(model, two_domain_encoder, train)
        fit(model, batch, None, cfg)
        distances[weight] = _shared_distance(model, two_domain_encoder, train)
    assert distances[1.0] < 0.5 * distances[0.0]
    assert distances[1.0] < initial


def test_cdanw_attention_importances_sum_to_one(
    two_domain_split: tuple[Samples, Samples], two_domain_encoder: FeatureEncoder
) -> None:
    batch = two_domain_encoder.transform(two_domain_split[0])
    torch.manual_seed(0)
    model = CDANW(two_domain_encoder.spec_)
    fit(model, batch, None, TrainConfig(epochs=1, batch_size=512))
    importances = model.domain_importances()
    assert sorted(importances) == [1, 2]
    for weights in importances.values():
        assert set(weights) == set(model.group_names)
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-4)


def test_cdanw_shared_attention_starts_every_domain_alike_and_old_models_load(
    two_domain_split: tuple[Samples, Samples], two_domain_encoder: FeatureEncoder
) -> None:
    batch = two_domain_encoder.transform(two_domain_split[0])
    spec = two_domain_encoder.spec_
    torch.manual_seed(0)
    model = CDANW(spec).eval()
    fields = model.fields(batch)
    one = model.attention(fields, torch.ones_like(batch.domain))
    two = model.attention(fields, torch.full_like(batch.domain, 2))
    torch.testing.assert_close(one, two)  # no domain has its own reading yet
    before = model.attention_shared.detach().clone()
    fit(model, batch, None, TrainConfig(epochs=1, batch_size=512))
    assert not torch.equal(model.attention_shared.detach(), before)  # the shared query learns
    # a model saved before the shared query existed: whole per-domain queries, no shared part
    torch.manual_seed(0)
    old = CDANW(spec, shared_attention=False).eval()
    state = {k: v for k, v in old.state_dict().items() if k != "attention_shared"}
    again = CDANW(spec).eval()
    again.load_state_dict(state)
    torch.testing.assert_close(again(batch).p_click, old(batch).p_click)


def test_pgtl_priors_come_from_other_domains(
    two_domain_split: tuple[Samples, Samples], two_domain_encoder: FeatureEncoder
) -> None:
    batch = two_domain_encoder.transform(two_domain_split[0])
    model = PGTL(two_domain_encoder.spec_).fit_priors(batch)
    stats = model.prior_stats(batch)
    assert torch.isfinite(stats).all()
    # impressions in the other domain: an item's own-domain rows never count
    item, domain = batch.item, batch.domain
    row = int(torch.nonzero(item > 0)[0])
    other = (item == item[row]) & (domain != domain[row])
    assert float(stats[row, 0]) == pytest.approx(float(np.log1p(int(other.sum()))), rel=1e-5)
