"""What the lexical index stores: the tantivy schema, the text analyzer, and product documents.

Searchable text fields (analyzed with :data:`ANALYZER`, English stemming):

    title, brand, category (the path's names), description, attributes (keys and values)

Before tokenising, measurements are written one way on both sides
(:func:`~shopsearch.text.units.normalize_units`): ``6 in.``, ``6 inch``, ``6"`` and ``6in`` all
become the word ``6in``, ``60 watts`` becomes ``60w``. A product's text keeps the bare number as
well (``6 6in``), so a query that gives only the number still finds it; a query's text does not
(:class:`QueryAnalyzer`), so ``6 inch`` asks for ``6in`` and not for any 6.

Filter and facet fields (not analyzed):

    head           the product's head phrases (what it is: the last word and last two words
                   of its title before "with", "for", a comma ..., and of its category's leaf;
                   :mod:`shopsearch.text.heads`), each word stemmed, joined by a space: one
                   term per phrase ("fan", "ceil fan"); a query's head phrase is matched here
    key            "domain<US>product_id", the unique term an update or delete removes by
    row            integer row id (fast) that maps a hit back to its product key
    domain         exact domain id
    brand_key      the brand lower-cased, for the case-insensitive brand filter
    brand_name     the brand as the catalog spells it (fast), for brand facet counts
    category_path  every prefix of the category path, levels joined by ``\\x1f`` (fast,
                   multi-valued): a term query on a prefix is the category filter and a terms
                   aggregation over it counts every level of the tree
    price          float (fast, indexed); absent when the product has no price
    in_stock       bool (fast, indexed)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
import pyarrow as pa
import tantivy

from shopsearch.catalog.candidates import ProductKey, product_key
from shopsearch.errors import InvalidInputError
from shopsearch.text.heads import head_phrases
from shopsearch.text.units import normalize_units

#: Name under which :data:`ANALYZER` is registered with every lexical index.
ANALYZER = "shopsearch_en"
#: The analyzed fields a query searches, in the order they are scored.
TEXT_FIELDS = ("title", "brand", "category", "description", "attributes")
#: Joins category levels inside the index (never shown; facets use " > ").
PATH_SEPARATOR = "\x1f"
#: Joins domain and product id in the unique ``key`` term.
KEY_SEPARATOR = "\x1f"
#: Tokens longer than this are dropped, as tantivy's own ``en_stem`` does.
MAX_TOKEN_CHARS = 40
#: The field of each product's head phrases (see the module docstring).
HEAD_FIELD = "head"

PRODUCT_COLUMNS = (
    "domain",
    "product_id",
    "title",
    "description",
    "brand",
    "category",
    "price",
    "attributes",
    "in_stock",
)


def index_analyzer() -> tantivy.TextAnalyzer:
    """tantivy's ``en_stem`` chain plus ASCII folding (so ``cafe`` finds ``café``)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


class QueryAnalyzer:
    """Splits a query the way :func:`index_analyzer` splits documents, keeping each word.

    Measurements are normalised first (:func:`~shopsearch.text.units.normalize_units`), as
    :meth:`ProductText.document` does for product text.
    """

    def __init__(self) -> None:
        self._words = (
            tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS))
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.ascii_fold())
            .build()
        )
        self._stem = (
            tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.raw())
            .filter(tantivy.Filter.stemmer("english"))
            .build()
        )

    def words(self, text: str) -> list[tuple[str, str]]:
        """``(word, stem)`` for each token of ``text``: the folded word and its indexed term."""
        return [
            (word, self._stem.analyze(word)[0])
            for word in self._words.analyze(normalize_units(text))
        ]


def build_schema() -> tantivy.Schema:
    """The lexical index's schema (see the module docstring)."""
    builder = tantivy.SchemaBuilder()
    for name in TEXT_FIELDS:
        builder.add_text_field(name, tokenizer_name=ANALYZER, index_option="freq")
    builder.add_text_field(HEAD_FIELD, tokenizer_name="raw", index_option="freq")
    builder.add_text_field("key", tokenizer_name="raw", index_option="basic")
    builder.add_unsigned_field("row", fast=True)
    builder.add_text_field("domain", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("brand_key", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("brand_name", fast=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("category_path", fast=True, tokenizer_name="raw", index_option="basic")
    builder.add_float_field("price", indexed=True, fast=True)
    builder.add_boolean_field("in_stock", indexed=True, fast=True)
    return builder.build()


def key_term(key: ProductKey) -> str:
    """The unique ``key`` term of a product."""
    return f"{key[0]}{KEY_SEPARATOR}{key[1]}"


def category_term(path: tuple[str, ...] | list[str]) -> str:
    """The ``category_path`` term of a path (or path prefix)."""
    return PATH_SEPARATOR.join(path)


@dataclass(frozen=True)
class ProductText:
    """The fields of one product the lexical index reads."""

    domain: str
    product_id: str
    title: str
    description: str
    brand: str
    category: list[str]
    price: float | None
    attributes: str
    in_stock: bool

    @property
    def key(self) -> ProductKey:
        """``(domain, product_id)`` (:func:`~shopsearch.catalog.candidates.product_key`)."""
        return product_key(self.domain, self.product_id)

    def document(self, row: int) -> tantivy.Document:
        """The tantivy document of this product under integer id ``row`` (measurements in its
        text normalised, bare numbers kept: see the module docstring)."""
        doc = tantivy.Document()
        for field, values in self.scored_texts().items():
            for value in values:
                doc.add_text(field, value)
        doc.add_text("key", key_term(self.key))
        doc.add_unsigned("row", row)
        doc.add_text("domain", self.domain)
        if self.brand:
            doc.add_text("brand_key", self.brand.lower())
            doc.add_text("brand_name", self.brand)
        for depth in range(1, len(self.category) + 1):
            doc.add_text("category_path", category_term(self.category[:depth]))
        if self.price is not None and math.isfinite(self.price):
            doc.add_float("price", self.price)
        doc.add_boolean("in_stock", self.in_stock)
        return doc

    def scored_texts(self) -> dict[str, list[str]]:
        """The values of each BM25-scored field as the index receives them: the text fields
        (one value each, measurements normalised) and the head phrases (one term each)."""
        return {
            "title": [_measured(self.title)],
            "brand": [_measured(self.brand)],
            "category": [_measured(" ".join(self.category))],
            "description": [_measured(self.description)],
            "attributes": [_measured(attribute_text(self.attributes))],
            HEAD_FIELD: head_terms([self.title, *self.category[-1:]]),
        }


def head_term(stems: Iterable[str]) -> str:
    """The ``head`` term of a phrase's stemmed words."""
    return " ".join(stems)


def head_terms(texts: Iterable[str]) -> list[str]:
    """The ``head`` terms of a product: the head phrases of each text (its title, its
    category's leaf), stemmed like the text fields; distinct, in order."""
    analyzer = _stemmer()
    terms = (head_term(analyzer.analyze(phrase)) for text in texts for phrase in head_phrases(text))
    return list(dict.fromkeys(term for term in terms if term))


@functools.cache
def _stemmer() -> tantivy.TextAnalyzer:
    return index_analyzer()


def _measured(text: str) -> str:
    """Product text with measurements as one token, bare numbers kept."""
    return normalize_units(text, keep_number=True)


def attribute_text(attributes: str) -> str:
    """The searchable text of an attributes JSON object: every key and value.

    Text that is not a JSON object is indexed as it is.
    """
    try:
        value = orjson.loads(attributes) if attributes else {}
    except orjson.JSONDecodeError:
        return attributes
    if not isinstance(value, dict):
        return attributes
    return " ".join(_flatten(value))


def _flatten(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _flatten(item)
    elif isinstance(value, list):
        for item in value:
            yield from _flatten(item)
    elif value is not None:
        yield str(value)


def read_products(products: pa.Table) -> Iterator[ProductText]:
    """The rows of a ``products`` table (see :mod:`shopsearch.store.schema`)."""
    missing = [name for name in PRODUCT_COLUMNS if name not in products.column_names]
    if missing:
        raise InvalidInputError(
            f"the products table has no column(s) {', '.join(missing)}; pass a table with the "
            "workspace products schema (shopsearch.store.schema.TABLES['products'])"
        )
    columns = [products.column(name).to_pylist() for name in PRODUCT_COLUMNS]
    for domain, pid, title, desc, brand, category, price, attrs, in_stock in zip(
        *columns, strict=True
    ):
        yield ProductText(
            domain=str(domain),
            product_id=str(pid),
            title=title or "",
            description=desc or "",
            brand=brand or "",
            category=[str(level) for level in category or []],
            price=None if price is None else float(price),
            attributes=attrs or "",
            in_stock=bool(in_stock),
        )


def latest_products(products: pa.Table) -> list[ProductText]:
    """The products as the lexical index keeps them: a key given twice keeps its last row,
    in the place where it first came."""
    return list({product.key: product for product in read_products(products)}.values())


def product_keys(products: pa.Table) -> list[ProductKey]:
    """The ``(domain, product_id)`` of each row of a ``products`` table, in order."""
    return [
        (str(domain), str(product_id))
        for domain, product_id in zip(
            products.column("domain").to_pylist(),
            products.column("product_id").to_pylist(),
            strict=True,
        )
    ]
