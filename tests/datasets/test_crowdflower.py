from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from shopsearch.datasets.crowdflower import load, product_ids
from shopsearch.errors import DataFormatError

# Descriptions span lines and contain commas and quotes, as in the Kaggle file.
TRAIN = (
    "id,query,product_title,product_description,median_relevance,relevance_variance\n"
    '1,bridal shower decorations,Accent Pillow with Heart Design - Red/Black,"Red satin accent '
    'pillow embroidered with a heart in black thread.\n8"" x 8"".",1,0.0\n'
    '2,led christmas lights,"Set of 10 Battery Operated Multi LED Train Lights, Christmas",'
    '"Set of 10 Battery Operated, Multi LED.",4,0.0\n'
    '3,led christmas lights,"set of 10 battery operated  multi led train lights, christmas",'
    '"set of 10 battery operated, multi led.",3,0.471\n'
    "4,projector,Pure White Projector Screen,,,\n"
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_products_get_stable_text_ids_and_judgments_keep_rows(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", TRAIN)
    data = load([train])

    products = data.products
    assert products is not None
    # Rows 2 and 3 differ only in case and spacing: one product.
    assert len(products) == 3
    assert products["product_id"].str.match(r"^cf-[0-9a-f]{16}$").all()
    assert products["description"].iloc[0] == (
        'Red satin accent pillow embroidered with a heart in black thread.\n8" x 8".'
    )
    judgments = data.judgments
    assert judgments is not None
    assert judgments["grade"].tolist() == ["1", "4", "3", ""]
    assert judgments["product_id"].iloc[1] == judgments["product_id"].iloc[2]
    # The first record spans lines 2-3, so the next ones start on lines 4, 5 and 6.
    assert judgments["_row"].tolist() == [2, 4, 5, 6]
    assert data.domains is not None
    assert data.domains["domain_id"].tolist() == ["crowdflower"]


def test_product_ids_do_not_change_between_runs() -> None:
    ids = product_ids(pd.Series(["Red  Pillow"]), pd.Series(["Soft"]))
    again = product_ids(pd.Series(["red pillow"]), pd.Series([" soft "]))
    assert ids.tolist() == again.tolist()
    assert ids.iloc[0] == "cf-" + hashlib.sha1(b"red pillow\nsoft").hexdigest()[:16]


def test_test_file_without_relevance_gives_products_only(tmp_path: Path) -> None:
    test = _write(tmp_path / "test.csv", "id,query,product_title,product_description\n1,q,T,D\n")
    data = load([test])
    assert data.judgments is None
    assert data.products is not None
    assert len(data.products) == 1


def test_unquoted_separator_is_a_format_error_naming_the_line(tmp_path: Path) -> None:
    bad = _write(
        tmp_path / "train.csv", TRAIN.replace("Pure White Projector", "Pure White, Projector")
    )
    with pytest.raises(
        DataFormatError, match=r"record on line 6 has 7 fields, the header has 6. Quote values"
    ):
        load([bad])


def test_wrong_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"expected the columns of train\.csv or test\.csv"):
        load([_write(tmp_path / "train.csv", "id,search_term,relevance\n1,a,3\n")])
