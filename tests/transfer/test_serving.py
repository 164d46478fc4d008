"""One engine serves every domain with a CDAN-W bundle; ``explain domains`` reads it."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch

from shopsearch.cli import run
from shopsearch.config import RankingSettings, Settings
from shopsearch.errors import InvalidInputError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.ranking.train import predict
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index
from shopsearch.training.ranking import train_ranking_bundle
from shopsearch.transfer.cdan_w import CDANW
from shopsearch.transfer.explain import domain_importances


@pytest.fixture(scope="module")
def served(two_domain_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served") / "ws"
    shutil.copytree(two_domain_workspace, root)
    ws = Workspace.open(root)
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    build_index(ws, settings)
    train_ranking_bundle(ws, RankingSettings(model="cdan-w", epochs=1))
    return root


def test_one_engine_serves_each_domain_with_its_own_parts(served: Path) -> None:
    ws = Workspace.open(served)
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    engine = Engine.load(ws, settings)
    assert engine.ranking is not None
    ranker = engine.ranking.ranker
    assert ranker.name == "cdan-w"
    inner = getattr(ranker.model, "inner", None)
    assert isinstance(inner, CDANW)
    vocab = ranker.encoder.sparse_vocab_["domain"]
    assert len(vocab) == 2
    query = ws.connect().execute("SELECT query FROM requests LIMIT 1").fetchone()[0]
    for domain in vocab:
        response = engine.search(SearchParams(query, domain=domain, explain=True, size=10))
        assert response.items
        assert {item.domain for item in response.items} == {domain}
        ids = [item.product_id for item in response.items]
        served_click = np.array([item.stages["rank.click"] for item in response.items])
        # the same candidates scored directly with this domain's id ...
        samples = engine.ranking.features.samples(query, domain, ids, None, int(time.time() * 1e6))
        batch = ranker.encoder.transform(samples)
        own = predict(ranker.model, batch)["click"]
        np.testing.assert_allclose(served_click, own, rtol=1e-5, atol=1e-7)
        # ... differ from scoring them as the other domain: the domain's own parts are used
        other = vocab.index(next(d for d in vocab if d != domain)) + 1
        swapped = replace(batch, domain=torch.full_like(batch.domain, other))
        assert not np.allclose(predict(ranker.model, swapped)["click"], own)


def test_explain_domains(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    importances = domain_importances(Workspace.open(served))
    assert len(importances) == 2
    for weights in importances.values():
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-4)
        assert "price" in weights
    assert run(["explain", "domains", "-w", str(served), "--json"]) == 0
    printed = orjson.loads(capsys.readouterr().out)
    assert printed.keys() == importances.keys()
    assert run(["explain", "domains", "-w", str(served)]) == 0
    assert "text_match" in capsys.readouterr().err  # rich tables go to the console (stderr)


def test_explain_domains_without_cdanw_is_a_clear_error(
    served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "ws"
    shutil.copytree(served, copy)
    ws = Workspace.open(copy)
    train_ranking_bundle(ws, RankingSettings(model="dnn", epochs=1))
    with pytest.raises(InvalidInputError, match="not 'cdan-w'"):
        domain_importances(ws)
    assert run(["explain", "domains", "-w", str(copy)]) == 2
    assert "cdan-w" in capsys.readouterr().err
