"""SearchGCN: LightGCN propagation, unseen-query mixing, save/load, DenseRetriever serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.retrieval.mmse import TwoTowerEncoder
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.retrieval.search_gcn import SearchGCNEncoder, propagate
from shopsearch.text.encoders import make_encoder

KINDS = ["drill", "sofa", "lamp", "hammer"]


def samples() -> StagedSamples:
    items = [f"{KINDS[i % 4]} model{i}" for i in range(40)] + ["lonely widget"]
    queries = [f"{kind}s" for kind in KINDS]
    qi = [i % 4 for i in range(40)]
    return StagedSamples(
        queries,
        items,
        np.asarray(qi, np.int64),
        np.arange(40, dtype=np.int64),
        np.full(40, 2.0, np.float32),
    )


def base() -> TwoTowerEncoder:
    settings: dict[str, Any] = {
        "buckets": 2**12,
        "head_dim": 8,
        "batch_size": 8,
        "random_negatives": 8,
        "epochs": 2,
        "positive_stage": 2.0,
    }
    return TwoTowerEncoder(**settings).fit(samples())


def test_propagate_matches_a_dense_lightgcn_reference() -> None:
    rng = np.random.default_rng(0)
    adjacency = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]))
    q0 = rng.normal(size=(2, 4)).astype(np.float32)
    i0 = rng.normal(size=(3, 4)).astype(np.float32)
    queries, items = propagate(adjacency, q0, i0, layers=2)
    a = adjacency.toarray()
    dq, di = a.sum(1), a.sum(0)
    norm = np.zeros_like(a)
    nz = a > 0
    norm[nz] = (a / np.sqrt(np.outer(dq, di), where=np.outer(dq, di) > 0, out=np.ones_like(a)))[nz]
    # Only the even layer is summed: queries stay queries, items stay items.
    expected_q = q0 + norm @ norm.T @ q0
    expected_i = i0 + norm.T @ norm @ i0
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(queries, unit(expected_q), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(items, unit(expected_i), rtol=1e-5, atol=1e-6)
    # Isolated nodes keep their own direction.
    np.testing.assert_allclose(queries[1], unit(q0)[1], rtol=1e-5)
    np.testing.assert_allclose(items[1], unit(i0)[1], rtol=1e-5)


def test_fit_encode_and_save_load(tmp_path: Path) -> None:
    tower = base()
    gcn = SearchGCNEncoder(layers=2, query_mix=0.5).fit(tower, samples())
    texts = samples().items
    items = gcn.encode_items(texts)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    # The product with no edge keeps its tower vector; linked ones move.
    np.testing.assert_allclose(items[-1], tower.encode_items(["lonely widget"])[0], atol=1e-6)
    assert not np.allclose(items[0], tower.encode_items([texts[0]])[0])
    queries = gcn.encode_queries(["drills", "drill machines"])
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    gcn.save(tmp_path / "gcn")
    again = make_encoder("search-gcn", gcn.get_config())
    np.testing.assert_allclose(again.encode_queries(["drill machines"]), queries[1:], rtol=1e-6)
    assert again.version == gcn.version
    assert SearchGCNEncoder.load(tmp_path / "gcn").dim == tower.dim


def test_bad_settings_and_unfitted_fail_clearly() -> None:
    with pytest.raises(InvalidInputError):
        SearchGCNEncoder(query_mix=2.0)
    with pytest.raises(NotFittedError):
        SearchGCNEncoder().encode_queries(["x"])
