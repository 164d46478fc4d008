from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopsearch.datasets.homedepot import load
from shopsearch.errors import DataFormatError

# Kaggle's train.csv: latin-1 ("°" is byte 0xB0), quoted titles with commas, one empty relevance.
TRAIN = (
    "id,product_uid,product_title,search_term,relevance\n"
    "2,100001,Simpson Strong-Tie 12-Gauge Angle,angle bracket,3.0\n"
    '9,100002,"Dyna-Glo 40,000 BTU 360° Heater",propane heater,2.33\n'
    "17,100001,Simpson Strong-Tie 12-Gauge Angle,simpson angle,2.67\n"
    "18,100003,Behr Deck Stain,deck stain,\n"
)
DESCRIPTIONS = (
    "product_uid,product_description\n"
    '100001,"Angle made from 12-gauge steel, galvanized"\n'
    "100002,Portable heater\n"
    "999999,A product not in train\n"
)
ATTRIBUTES = (
    '"product_uid","name","value"\n'
    "100001,MFG Brand Name,Simpson Strong-Tie\n"
    "100001,Material,Steel\n"
    ",,\n"
    "100002,MFG Brand Name,Dyna-Glo\n"
)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_train_maps_products_and_judgments(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", TRAIN, "latin-1")
    data = load([train])

    assert data.domains is not None
    assert data.domains[["domain_id", "language", "currency"]].values.tolist() == [
        ["homedepot", "en", "USD"]
    ]
    products = data.products
    assert products is not None
    assert products["product_id"].tolist() == ["100001", "100002", "100003"]
    assert products["title"].iloc[1] == "Dyna-Glo 40,000 BTU 360° Heater"
    assert products["price"].isna().all()
    assert products["_row"].tolist() == [2, 3, 5]
    judgments = data.judgments
    assert judgments is not None
    assert judgments["query"].tolist() == [
        "angle bracket", "propane heater", "simpson angle", "deck stain",
    ]  # fmt: skip
    assert judgments["grade"].tolist() == ["3.0", "2.33", "2.67", ""]  # ingest rejects the ""
    assert judgments["_row"].tolist() == [2, 3, 4, 5]
    assert set(judgments["_file"]) == {str(train)}


def test_descriptions_and_attributes_are_detected_by_columns(tmp_path: Path) -> None:
    paths = [
        _write(tmp_path / "attributes.csv", ATTRIBUTES),
        _write(tmp_path / "train.csv", TRAIN, "latin-1"),
        _write(tmp_path / "product_descriptions.csv", DESCRIPTIONS),
    ]
    data = load(paths)
    products = data.products
    assert products is not None
    by_id = products.set_index("product_id")
    assert by_id.loc["100001", "description"] == "Angle made from 12-gauge steel, galvanized"
    assert by_id.loc["100003", "description"] == ""
    assert by_id.loc["100001", "brand"] == "Simpson Strong-Tie"
    assert json.loads(by_id.loc["100001", "attributes"]) == {
        "MFG Brand Name": "Simpson Strong-Tie",
        "Material": "Steel",
    }
    assert by_id.loc["100003", "attributes"] == "{}"
    assert any("1 description(s)" in n for n in data.notes)
    assert any("without a product_uid" in n for n in data.notes)


def test_utf8_copy_reads_the_same(tmp_path: Path) -> None:
    data = load([_write(tmp_path / "train.csv", TRAIN, "utf-8")])
    assert data.products is not None
    assert data.products["title"].iloc[1] == "Dyna-Glo 40,000 BTU 360° Heater"


def test_wrong_file_is_a_format_error(tmp_path: Path) -> None:
    other = _write(tmp_path / "clicks.csv", "user,sku\n1,2\n")
    with pytest.raises(DataFormatError, match=r"clicks\.csv.*product_uid.*found user, sku"):
        load([other])


def test_descriptions_alone_and_missing_file_are_format_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"give train\.csv"):
        load([_write(tmp_path / "d.csv", DESCRIPTIONS)])
    with pytest.raises(DataFormatError, match="file not found"):
        load([tmp_path / "absent.csv"])
    with pytest.raises(DataFormatError, match="no input file"):
        load([])
