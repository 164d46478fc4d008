from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shopsearch.datasets.trivago import load
from shopsearch.errors import DataFormatError

HEADER = (
    "user_id,session_id,timestamp,step,action_type,reference,platform,city,device,"
    "current_filters,impressions,prices\n"
)
ROWS = (
    'U1,s1,1541037460,1,search for poi,Eiffel Tower,FR,"Paris, France",desktop,,,\n'
    'U1,s1,1541037470,2,interaction item image,102,FR,"Paris, France",desktop,,,\n'
    'U1,s1,1541037480,3,clickout item,102,FR,"Paris, France",desktop,Sort by Price|Hotel,'
    "101|102|103,80|120|\n"
    'U1,s1,1541037490,4,clickout item,999,FR,"Lyon, France",desktop,,101|104,90|70\n'
    'U2,s2,1541037500,1,clickout item,201,DE,"Berlin, Germany",mobile,,201,55\n'
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _check(data_format: str, path: Path) -> None:
    data = load([path])
    requests = data.requests
    assert requests is not None
    assert requests["request_id"].tolist() == ["trivago:s1:3", "trivago:s1:4", "trivago:s2:1"]
    # The POI search applies while the city stays Paris; in Lyon the query is the city again.
    assert requests["query"].tolist() == ["Eiffel Tower", "Lyon, France", "Berlin, Germany"]
    assert requests["domain"].tolist() == ["trivago-fr", "trivago-fr", "trivago-de"]
    assert requests["timestamp"].iloc[0] == "2018-11-01T01:58:00Z"
    assert json.loads(requests["filters"].iloc[0]) == {"current_filters": "Sort by Price|Hotel"}
    assert requests["filters"].iloc[1] == "{}"
    assert requests["_row"].tolist() == ([4, 5, 6] if data_format == "csv" else [3, 4, 5])

    impressions = data.impressions
    assert impressions is not None
    got = impressions[["request_id", "product_id", "position", "price"]].values.tolist()
    assert got == [
        ["trivago:s1:3", "101", 1, "80"],
        ["trivago:s1:3", "102", 2, "120"],
        ["trivago:s1:3", "103", 3, None],  # missing shown price
        ["trivago:s1:4", "101", 1, "90"],
        ["trivago:s1:4", "104", 2, "70"],
        ["trivago:s2:1", "201", 1, "55"],
    ]
    interactions = data.interactions
    assert interactions is not None
    # The clickout on 999 (not shown) gets no click.
    assert interactions[["request_id", "product_id", "kind"]].values.tolist() == [
        ["trivago:s1:3", "102", "click"],
        ["trivago:s2:1", "201", "click"],
    ]
    products = data.products
    assert products is not None
    by_key = products.set_index(["domain", "product_id"])
    assert by_key.loc[("trivago-fr", "101"), "price"] == 85.0  # median of 80 and 90
    assert by_key.loc[("trivago-fr", "103"), "price"] is None
    assert by_key.loc[("trivago-fr", "101"), "title"] == "item 101"
    assert len(products) == 5
    domains = data.domains
    assert domains is not None
    assert domains[["domain_id", "language", "currency"]].values.tolist() == [
        ["trivago-fr", "fr", "EUR"],
        ["trivago-de", "de", "EUR"],
    ]
    assert any("1 clickout(s)" in n for n in data.notes)


def test_csv(tmp_path: Path) -> None:
    _check("csv", _write(tmp_path / "train.csv", HEADER + ROWS))


def test_parquet(tmp_path: Path) -> None:
    csv = _write(tmp_path / "train.csv", HEADER + ROWS)
    frame = pd.read_csv(csv, dtype={"reference": str, "impressions": str, "prices": str})
    path = tmp_path / "events.parquet"
    frame.to_parquet(path, index=False)
    _check("parquet", path)


def test_wrong_file_is_a_format_error(tmp_path: Path) -> None:
    items = _write(tmp_path / "item_metadata.csv", "item_id,properties\n5,Wifi|Pool\n")
    with pytest.raises(
        DataFormatError, match=r"item_metadata\.csv does not match the trivago format"
    ):
        load([items])


def test_blank_platform_gives_no_domain_row(tmp_path: Path) -> None:
    rows = 'U3,s3,1541037500,1,clickout item,301,,"Rome, Italy",mobile,,301,40\n'
    data = load([_write(tmp_path / "train.csv", HEADER + rows)])
    assert data.requests is not None
    assert data.requests["domain"].tolist() == [""]  # ingest rejects it as missing
    assert data.domains is not None
    assert data.domains.empty
