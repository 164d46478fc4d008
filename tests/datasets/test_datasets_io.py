"""The shared loader helpers and the registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from shopsearch.datasets import LOADERS, get_loader
from shopsearch.datasets._cells import seconds_to_iso, stable_id, truthy
from shopsearch.datasets._read import CSV, read_frame
from shopsearch.datasets._schema import finish
from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.store.schema import TABLES


def test_registry_lists_every_format() -> None:
    assert set(LOADERS) == {
        "generic", "products", "events", "judgments", "homedepot", "crowdflower", "bestbuy",
        "trivago", "esci", "wands", "aliccp", "aliexpress", "jdsearch",
    }  # fmt: skip
    assert get_loader("trivago") is LOADERS.get("trivago")
    with pytest.raises(InvalidInputError, match="unknown format 'nope'; formats are generic, pro"):
        get_loader("nope")


def test_finish_gives_schema_columns_and_model_defaults() -> None:
    raw = pd.DataFrame(
        {
            "domain": ["d", "d"],
            "product_id": ["1", "2"],
            "title": ["A", "B"],
            "price": ["", "3.5"],
            "brand": [None, "Acme"],
            "extra": ["x", "y"],
            "_file": "f.csv",
            "_row": [2, 3],
        }
    )
    out = finish(raw, "products")
    assert list(out.columns) == [*TABLES["products"].names, "_file", "_row"]
    assert out["price"].tolist() == [None, "3.5"]
    assert out["brand"].tolist() == ["", "Acme"]
    assert out["category"].tolist() == [[], []]
    assert out["attributes"].tolist() == ["{}", "{}"]
    assert out["in_stock"].tolist() == [True, True]
    assert pd.to_datetime(out["created_at"], utc=True).notna().all()
    with pytest.raises(AssertionError, match="without column 'title'"):
        finish(raw.drop(columns="title"), "products")


def test_rows_are_source_lines_with_blank_and_multiline_records(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('a,b\n1,"two\nlines"\n\n3,4\n5,6', encoding="utf-8")
    frame = read_frame(path, "test", ["a", "b"], CSV)
    assert frame["a"].tolist() == ["1", "3", "5"]
    assert frame["_row"].tolist() == [2, 5, 6]
    assert frame["_file"].tolist() == [str(path)] * 3


def test_structural_problems_are_format_errors(tmp_path: Path) -> None:
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("a,b\n1,2,\n3,4,\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="record on line 2 has 3 fields, the header has 2"):
        read_frame(trailing, "test", ["a"], CSV)
    missing = tmp_path / "missing.csv"
    missing.write_text("a,c\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"missing the column\(s\) b of a file; found a, c"):
        read_frame(missing, "test", ["a", "b"], CSV)


def test_seconds_to_iso_keeps_bad_values_for_ingest_to_report() -> None:
    out = seconds_to_iso(pd.Series(["1541037460", "soon", "", "1.5"]))
    assert out.tolist() == [
        "2018-11-01T01:57:40.000000Z", "soon", "", "1970-01-01T00:00:01.500000Z",
    ]  # fmt: skip
    assert seconds_to_iso(pd.Series([0, 60])).tolist() == [
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:01:00Z",
    ]


def test_stable_id_and_truthy() -> None:
    ids = stable_id(pd.DataFrame({"a": ["x"], "b": ["y"]}), prefix="p-", length=8)
    assert ids.tolist() == ["p-" + hashlib.sha1(b"x\x1fy").hexdigest()[:8]]
    flags = truthy(pd.Series(["1", "0", "true", "", "Yes", "1.0", "no", "2"]))
    assert flags.tolist() == [True, False, True, False, True, True, False, True]
    assert truthy(pd.Series([1, 0, 2])).tolist() == [True, False, True]
