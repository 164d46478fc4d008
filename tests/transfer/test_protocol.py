"""The transfer protocol API: subsampling by request and every method's smoke training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.lightgbm_ranker import funnel_grade
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig
from shopsearch.transfer.protocol import graded_labels, subsample_target, train_transfer
from shopsearch.transfer.registry import METHODS, report_name

FAST = TrainConfig(epochs=1, batch_size=256)


def test_subsample_keeps_whole_requests_and_all_source_rows(
    two_domain_split: tuple[Samples, Samples], domains: tuple[str, str]
) -> None:
    train, _ = two_domain_split
    source, target = domains
    small = subsample_target(train, [target], 0.2, seed=1)
    rows, full = small.rows, train.rows
    assert (rows["domain"] == source).sum() == (full["domain"] == source).sum()
    kept = rows.loc[rows["domain"] == target, "request_id"].unique()
    all_target = full.loc[full["domain"] == target, "request_id"].unique()
    assert 0 < len(kept) < len(all_target)
    assert abs(len(kept) - 0.2 * len(all_target)) <= 1
    # every impression of a kept request stays
    kept_sizes = rows.groupby("request_id").size()
    full_sizes = full.groupby("request_id").size().loc[kept_sizes.index]
    assert (kept_sizes == full_sizes).all()
    again = subsample_target(train, [target], 0.2, seed=1)
    assert again.rows["request_id"].tolist() == rows["request_id"].tolist()
    assert subsample_target(train, [target], 1.0) is train
    with pytest.raises(InvalidInputError):
        subsample_target(train, [target], 0.0)
    with pytest.raises(InvalidInputError):
        subsample_target(train, ["nowhere"], 0.5)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_smoke_trains(
    method: str, two_domain_split: tuple[Samples, Samples], domains: tuple[str, str]
) -> None:
    train, test = two_domain_split
    source, target = domains
    small = subsample_target(train, [target], 0.5, seed=0)
    scorer = train_transfer(method, small, [source], [target], FAST, min_steps=0)
    scores = scorer.scores(test)
    is_target = (test.rows["domain"] == target).to_numpy()
    for task in ("click", "cart", "purchase"):
        values = scores[task][is_target]
        assert values.shape == (int(is_target.sum()),)
        assert np.isfinite(values).all()
        if method != "lightgbm-pooled":  # LambdaMART scores are not probabilities
            assert ((values >= 0) & (values <= 1)).all()
    np.testing.assert_array_equal(scorer.score(test), scores["click"])
    if method == "target-only":
        assert np.isnan(scores["click"][~is_target]).all()


def test_fine_tune_starts_from_the_zero_shot_model(
    two_domain_split: tuple[Samples, Samples], domains: tuple[str, str]
) -> None:
    train, test = two_domain_split
    source, target = domains
    small = subsample_target(train, [target], 0.5, seed=0)
    zero = train_transfer("zero-shot", small, [source], [target], FAST, min_steps=0)
    frozen = train_transfer("fine-tune", small, [source], [target], FAST, min_steps=0,
                            fine_tune_lr=0.0)  # fmt: skip
    np.testing.assert_allclose(frozen.score(test), zero.score(test), rtol=1e-6)
    tuned = train_transfer("fine-tune", small, [source], [target], FAST, min_steps=0)
    assert set(tuned.info) == {"all", "target"}
    assert not np.allclose(tuned.score(test), zero.score(test))


@pytest.mark.parametrize("method", ["cdan-w", "pgtl"])
def test_warm_start_trains_on_the_source_first(
    method: str, two_domain_split: tuple[Samples, Samples], domains: tuple[str, str]
) -> None:
    train, test = two_domain_split
    source, target = domains
    small = subsample_target(train, [target], 0.5, seed=0)
    cold = train_transfer(method, small, [source], [target], FAST, min_steps=0)
    warm = train_transfer(method, small, [source], [target], FAST, min_steps=0, warm_start=True)
    assert set(cold.info) == {"all"}
    assert set(warm.info) == {"source", "all"}
    scores = warm.score(test)
    assert np.isfinite(scores).all()
    assert not np.allclose(scores, cold.score(test))
    # the source phase saw no target row: a regime is never warm-started
    pooled = train_transfer("pooled", small, [source], [target], FAST, min_steps=0,
                            warm_start=True)  # fmt: skip
    assert set(pooled.info) == {"all"}


def test_seq_md_trains_with_and_without_its_market_mask(
    two_domain_split: tuple[Samples, Samples], domains: tuple[str, str]
) -> None:
    from shopsearch.ranking.models.seq_md import SeqMD

    train, test = two_domain_split
    source, target = domains
    small = subsample_target(train, [target], 0.5, seed=0)
    masked = train_transfer("seq-md", small, [source], [target], FAST, min_steps=0)
    plain = train_transfer("seq-md-nomask", small, [source], [target], FAST, min_steps=0)
    inner = [getattr(s.model, "inner", None) for s in (masked, plain)]
    assert all(isinstance(m, SeqMD) for m in inner)
    assert inner[0].market_mask is not None  # type: ignore[union-attr]
    assert inner[1].market_mask is None  # type: ignore[union-attr]
    assert not np.allclose(masked.score(test), plain.score(test))


def test_lightgbm_labels_keep_soft_grades(
    two_domain_split: tuple[Samples, Samples], two_domain_encoder: FeatureEncoder
) -> None:
    batch = two_domain_encoder.transform(two_domain_split[0])
    np.testing.assert_array_equal(graded_labels(batch), funnel_grade(batch))
    batch.click = torch.linspace(0.0, 1.0, len(batch))
    levels = graded_labels(batch)
    assert levels.min() == 0
    assert levels.max() == 4
    assert (np.diff(levels) >= 0).all()


def test_report_names() -> None:
    assert report_name("cdan-w", 0.05) == "shopsearch/cdan-w@0.05"
    assert report_name("pgtl") == "shopsearch/pgtl"
    assert report_name("target-only", 1.0) == "baseline/target-only@1"
    assert report_name("mmoe-domain") == "baseline/mmoe-domain"
    assert report_name("lightgbm-pooled", 0.1) == "baseline/lightgbm-pooled@0.1"
    assert report_name("seq-md-nomask", 0.1) == "shopsearch/seq-md-nomask@0.1"
    with pytest.raises(InvalidInputError):
        report_name("nope")
