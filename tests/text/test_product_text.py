"""The product text the item encoder reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from shopsearch.errors import DataFormatError
from shopsearch.store.schema import TABLES
from shopsearch.text.product_text import product_text, product_texts


def test_product_text_adds_brand_leaf_and_short_attributes_once() -> None:
    assert (
        product_text(
            "Pegasus 40 road shoe",
            "Nike",
            ["Sport", "Running Shoes"],
            '{"color": "blue", "waterproof": true, "notes": "' + "x" * 40 + '", "size": 42, '
            '"fit": "wide"}',
        )
        == "Pegasus 40 road shoe, Nike, Running Shoes, color blue, size 42"
    )
    assert product_text("NIKE running shoes", "Nike", ["Running Shoes"]) == "NIKE running shoes"
    assert product_text(" Lamp ", "", [], "{}", max_attributes=0) == "Lamp"
    assert product_text("Lamp", attributes='["not", "an", "object"]') == "Lamp"


def test_bad_attributes_fail_clearly() -> None:
    with pytest.raises(DataFormatError, match="not valid JSON"):
        product_text("Lamp", attributes="{oops")


def test_product_texts_reads_a_products_table() -> None:
    schema = TABLES["products"]
    row = {
        "domain": "us",
        "product_id": "1",
        "title": "Desk lamp",
        "description": "",
        "brand": "Ikea",
        "category": ["Home", "Lamps"],
        "price": None,
        "attributes": "{}",
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
        "in_stock": True,
    }
    table = pa.Table.from_pylist([row, {**row, "title": "Floor lamp", "brand": ""}], schema)
    assert product_texts(table) == ["Desk lamp, Ikea, Lamps", "Floor lamp, Lamps"]
