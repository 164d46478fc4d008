"""Serving features equal training features; the engine's ranking stage end to end."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from shopsearch.config import RankingSettings, Settings
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.ranking.feature_names import DENSE_FEATURES
from shopsearch.ranking.samples import build_samples
from shopsearch.ranking.serving import ServingFeatures
from shopsearch.simulate.api import simulate
from shopsearch.store.bundles import bundle_meta, current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index
from shopsearch.training.ranking import train_ranking_bundle

from ..conftest import TINY


def test_serving_features_match_a_logged_sample(tiny_workspace: Path, tmp_path: Path) -> None:
    ws = Workspace.open(tiny_workspace)
    snapshot = ServingFeatures.from_workspace(ws)
    con = ws.connect()
    user, domain, query = con.execute(
        "SELECT r.user_id, r.domain, r.query FROM requests r JOIN interactions i "
        "USING (request_id) ORDER BY r.timestamp DESC LIMIT 1"
    ).fetchone()
    products = [
        p
        for (p,) in con.execute(
            "SELECT product_id FROM products WHERE domain = ? ORDER BY product_id LIMIT 30",
            [domain],
        ).fetchall()
    ]
    last_us = con.execute(
        "SELECT greatest((SELECT epoch_us(max(timestamp)) FROM interactions), "
        "(SELECT epoch_us(max(timestamp)) FROM requests))"
    ).fetchone()[0]
    when = datetime.fromtimestamp(last_us / 1e6, UTC) + timedelta(hours=1)
    # The same request logged after everything else becomes a training sample.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_workspace, copy)
    logged = Workspace.open(copy)
    logged.append(
        "requests",
        pa.table(
            {
                "request_id": ["new"],
                "session_id": ["new"],
                "user_id": [user],
                "domain": [domain],
                "query": [query],
                "filters": ["{}"],
                "timestamp": [when],
            }
        ),
    )
    logged.append(
        "impressions",
        pa.table(
            {
                "request_id": ["new"] * len(products),
                "product_id": products,
                "position": list(range(1, len(products) + 1)),
                "price": [None] * len(products),
                "scores": ["{}"] * len(products),
            }
        ),
    )
    samples = build_samples(logged.connect())
    expected = samples.subset((samples.rows["request_id"] == "new").to_numpy())
    now_us = int(when.timestamp() * 1e6)
    served = snapshot.samples(query, domain, products, user, now_us)
    exp = expected.rows.set_index("product_id").loc[products]
    got = served.rows.set_index("product_id").loc[products]
    for column in DENSE_FEATURES:
        np.testing.assert_allclose(
            got[column].to_numpy(np.float64),
            exp[column].to_numpy(np.float64),
            rtol=1e-9,
            atol=1e-9,
            err_msg=column,
        )
    for column in ("brand", "leaf", "query_leaf"):
        assert list(got[column]) == list(exp[column])
    req_exp, req_got = int(exp["req"].iloc[0]), int(got["req"].iloc[0])
    assert list(served.seq_items[req_got]) == list(expected.seq_items[req_exp])
    assert list(served.seq_kinds[req_got]) == list(expected.seq_kinds[req_exp])


def test_engine_ranking_stage_end_to_end(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, TINY)
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    build_index(ws, settings)
    bundle = train_ranking_bundle(ws, RankingSettings(model="esmm", epochs=1))
    assert current_bundle(ws) == bundle
    assert bundle_meta(bundle)["stages"] == {"retrieval": "retrieval", "ranking": "ranking"}
    engine = Engine.load(ws, settings)
    assert engine.ranking is not None
    query = ws.connect().execute("SELECT query FROM requests LIMIT 1").fetchone()[0]
    response = engine.search(SearchParams(query, user_id="u000001", explain=True, size=5))
    assert response.items
    assert "rank" in response.timings_ms
    values = [item.stages["rank.value"] for item in response.items]
    assert values == sorted(values, reverse=True)
    for item in response.items:
        click, cart = item.stages["rank.click"], item.stages["rank.cart"]
        assert click is not None
        assert cart is not None
        assert 0 <= cart <= click <= 1
    off = settings.model_copy(update={"ranking": RankingSettings(enabled=False)})
    assert Engine.load(ws, off).ranking is None


def test_a_predicted_category_stands_in_for_an_unseen_querys_leaf(tiny_workspace: Path) -> None:
    ws = Workspace.open(tiny_workspace)
    snapshot = ServingFeatures.from_workspace(ws)
    con = ws.connect()
    domain, leaf = con.execute(
        "SELECT domain, category FROM products WHERE len(category) > 0 LIMIT 1"
    ).fetchone()
    path = " > ".join(leaf)
    products = [
        p
        for (p,) in con.execute(
            "SELECT product_id FROM products WHERE domain = ? ORDER BY product_id LIMIT 20",
            [domain],
        ).fetchall()
    ]
    unseen = "zzqx never typed before"
    plain = snapshot.request(unseen, domain, products, None, 0)
    assert plain.query_leaf == ""
    assert not plain.dense["leaf_match"].any()
    guessed = snapshot.request(unseen, domain, products, None, 0, predicted_leaf=path)
    assert guessed.query_leaf == path
    assert guessed.dense["leaf_match"].any()
    # a logged query keeps its own most clicked leaf
    query = next(q for q, found in snapshot.query_leaf.items() if found)
    logged = snapshot.request(query, domain, products, None, 0, predicted_leaf="Nowhere > Else")
    assert logged.query_leaf == snapshot.query_leaf[query]
