"""Amazon Shopping Queries Dataset (ESCI, KDD Cup 2022), Parquet (CSV copies are read too).

Files, recognised by their columns:

- ``shopping_queries_dataset_examples.parquet``: ``example_id, query, query_id, product_id,
  product_locale, esci_label`` (E/S/C/I)``, small_version, large_version, split``.
- ``shopping_queries_dataset_products.parquet``: ``product_id, product_title,
  product_description, product_bullet_point, product_brand, product_color, product_locale``.

Mapping:

- domains: one per locale, ``esci-<locale>``: ``us`` (English, USD), ``es`` (Spanish, EUR),
  ``jp`` (Japanese, JPY); another locale gets its code as language and USD.
- judgments: one per example in the domain of its ``product_locale``, with grade
  E (exact) = 3, S (substitute) = 2, C (complement) = 1, I (irrelevant) = 0 — the gains of the
  ESCI paper's nDCG up to scale. Another label is passed on as written, for ingest to reject.
  ``split``, ``small_version`` and ``large_version`` are not kept (the judgments table has no
  place for them): filter the examples file first to load one split or version.
- products: one per (locale, product_id): title, description, brand; the colour and bullet
  points are attributes (``color``, ``bullet_points``). No prices or categories.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from shopsearch.datasets._cells import attributes_from
from shopsearch.datasets._read import CSV, Kind, check_paths, classify, read_all
from shopsearch.datasets._rows import first_rows
from shopsearch.datasets._schema import DomainRow, domains_frame, finish
from shopsearch.datasets.base import LoadedData
from shopsearch.datasets.registry import LOADERS

FORMAT = "esci"
#: ESCI label → graded relevance.
GRADES = {"E": 3.0, "S": 2.0, "C": 1.0, "I": 0.0}
#: Locale → (language, currency).
LOCALES = {"us": ("en", "USD"), "es": ("es", "EUR"), "jp": ("ja", "JPY")}

EXAMPLES = Kind(
    "examples",
    ("query", "product_id", "product_locale", "esci_label"),
    "shopping_queries_dataset_examples.parquet",
)
PRODUCTS = Kind(
    "products",
    ("product_id", "product_title", "product_locale"),
    "shopping_queries_dataset_products.parquet",
)


def domain_id(locale: object) -> str:
    """The domain id of an ESCI locale (``us`` → ``esci-us``; blank → ``""``)."""
    code = "" if locale is None else str(locale).strip().lower()
    return f"esci-{code}" if code and code != "nan" else ""


@LOADERS.register("esci")
def load(paths: Sequence[Path]) -> LoadedData:
    """Read ESCI examples and/or products.

    Args:
        paths: The examples file, the products file, or both, in any order.

    Returns:
        Domains, and judgments and/or products.

    Raises:
        DataFormatError: A file is missing, unreadable or of neither kind.
    """
    found = classify(check_paths(paths, FORMAT), FORMAT, (EXAMPLES, PRODUCTS), CSV)
    examples = read_all(found["examples"], FORMAT, EXAMPLES, CSV)
    catalog = read_all(found["products"], FORMAT, PRODUCTS, CSV)
    data = LoadedData(format=FORMAT)
    used: list[pd.DataFrame] = []
    if examples is not None:
        examples = examples.assign(domain=examples["product_locale"].map(domain_id))
        label = examples["esci_label"].astype(str).str.strip().str.upper()
        grade = label.map(GRADES).astype(object)
        unknown = grade.isna()
        grade[unknown] = examples["esci_label"][unknown]
        data.judgments = finish(examples.assign(grade=grade), "judgments")
        data.notes.append("grades: E (exact) = 3, S (substitute) = 2, C (complement) = 1, I = 0")
        data.notes.append("split, small_version and large_version are not kept")
        used.append(examples)
    if catalog is not None:
        catalog = catalog.assign(domain=catalog["product_locale"].map(domain_id))
        catalog = first_rows(catalog, ["domain", "product_id"])
        attributes = attributes_from(
            catalog, {"product_color": "color", "product_bullet_point": "bullet_points"}
        )
        renamed = {
            "product_title": "title",
            "product_description": "description",
            "product_brand": "brand",
        }
        products = catalog.rename(columns=renamed).assign(attributes=attributes)
        data.products = finish(products, "products")
        data.notes.append("no prices or categories; colour and bullet points are attributes")
        used.append(catalog)

    columns = ["product_locale", "_file", "_row"]
    locales = pd.concat([u[columns] for u in used], ignore_index=True)
    locales = locales[locales["product_locale"].map(domain_id) != ""]
    firsts = first_rows(locales, "product_locale")
    data.domains = domains_frame(
        _domain(str(loc), str(f), int(r))
        for loc, f, r in zip(firsts["product_locale"], firsts["_file"], firsts["_row"], strict=True)
    )
    return data


def _domain(locale: str, file: str, row: int) -> DomainRow:
    code = locale.strip().lower()
    language, currency = LOCALES.get(code, (code or "en", "USD"))
    return DomainRow(domain_id(code), f"Amazon {code.upper()}", language, currency, file, row)
