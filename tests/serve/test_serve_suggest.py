"""``GET /suggest``: completions from the served bundle's suggester, clear answers to any input,
the error format, metrics and the schema."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from shopsearch.config import Settings
from shopsearch.datasets.base import LoadedData
from shopsearch.ingest.workspace import ingest
from shopsearch.serve.app import create_app
from shopsearch.serve.models import SuggestOut
from shopsearch.serve.routes_suggest import NO_SUGGESTER
from shopsearch.store.workspace import Workspace
from shopsearch.training.query import train_query_bundle

#: (market, query, times typed, clicked)
SEARCHES = [
    ("us", "grey sofa", 6, True),
    ("us", "grey armchair", 2, True),
    ("us", "green lamp", 9, False),  # never clicked: never suggested
    ("us", "running shoes", 3, True),
    ("gb", "grey armchair", 4, True),
]


def _with_log(ws: Workspace) -> Workspace:
    requests, clicks = [], []
    for domain, query, times, clicked in SEARCHES:
        for _ in range(times):
            request = f"r{len(requests)}"
            stamp = 1_704_103_200 + 60 * len(requests)
            requests.append((request, "u1", domain, query, stamp))
            if clicked:
                clicks.append((request, "u1", "1", "click", stamp + 5))
    ingest(
        ws,
        LoadedData(
            "generic",
            requests=pd.DataFrame(
                requests, columns=["request_id", "user_id", "domain", "query", "timestamp"]
            ),
            interactions=pd.DataFrame(
                clicks, columns=["request_id", "user_id", "product_id", "kind", "timestamp"]
            ),
        ),
    )
    return ws


def _settings() -> Settings:
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    settings.search.default_domain = "*"
    return settings


@pytest.fixture(scope="module")
def suggesting(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A server over a copy of the default workspace with a log and a trained suggester."""
    root = tmp_path_factory.mktemp("suggest") / "ws"
    shutil.copytree(template, root)
    ws = _with_log(Workspace.open(root))
    train_query_bundle(ws, _settings(), ["suggest"])
    with TestClient(create_app(ws, _settings(), compact_every_s=3600)) as client:
        yield client


def _suggest(client: TestClient, **params: object) -> dict[str, object]:
    answer = client.get("/suggest", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    SuggestOut.model_validate(body)
    return body


def _queries(body: dict[str, object]) -> list[str]:
    return [s["query"] for s in body["suggestions"]]  # type: ignore[attr-defined]


def test_completions_of_one_market_ranked_by_clicks(suggesting: TestClient) -> None:
    body = _suggest(suggesting, q="gr", domain="us")
    assert _queries(body) == ["grey sofa", "grey armchair"]  # green lamp found nothing
    assert body["domain"] == "us"
    assert body["notice"] is None
    assert _queries(_suggest(suggesting, q="gr", domain="gb")) == ["grey armchair"]
    both = _suggest(suggesting, q="GREY A", domain="*")["suggestions"]
    assert [(s["query"], s["typo"]) for s in both] == [  # type: ignore[index]
        ("grey armchair", False),  # both markets' searches
        ("grey sofa", True),  # one typo: the last character replaced
    ]
    assert _queries(_suggest(suggesting, q="gr", domain="us", size=1)) == ["grey sofa"]
    typo = _suggest(suggesting, q="runing", domain="us")
    # 3 searches, all clicked, shrunk towards the market's 11 clicks in 20 searches by 3 searches
    score = 3 * (3 + 3 * 11 / 20) / (3 + 3)
    assert typo["suggestions"] == [
        {"query": "running shoes", "score": pytest.approx(score), "typo": True}
    ]


@pytest.mark.parametrize("q", ["", "   ", "沙发", "диван", "🛋️", "zzzz", "%", "grey sofa x"])
def test_text_without_completions_gets_an_empty_list(suggesting: TestClient, q: str) -> None:
    assert _suggest(suggesting, q=q, domain="us")["suggestions"] == []


def test_bad_requests_get_the_error_format(suggesting: TestClient) -> None:
    long = suggesting.get("/suggest", params={"q": "x" * 10_000})
    assert long.status_code == 422
    assert long.json()["error"]["parameter"] == "q"
    assert "512" in long.json()["error"]["message"]
    unknown = suggesting.get("/suggest", params={"q": "gr", "domain": "mars"})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == {
        "parameter": "domain",
        "message": "unknown domain 'mars'; domains are gb, us (see /domains), or * for all",
    }
    for size in (0, 21, "many"):
        answer = suggesting.get("/suggest", params={"q": "gr", "size": size})
        assert answer.status_code == 422
        assert answer.json()["error"]["parameter"] == "size"


def test_the_route_is_measured(suggesting: TestClient) -> None:
    _suggest(suggesting, q="gr")
    metrics = suggesting.get("/metrics").text
    assert 'shopsearch_http_requests_total{method="GET",route="/suggest",status="200"}' in metrics


def test_a_bundle_without_a_suggester_says_so(client: TestClient) -> None:
    body = _suggest(client, q="grey")
    assert body["suggestions"] == []
    assert body["notice"] == NO_SUGGESTER
