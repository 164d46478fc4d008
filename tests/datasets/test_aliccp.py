from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopsearch.datasets.aliccp import load
from shopsearch.errors import DataFormatError

HEADER = (
    "click,purchase,101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,509,702,853,301,"
    "109_14,110_14,127_14,150_14,D109_14,D110_14,D127_14,D150_14,D508,D509,D702,D853\n"
)
TAIL = ",1,1,1,1,0.4734,0.562,0.0856,0.1902,0.0,0.0,0.0,0.0\n"
ROWS = [
    # click, purchase, user, profile..., item, category, shop, node, brand, combos..., scenario
    "0,0,7,1,1,1,1,0,1,1,1,11,3,84,88,52,23,0,17,0,1",
    "1,1,7,1,1,1,1,0,1,1,1,12,4,85,89,53,0,0,0,0,1",
    "1,0,7,1,1,1,1,0,1,1,1,11,3,84,88,52,19,0,0,0,1",
    "0,0,8,1,1,1,1,0,1,1,1,13,5,86,90,,5,0,0,21,1",
    "1,0,8,1,1,1,1,0,1,1,1,11,3,84,88,52,6,0,0,0,2",
    "0,0,7,1,1,1,1,0,1,1,1,11,3,84,88,52,6,0,0,0,1",
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_consecutive_rows_of_a_user_form_a_request(tmp_path: Path) -> None:
    train = _write(tmp_path / "ali_ccp_train.csv", HEADER + "".join(r + TAIL for r in ROWS))
    data = load([train])

    requests = data.requests
    assert requests is not None
    assert requests["request_id"].tolist() == [
        "aliccp:ali_ccp_train:2",  # user 7, rows 2-4
        "aliccp:ali_ccp_train:5",  # user 8
        "aliccp:ali_ccp_train:6",  # user 8 again but scenario 2
        "aliccp:ali_ccp_train:7",  # user 7 again: a new request
    ]
    assert requests["user_id"].tolist() == ["7", "8", "8", "7"]
    assert requests["domain"].tolist() == ["aliccp-1", "aliccp-1", "aliccp-2", "aliccp-1"]
    assert requests["query"].tolist() == ["", "", "", ""]
    assert requests["timestamp"].tolist() == [
        "1970-01-01T00:00:02Z", "1970-01-01T00:00:05Z",
        "1970-01-01T00:00:06Z", "1970-01-01T00:00:07Z",
    ]  # fmt: skip
    impressions = data.impressions
    assert impressions is not None
    assert impressions["position"].tolist() == [1, 2, 3, 1, 1, 1]
    assert impressions["product_id"].tolist() == ["11", "12", "11", "13", "11", "11"]
    interactions = data.interactions
    assert interactions is not None
    assert interactions[["product_id", "kind", "_row"]].values.tolist() == [
        ["12", "click", 3],
        ["12", "purchase", 3],
        ["11", "click", 4],
        ["11", "click", 6],
    ]
    products = data.products
    assert products is not None
    assert products[["domain", "product_id", "title", "brand"]].values.tolist() == [
        ["aliccp-1", "11", "item 11", "52"],
        ["aliccp-1", "12", "item 12", "53"],
        ["aliccp-1", "13", "item 13", ""],
        ["aliccp-2", "11", "item 11", "52"],
    ]
    assert products["category"].iloc[0] == ["3"]
    assert json.loads(products["attributes"].iloc[0]) == {"intention_node": "88", "shop_id": "84"}
    domains = data.domains
    assert domains is not None
    assert domains[["domain_id", "language", "currency"]].values.tolist() == [
        ["aliccp-1", "zh", "CNY"],
        ["aliccp-2", "zh", "CNY"],
    ]


def test_wrong_file_is_a_format_error(tmp_path: Path) -> None:
    other = _write(tmp_path / "x.csv", "search_id,click,conversion\n1,0,0\n")
    with pytest.raises(
        DataFormatError, match=r"expected the columns of Ali-CCP CSV \(click, purchase, 101"
    ):
        load([other])
