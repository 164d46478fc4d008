"""The shared loader helpers and the registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from shopsearch.datasets import LOADERS, get_loader
from shopsearch.datasets._cells import seconds_to_iso, stable_id, truthy
from shopsearch.datasets._read import CSV, keeping_malformed, read_frame
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


def test_rows_are_source_lines_with_a_value_longer_than_the_csv_module_limit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "long.csv"
    long = "x\n" * 100_000  # 200,000 characters over 100,000 lines, in one quoted value
    path.write_text(f'a,b\n1,"{long}"\n3,4\n', encoding="utf-8")
    frame = read_frame(path, "test", ["a", "b"], CSV)
    assert frame["_row"].tolist() == [2, 100_003]


def test_structural_problems_are_format_errors(tmp_path: Path) -> None:
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("a,b\n1,2,\n3,4,\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="record on line 2 has 3 fields, the header has 2"):
        read_frame(trailing, "test", ["a"], CSV)
    missing = tmp_path / "missing.csv"
    missing.write_text("a,c\n1,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"missing the column\(s\) b of a file; found a, c"):
        read_frame(missing, "test", ["a", "b"], CSV)


HEADER9 = "product_id,title,description,brand,category,price,domain,in_stock,attributes\n"


def _nine(i: int) -> str:
    return f"{i},Item {i},d,b,A > B,10,us,true,{{}}\n"


def test_malformed_records_are_listed_and_the_rest_is_read(tmp_path: Path) -> None:
    """Issue 13.6: a record with extra fields or an unclosed quote is one bad row."""
    path = tmp_path / "b.csv"
    lines = [_nine(i) for i in range(1, 12)]
    lines[7] = "8,Shelf,d,b,A > B,10,us,true,{},x,y\n"  # line 9: 11 fields
    lines[9] = '10,"Rug,d,b,A > B,10,us,true,{}\n'  # line 11: a quote never closed
    path.write_text(HEADER9 + "".join(lines), encoding="utf-8")
    with keeping_malformed() as malformed:
        frame = read_frame(path, "test", ["product_id"], CSV)
    assert frame["product_id"].tolist() == ["1", "2", "3", "4", "5", "6", "7", "9", "11"]
    assert frame["_row"].tolist() == [2, 3, 4, 5, 6, 7, 8, 10, 12]
    assert [(m.file, m.row) for m in malformed] == [(str(path), 9), (str(path), 11)]
    assert "11 fields, the header has 9" in malformed[0].reason
    assert malformed[0].text.startswith("8,Shelf")
    assert "quoted value starting on line 11 is never closed" in malformed[1].reason
    with pytest.raises(DataFormatError, match="the record on line 9 has 11 fields"):
        read_frame(path, "test", ["product_id"], CSV)
    path.write_text(HEADER9 + "".join(lines[8:]), encoding="utf-8")
    with pytest.raises(DataFormatError, match="quoted value starting on line 3 is never closed"):
        read_frame(path, "test", ["product_id"], CSV)


def test_an_encoding_error_names_its_line_and_byte_offset_in_the_file(tmp_path: Path) -> None:
    """Issue 13.7: the offset is within the file, not within the parser's read buffer."""
    lines = ["product_id,title"] + [f"{i},Sofa number {i}" for i in range(1, 30000)]
    lines.insert(20000, "x1,Caf\xe9 chair")
    data = ("\n".join(lines) + "\n").encode("latin-1")
    offset = data.index(b"\xe9")
    assert offset > 1 << 18  # beyond the first buffer pandas decodes
    path = tmp_path / "latin1.csv"
    path.write_bytes(data)
    with pytest.raises(DataFormatError) as error:
        read_frame(path, "test", ["product_id"], CSV)
    message = str(error.value)
    assert f"byte 0xe9 on line 20001 (byte offset {offset} of the file)" in message
    assert "x1,Caf" in message
    assert "re-save it as UTF-8" in message


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
