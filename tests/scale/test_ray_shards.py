"""Sharded lexical search on a local Ray cluster (started here on 127.0.0.1, 2 CPUs): answers
equal one index's, a killed shard actor gives a retried answer or a clear error (never a page
missing a shard), and ``serve --shards`` answers as the unsharded server does."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from shopsearch.catalog.candidates import Filters
from shopsearch.config import Settings
from shopsearch.datasets.base import LoadedData
from shopsearch.errors import InvalidInputError, ShardUnavailableError
from shopsearch.ingest.workspace import ingest
from shopsearch.retrieval.base import Hits
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.retrieval.lexical_shards import TIE_RTOL, ShardedLexical, catalog_positions
from shopsearch.serve.app import create_app, shard_plan_from_env
from shopsearch.serve.shards import ShardPlan, start_shards
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index

from ..retrieval.test_lexical_shards import catalog

ray = pytest.importorskip("ray")
# Ray's own modules warn about their deprecated settings on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

QUERIES = ["sofa", "grey lamp", "wireless headphones", "", "vintage oak table", "kettel"]


@pytest.fixture(scope="module")
def products() -> pa.Table:
    return catalog(120)


def same(one: Hits, sharded: Hits) -> bool:
    a, b = one.candidates, sharded.candidates
    close = len(a) == len(b) and all(
        abs(x - y) <= TIE_RTOL * abs(x) for x, y in zip(a.scores, b.scores, strict=True)
    )
    return close and a.keys == b.keys and a.total == b.total and one.facets == sharded.facets


@pytest.mark.slow
def test_shard_actors_answer_as_one_index_and_retry_a_killed_replica(
    cluster: None, products: pa.Table
) -> None:
    single = LexicalRetriever().index(products)
    shards = start_shards(products, ShardPlan(shards=2, replicas=2))
    sharded = ShardedLexical(shards, catalog_positions(products))
    for query in QUERIES:
        for filters in (None, Filters(domain="us")):
            assert same(single.search(query, 20, filters), sharded.search(query, 20, filters))
    ray.kill(shards.actors[0][0], no_restart=True)
    ray.kill(shards.actors[1][1], no_restart=True)
    for query in QUERIES:  # every search reaches a live replica of each shard
        assert same(single.search(query, 20), sharded.search(query, 20))
    shards.stop()


@pytest.mark.slow
def test_a_shard_without_a_live_replica_refuses_the_search(
    cluster: None, products: pa.Table
) -> None:
    single = LexicalRetriever().index(products)
    shards = start_shards(products, ShardPlan(shards=2, replicas=1, max_restarts=0))
    sharded = ShardedLexical(shards, catalog_positions(products))
    outcomes: list[str] = []

    def search_while_killed() -> None:
        for _ in range(40):
            try:
                found = sharded.search("grey sofa", 20)
            except ShardUnavailableError:
                outcomes.append("refused")
            else:  # answered before the kill: the whole answer
                assert same(single.search("grey sofa", 20), found)
                outcomes.append("answered")

    searching = threading.Thread(target=search_while_killed)
    searching.start()
    ray.kill(shards.actors[1][0], no_restart=True)  # mid-way through the searches
    searching.join()
    assert outcomes[-1] == "refused"
    with pytest.raises(ShardUnavailableError, match="shard 1 of 2 did not answer"):
        sharded.search("sofa", 5)
    shards.stop()


def _workspace(root: Path, products: pa.Table) -> tuple[Workspace, Settings]:
    settings = Settings(serve={"admin_token": "s3cret"})
    settings.retrieval.sources = ["lexical"]
    settings.search.default_domain = "*"
    frame = products.to_pandas()
    frame["category"] = frame["category"].map(" > ".join)
    frame = frame.drop(columns=["attributes"]).drop_duplicates(["domain", "product_id"])
    ws = Workspace.create(root)
    ingest(ws, LoadedData("generic", products=pd.DataFrame(frame)), add_domains=True)
    build_index(ws, settings)
    return ws, settings


@pytest.mark.slow
def test_serve_with_shards_answers_as_one_server(
    cluster: None, products: pa.Table, tmp_path: Path
) -> None:
    ws, settings = _workspace(tmp_path / "ws", products)
    pages = []
    for shards in (None, ShardPlan(shards=3, replicas=1)):
        with TestClient(create_app(ws, settings, shards=shards)) as client:
            answers = []
            for query in [q for q in QUERIES if q] + ["sofa&category=Furniture"]:
                q, _, category = query.partition("&category=")
                params = {"q": q, "size": 10, **({"category": category} if category else {})}
                response = client.get("/search", params=params)
                body = response.json()
                assert response.status_code == 200, body
                answers.append(
                    (body["total"], [i["product_id"] for i in body["items"]], body["facets"])
                )
            pages.append(answers)
            if shards is not None:  # the catalog is read-only while sharded
                put = client.put(
                    "/products/us/new",
                    json={"title": "Velvet sofa"},
                    headers={"Authorization": "Bearer s3cret"},
                )
                assert put.status_code in (400, 409), put.json()
                assert "rebuild" in put.json()["error"]["message"]
    assert pages[0] == pages[1]


def test_shard_plan_errors() -> None:
    with pytest.raises(InvalidInputError, match="replicas=0"):
        ShardPlan(shards=2, replicas=0)
    assert shard_plan_from_env("local,4,2") == ShardPlan(None, 4, 2)
    assert shard_plan_from_env("10.0.0.1:6379,2,1") == ShardPlan("10.0.0.1:6379", 2, 1)
    assert shard_plan_from_env(None) is None


@pytest.mark.slow
def test_a_killed_shard_actor_is_restarted_and_serves_again(
    cluster: None, products: pa.Table
) -> None:
    single = LexicalRetriever().index(products)
    shards = start_shards(products, ShardPlan(shards=2, replicas=1))
    sharded = ShardedLexical(shards, catalog_positions(products))
    ray.kill(shards.actors[0][0], no_restart=False)  # a crash: Ray restarts it
    deadline = time.monotonic() + 60
    while True:
        try:
            found = sharded.search("grey sofa", 20)
            break
        except ShardUnavailableError:  # the search in flight when it died
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert same(single.search("grey sofa", 20), found)
    shards.stop()
