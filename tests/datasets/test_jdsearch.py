from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopsearch.datasets.jdsearch import load
from shopsearch.errors import DataFormatError

SEP = "\x18"  # JDsearch's term separator
PRODUCTS = (
    "wid\tname\tbrand_id\tbrand_name\tcate_id_1\tcate_name_1\tcate_id_2\tcate_name_2\t"
    "cate_id_3\tcate_name_3\tcate_id_4\tcate_name_4\tshop_id\n"
    f"9227588\t648{SEP}602{SEP}469\t813\t648{SEP}417\t639\t2231\t984\t298{SEP}526\t878\t694\t"
    "263\t\t769\n"
    "87422901\t378\t610\t378\t639\t2231\t984\t298\t581\t687\t358\t687\t437\n"
)
BEHAVIOUR = (
    "query\tcandidate_wid_list\tcandidate_label_list\thistory_qry_list\thistory_wid_list\t"
    "history_type_list\thistory_time_list\n"
    f"639{SEP}602\t9227588_17729172_87422901\t1.0_0.0_3.0\t-1_639\t922_877\tORD_CLICK\t0_10_20\n"
    "125\t30857980_44577431\t2.0\t-1\t182\tCART\t0_x\n"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_products_and_candidates(tmp_path: Path) -> None:
    data = load(
        [
            _write(tmp_path / "release_data.txt", BEHAVIOUR),
            _write(tmp_path / "product_data.txt", PRODUCTS),
        ]
    )

    products = data.products
    assert products is not None
    assert products["product_id"].tolist() == ["9227588", "87422901"]
    assert products["title"].tolist() == ["648 602 469", "378"]
    assert products["brand"].tolist() == ["648 417", "378"]
    assert products["category"].tolist() == [
        ["2231", "298 526", "694"],
        ["2231", "298", "687", "687"],
    ]
    assert json.loads(products["attributes"].iloc[0])["shop_id"] == "769"
    requests = data.requests
    assert requests is not None
    assert requests["request_id"].tolist() == ["jdsearch:release_data:2", "jdsearch:release_data:3"]
    assert requests["query"].tolist() == ["639 602", "125"]
    assert requests["timestamp"].tolist() == ["1970-01-01T00:00:30Z", "1970-01-01T00:00:00Z"]
    assert requests["user_id"].iloc[0] == "user:jdsearch:release_data:2"
    impressions = data.impressions
    assert impressions is not None
    assert impressions[["product_id", "position", "_row"]].values.tolist() == [
        ["9227588", 1, 2],
        ["17729172", 2, 2],
        ["87422901", 3, 2],
        ["30857980", 1, 3],
        ["44577431", 2, 3],  # no label: no interaction
    ]
    interactions = data.interactions
    assert interactions is not None
    assert interactions[["product_id", "kind"]].values.tolist() == [
        ["9227588", "click"],
        ["87422901", "click"],
        ["87422901", "add_to_cart"],
        ["87422901", "purchase"],
        ["30857980", "click"],
        ["30857980", "add_to_cart"],
    ]
    assert data.domains is not None
    assert data.domains[["domain_id", "language", "currency"]].values.tolist() == [
        ["jd", "zh", "CNY"]
    ]


def test_wrong_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"user behaviour file.*product data file"):
        load([_write(tmp_path / "x.txt", "a\tb\n1\t2\n")])
