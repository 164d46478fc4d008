"""SCI's symmetric alignment (SymmAligner) in the MMSE two-tower: the swapped retrieval loss."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from shopsearch.catalog.candidates import ProductKey
from shopsearch.config import RetrievalSettings
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.learned import LearnedDenseRetriever
from shopsearch.retrieval.learned_train import (
    LearnedConfig,
    LogSamples,
    item_texts,
    train_learned,
)
from shopsearch.retrieval.mmse import TwoTowerEncoder
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.store.schema import TABLES

KINDS = ["drill", "sofa", "lamp", "hammer", "faucet", "ladder"]
COLOURS = ["red", "blue", "black", "white"]


def products() -> pa.Table:
    """24 products: a colour, a kind and a model number in the title; two brands."""
    rows = [
        {
            "domain": "us",
            "product_id": f"p{i}",
            "title": f"{COLOURS[i // len(KINDS)]} {KINDS[i % len(KINDS)]} model{i}",
            "description": "",
            "brand": "Acme" if i % 2 else "Globex",
            "category": ["Tools", KINDS[i % len(KINDS)].title()],
            "price": float(i + 1),
            "attributes": "{}",
            "created_at": datetime(2024, 1, 1, tzinfo=UTC),
            "in_stock": True,
        }
        for i in range(24)
    ]
    schema = TABLES["products"]
    return pa.table({f.name: [r[f.name] for r in rows] for f in schema}, schema=schema)


def toy_log() -> tuple[StagedSamples, list[str]]:
    """Queries ``cheap <kind>s`` judged against the products: that kind 3 or 2, some others 1;
    and every query and item text."""
    texts = item_texts(products())
    qrels: dict[str, dict[ProductKey, float]] = {}
    for k, kind in enumerate(KINDS):
        grades: dict[ProductKey, float] = {}
        for i, (key, text) in enumerate(texts.items()):
            if kind in text:
                grades[key] = 3.0 if i % 2 == 0 else 2.0
            elif i % 7 == k:
                grades[key] = 1.0
        qrels[f"cheap {kind}s"] = grades
    return StagedSamples.from_judgments(qrels, texts), [*qrels, *texts.values()]


def encoder(**kw: Any) -> TwoTowerEncoder:
    settings: dict[str, Any] = {
        "buckets": 2**12,
        "head_dim": 16,
        "batch_size": 8,
        "random_negatives": 8,
        "epochs": 3,
        "lr": 0.01,
        "positive_stage": 2.0,
    }
    return TwoTowerEncoder(**{**settings, **kw})


def shapes(model: TwoTowerEncoder) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.net_.named_parameters()}


def same_text_cosine(model: TwoTowerEncoder, texts: list[str]) -> float:
    """Mean cos(f_q(x), f_i(x)) over texts (the served vectors have unit norm)."""
    return float((model.encode_queries(texts) * model.encode_items(texts)).sum(1).mean())


def test_weight_zero_trains_exactly_as_without_the_key() -> None:
    samples, _ = toy_log()
    plain = encoder().fit(samples)
    zero = encoder(symmetric_weight=0.0).fit(samples)
    assert zero.version == plain.version
    assert zero.history_ == plain.history_


def test_the_swapped_loss_adds_no_parameter_and_aligns_the_towers() -> None:
    samples, texts = toy_log()
    plain = encoder().fit(samples)
    sci = encoder(symmetric_weight=0.5).fit(samples)
    assert shapes(sci) == shapes(plain)
    assert sci.version != plain.version
    assert same_text_cosine(sci, texts) > same_text_cosine(plain, texts) + 0.1


def test_weight_one_without_the_ranking_loss_keeps_identical_towers_identical() -> None:
    """At weight 1 the loss is unchanged by exchanging the towers' heads, and the heads start
    equal (zero residuals), so they stay equal: the swap is exactly the exchange of towers."""
    samples, texts = toy_log()
    sci = encoder(symmetric_weight=1.0, rank_weight=0.0).fit(samples)
    net: Any = sci.net_
    for query_head, item_head in zip(net.query_heads, net.item_heads, strict=True):
        torch.testing.assert_close(query_head.weight, item_head.weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(sci.encode_queries(texts), sci.encode_items(texts), atol=1e-5)


def test_config_round_trips_and_old_bundles_load(tmp_path: Path) -> None:
    samples, _ = toy_log()
    sci = encoder(symmetric_weight=0.5).fit(samples)
    sci.save(tmp_path / "sci")
    loaded = TwoTowerEncoder.load(tmp_path / "sci")
    assert loaded.symmetric_weight == 0.5
    assert loaded.get_config() == sci.get_config()
    assert loaded.version == sci.version
    # A bundle saved before the key existed loads with the default (no swapped loss).
    plain = encoder().fit(samples)
    plain.save(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    del saved["config"]["symmetric_weight"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    old = TwoTowerEncoder.load(tmp_path / "old")
    assert old.symmetric_weight == 0.0
    assert old.version == plain.version


def test_a_negative_weight_fails_clearly() -> None:
    with pytest.raises(InvalidInputError, match="symmetric_weight=-1"):
        TwoTowerEncoder(symmetric_weight=-1.0)


def test_train_learned_serves_an_sci_two_tower_source(tmp_path: Path) -> None:
    samples, _ = toy_log()
    settings = RetrievalSettings(learned=["sci-two-tower"], learned_sci_weight=0.5)
    config = LearnedConfig.from_settings(settings)
    assert (config.models, config.sci_weight) == (["sci-two-tower"], 0.5)
    config.two_tower = {"buckets": 2**12, "head_dim": 16, "batch_size": 8, "epochs": 3}
    learned = train_learned(LogSamples(samples, "judgments", 2.0), products(), config)
    source = learned.retrievers["sci-two-tower"]
    assert isinstance(source, LearnedDenseRetriever)
    assert isinstance(source.encoder, TwoTowerEncoder)
    assert source.encoder.symmetric_weight == 0.5
    assert learned.encoder.symmetric_weight == 0.0
    assert learned.info["sci-two-tower"]["two_tower"]["symmetric_weight"] == 0.5
    found = source.retrieve("cheap drills", k=3)
    assert all(int(pid[1:]) % len(KINDS) == 0 for _, pid in found.keys)
    source.save(tmp_path / "sci")
    again = LearnedDenseRetriever.load(tmp_path / "sci")
    assert isinstance(again.encoder, TwoTowerEncoder)
    assert again.encoder.symmetric_weight == 0.5
    assert again.retrieve("cheap drills", k=3).keys == found.keys


@pytest.mark.parametrize(("index", "view"), [("ci", "dual"), ("ivf", "item")])
def test_learned_index_serves_the_consistent_index(tmp_path: Path, index: str, view: str) -> None:
    from shopsearch.retrieval.consistent_index import LearnedCIRetriever
    from shopsearch.retrieval.hybrid import HybridRetriever

    samples, _ = toy_log()
    settings = RetrievalSettings.model_validate(
        {"learned": ["sci-two-tower"], "learned_index": index, "learned_nprobe": 2}
    )
    config = LearnedConfig.from_settings(settings)
    config.two_tower = {"buckets": 2**12, "head_dim": 16, "batch_size": 8, "epochs": 3}
    learned = train_learned(LogSamples(samples, "judgments", 2.0), products(), config)
    source = learned.retrievers["sci-two-tower"]
    assert isinstance(source, LearnedCIRetriever)
    assert (source.view, source.nprobe) == (view, 2)
    found = source.retrieve("cheap drills", k=3)
    HybridRetriever({"sci": source}).save(tmp_path / "bundle")
    again = HybridRetriever.load(tmp_path / "bundle").sources["sci"]
    assert isinstance(again, LearnedCIRetriever)
    assert again.view == view
    assert again.retrieve("cheap drills", k=3).keys == found.keys
