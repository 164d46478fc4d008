"""The lexical index's analysis: measurements one way on both sides, product heads, and the
refusal of an index built before them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from shopsearch.errors import WorkspaceError
from shopsearch.retrieval.base import QueryPlan
from shopsearch.retrieval.lexical import FORMAT_VERSION, LexicalRetriever
from shopsearch.retrieval.lexical_schema import head_terms
from shopsearch.store.schema import TABLES


def _products(rows: list[tuple[str, str, list[str]]]) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            "domain": ["us"] * n,
            "product_id": [pid for pid, _, _ in rows],
            "title": [title for _, title, _ in rows],
            "description": [""] * n,
            "brand": [""] * n,
            "category": [category for _, _, category in rows],
            "price": [10.0] * n,
            "attributes": [json.dumps({})] * n,
            "in_stock": [True] * n,
            "created_at": [datetime(2024, 1, 1, tzinfo=UTC)] * n,
        },
        schema=TABLES["products"],
    )


SCREWS = _products(
    [
        ("s6", "6 in. wood screw", ["Hardware"]),
        ("s8", "8 in. wood screw", ["Hardware"]),
        ("b6", "Shelf bracket, 6 pack", ["Hardware"]),
        ("n2", "2-in-1 screwdriver", ["Tools"]),
        ("bulb", "LED bulb 60-Watt equivalent", ["Lighting"]),
    ]
)


@pytest.fixture(scope="module")
def screws() -> LexicalRetriever:
    return LexicalRetriever().index(SCREWS)


@pytest.mark.parametrize("query", ["6 inch wood screws", '6" wood screw', "6in wood screw",
                                   "6-inch wood screw", "wood screw 6 in."])  # fmt: skip
def test_a_measurement_finds_every_spelling_of_it(screws: LexicalRetriever, query: str) -> None:
    found = screws.retrieve(query, k=5)
    assert found.keys[0] == ("us", "s6")
    assert ("us", "b6") not in found.keys  # its bare 6 is not six inches


def test_a_bare_number_still_finds_a_measurement(screws: LexicalRetriever) -> None:
    assert ("us", "s6") in screws.retrieve("6", k=5).keys
    assert ("us", "b6") in screws.retrieve("6", k=5).keys


def test_units_of_power_and_the_word_in(screws: LexicalRetriever) -> None:
    for query in ["60w bulb", "60 watt bulb", "60 watts"]:
        assert screws.retrieve(query, k=1).keys == [("us", "bulb")]
    assert screws.retrieve("2 in 1 screwdriver", k=1).keys == [("us", "n2")]


FANS = _products(
    [
        ("e1", "Ceiling Exhaust Fan with Light", ["Ventilation", "Exhaust Fans"]),
        ("e2", "Quiet Ceiling Exhaust Fan with Light", ["Ventilation", "Exhaust Fans"]),
        ("e3", "Exhaust Fan with Light and Heater", ["Ventilation", "Exhaust Fans"]),
        ("k1", "Ceiling Fan Light Kit", ["Lighting", "Light Kits"]),
        ("k2", "LED Light Kit for Ceiling Fans", ["Lighting", "Light Kits"]),
        ("f1", "Hampton 52 in. Indoor Brushed Nickel Ceiling Fan with Light Kit and Remote",
         ["Lighting", "Ceiling Fans"]),
        ("f2", "Harbor 44 in. Oil Rubbed Bronze Outdoor Ceiling Fan", ["Lighting", "Ceiling Fans"]),
        ("f3", "Gazebo 60 in. White Indoor Outdoor Ceiling Fan with Light",
         ["Lighting", "Ceiling Fans"]),
    ]
)  # fmt: skip


def test_products_index_their_head_phrases() -> None:
    assert head_terms(["Hampton 52 in. Ceiling Fan with Light Kit", "Ceiling Fans"]) == [
        "fan",
        "ceil fan",
    ]
    assert head_terms(["Light Kit for Ceiling Fans", "Light Kits"]) == ["kit", "light kit"]


def test_the_head_must_match_and_ranks_its_products_first() -> None:
    lexical = LexicalRetriever().index(FANS)
    plain = lexical.search("ceiling fan with light", 3).candidates.keys
    assert {pid for _, pid in plain} != {"f1", "f2", "f3"}  # short titles of other products win
    headed = lexical.search("ceiling fan with light", 8, None, QueryPlan(head=("ceiling", "fan")))
    assert {pid for _, pid in headed.candidates.keys[:3]} == {"f1", "f2", "f3"}
    assert ("us", "e3") not in headed.candidates.keys  # no "ceiling": the head must match
    assert headed.candidates.total == 7


def test_an_index_of_format_1_asks_to_re_index(tmp_path: Path) -> None:
    LexicalRetriever(tmp_path / "lex").index(SCREWS)
    config = tmp_path / "lex" / "config.json"
    meta = orjson.loads(config.read_bytes())
    assert meta["format"] == FORMAT_VERSION == 2
    config.write_bytes(orjson.dumps({**meta, "format": 1}))
    with pytest.raises(WorkspaceError, match=r"format 1.*re-index the workspace"):
        LexicalRetriever.load(tmp_path / "lex")
