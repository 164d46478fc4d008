from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from shopsearch.datasets.esci import load
from shopsearch.errors import DataFormatError


def _examples(path: Path) -> Path:
    pd.DataFrame(
        {
            "example_id": [0, 1, 2, 3, 4],
            "query": ["revent 80 cfm", "revent 80 cfm", "revent 80 cfm", "zapatillas", "テレビ"],
            "query_id": [0, 0, 0, 1, 2],
            "product_id": ["B000MOO21W", "B07X3Y6B1V", "B07WDM7MQQ", "B0ES1", "B0JP1"],
            "product_locale": ["us", "us", "us", "es", "jp"],
            "esci_label": ["I", "E", "S", "C", "X"],
            "small_version": [0, 1, 1, 0, 1],
            "large_version": [1, 1, 1, 1, 1],
            "split": ["train", "train", "test", "train", "train"],
        }
    ).to_parquet(path, index=False)
    return path


def _products(path: Path) -> Path:
    pd.DataFrame(
        {
            "product_id": ["B07X3Y6B1V", "B0ES1", "B07X3Y6B1V"],
            "product_title": ["Panasonic FV-0511VQ1 WhisperCeiling", "Zapatillas", "Dup"],
            "product_description": [None, "Cómodas", None],
            "product_bullet_point": ["Quiet, 80 CFM", None, None],
            "product_brand": ["Panasonic", None, None],
            "product_color": ["White", "Negro", None],
            "product_locale": ["us", "es", "us"],
        }
    ).to_parquet(path, index=False)
    return path


def test_examples_and_products_in_any_order(tmp_path: Path) -> None:
    data = load([_products(tmp_path / "p.parquet"), _examples(tmp_path / "e.parquet")])

    judgments = data.judgments
    assert judgments is not None
    assert judgments["grade"].tolist() == [0.0, 3.0, 2.0, 1.0, "X"]  # ingest rejects "X"
    assert judgments["domain"].tolist() == ["esci-us"] * 3 + ["esci-es", "esci-jp"]
    assert judgments["_row"].tolist() == [1, 2, 3, 4, 5]
    products = data.products
    assert products is not None
    assert products["product_id"].tolist() == ["B07X3Y6B1V", "B0ES1"]  # duplicate row dropped
    assert products["domain"].tolist() == ["esci-us", "esci-es"]
    assert products["brand"].tolist() == ["Panasonic", ""]
    assert products["description"].tolist() == ["", "Cómodas"]
    assert json.loads(products["attributes"].iloc[0]) == {
        "bullet_points": "Quiet, 80 CFM",
        "color": "White",
    }
    assert json.loads(products["attributes"].iloc[1]) == {"color": "Negro"}
    domains = data.domains
    assert domains is not None
    assert domains[["domain_id", "language", "currency"]].values.tolist() == [
        ["esci-us", "en", "USD"],
        ["esci-es", "es", "EUR"],
        ["esci-jp", "ja", "JPY"],
    ]


def test_wrong_file_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "sources.parquet"
    pd.DataFrame({"query_id": [1], "source": ["x"]}).to_parquet(path, index=False)
    with pytest.raises(
        DataFormatError, match=r"sources\.parquet does not match the esci format.*esci_label"
    ):
        load([path])
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="not a readable Parquet file"):
        load([broken])
