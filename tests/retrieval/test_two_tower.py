"""MMSE two-tower: hashed features, both losses on tiny batches, training, save/load, serving."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from shopsearch.catalog.candidates import Filters, ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.progress import Progress
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.mmse import TwoTowerEncoder
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.retrieval.mmse_train import ranking_loss, retrieval_loss
from shopsearch.store.schema import TABLES
from shopsearch.text.encoders import Encoder, FloatMatrix, make_encoder
from shopsearch.text.hashed import HashedFeaturizer
from shopsearch.text.product_text import product_texts

KINDS = ["drill", "sofa", "lamp", "hammer", "faucet", "ladder"]
COLOURS = ["red", "blue", "black", "white"]


def products() -> pa.Table:
    rows: list[dict[str, Any]] = []
    for i in range(48):
        kind = KINDS[i % len(KINDS)]
        rows.append(
            {
                "domain": "us",
                "product_id": f"p{i}",
                "title": f"{COLOURS[i // len(KINDS) % len(COLOURS)]} {kind} model{i}",
                "description": "",
                "brand": "Acme" if i % 2 else "Globex",
                "category": ["Tools", kind.title()],
                "price": float(i + 1),
                "attributes": "{}",
                "created_at": datetime(2024, 1, 1, tzinfo=UTC),
                "in_stock": True,
            }
        )
    schema = TABLES["products"]
    return pa.table({f.name: [r[f.name] for r in rows] for f in schema}, schema=schema)


def judged(table: pa.Table) -> tuple[dict[str, dict[ProductKey, float]], dict[ProductKey, str]]:
    """Queries 'cheap <kind>': products of that kind graded 3 (even) or 2 (odd); others 1."""
    keys = [("us", pid) for pid in table.column("product_id").to_pylist()]
    texts = dict(zip(keys, product_texts(table), strict=True))
    titles = table.column("title").to_pylist()
    qrels: dict[str, dict[ProductKey, float]] = {}
    for kind in KINDS:
        grades: dict[ProductKey, float] = {}
        for i, (key, title) in enumerate(zip(keys, titles, strict=True)):
            if kind in title:
                grades[key] = 3.0 if i % 2 == 0 else 2.0
            elif i % 7 == KINDS.index(kind):
                grades[key] = 1.0
        qrels[f"cheap {kind}s"] = grades
    return qrels, texts


def small_encoder(**kw: Any) -> TwoTowerEncoder:
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


def test_featurizer_grains_are_stable_and_never_empty() -> None:
    featurizer = HashedFeaturizer(buckets=1000)
    words, chars, bigrams = featurizer.features("Red Drill")
    assert words == featurizer.features("red drill!")[0]
    assert len(words) == 2
    assert len(bigrams) == 1
    assert len(chars) == len("#red#") - 2 + len("#drill#") - 2
    assert all(0 < i < 1000 for i in [*words, *chars, *bigrams])
    assert featurizer.features("") == ([0], [0], [0])
    word_bags, _, _ = featurizer.featurize(["a b", "", "c"])
    assert word_bags.offsets.tolist() == [0, 2, 3]
    with pytest.raises(InvalidInputError):
        HashedFeaturizer(buckets=1)


def test_retrieval_loss_is_lower_when_positives_score_higher() -> None:
    positive = torch.tensor([0, 1])
    exclude = torch.zeros(2, 3, dtype=torch.bool)
    good = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]])
    bad = torch.tensor([[0.1, 0.9, 0.0], [0.9, 0.1, 0.0]])
    plain = retrieval_loss(bad, positive, exclude, 0.1)
    assert retrieval_loss(good, positive, exclude, 0.1) < plain
    # An excluded candidate is not a negative: excluding the strong competitor lowers the loss.
    competitor = torch.tensor([[False, True, False], [True, False, False]])
    assert retrieval_loss(bad, positive, competitor, 0.1) < plain


def test_ranking_loss_is_zero_when_the_order_holds_by_the_margin() -> None:
    higher = torch.tensor([0.8, 0.5])
    assert float(ranking_loss(higher, torch.tensor([0.5, 0.25]), margin=0.2)) == 0.0
    assert float(ranking_loss(higher, torch.tensor([0.7, 0.3]), margin=0.2)) == pytest.approx(
        0.05, abs=1e-6
    )
    assert float(ranking_loss(higher, torch.tensor([0.9, 0.6]), margin=0.0)) > 0.0


def test_samples_from_judgments_keep_grades_as_stages() -> None:
    qrels = {"q1": {("us", "a"): 3.0, ("us", "zz"): 2.0}, "q2": {("us", "zz"): 1.0}}
    samples = StagedSamples.from_judgments(qrels, {("us", "a"): "A", ("us", "b"): "B"})
    assert samples.queries == ["q1"]
    assert samples.items == ["A", "B"]
    assert samples.item_index.tolist() == [0]
    assert samples.stage.tolist() == [3.0]


def test_training_reduces_the_loss_and_ranks_the_right_kind_first() -> None:
    table = products()
    qrels, texts = judged(table)
    samples = StagedSamples.from_judgments(qrels, texts)
    encoder = small_encoder(epochs=8).fit(samples)
    assert encoder.history_[-1] < encoder.history_[0]
    queries = encoder.encode_queries(["cheap drills"])
    items = encoder.encode_items(list(texts.values()))
    assert queries.shape == (1, encoder.dim) == (1, 48)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    top = np.argsort(-(items @ queries[0]))[:5]
    assert all("drill" in list(texts.values())[i] for i in top)


def test_no_positive_pair_and_unfitted_fail_clearly() -> None:
    samples = StagedSamples.from_judgments({"q": {("us", "a"): 1.0}}, {("us", "a"): "A"})
    with pytest.raises(InvalidInputError, match="positive_stage"):
        small_encoder().fit(samples)
    with pytest.raises(NotFittedError):
        small_encoder().encode_queries(["x"])
    with pytest.raises(InvalidInputError):
        TwoTowerEncoder(head_dim=0)


def test_save_load_round_trip_and_registry(tmp_path: Path) -> None:
    table = products()
    qrels, texts = judged(table)
    encoder = small_encoder().fit(StagedSamples.from_judgments(qrels, texts))
    encoder.save(tmp_path / "tt")
    assert (tmp_path / "tt" / "weights.safetensors").exists()
    loaded = TwoTowerEncoder.load(tmp_path / "tt")
    assert loaded.version == encoder.version
    np.testing.assert_array_equal(
        loaded.encode_queries(["red lamp"]), encoder.encode_queries(["red lamp"])
    )
    rebuilt = make_encoder("mmse", encoder.get_config())
    np.testing.assert_array_equal(
        rebuilt.encode_items(["blue sofa"]), encoder.encode_items(["blue sofa"])
    )
    with pytest.raises(WorkspaceError):
        TwoTowerEncoder.load(tmp_path / "missing")


def test_plugs_into_dense_retriever_with_filters_and_save_load(tmp_path: Path) -> None:
    table = products()
    qrels, texts = judged(table)
    encoder = small_encoder(epochs=6).fit(StagedSamples.from_judgments(qrels, texts))
    encoder.save(tmp_path / "encoder")
    dense = DenseRetriever(encoder=encoder).index(table)
    found = dense.retrieve("cheap drills", k=5)
    assert len(found) == 5
    filtered = dense.retrieve("cheap drills", k=5, filters=Filters(price_max=10.0))
    assert all(int(pid[1:]) + 1 <= 10 for _, pid in filtered.keys)
    dense.save(tmp_path / "dense")
    again = DenseRetriever.load(tmp_path / "dense")
    assert again.retrieve("cheap drills", k=5).keys == found.keys


def test_samples_from_events_take_the_furthest_stage() -> None:
    requests = pa.table(
        {"request_id": ["r1", "r2", "r3"], "domain": ["us"] * 3, "query": ["drill"] * 3}
    )
    impressions = pa.table(
        {
            "request_id": ["r1", "r1", "r1", "r2", "r2", "gone"],
            "product_id": ["a", "b", "c", "a", "b", "a"],
        }
    )
    interactions = pa.table(
        {
            "request_id": ["r1", "r1", "r2", "r2"],
            "product_id": ["a", "b", "b", "b"],
            "kind": ["click", "click", "add_to_cart", "purchase"],
        }
    )
    texts = {("us", p): p.upper() for p in "abc"}
    samples = StagedSamples.from_events(requests, impressions, interactions, texts)
    assert samples.queries == ["drill"]
    stages = dict(zip(samples.item_index.tolist(), samples.stage.tolist(), strict=True))
    assert stages == {0: 2.0, 1: 3.0, 2: 1.0}


class LetterEncoder(Encoder):
    """A tiny frozen sentence encoder: normalised letter counts (stands in for MiniLM)."""

    name = "letters"

    @property
    def dim(self) -> int:
        return 26

    @property
    def version(self) -> str:
        return "letters-1"

    def _vectors(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.full((len(texts), 26), 1e-3, np.float32)
        for row, text in enumerate(texts):
            for char in text.lower():
                if "a" <= char <= "z":
                    out[row, ord(char) - ord("a")] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self._vectors(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        return self._vectors(texts)


@pytest.mark.parametrize("backbone", ["minilm", "hashed+minilm"])
def test_frozen_sentence_encoder_head_trains_fuses_and_round_trips(
    backbone: str, tmp_path: Path
) -> None:
    table = products()
    qrels, texts = judged(table)
    samples = StagedSamples.from_judgments(qrels, texts)
    letters = LetterEncoder()
    encoder = small_encoder(epochs=8, backbone=backbone, dense_encoder=letters).fit(samples)
    hashed_dim = 48 if backbone == "hashed+minilm" else 0
    assert encoder.dim == hashed_dim + 26
    assert encoder.history_[-1] < encoder.history_[0]
    assert encoder.version.endswith("+letters-1")
    items = encoder.encode_items(list(texts.values()))
    queries = encoder.encode_queries(["cheap drills"])
    assert items.shape == (len(texts), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    top = np.argsort(-(items @ queries[0]))[:3]
    assert all("drill" in list(texts.values())[i] for i in top)
    # Item vectors of the frozen encoder go through (and then come from) the embedding cache.
    cached = small_encoder(
        epochs=1, backbone=backbone, dense_encoder=letters, dense_cache=str(tmp_path / "c")
    ).fit(samples)
    assert list((tmp_path / "c" / "letters").glob("shard-*.npy"))
    np.testing.assert_allclose(
        cached.encode_items(["red drill"]),
        small_encoder(epochs=1, backbone=backbone, dense_encoder=letters)
        .fit(samples)
        .encode_items(["red drill"]),
        rtol=1e-5,
        atol=1e-6,
    )
    encoder.save(tmp_path / "tt")
    loaded = TwoTowerEncoder.load(tmp_path / "tt", dense_encoder=letters)
    assert loaded.version == encoder.version
    np.testing.assert_array_equal(
        loaded.encode_items(["red lamp"]), encoder.encode_items(["red lamp"])
    )


def test_unknown_backbone_fails_clearly() -> None:
    with pytest.raises(InvalidInputError, match="backbone"):
        TwoTowerEncoder(backbone="bert")


def test_a_frozen_sentence_head_serves_the_frozen_vectors_scaled_by_their_weight() -> None:
    table = products()
    qrels, texts = judged(table)
    letters = LetterEncoder()
    encoder = small_encoder(
        epochs=2, backbone="hashed+minilm", dense_encoder=letters, train_dense_head=False
    ).fit(StagedSamples.from_judgments(qrels, texts))
    net: Any = encoder.net_
    weight = float(torch.softmax(net.fusion_logits.detach(), 0)[-1])
    assert 0 < weight < 1
    items = encoder.encode_items(["red drill"])
    np.testing.assert_allclose(
        items[0, 48:], np.sqrt(weight) * letters.encode_items(["red drill"])[0], rtol=1e-4
    )
