"""The dense-similarity ranking feature and the vectorised serving path, on the tiny workspace."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from shopsearch.catalog.candidates import Candidates
from shopsearch.config import RankingSettings
from shopsearch.errors import InvalidInputError
from shopsearch.progress import Progress
from shopsearch.ranking.dense_feature import DenseSimilarity
from shopsearch.ranking.feature_names import DENSE_FEATURES, DENSE_SIM
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.ranker import Ranker, train_ranker
from shopsearch.ranking.samples import Samples, build_samples
from shopsearch.ranking.serving import ServingFeatures
from shopsearch.ranking.stage import RankingStage
from shopsearch.ranking.train import TrainConfig
from shopsearch.ranking.value import RankingValue
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.store.workspace import Workspace
from shopsearch.text.encoders import Encoder, FloatMatrix


class WordHashEncoder(Encoder):
    """Hashed bag of words → unit vector; records the queries it encodes."""

    name = "test-word-hash"
    config_keys: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.queries: list[str] = []

    @property
    def dim(self) -> int:
        return 32

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), 32), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
                out[row, h % 32] += 1.0
            out[row, 0] += 0.01
        unit: FloatMatrix = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        self.queries.extend(texts)
        return self._encode(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        return self._encode(texts)


@pytest.fixture(scope="module")
def retriever(tiny_workspace: Path) -> DenseRetriever:
    products = Workspace.open(tiny_workspace).table("products")
    return DenseRetriever(encoder=WordHashEncoder()).index(products)


@pytest.fixture(scope="module")
def dense_samples(tiny_workspace: Path, retriever: DenseRetriever) -> Samples:
    con = Workspace.open(tiny_workspace).connect()
    return build_samples(con, similarity=DenseSimilarity(retriever))


def _a_request(tiny_workspace: Path) -> tuple[str, str, str, list[str], int]:
    con = Workspace.open(tiny_workspace).connect()
    user, domain, query = con.execute(
        "SELECT r.user_id, r.domain, r.query FROM requests r JOIN interactions i "
        "USING (request_id) ORDER BY r.timestamp DESC LIMIT 1"
    ).fetchone()
    products = [
        p
        for (p,) in con.execute(
            "SELECT product_id FROM products WHERE domain = ? ORDER BY product_id LIMIT 40",
            [domain],
        ).fetchall()
    ]
    return (
        str(user),
        str(domain),
        str(query),
        [*products, "no-such-product"],
        int(time.time() * 1e6),
    )


def test_similarity_is_the_cosine_and_unknown_products_get_zero(
    retriever: DenseRetriever,
) -> None:
    key = retriever.rows_.keys[0]
    sim = DenseSimilarity(retriever)
    got = sim.scores("red shoes", key[0], [key[1], "no-such-product"])
    query = retriever.encoder.encode_queries(["red shoes"])[0]
    expected = float(retriever.vectors_[retriever.rows_.row_of[key]] @ query)
    assert got[0] == pytest.approx(expected, abs=1e-6)
    assert got[1] == 0.0
    many = sim.scores_many(
        np.array(["red shoes", "red shoes"], dtype=object),
        np.array([key[0], key[0]], dtype=object),
        np.array([key[1], "no-such-product"], dtype=object),
    )
    np.testing.assert_allclose(many, got, atol=1e-6)


def test_samples_carry_dense_sim_and_serving_computes_the_same(
    tiny_workspace: Path, retriever: DenseRetriever, dense_samples: Samples
) -> None:
    assert dense_samples.dense_names == (*DENSE_FEATURES, DENSE_SIM)
    rows = dense_samples.rows
    con = Workspace.open(tiny_workspace).connect()
    queries = dict(con.execute("SELECT request_id, query FROM requests").fetchall())
    first = rows.iloc[0]
    sim = DenseSimilarity(retriever)
    served = sim.scores(queries[first["request_id"]], first["domain"], [first["product_id"]])
    assert first[DENSE_SIM] == pytest.approx(served[0], abs=1e-6)
    assert np.abs(rows[DENSE_SIM].to_numpy()).max() > 0
    encoder = FeatureEncoder().fit(dense_samples)
    assert encoder.dense_names_[-1] == DENSE_SIM
    assert encoder.spec_.dense_names == encoder.dense_names_


def test_encoder_keeps_its_own_dense_columns_through_save_and_load(
    dense_samples: Samples, tiny_samples: Samples, tmp_path: Path
) -> None:
    encoder = FeatureEncoder().fit(dense_samples)
    loaded = FeatureEncoder.load(encoder.save(tmp_path))
    assert loaded.dense_names_ == encoder.dense_names_
    assert torch.equal(
        loaded.transform(dense_samples).dense, encoder.transform(dense_samples).dense
    )
    # a bundle fitted without the feature still reads only its own columns
    old = FeatureEncoder().fit(tiny_samples)
    assert old.dense_names_ == DENSE_FEATURES
    assert old.transform(dense_samples).dense.shape[1] == len(DENSE_FEATURES)
    without = replace(tiny_samples, dense_names=(*DENSE_FEATURES, DENSE_SIM))
    with pytest.raises(InvalidInputError, match="dense_sim"):
        FeatureEncoder().fit(without)


def test_fast_serving_batch_equals_the_encoded_samples(
    tiny_workspace: Path, retriever: DenseRetriever, dense_samples: Samples
) -> None:
    user, domain, query, products, now = _a_request(tiny_workspace)
    snapshot = ServingFeatures.from_workspace(Workspace.open(tiny_workspace))
    encoder = FeatureEncoder().fit(dense_samples)
    sim = DenseSimilarity(retriever)
    snapshot.bind(encoder)
    batch, prices = snapshot.batch(encoder, query, domain, products, user, now, sim)
    reference = encoder.transform(snapshot.samples(query, domain, products, user, now, sim))
    for name in ("dense", "sparse", "item", "item_category", "query_category", "domain"):
        expected, got = getattr(reference, name), getattr(batch, name)
        if expected.dtype.is_floating_point:
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=name)
        else:
            assert torch.equal(got, expected), name
    for name in ("seq_items", "seq_categories", "seq_kinds", "seq_age"):
        torch.testing.assert_close(getattr(batch, name), getattr(reference, name), msg=name)
    assert prices[-1] == 0.0  # the unknown product
    assert batch.item[-1] == 0


def test_stage_reuses_the_retrievers_query_vector(
    tiny_workspace: Path, retriever: DenseRetriever, dense_samples: Samples
) -> None:
    ranker = train_ranker(dense_samples, "dnn", config=TrainConfig(epochs=1))
    ranker.info["dense_space"] = retriever.vector_space
    snapshot = ServingFeatures.from_workspace(Workspace.open(tiny_workspace))
    value = RankingValue(RankingSettings().value)
    with pytest.raises(InvalidInputError, match="no source of its vectors"):
        RankingStage(ranker, snapshot, value)
    stage = RankingStage(ranker, snapshot, value, retriever)
    assert stage.vector_space == retriever.vector_space
    encoder = retriever.encoder
    assert isinstance(encoder, WordHashEncoder)
    query = "a query asked once zz"
    hits = retriever.search(query, 25)
    assert hits.query_vector is not None
    retriever.clear_query_cache()  # the vector must come from the caller, not the cache
    before = len(encoder.queries)
    ranked = stage.rank(hits.candidates, query, None, 25, hits.query_vector)
    assert len(encoder.queries) == before
    assert sorted(ranked.candidates(hits.candidates).keys) == sorted(hits.candidates.keys)
    assert np.all(np.diff(ranked.scores) <= 0)
    assert np.all(np.diff(ranked.columns["value"][ranked.order]) <= 0)


def test_stage_refuses_vectors_of_another_space(
    tiny_workspace: Path, retriever: DenseRetriever, dense_samples: Samples
) -> None:
    """A model trained on one encoder's cosines is never scored with another's."""
    ranker = train_ranker(dense_samples, "dnn", config=TrainConfig(epochs=1))
    ranker.info["dense_space"] = "minilm@some-version"
    snapshot = ServingFeatures.from_workspace(Workspace.open(tiny_workspace))
    with pytest.raises(InvalidInputError, match="vector space 'minilm@some-version'"):
        RankingStage(ranker, snapshot, RankingValue(RankingSettings().value), retriever)


def test_a_bundle_without_dense_sim_still_serves(
    tiny_workspace: Path, tiny_samples: Samples, tmp_path: Path
) -> None:
    ranker = train_ranker(tiny_samples, "lightgbm", config=TrainConfig(epochs=1))
    loaded = Ranker.load(ranker.save(tmp_path / "r"))
    snapshot = ServingFeatures.from_workspace(Workspace.open(tiny_workspace))
    stage = RankingStage(loaded, snapshot, RankingValue(RankingSettings().value))
    user, domain, query, products, _ = _a_request(tiny_workspace)
    keys = [(domain, p) for p in products]
    fused = Candidates(keys=keys, scores=np.linspace(1, 0, len(keys)).astype(np.float32))
    ranked = stage.rank(fused, query, user, 10)
    assert sorted(ranked.candidates(fused).keys) == sorted(keys)
    assert np.isnan(ranked.columns["value"][10:]).all()
    assert ranked.order[10:].tolist() == list(range(10, len(keys)))


@pytest.mark.parametrize("name", ["dnn", "aw-moe", "kfatt", "seq-md"])
def test_models_score_a_shared_sequence_as_its_copies(
    name: str, tiny_workspace: Path, tiny_encoder: FeatureEncoder
) -> None:
    """A served request's candidates share one expanded sequence (computed once); the scores
    equal those of the same batch with the sequence copied into every row."""
    from shopsearch.ranking.position_bias import PositionBiasModel
    from shopsearch.ranking.registry import torch_model_class
    from shopsearch.ranking.train import predict

    user, domain, query, products, now = _a_request(tiny_workspace)
    snapshot = ServingFeatures.from_workspace(Workspace.open(tiny_workspace))
    shared, _ = snapshot.batch(tiny_encoder, query, domain, products, user, now)
    assert shared.seq_items.stride(0) == 0
    copied = replace(
        shared, **{n: getattr(shared, n).contiguous() for n in ("seq_items", "seq_categories",
                                                               "seq_kinds", "seq_age")}
    )  # fmt: skip
    torch.manual_seed(0)
    model = PositionBiasModel(torch_model_class(name)(tiny_encoder.spec_), "feature").eval()
    a, b = predict(model, shared), predict(model, copied)
    for task in a:
        np.testing.assert_allclose(a[task], b[task], rtol=1e-5, atol=1e-6)
