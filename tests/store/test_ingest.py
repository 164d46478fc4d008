from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from shopsearch.catalog.limits import id_problem
from shopsearch.datasets.base import LoadedData
from shopsearch.ingest.workspace import ingest
from shopsearch.store.workspace import Workspace


def _products(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["_file"] = "products.csv"
    frame["_row"] = range(2, len(frame) + 2)
    return frame


DOMAINS = pd.DataFrame(
    {"domain_id": ["us"], "name": ["US"], "language": ["en"], "currency": ["USD"]}
)


def test_good_rows_kept_bad_rows_reported(tmp_path):
    ws = Workspace.create(tmp_path)
    products = _products(
        [
            {"domain": "us", "product_id": "1", "title": "Sofa", "price": "10.5"},
            {"domain": "us", "product_id": "", "title": "No id", "price": "1"},
            {"domain": "us", "product_id": "3", "title": "Bad price", "price": "abc"},
            {"domain": "us", "product_id": "4", "title": "Negative", "price": "-2"},
            {"domain": "xx", "product_id": "5", "title": "Unknown domain", "price": "1"},
            {"domain": "us", "product_id": "6", "title": "T" * 5000, "price": "1"},
            {"domain": "us", "product_id": "7", "title": "Chair", "price": ""},
        ]
    )
    result = ingest(ws, LoadedData("generic", domains=DOMAINS, products=products))
    assert result.kept["products"] == 2
    assert result.rejected == {"products": 5}
    assert result.report is not None
    report = pd.read_csv(result.report)
    reasons = dict(zip(report["row"], report["reason"], strict=True))
    assert reasons[3] == "missing"
    assert "not a number" in reasons[4]
    assert "negative" in reasons[5]
    assert "unknown domain 'xx'" in reasons[6]
    assert "too long" in reasons[7]
    stored = ws.table("products").to_pandas()
    assert sorted(stored["product_id"]) == ["1", "7"]
    assert pd.isna(stored.set_index("product_id").loc["7", "price"])


def test_ids_must_be_printable_and_not_path_segments(tmp_path):
    ws = Workspace.create(tmp_path)
    bad = ["..", ".", "a\x00b", "tab\tid"]
    products = _products(
        [{"domain": "us", "product_id": pid, "title": "Sofa"} for pid in ["ok", *bad]]
    )
    result = ingest(ws, LoadedData("generic", domains=DOMAINS, products=products))
    assert result.kept["products"] == 1
    report = pd.read_csv(result.report, keep_default_na=False)
    assert list(report["reason"]) == [id_problem(pid) for pid in bad]  # the API's rule too
    assert ws.table("products")["product_id"].to_pylist() == ["ok"]


def test_reingest_upserts_by_domain_and_id(tmp_path):
    ws = Workspace.create(tmp_path)
    first = _products([{"domain": "us", "product_id": "1", "title": "Old", "price": 1}])
    ingest(ws, LoadedData("generic", domains=DOMAINS, products=first))
    second = _products(
        [
            {"domain": "us", "product_id": "1", "title": "New", "price": 2},
            {"domain": "us", "product_id": "2", "title": "Other", "price": 3},
        ]
    )
    ingest(ws, LoadedData("generic", products=second))
    stored = ws.table("products").to_pandas().set_index("product_id")
    assert stored.loc["1", "title"] == "New"
    assert len(stored) == 2


def test_add_domains_registers_unknown_domains(tmp_path):
    ws = Workspace.create(tmp_path)
    products = _products([{"domain": "gb", "product_id": "1", "title": "Sofa"}])
    result = ingest(ws, LoadedData("generic", products=products), add_domains=True)
    assert result.added_domains == ["gb"]
    assert result.rejected == {}
    assert [d.domain_id for d in ws.domains()] == ["gb"]


def test_events_need_a_known_request_and_valid_fields(tmp_path):
    ws = Workspace.create(tmp_path)
    requests = pd.DataFrame(
        {
            "request_id": ["r1", "r2"],
            "user_id": ["u1", "u2"],
            "domain": ["us", "us"],
            "query": ["sofa", "chair"],
            "timestamp": ["2024-01-01T10:00:00Z", "not a time"],
        }
    )
    interactions = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r9"],
            "user_id": ["u1", "u1", "u1"],
            "product_id": ["1", "1", "1"],
            "kind": ["click", "wishlist", "click"],
            "timestamp": [1704103200, 1704103300, 1704103400],
        }
    )
    result = ingest(
        ws, LoadedData("generic", domains=DOMAINS, requests=requests, interactions=interactions)
    )
    assert result.kept == {"domains": 1, "requests": 1, "interactions": 1}
    assert result.rejected == {"requests": 1, "interactions": 2}
    report = pd.read_csv(result.report)
    assert set(report["field"]) == {"timestamp", "kind", "request_id"}
    stored = ws.table("interactions").to_pandas()
    assert stored["timestamp"].iloc[0] == pd.Timestamp("2024-01-01T10:00:00Z")


@pytest.mark.parametrize(
    ("value", "ok"), [("true", True), ("0", True), ("yes", True), ("maybe", False)]
)
def test_bool_parsing(tmp_path, value, ok):
    ws = Workspace.create(tmp_path)
    products = _products([{"domain": "us", "product_id": "1", "title": "A", "in_stock": value}])
    result = ingest(ws, LoadedData("generic", domains=DOMAINS, products=products))
    assert (not result.rejected) is ok


def test_category_and_attributes_are_normalised(tmp_path):
    ws = Workspace.create(tmp_path)
    products = _products(
        [
            {
                "domain": "us",
                "product_id": "1",
                "title": "A",
                "category": "Home > Sofas",
                "attributes": '{"color": "grey"}',
            },
            {
                "domain": "us",
                "product_id": "2",
                "title": "B",
                "category": ["Home", "Chairs"],
                "attributes": {"size": 3},
            },
            {"domain": "us", "product_id": "3", "title": "C", "attributes": "[1, 2]"},
        ]
    )
    result = ingest(ws, LoadedData("generic", domains=DOMAINS, products=products))
    assert result.rejected == {"products": 1}
    stored = ws.table("products").to_pylist()
    assert stored[0]["category"] == ["Home", "Sofas"]
    assert stored[1]["category"] == ["Home", "Chairs"]
    assert stored[1]["attributes"] == '{"size":3}'


def test_added_domains_get_unknown_language_and_currency(tmp_path):
    ws = Workspace.create(tmp_path)
    products = _products([{"domain": "gb", "product_id": "1", "title": "Sofa"}])
    empty = DOMAINS.iloc[:0]  # what the generic loader emits when no domains file is given
    result = ingest(ws, LoadedData("generic", domains=empty, products=products), add_domains=True)
    assert result.added_domains == ["gb"]
    domain = ws.domains()[0]
    assert (domain.domain_id, domain.language, domain.currency) == ("gb", "und", "XXX")
    again = ingest(ws, LoadedData("generic", domains=empty, products=products))
    assert again.kept == {"products": 1}


def test_domain_rows_the_domain_model_refuses_are_rejected(tmp_path):
    ws = Workspace.create(tmp_path)
    domains = pd.DataFrame(
        {
            "domain_id": ["us", "gb", "fr"],
            "name": ["US", "UK", ""],
            "language": ["en", "e", ""],
            "currency": ["USD", "GB", ""],
        }
    )
    result = ingest(ws, LoadedData("generic", domains=domains))
    assert result.rejected == {"domains": 1}
    assert result.report is not None
    report = pd.read_csv(result.report)
    assert set(report["field"]) == {"language", "currency"}
    assert "too short: 1 characters, at least 2" in " ".join(report["reason"])
    stored = {d.domain_id: (d.name, d.language, d.currency) for d in ws.domains()}
    assert stored == {"us": ("US", "en", "USD"), "fr": ("fr", "en", "USD")}


def test_a_workspace_with_empty_domain_fields_opens_and_is_repaired(tmp_path):
    """Older --add-domains stored empty language and currency, which Domain refuses."""
    ws = Workspace.create(tmp_path)
    broken = pa.table(
        {"domain_id": ["us", "gb"], "name": ["us", "GB"], "language": ["", "en"],
         "currency": ["", "GBP"]}
    )  # fmt: skip
    ws.upsert("domains", broken)
    assert [(d.language, d.currency) for d in ws.domains()] == [("und", "XXX"), ("en", "GBP")]
    products = _products([{"domain": "us", "product_id": "1", "title": "Sofa"}])
    result = ingest(ws, LoadedData("generic", products=products))
    assert result.repaired_domains == ["us"]
    assert result.kept == {"products": 1}
    stored = ws.table("domains").to_pylist()
    assert [(d["domain_id"], d["name"], d["language"], d["currency"]) for d in stored] == [
        ("gb", "GB", "en", "GBP"),
        ("us", "us", "und", "XXX"),
    ]
