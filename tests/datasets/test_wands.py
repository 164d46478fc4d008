from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopsearch.datasets.wands import load
from shopsearch.errors import DataFormatError

PRODUCT = (
    "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\t"
    "product_features\trating_count\taverage_rating\treview_count\n"
    "0\tsolid wood platform bed\tBeds\tFurniture / Bedroom Furniture / Beds & Headboards / Beds\t"
    "good, deep sleep\toverallwidth-sidetoside:64.7|dsprimaryproductstyle:modern|nokey\t"
    "15\t4.5\t15\n"
    "1\tall-clad 7 qt . slow cooker\tSlow Cookers\t\t\t\t\t\t\n"
)
QUERY = (
    "query_id\tquery\tquery_class\n0\tsalon chair\tMassage Chairs\n1\tsmart coffee table\tTables\n"
)
LABEL = (
    "id\tquery_id\tproduct_id\tlabel\n"
    "0\t0\t0\tIrrelevant\n"
    "1\t0\t1\tPartial\n"
    "2\t1\t0\tExact\n"
    "3\t7\t1\tExact\n"
    "4\t1\t1\tMaybe\n"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_products_and_judgments(tmp_path: Path) -> None:
    paths = [
        _write(tmp_path / "label.csv", LABEL),
        _write(tmp_path / "product.csv", PRODUCT),
        _write(tmp_path / "query.csv", QUERY),
    ]
    data = load(paths)

    products = data.products
    assert products is not None
    assert products["title"].tolist() == ["solid wood platform bed", "all-clad 7 qt . slow cooker"]
    assert products["category"].tolist() == [
        ["Furniture", "Bedroom Furniture", "Beds & Headboards", "Beds"],
        [],
    ]
    assert products["description"].tolist() == ["good, deep sleep", ""]
    assert json.loads(products["attributes"].iloc[0]) == {
        "overallwidth-sidetoside": "64.7",
        "dsprimaryproductstyle": "modern",
        "product_class": "Beds",
        "rating_count": "15",
        "average_rating": "4.5",
        "review_count": "15",
    }
    assert json.loads(products["attributes"].iloc[1]) == {"product_class": "Slow Cookers"}
    judgments = data.judgments
    assert judgments is not None
    assert judgments["grade"].tolist() == [0.0, 1.0, 2.0, 2.0, "Maybe"]
    assert judgments["query"].iloc[:3].tolist() == [
        "salon chair",
        "salon chair",
        "smart coffee table",
    ]
    assert judgments["query"].isna().tolist() == [False, False, False, True, False]
    assert judgments["_row"].tolist() == [2, 3, 4, 5, 6]
    assert data.domains is not None
    assert data.domains["domain_id"].tolist() == ["wayfair"]


def test_labels_without_queries_and_wrong_files_are_format_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"label\.csv was given without query\.csv"):
        load([_write(tmp_path / "label.csv", LABEL)])
    comma = _write(tmp_path / "product.csv", PRODUCT.replace("\t", ","))
    with pytest.raises(DataFormatError, match="does not match the wands format"):
        load([comma])
