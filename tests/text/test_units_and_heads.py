"""Measurements written one way (``shopsearch.text.units``) and the head of a title or query
(``shopsearch.text.heads``)."""

from __future__ import annotations

import pytest

from shopsearch.text.heads import head_phrases, head_segment
from shopsearch.text.units import normalize_units


def _tokens(text: str, keep_number: bool = False) -> list[str]:
    return normalize_units(text, keep_number).split()


@pytest.mark.parametrize(
    ("spellings", "token"),
    [
        (["2 inch", "2 in.", '2"', "2in", "2-inch", "2 inches", "2 In", "2\u201d"], "2in"),
        (["60w", "60 watt", "60 watts", "60-Watt", "60 W"], "60w"),
        (["6 ft", "6 ft.", "6 feet", "6'", "6 foot"], "6ft"),
        (["12v", "12 volt", "12-Volt", "12 V"], "12v"),
        (["15 amp", "15-amp", "15a", "15 amps"], "15amp"),
        (["5 gal", "5 gal.", "5 gallon", "5-Gallon"], "5gal"),
        (["16 oz", "16 oz.", "16 ounces", "16 fl. oz."], "16oz"),
        (["50 lb", "50 lbs.", "50-pound", "50 pounds"], "50lb"),
        (["10 mm", "10mm", "10 millimeters"], "10mm"),
        (["4.5 cu. ft.", "4.5 cubic feet", "4.50 cu ft"], "4p5cuft"),
        (["3/4 in.", "3/4 inch", '3/4"'], "3f4in"),
        (["1,000 watts", "1000 W"], "1000w"),
        (["6.0 in", "6 inch"], "6in"),
        (["16GB", "16 gb", "16 gigabytes"], "16gb"),
    ],
)
def test_every_spelling_is_one_token(spellings: list[str], token: str) -> None:
    for spelling in spellings:
        assert _tokens(spelling) == [token], spelling


def test_documents_keep_the_bare_number() -> None:
    assert _tokens("6 in. wood screw", keep_number=True) == ["6", "6in", "wood", "screw"]
    assert _tokens("6 in. wood screw") == ["6in", "wood", "screw"]


@pytest.mark.parametrize(
    "text",
    [
        "2 in 1 laptop",
        "2-in-1 Laptop",
        "ps4 pro",
        "pants w32",
        "12x18 in",  # the number is glued to letters
        "80's music",
        "15 a day",  # "a" is amperes only glued to the number
        "3/4 plywood",
        "inch worm",
        "sofa",
        "",
        "沙发 2 件",
    ],
)
def test_what_is_not_a_measurement_stays(text: str) -> None:
    assert normalize_units(text) == text
    assert normalize_units(text, keep_number=True) == text


def test_a_measurement_before_2_in_1_is_one() -> None:
    assert _tokens("13 in 2-in-1 laptop") == ["13in", "2-in-1", "laptop"]


def test_long_text_is_fast_and_unchanged_without_digits() -> None:
    text = "word " * 20_000
    assert normalize_units(text) is text
    assert _tokens("9 in. " * 2000) == ["9in"] * 2000


@pytest.mark.parametrize(
    ("title", "phrases"),
    [
        ("Hampton Bay 52 in. Ceiling Fan with Light Kit", ["fan", "ceiling fan"]),
        ("Universal Light Kit for Ceiling Fans", ["kit", "light kit"]),
        ("70 CFM Ceiling Exhaust Fan with Light, White", ["fan", "exhaust fan"]),
        ("Westinghouse 3-Light Ceiling Fan Light Kit", ["kit", "light kit"]),
        ("Zanra Wireless Earbuds, White", ["earbuds", "wireless earbuds"]),
        ("Lumsa 17 in Gaming Laptop, 16GB RAM", ["laptop", "gaming laptop"]),
        ("Hunter Ceiling Fan 59264", ["fan", "ceiling fan"]),
        ("Tub and Shower Faucet", ["faucet", "shower faucet"]),
        ("Sofas", ["sofas"]),
        ("Wood Screws (10-Pack)", ["screws", "wood screws"]),
        ("", []),
        ("12345", []),
    ],
)
def test_head_phrases_end_the_title_before_its_attachments(title: str, phrases: list[str]) -> None:
    assert head_phrases(title) == phrases


def test_head_segment_of_a_query() -> None:
    assert head_segment("ceiling fan with light") == ["ceiling", "fan"]
    assert head_segment("light kit for ceiling fans") == ["light", "kit"]
    assert head_segment("laptop 16gb") == ["laptop"]
    assert head_segment("6 inch wood screws") == ["6in", "wood", "screws"]
    assert head_segment("with") == []
