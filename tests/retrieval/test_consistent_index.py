"""SCI's consistent dual-view index: clusters and routing in the query tower's view (``dual``)
or the item tower's (``item``), exact when every cluster is probed, new products routed without
a refit, saved and loaded with their routes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.retrieval.consistent_index import LearnedCIRetriever, default_nlist
from shopsearch.text.encoders import ENCODERS, FloatMatrix
from shopsearch.text.product_text import product_texts

from .test_dense import HashEncoder, catalog, make_products


class TwoTowers(HashEncoder):
    """Item tower: the hashed words; query tower: the same vectors with the dimensions reversed,
    so the two towers' views of one text differ."""

    name = "test-two-towers"
    learned = True

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return np.ascontiguousarray(super().encode_queries(texts)[:, ::-1])

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "size").write_text(str(self.size))

    @classmethod
    def load(cls, path: Path) -> TwoTowers:
        return cls(int((path / "size").read_text()))


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    with ENCODERS.registered(TwoTowers.name, TwoTowers):
        yield


def _clusters(source: LearnedCIRetriever) -> np.ndarray:
    cluster = np.empty(len(source.rows_), np.int64)
    for c in range(len(source.starts_) - 1):
        cluster[source.order_[source.starts_[c] : source.starts_[c + 1]]] = c
    return cluster


@pytest.mark.parametrize("view", ["dual", "item"])
def test_clusters_and_routes_are_in_the_chosen_towers_view(view: str) -> None:
    products = make_products(catalog(200))
    encoder = TwoTowers()
    source = LearnedCIRetriever(encoder, view=view, nprobe=3).index(products)  # type: ignore[arg-type]
    texts = product_texts(products)
    route = encoder.encode_queries(texts) if view == "dual" else encoder.encode_items(texts)
    np.testing.assert_allclose(source.route_, route, atol=1e-6)
    assert source.centroids_ is not None
    assert len(source.centroids_) == default_nlist(200) == 14
    np.testing.assert_array_equal(_clusters(source), np.argmax(route @ source.centroids_.T, 1))
    # a query probes the clusters nearest its query-tower vector; only their products come back
    query = encoder.encode_queries(["red lamp"])[0]
    probed = np.argsort(-(source.centroids_ @ query))[:3]
    found = source.retrieve("red lamp", 10)
    rows = [source.rows_.row_of[key] for key in found.keys]
    assert set(_clusters(source)[rows]) <= set(probed.tolist())
    np.testing.assert_allclose(found.scores, source.vectors_[rows] @ query, atol=1e-5)


def test_probing_every_cluster_is_exact_and_updates_keep_the_centroids(tmp_path: Path) -> None:
    products = make_products(catalog(120))
    source = LearnedCIRetriever(TwoTowers(), nprobe=1000).index(products)
    query = source.query_vectors(["blue sofa"])[0]
    exact = np.sort(source.vectors_ @ query)[::-1][:10]
    np.testing.assert_allclose(source.retrieve("blue sofa", 10).scores, exact, atol=1e-5)
    centroids = source.centroids_.copy() if source.centroids_ is not None else None
    source.upsert(make_products([{"domain": "us", "product_id": "n1", "title": "blue sofa"}]))
    source.delete([("us", "p0"), ("de", "p1")])
    np.testing.assert_array_equal(source.centroids_, centroids)
    assert len(source.route_) == len(source.rows_) == 119
    exact = np.sort(source.vectors_ @ query)[::-1][:10]  # exact after the updates, too
    np.testing.assert_allclose(source.retrieve("blue sofa", 10).scores, exact, atol=1e-5)
    assert ("us", "n1") in source.retrieve("blue sofa", 200).keys
    source.save(tmp_path / "ci")
    loaded = LearnedCIRetriever.load(tmp_path / "ci")
    np.testing.assert_array_equal(loaded.route_, source.route_)
    assert loaded.retrieve("blue sofa", 10).keys == source.retrieve("blue sofa", 10).keys
    (tmp_path / "ci" / "coarse.npz").unlink()
    with pytest.raises(WorkspaceError, match="no coarse index"):
        LearnedCIRetriever.load(tmp_path / "ci")


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="view 'dual' or 'item'"):
        LearnedCIRetriever(TwoTowers(), view="both")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="nprobe >= 1"):
        LearnedCIRetriever(TwoTowers(), nprobe=0)
