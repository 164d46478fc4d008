from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.datasets.bestbuy import load
from shopsearch.errors import DataFormatError

TRAIN = (
    "user,sku,category,query,click_time,query_time\n"
    "16ef81,9854804,abcat0701002,gears of war 3,2011-09-14 12:46:28.66,2011-09-14 12:45:07.064\n"
    '07135,9854804,abcat0701002,"halo, reach",2011-09-19 23:27:59.956,2011-09-19 23:27:47.408\n'
    "a89cbd,1013666,abcat0701002,,2011-08-14 00:45:32.351,\n"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_each_row_is_a_request_with_one_impression_and_one_click(tmp_path: Path) -> None:
    data = load([_write(tmp_path / "train.csv", TRAIN)])

    products = data.products
    assert products is not None
    assert products[["product_id", "title"]].values.tolist() == [
        ["9854804", "9854804"],
        ["1013666", "1013666"],
    ]
    assert products["category"].tolist() == [["abcat0701002"], ["abcat0701002"]]
    requests = data.requests
    assert requests is not None
    assert requests["request_id"].tolist() == [
        "bestbuy:train:2",
        "bestbuy:train:3",
        "bestbuy:train:4",
    ]
    assert requests["query"].tolist() == ["gears of war 3", "halo, reach", ""]
    assert requests["timestamp"].tolist() == [
        "2011-09-14 12:45:07.064",
        "2011-09-19 23:27:47.408",
        "",
    ]
    assert requests["user_id"].tolist() == ["16ef81", "07135", "a89cbd"]
    impressions = data.impressions
    assert impressions is not None
    assert impressions["position"].tolist() == [1, 1, 1]
    assert impressions["product_id"].tolist() == ["9854804", "9854804", "1013666"]
    interactions = data.interactions
    assert interactions is not None
    assert interactions["kind"].tolist() == ["click"] * 3
    assert interactions["timestamp"].iloc[0] == "2011-09-14 12:46:28.66"
    assert interactions["_row"].tolist() == [2, 3, 4]
    assert data.domains is not None
    assert data.domains["domain_id"].tolist() == ["bestbuy"]
    assert any("position 1" in note for note in data.notes)


def test_wrong_file_is_a_format_error(tmp_path: Path) -> None:
    test_csv = _write(tmp_path / "test.csv", "user,category,query,click_time,query_time\n")
    with pytest.raises(
        DataFormatError, match=r"train\.csv \(user, sku, category.*found user, category"
    ):
        load([test_csv])
