from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopsearch.datasets.aliexpress import country_domain, load
from shopsearch.errors import DataFormatError

CATEGORICAL = [f"categorical_{i}" for i in range(1, 17)]
NUMERICAL = [f"numerical_{i}" for i in range(1, 64)]
HEADER = ",".join(["search_id", *CATEGORICAL, *NUMERICAL, "click", "conversion"]) + "\n"


def _row(search: int, item: int, click: int, conversion: int) -> str:
    user = ["9", "0", "4", "1", "20", "4", "30", "0", "0"]  # categorical_1-9: same per page
    item_cat = [str(item % 2), "0", "0", str(item), "0", "1"]  # categorical_10-15
    numerical = ["0.5"] * 23 + [f"0.{item}"] * 40  # numerical_24-63 differ per item
    return ",".join([str(search), *user, *item_cat, "0", *numerical, str(click), str(conversion)])


def _write(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_rows_of_a_search_are_one_request(tmp_path: Path) -> None:
    rows = [_row(7, 1, 0, 0), _row(7, 2, 1, 1), _row(7, 1, 1, 0), _row(12, 3, 0, 0)]
    data = load([_write(tmp_path / "AliExpress_NL" / "train.csv", rows)])

    requests = data.requests
    assert requests is not None
    assert requests["request_id"].tolist() == ["aliexpress:train:7", "aliexpress:train:12"]
    assert requests["user_id"].tolist() == ["anon-7", "anon-12"]
    assert requests["domain"].tolist() == ["aliexpress-nl", "aliexpress-nl"]
    assert requests["timestamp"].tolist() == ["1970-01-01T00:00:02Z", "1970-01-01T00:00:05Z"]
    impressions = data.impressions
    assert impressions is not None
    assert impressions["position"].tolist() == [1, 2, 3, 1]
    ids = impressions["product_id"].tolist()
    assert ids[0] == ids[2]  # same item-side features: same product
    assert len(set(ids)) == 3
    assert all(i.startswith("ae-") and len(i) == 19 for i in ids)
    interactions = data.interactions
    assert interactions is not None
    assert interactions[["product_id", "kind", "_row"]].values.tolist() == [
        [ids[1], "click", 3],
        [ids[1], "purchase", 3],
        [ids[2], "click", 4],
    ]
    products = data.products
    assert products is not None
    assert len(products) == 3
    attributes = json.loads(products["attributes"].iloc[0])
    assert attributes["categorical_13"] == "1"
    assert attributes["numerical_24"] == "0.1"
    assert "categorical_1" not in attributes
    assert data.domains is not None
    assert data.domains[["domain_id", "language", "currency"]].values.tolist() == [
        ["aliexpress-nl", "nl", "EUR"]
    ]


def test_domain_from_file_name() -> None:
    assert country_domain(Path("data/aliexpress_US_train.csv")).domain_id == "aliexpress-us"
    assert country_domain(Path("aliexpress_test_sample.csv")).domain_id == "aliexpress"
    assert country_domain(Path("express/train.csv")).domain_id == "aliexpress"


def test_wrong_file_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("search_id,click,conversion\n1,0,0\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="categorical_10"):
        load([path])
