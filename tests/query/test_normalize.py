"""The ``normalize`` component: head phrases learned from a catalog, the head of a query, and a
search for "ceiling fan with light" that shows ceiling fans first."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import Settings
from shopsearch.datasets.base import LoadedData
from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.ingest.workspace import ingest
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stages.query import QueryStage
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis
from shopsearch.query.data import QueryData
from shopsearch.query.models import QueryModels
from shopsearch.query.normalize import HeadNormalizer, fold
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.store.workspace import Workspace

# fmt: off
CATALOG = pd.DataFrame(
    [
        ("e1", "Ceiling Exhaust Fan with Light", "Breeze", "Ventilation > Exhaust Fans"),
        ("e2", "Quiet Ceiling Exhaust Fan with Light", "Breeze", "Ventilation > Exhaust Fans"),
        ("e3", "Exhaust Fan with Light and Heater", "Airo", "Ventilation > Exhaust Fans"),
        ("k1", "Ceiling Fan Light Kit", "Hampton Bay", "Lighting > Light Kits"),
        ("k2", "LED Light Kit for Ceiling Fans", "Lumo", "Lighting > Light Kits"),
        ("k3", "Bronze Light Kit", "Lumo", "Lighting > Light Kits"),
        ("f1", "Hampton Bay 52 in. Indoor Brushed Nickel Ceiling Fan with Light Kit and Remote",
         "Hampton Bay", "Lighting > Ceiling Fans"),
        ("f2", "Harbor 44 in. Oil Rubbed Bronze Outdoor Ceiling Fan", "Harbor",
         "Lighting > Ceiling Fans"),
        ("f3", "Gazebo 60 in. White Indoor Outdoor Ceiling Fan with Light", "Hampton Bay",
         "Lighting > Ceiling Fans"),
    ],
    columns=["product_id", "title", "brand", "category"],
).assign(domain="us", description="")
# fmt: on


@pytest.fixture(scope="module")
def data() -> QueryData:
    return QueryData.from_judgments(CATALOG, {}, 1.0)


@pytest.fixture(scope="module")
def normalizer(data: QueryData) -> HeadNormalizer:
    return HeadNormalizer().fit(data)


def test_plurals_fold() -> None:
    assert [fold(w) for w in ["fans", "boxes", "batteries", "glass", "bus", "kits", "tv"]] == [
        "fan", "box", "battery", "glass", "bus", "kit", "tv"
    ]  # fmt: skip


def test_head_phrases_are_learned_from_titles_and_category_leaves(
    normalizer: HeadNormalizer,
) -> None:
    assert {"ceiling fan", "exhaust fan", "light kit", "fan", "kit"} <= set(normalizer.heads_)
    assert "ceiling" not in normalizer.heads_  # always a modifier
    assert "light" not in normalizer.heads_  # mostly a modifier in these titles
    assert normalizer.heads_["ceiling fan"] == 3


@pytest.mark.parametrize(
    ("query", "head"),
    [
        ("ceiling fan with light", ("ceiling", "fan")),
        ("Ceiling Fans with Lights", ("ceiling", "fans")),
        ("light kit for ceiling fan", ("light", "kit")),
        ("ceiling fan light kit", ("light", "kit")),  # the product type comes last
        ("exhaust fan 70 cfm", ("exhaust", "fan")),
        ("hampton bay", ()),  # only a brand
        ("hampton bay 52", ()),  # a brand and a number
        ("light", ()),
        ("", ()),
        ("扇风机", ()),
    ],
)
def test_the_head_of_a_query(normalizer: HeadNormalizer, query: str, head: tuple[str, ...]) -> None:
    assert normalizer.head(query) == head


def test_apply_marks_the_head_and_leaves_the_text(normalizer: HeadNormalizer) -> None:
    analysis = QueryAnalysis("ceiling fan with light", "ceiling fan with light")
    normalizer.apply(analysis)
    assert analysis.head == ("ceiling", "fan")
    assert analysis.text == "ceiling fan with light"
    assert analysis.notes["normalize"] == "head: ceiling fan (3 products)"
    plain = QueryAnalysis("hampton bay", "hampton bay")
    normalizer.apply(plain)
    assert plain.head == ()
    assert "normalize" not in plain.notes


def test_save_load_round_trip_and_errors(normalizer: HeadNormalizer, tmp_path: Path) -> None:
    assert QUERY_COMPONENTS.get("normalize") is HeadNormalizer
    normalizer.save(tmp_path / "n")
    loaded = HeadNormalizer.load(tmp_path / "n")
    assert loaded.heads_ == normalizer.heads_
    assert loaded.head("light kit for ceiling fan") == ("light", "kit")
    with pytest.raises(WorkspaceError, match="holds no normalize component"):
        HeadNormalizer.load(tmp_path / "missing")
    with pytest.raises(NotFittedError):
        HeadNormalizer().head("fan")
    with pytest.raises(InvalidInputError, match="min_share"):
        HeadNormalizer(min_share=0)


def test_ceiling_fan_with_light_shows_ceiling_fans_first(
    tmp_path: Path, data: QueryData, normalizer: HeadNormalizer
) -> None:
    ws = Workspace.create(tmp_path / "ws")
    ingest(ws, LoadedData("generic", products=CATALOG), add_domains=True)
    products = ws.table("products")
    lexical = LexicalRetriever().index(products)
    engine = Engine(HybridRetriever({"lexical": lexical}), ProductLookup(products), Settings())
    query = SearchParams("ceiling fan with light", size=3, explain=True)
    plain = [item.product_id for item in engine.search(query).items]
    assert set(plain) != {"f1", "f2", "f3"}  # exhaust fans and light kits have shorter titles
    models = QueryModels([normalizer])
    served = Engine(engine.retrieval, engine.products, engine.settings,
                    stages={"query": QueryStage(models)})  # fmt: skip
    response = served.search(query)
    assert {item.product_id for item in response.items} == {"f1", "f2", "f3"}
    stage = {s.name: s for s in response.pipeline}["query"]
    assert stage.status == "ran"
    assert "head: ceiling fan" in stage.detail


def test_the_log_drops_heads_users_do_not_mean_literally() -> None:
    catalog = pd.DataFrame(
        [
            ("s1", "Grey Linen Sofa", "Acme", "Furniture > Sofas"),
            ("s2", "Leather Sofa", "Bolt", "Furniture > Sofas"),
            ("c1", "Modern Couch", "Acme", "Furniture > Sofas"),
            ("c2", "Classic Couch", "Bolt", "Furniture > Sofas"),
        ],
        columns=["product_id", "title", "brand", "category"],
    ).assign(domain="us", description="")
    clicks = [("couch", "s1"), ("couch", "s2"), ("couch", "s1"), ("couch", "c1"),
              ("couch", "s2"), ("grey sofa", "s1"), ("sofa", "s2")] * 2  # fmt: skip
    outcomes = pd.DataFrame(
        [(f"r{i}", "us", q, pid, 1, "") for i, (q, pid) in enumerate(clicks)],
        columns=["request_id", "domain", "query", "product_id", "stage", "category"],
    )
    queries = outcomes[["request_id", "query"]].assign(
        session_id=outcomes["request_id"], user_id="u", domain="us", timestamp=0
    )
    judged = QueryData.from_judgments(catalog, {}, 1.0)
    data = QueryData(judged.catalog, queries, outcomes, "events")
    without_log = HeadNormalizer().fit(judged)
    assert without_log.head("couch") == ("couch",)
    checked = HeadNormalizer().fit(data)
    assert checked.head("couch") == ()  # 10 clicks after "couch", 2 on products saying so
    assert checked.head("grey sofa") == ("sofa",)
    assert checked.head("sofas") == ("sofas",)
