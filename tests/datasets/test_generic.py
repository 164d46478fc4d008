from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopsearch.datasets.generic import load, load_events, load_judgments, load_products
from shopsearch.errors import DataFormatError

PRODUCTS = (
    "product_id,title,description,brand,category,price,domain,in_stock,attributes\n"
    'p1,"Sofa, grey",Three seats,Acme,Home > Sofas,199.5,es,true,"{""color"": ""grey""}"\n'
    "p2,Chair,,,Home > Chairs,,es,,\n"
    ",No id,,,,ten,es,,\n"
)
EVENTS = (
    "request_id,user_id,domain,query,timestamp,product_id,position,session_id,price,"
    "clicked,added_to_cart,purchased,value\n"
    "r1,u1,es,sofa,2024-01-01T10:00:00Z,p1,1,s1,199.5,1,1,1,199.5\n"
    "r1,u1,es,sofa,2024-01-01T10:00:00Z,p2,2,s1,,0,0,0,\n"
    "r2,u2,fr,chair,2024-01-02T11:00:00Z,p2,1,,49,0,0,1,\n"
    "r2,u2,fr,chair,2024-01-02T11:00:00Z,p1,2,,,true,0,0,\n"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_products_csv(tmp_path: Path) -> None:
    data = load([_write(tmp_path / "catalog.csv", PRODUCTS)])
    products = data.products
    assert products is not None
    assert products["product_id"].tolist() == ["p1", "p2", ""]
    assert products["title"].tolist() == ["Sofa, grey", "Chair", "No id"]
    assert products["category"].tolist() == ["Home > Sofas", "Home > Chairs", []]
    assert json.loads(products["attributes"].iloc[0]) == {"color": "grey"}
    assert products["attributes"].iloc[1] == "{}"
    assert products["price"].tolist() == ["199.5", None, "ten"]  # ingest rejects "ten"
    assert products["in_stock"].tolist() == ["true", True, True]
    assert products["_row"].tolist() == [2, 3, 4]
    # 'es' is not declared: no guessed domain row that would overwrite the real one.
    assert data.domains is not None
    assert data.domains.empty


def test_products_parquet_without_domain_column(tmp_path: Path) -> None:
    path = tmp_path / "catalog.parquet"
    table = pa.table(
        {
            "product_id": ["a", "b"],
            "title": ["Lamp", "Desk"],
            "category": [["Home", "Lighting"], None],
            "price": [12.0, None],
            "attributes": pa.array([[("watt", "40")], []], type=pa.map_(pa.string(), pa.string())),
        }
    )
    pq.write_table(table, path)
    data = load_products([path])
    products = data.products
    assert products is not None
    assert products["domain"].tolist() == ["default", "default"]
    assert products["category"].tolist() == [["Home", "Lighting"], []]
    assert json.loads(products["attributes"].iloc[0]) == {"watt": "40"}
    assert products["_row"].tolist() == [1, 2]
    assert data.domains is not None
    assert data.domains[["domain_id", "language", "currency"]].values.tolist() == [
        ["default", "en", "USD"]
    ]


def test_events_become_requests_impressions_and_flagged_interactions(tmp_path: Path) -> None:
    domains = _write(
        tmp_path / "domains.csv", "domain_id,name,language,currency\nes,Spain,es,EUR\n"
    )
    events = _write(tmp_path / "log.csv", EVENTS)
    data = load([events, domains])

    requests = data.requests
    assert requests is not None
    assert requests["request_id"].tolist() == ["r1", "r2"]
    assert requests["session_id"].tolist() == ["s1", None]
    assert requests["_row"].tolist() == [2, 4]
    impressions = data.impressions
    assert impressions is not None
    assert impressions["position"].tolist() == ["1", "2", "1", "2"]
    assert impressions["price"].tolist() == ["199.5", None, "49", None]
    interactions = data.interactions
    assert interactions is not None
    got = interactions[["request_id", "product_id", "kind", "value", "_row"]].values.tolist()
    assert got == [
        ["r1", "p1", "click", 0.0, 2],
        ["r1", "p1", "add_to_cart", 0.0, 2],
        ["r1", "p1", "purchase", "199.5", 2],
        ["r2", "p2", "purchase", 0.0, 4],  # only what is flagged; an empty value is 0.0
        ["r2", "p1", "click", 0.0, 5],
    ]
    assert data.domains is not None
    assert data.domains["domain_id"].tolist() == ["es"]


def test_judgments_without_domain_use_default(tmp_path: Path) -> None:
    data = load_judgments([_write(tmp_path / "j.csv", "query,product_id,grade\nsofa,p1,3\n")])
    assert data.judgments is not None
    assert data.judgments[["domain", "query", "grade"]].values.tolist() == [
        ["default", "sofa", "3"]
    ]
    assert data.domains is not None
    assert data.domains["domain_id"].tolist() == ["default"]


def test_unknown_file_and_wrong_kind_for_alias_are_format_errors(tmp_path: Path) -> None:
    odd = _write(tmp_path / "odd.csv", "sku,name\n1,x\n")
    with pytest.raises(
        DataFormatError, match=r"odd\.csv has the columns of no file kind.*found sku, name"
    ):
        load([odd])
    events = _write(tmp_path / "log.csv", EVENTS)
    with pytest.raises(DataFormatError, match="'products' takes only products files"):
        load_products([events])
    assert load_events([events]).requests is not None
    with pytest.raises(DataFormatError, match="is empty"):
        load([_write(tmp_path / "empty.csv", "")])


def test_not_utf8_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("product_id,title\np1,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"not utf-8 text.*re-save it as UTF-8"):
        load([path])
