"""Poeem: joint PQ training, rotation, straight-through pass, faiss export vs exact search."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import pytest
import torch

from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.retrieval.mmse import TwoTowerEncoder
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.retrieval.poeem import PoeemIndex, _quantizer, code_bytes, post_hoc_pq, search

KINDS = ["drill", "sofa", "lamp", "hammer", "faucet", "ladder", "rake", "saw"]


def samples() -> StagedSamples:
    items = [f"{KINDS[i % len(KINDS)]} model{i} colour{i % 5}" for i in range(160)]
    queries = [f"{kind}s" for kind in KINDS]
    qi, ii, stage = [], [], []
    for q, kind in enumerate(KINDS):
        for i, text in enumerate(items):
            if text.startswith(kind) and i < 80:
                qi.append(q)
                ii.append(i)
                stage.append(3.0 if i % 2 else 2.0)
    return StagedSamples(
        queries,
        items,
        np.asarray(qi, np.int64),
        np.asarray(ii, np.int64),
        np.asarray(stage, np.float32),
    )


def encoder(**kw: Any) -> TwoTowerEncoder:
    settings: dict[str, Any] = {
        "buckets": 2**12,
        "head_dim": 8,
        "batch_size": 16,
        "random_negatives": 16,
        "epochs": 2,
        "lr": 0.01,
        "positive_stage": 2.0,
    }
    return TwoTowerEncoder(**{**settings, **kw}).fit(samples())


def test_straight_through_uses_hard_codewords_and_passes_gradients() -> None:
    rng = np.random.default_rng(0)
    codebooks = rng.normal(size=(2, 4, 3)).astype(np.float32)
    quantizer = _quantizer(6, 2, codebooks)
    x = torch.tensor(rng.normal(size=(5, 6)).astype(np.float32), requires_grad=True)
    out = quantizer.quantize(x)
    sub = x.detach().numpy().reshape(5, 2, 3)
    nearest = ((sub[:, :, None, :] - codebooks[None]) ** 2).sum(-1).argmin(-1)
    expected = codebooks[np.arange(2)[None, :], nearest].reshape(5, 6)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    weights = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    (out * weights).sum().backward()  # type: ignore[no-untyped-call]
    # Straight through: the unquantised vector gets the gradient of the quantised one...
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), weights.numpy())
    # ...and so does each chosen codeword (summed over the vectors choosing it), no other.
    assert quantizer.codebooks.grad is not None
    expected_grad = np.zeros_like(codebooks)
    for row in range(5):
        for part in range(2):
            expected_grad[part, nearest[row, part]] += weights.numpy()[row, 3 * part : 3 * part + 3]
    np.testing.assert_allclose(quantizer.codebooks.grad.numpy(), expected_grad, atol=1e-5)
    rotation = quantizer.rotation.weight.detach().numpy()
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(6), atol=1e-5)


def test_joint_training_and_faiss_export_match_exact_search_on_reconstructions() -> None:
    data = samples()
    tt = encoder()
    poeem = PoeemIndex(m=4, nbits=4, epochs=2).fit(tt, data)
    assert len(poeem.history_) == 2
    rotation = poeem.rotation_
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(tt.dim), atol=1e-4)
    items = tt.encode_items(data.items)
    index = poeem.build(items)
    queries = tt.encode_queries(data.queries)
    scores, ids = index.search(queries, 10)
    reconstructed = index.reconstruct_n(0, index.ntotal)
    exact = queries @ reconstructed.T
    for row in range(len(queries)):
        np.testing.assert_allclose(
            scores[row], np.sort(exact[row])[::-1][:10], rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(exact[row, ids[row]], scores[row], rtol=1e-4, atol=1e-4)
    # The codes are the learned codebooks' nearest codewords of the rotated vectors.
    rotated = items @ rotation.T
    sub = rotated.reshape(len(items), 4, -1)
    nearest = ((sub[:, :, None, :] - poeem.codebooks_[None]) ** 2).sum(-1).argmin(-1)
    decoded = poeem.codebooks_[np.arange(4)[None, :], nearest].reshape(len(items), -1)
    np.testing.assert_allclose(reconstructed, decoded @ rotation, rtol=1e-4, atol=1e-4)
    sizes = code_bytes(index)
    assert sizes["code_bytes_per_product"] == 2.0  # 4 codes of 4 bits


def test_post_hoc_pq_and_search_map_rows_to_keys() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    index = post_hoc_pq(vectors, m=2, nbits=4)
    keys = [("us", f"p{i}") for i in range(300)]
    found = search(index, vectors[:3], keys, k=5)
    assert [len(c) for c in found] == [5, 5, 5]
    assert isinstance(index, faiss.IndexPQ)
    assert code_bytes(index)["code_bytes_per_product"] == 1.0


def test_bad_settings_fail_clearly() -> None:
    with pytest.raises(InvalidInputError):
        PoeemIndex(m=0)
    with pytest.raises(NotFittedError):
        PoeemIndex().to_faiss()
    with pytest.raises(InvalidInputError, match="divide"):
        PoeemIndex(m=5).fit(encoder(epochs=1), samples())
    with pytest.raises(InvalidInputError, match="codewords"):
        PoeemIndex(m=4, nbits=8).fit(encoder(epochs=1), samples())


def test_frozen_towers_learn_only_the_index() -> None:
    data = samples()
    tt = encoder()
    before = tt.encode_queries(data.queries)
    version = tt.version
    poeem = PoeemIndex(m=4, nbits=4, epochs=1, train_towers=False).fit(tt, data)
    np.testing.assert_array_equal(tt.encode_queries(data.queries), before)
    assert tt.version == version
    assert not np.allclose(poeem.rotation_, np.eye(tt.dim))
