from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pytest
from tantivy import Occur, Query

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.retrieval.fuzzy_terms import FuzzyTerms
from shopsearch.retrieval.lexical import DEFAULT_PRICE_BUCKETS, LexicalRetriever
from shopsearch.retrieval.lexical_query import price_bucket_labels
from shopsearch.retrieval.lexical_schema import QueryAnalyzer, index_analyzer
from shopsearch.retrieval.raw_baselines import RawTantivyRetriever
from shopsearch.store.schema import TABLES


class Row(NamedTuple):
    domain: str
    product_id: str
    title: str
    description: str
    brand: str
    category: list[str]
    price: float | None
    attributes: dict[str, str]
    in_stock: bool


# fmt: off
CATALOG = [Row(*row) for row in [
    ("us", "1", "Comfy Sofa", "A three-seat sofa", "Ikea",
     ["Furniture", "Living room", "Sofas"], 499.0, {"color": "grey", "material": "fabric"}, True),
    ("us", "2", "Leather Sofa Bed", "Sleeps two", "IKEA",
     ["Furniture", "Living room", "Sofas"], 750.0, {"color": "brown"}, False),
    ("us", "3", "Oak Coffee Table", "Solid oak", "Hemnes",
     ["Furniture", "Living room", "Tables"], 129.0, {}, True),
    ("us", "4", "Wireless Headphones", "Over-ear, 30 h battery", "Sony",
     ["Electronics", "Audio", "Headphones"], 199.99, {"connectivity": "bluetooth"}, True),
    ("us", "5", "Noise Cancelling Headphones", "Quiet comfort", "Bose",
     ["Electronics", "Audio", "Headphones"], 349.0, {}, False),
    ("us", "6", "Headphone Stand", "Wooden stand for headphones", "Generic",
     ["Electronics", "Accessories"], 19.5, {}, True),
    ("us", "7", "Bluetooth Speaker", "Portable speaker", "Sony",
     ["Electronics", "Audio", "Speakers"], None, {"waterproof": "yes"}, True),
    ("us", "8", "Desk Lamp", "LED lamp", "Ikea",
     ["Furniture", "Lighting"], 25.0, {}, True),
    ("us", "9", "Monitor Arm", "Sturdy arm, no stand needed", "Ergo",
     ["Electronics", "Accessories"], 49.0, {}, True),
    ("de", "1", "Corner Sofa", "Large corner sofa", "Ikea",
     ["Furniture", "Living room", "Sofas"], 899.0, {}, True),
    ("de", "2", "Wireless Headphones", "Bluetooth, foldable", "Sony",
     ["Electronics", "Audio", "Headphones"], 179.0, {}, True),
    ("de", "3", "Café Table", "Bistro table", "Bistro",
     ["Furniture", "Dining"], 1200.0, {}, False),
    ("de", "4", "Sofa Cushion", "Soft cushion", "Hay",
     ["Home", "Textiles"], 12.0, {}, True),
]]
# fmt: on
ALL_KEYS = {(row.domain, row.product_id) for row in CATALOG}
BY_KEY = {(row.domain, row.product_id): row for row in CATALOG}


def products(rows: list[Row]) -> pa.Table:
    columns = {name: [getattr(row, name) for row in rows] for name in Row._fields}
    columns["attributes"] = [json.dumps(a) for a in columns["attributes"]]
    columns["created_at"] = [datetime(2024, 1, 1, tzinfo=UTC)] * len(rows)
    return pa.table(columns, schema=TABLES["products"])


def product(
    domain: str, pid: str, title: str, brand: str = "Acme", price: float | None = 10.0
) -> Row:
    return Row(domain, pid, title, "", brand, ["Misc"], price, {}, True)


@pytest.fixture(scope="module")
def lexical() -> LexicalRetriever:
    return LexicalRetriever().index(products(CATALOG))


def matching(
    lexical: LexicalRetriever, query: str, filters: Filters | None = None
) -> set[ProductKey]:
    found = lexical.retrieve(query, k=1000, filters=filters)
    assert found.total == len(found)
    return set(found.keys)


def passes(key: ProductKey, f: Filters) -> bool:
    row = BY_KEY[key]
    price = row.price
    return (
        (f.domain is None or row.domain == f.domain)
        and (f.category is None or tuple(row.category[: len(f.category)]) == f.category)
        and (f.brand is None or row.brand.lower() == f.brand.lower())
        and (f.price_min is None or (price is not None and price >= f.price_min))
        and (f.price_max is None or (price is not None and price <= f.price_max))
        and (f.in_stock is None or row.in_stock == f.in_stock)
    )


# -- relevance ---------------------------------------------------------------------------------
def test_title_match_ranks_first(lexical: LexicalRetriever) -> None:
    found = lexical.retrieve("stand", k=10)
    assert found.keys[0] == ("us", "6")  # "stand" in the title
    assert ("us", "9") in found.keys  # "stand" only in the description
    assert found.total == 2
    assert found.scores.dtype == np.float32
    assert list(found.scores) == sorted(found.scores, reverse=True)


def test_stemming_and_folding(lexical: LexicalRetriever) -> None:
    assert matching(lexical, "sofas") >= {("us", "1"), ("us", "2"), ("de", "1"), ("de", "4")}
    assert ("us", "4") in matching(lexical, "headphone")
    assert matching(lexical, "cafe") == {("de", "3")}
    assert matching(lexical, "CAFÉ") == {("de", "3")}


def test_brand_category_and_attributes_are_searchable(lexical: LexicalRetriever) -> None:
    assert matching(lexical, "hemnes") == {("us", "3")}
    assert matching(lexical, "lighting") == {("us", "8")}
    assert matching(lexical, "fabric") == {("us", "1")}  # attribute value
    assert matching(lexical, "connectivity") == {("us", "4")}  # attribute key


def test_query_analyzer_matches_index_analyzer() -> None:
    analyzer = QueryAnalyzer()
    for text in [
        "Running Shoes",
        "Café crème, naïve!",
        "USB-C 3.1 cables",
        "x" * 50 + " ok",
        "Größe İstanbul 沙发 sofas",
    ]:
        assert [stem for _, stem in analyzer.words(text)] == index_analyzer().analyze(text)


def test_min_match_all_words() -> None:
    strict = LexicalRetriever(min_match=1.0).index(products(CATALOG))
    assert matching(strict, "wireless sony") == {("us", "4"), ("de", "2")}
    assert matching(strict, "wireless ikea") == set()


# -- typo tolerance ------------------------------------------------------------------------------
def test_fuzzy_finds_misspelled_words(lexical: LexicalRetriever) -> None:
    assert {("us", "4"), ("us", "5"), ("de", "2")} <= matching(lexical, "headphnes")
    assert ("us", "4") in matching(lexical, "wirelsess")  # transposition counts as one edit
    assert ("us", "8") in matching(lexical, "lihgting")


def test_exact_match_outranks_fuzzy_match() -> None:
    twins = LexicalRetriever().index(
        products([product("us", "a", "Velvet chair"), product("us", "b", "Velvat chair")])
    )
    assert twins.retrieve("velvet", k=2).keys == [("us", "a"), ("us", "b")]
    assert twins.retrieve("velvat", k=2).keys == [("us", "b"), ("us", "a")]
    scores = twins.retrieve("velvet", k=2).scores
    assert scores[0] > scores[1] > 0


def test_short_words_and_numbers_are_not_fuzzy(lexical: LexicalRetriever) -> None:
    assert matching(lexical, "lamb") == set()  # 4 letters: "lamp" is one edit away
    other = LexicalRetriever().index(
        products([product("us", "a", "Cable 12345"), product("us", "b", "Cake tin")])
    )
    assert matching(other, "12346") == set()  # not a word of letters
    assert matching(other, "cases") == set()  # the stem "case" has 4 letters: not "cake"
    assert ("us", "3") in matching(lexical, "tabels")  # stem "tabel" is one edit from "tabl"


# -- filters -------------------------------------------------------------------------------------
FILTERS = [
    Filters(domain="de"),
    Filters(category=("Furniture",)),
    Filters(category=("Furniture", "Living room")),
    Filters(category=("Furniture", "Living")),  # a level's name, not a string prefix
    Filters(brand="IKEA"),
    Filters(brand="sony"),
    Filters(price_min=25.0, price_max=199.99),
    Filters(price_min=0.0),
    Filters(price_max=20.0),
    Filters(in_stock=True),
    Filters(in_stock=False),
    Filters(domain="us", category=("Electronics",), in_stock=True, price_max=300.0),
    Filters(domain="us", brand="ikea", category=("Furniture", "Living room", "Sofas")),
]


@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_filters_browse_equals_brute_force(lexical: LexicalRetriever, filters: Filters) -> None:
    expected = {key for key in ALL_KEYS if passes(key, filters)}
    assert matching(lexical, "", filters) == expected


@pytest.mark.parametrize("filters", FILTERS, ids=str)
@pytest.mark.parametrize("query", ["sofa", "wireless headphones", "sony table"])
def test_filters_restrict_a_query(lexical: LexicalRetriever, query: str, filters: Filters) -> None:
    unfiltered = matching(lexical, query)
    assert matching(lexical, query, filters) == {k for k in unfiltered if passes(k, filters)}


def test_filters_do_not_change_scores(lexical: LexicalRetriever) -> None:
    plain = lexical.retrieve("sofa", k=20)
    filtered = lexical.retrieve("sofa", k=20, filters=Filters(domain="us"))
    by_key = dict(zip(plain.keys, plain.scores, strict=True))
    for key, score in zip(filtered.keys, filtered.scores, strict=True):
        assert score == pytest.approx(by_key[key])


def test_price_bounds_are_inclusive_and_need_a_price(lexical: LexicalRetriever) -> None:
    assert ("us", "8") in matching(lexical, "", Filters(price_min=25.0, price_max=25.0))
    assert ("us", "7") not in matching(lexical, "", Filters(price_min=0.0))


def test_empty_query_browses(lexical: LexicalRetriever) -> None:
    for blank in ["", "   ", "\t\n", "?!", "--"]:
        found = lexical.retrieve(blank, k=100)
        assert set(found.keys) == ALL_KEYS
        assert found.total == len(ALL_KEYS)
        assert not found.scores.any()
    assert matching(lexical, " ", Filters(domain="de", in_stock=True)) == {
        ("de", "1"),
        ("de", "2"),
        ("de", "4"),
    }


# -- facets --------------------------------------------------------------------------------------
def brute_force_facets(keys: set[ProductKey]) -> dict[str, dict[str, int]]:
    category: Counter[str] = Counter()
    brand: Counter[str] = Counter()
    price: Counter[str] = Counter()
    edges = [0.0, *DEFAULT_PRICE_BUCKETS, math.inf]
    labels = price_bucket_labels(DEFAULT_PRICE_BUCKETS)
    for key in keys:
        row = BY_KEY[key]
        path = row.category
        category.update(" > ".join(path[:depth]) for depth in range(1, len(path) + 1))
        brand[row.brand] += 1
        if row.price is not None:
            bucket = [
                lab
                for lab, lo, hi in zip(labels, edges, edges[1:], strict=False)
                if lo <= row.price < hi
            ]
            price[bucket[0]] += 1
    return {"category": dict(category), "brand": dict(brand), "price": dict(price)}


@pytest.mark.parametrize(
    ("query", "filters"),
    [
        ("", None),
        ("sofa", None),
        ("headphones", Filters(domain="us")),
        ("sony ikea", None),
        ("", Filters(in_stock=True, price_max=500.0)),
        ("nothing-matches-this", None),
    ],
)
def test_facets_equal_brute_force(
    lexical: LexicalRetriever, query: str, filters: Filters | None
) -> None:
    facets = lexical.facets(query, filters)
    assert facets == brute_force_facets(matching(lexical, query, filters))
    assert list(facets["price"]) == [
        lab for lab in price_bucket_labels(DEFAULT_PRICE_BUCKETS) if lab in facets["price"]
    ]


def test_facet_shape(lexical: LexicalRetriever) -> None:
    facets = lexical.facets("")
    assert facets["category"]["Furniture"] == 6
    assert facets["category"]["Furniture > Living room > Sofas"] == 3
    assert facets["brand"]["IKEA"] == 1
    assert facets["brand"]["Ikea"] == 3
    assert facets["price"]["25-50"] == 2  # 25.0 opens the bucket, 49.0 is inside
    counts = list(facets["category"].values())
    assert counts == sorted(counts, reverse=True)
    assert list(LexicalRetriever(facet_size=2).index(products(CATALOG)).facets("")["brand"]) == [
        "Ikea",
        "Sony",
    ]


def test_search_returns_candidates_and_facets(lexical: LexicalRetriever) -> None:
    result = lexical.search("sofa", k=2, filters=Filters(domain="us"))
    assert len(result.candidates) == 2
    assert result.candidates.total == 2
    assert sum(result.facets["brand"].values()) == 2


# -- incremental updates, storage ----------------------------------------------------------------
def test_add_update_delete_without_rebuild() -> None:
    lexical = LexicalRetriever().index(products(CATALOG))
    lexical.upsert(products([product("us", "new", "Rocking Chair", "Nordic")]))
    assert matching(lexical, "rocking") == {("us", "new")}
    assert len(lexical) == len(CATALOG) + 1

    lexical.upsert(products([product("us", "new", "Swivel Chair", "Nordic", price=300.0)]))
    assert matching(lexical, "rocking") == set()
    assert matching(lexical, "swivel") == {("us", "new")}
    assert lexical.facets("chair")["price"] == {"250-500": 1}
    assert len(lexical) == len(CATALOG) + 1

    lexical.upsert(products([product("us", "1", "Futon"), product("us", "1", "Daybed")]))
    assert matching(lexical, "futon") == set()
    assert matching(lexical, "daybed") == {("us", "1")}

    assert lexical.delete([("us", "new"), ("us", "new"), ("zz", "unknown")]) == 1
    assert matching(lexical, "swivel") == set()
    assert lexical.retrieve("", k=100).total == len(CATALOG)
    assert lexical.facets("", Filters(brand="nordic")) == {"category": {}, "brand": {}, "price": {}}


def test_result_cache_answers_repeats_until_the_catalog_changes() -> None:
    lexical = LexicalRetriever().index(products(CATALOG))
    lexical.configure_results(cache_size=8)
    first = lexical.search("chair", k=10)
    assert lexical.search("chair", k=10) is first  # a repeat is answered from memory
    assert lexical.search("chair", k=10, filters=Filters(domain="us")) is not first
    assert lexical.search("chair", k=5) is not first  # the depth is part of the key
    stats = lexical.result_cache_stats()
    assert (stats.hits, stats.misses) == (1, 3)

    lexical.upsert(products([product("us", "new", "Rocking Chair", "Nordic")]))
    after_add = lexical.search("chair", k=10)
    assert ("us", "new") in after_add.candidates.keys
    assert sum(after_add.facets["brand"].values()) == after_add.candidates.total
    lexical.delete([("us", "new")])
    assert ("us", "new") not in lexical.search("chair", k=10).candidates.keys
    lexical.index(products([product("us", "1", "Chair")]))
    assert lexical.search("chair", k=10).candidates.keys == [("us", "1")]


def test_result_cache_off_and_bad_size() -> None:
    lexical = LexicalRetriever().index(products(CATALOG))
    first = lexical.search("chair", k=10)  # capacity 0 by default: nothing kept
    again = lexical.search("chair", k=10)
    assert again is not first
    assert again.candidates.keys == first.candidates.keys
    assert lexical.result_cache_stats().size == 0
    with pytest.raises(InvalidInputError, match="result cache_size=-1"):
        lexical.configure_results(cache_size=-1)


def test_index_replaces_and_keeps_last_duplicate() -> None:
    lexical = LexicalRetriever().index(products(CATALOG))
    lexical.index(products([product("us", "1", "Old"), product("us", "1", "Newer")]))
    assert len(lexical) == 1
    assert matching(lexical, "") == {("us", "1")}
    assert matching(lexical, "newer") == {("us", "1")}


def test_save_load_round_trip(tmp_path: Path, lexical: LexicalRetriever) -> None:
    lexical.save(tmp_path / "bundle")
    loaded = LexicalRetriever.load(tmp_path / "bundle")
    assert loaded.get_config() == lexical.get_config()
    for query in ["sofa", "headphnes", ""]:
        a, b = lexical.retrieve(query, k=20), loaded.retrieve(query, k=20)
        assert a.keys == b.keys
        assert np.allclose(a.scores, b.scores)
        assert a.total == b.total
        assert lexical.facets(query) == loaded.facets(query)


def test_index_dir_is_a_live_bundle(tmp_path: Path) -> None:
    built = LexicalRetriever(tmp_path / "lex", fuzzy_boost=0.2).index(products(CATALOG))
    built.save(tmp_path / "lex")  # in place: only the small files are rewritten
    loaded = LexicalRetriever.load(tmp_path / "lex")
    assert loaded.fuzzy_boost == 0.2
    loaded.upsert(products([product("us", "x", "Hammock")]))
    loaded.delete([("de", "4")])
    reloaded = LexicalRetriever.load(tmp_path / "lex")
    assert matching(reloaded, "hammock") == {("us", "x")}
    assert ("de", "4") not in matching(reloaded, "")
    assert len(reloaded) == len(CATALOG)


def test_load_errors(tmp_path: Path, lexical: LexicalRetriever) -> None:
    with pytest.raises(WorkspaceError, match="missing"):
        LexicalRetriever.load(tmp_path / "nothing")
    lexical.save(tmp_path / "b")
    (tmp_path / "b" / "rows.parquet").unlink()
    with pytest.raises(WorkspaceError, match=r"rows\.parquet is missing"):
        LexicalRetriever.load(tmp_path / "b")


# -- hostile input, validation ------------------------------------------------------------------
WEIRD = [
    '"',
    '"sofa',
    ":",
    "title:sofa",
    "(",
    "(sofa",
    ")",
    "AND",
    "sofa AND",
    "OR NOT",
    "*",
    "sofa*",
    "-sofa",
    "+",
    "\\",
    "[1 TO 5]",
    "{}",
    "sofa~2",
    "sofa^3",
    "/regex/",
    "'",
    "a" * 10_000,
    "sofa " * 2_000,
    "沙发",
    "🛋️ sofa",
    "\x00",
    "İstanbul",
    "ß" * 50,
    "\u200b",
    "NaN",
    "null",
]


@pytest.mark.parametrize("query", WEIRD)
def test_user_text_never_raises(lexical: LexicalRetriever, query: str) -> None:
    found = lexical.retrieve(query, k=5, filters=Filters(domain="us"))
    assert isinstance(found, Candidates)
    assert isinstance(lexical.facets(query), dict)


def test_operators_are_words(lexical: LexicalRetriever) -> None:
    assert matching(lexical, "-sofa") == matching(lexical, "sofa")
    assert matching(lexical, "sofa AND lamp") == matching(lexical, "sofa lamp and")


def test_validation_errors(lexical: LexicalRetriever) -> None:
    for k in (0, -3):
        with pytest.raises(InvalidInputError, match="k >= 1"):
            lexical.retrieve("sofa", k=k)
    with pytest.raises(InvalidInputError, match="k >= 1"):
        lexical.search("sofa", k=0)
    assert len(lexical.retrieve("sofa", k=10_000)) == 4  # k above the catalog is fine
    with pytest.raises(NotFittedError, match="index"):
        LexicalRetriever().retrieve("sofa")
    with pytest.raises(NotFittedError):
        LexicalRetriever().upsert(products(CATALOG))
    with pytest.raises(InvalidInputError, match="unknown field"):
        LexicalRetriever(field_boosts={"titel": 2.0}).index(products(CATALOG))
    with pytest.raises(InvalidInputError, match="min_match"):
        LexicalRetriever(min_match=2.0).index(products(CATALOG))
    with pytest.raises(InvalidInputError, match="increasing"):
        LexicalRetriever(price_buckets=(50.0, 25.0)).index(products(CATALOG))
    with pytest.raises(InvalidInputError, match="no column"):
        LexicalRetriever().index(pa.table({"title": ["x"]}))


def test_empty_catalog() -> None:
    lexical = LexicalRetriever().index(TABLES["products"].empty_table())
    assert lexical.retrieve("sofa").keys == []
    assert lexical.retrieve("sofa").total == 0
    assert lexical.facets("sofa")["brand"] == {}


def test_retrieve_many(lexical: LexicalRetriever) -> None:
    many = lexical.retrieve_many(["sofa", "lamp"], k=3)
    assert [c.keys for c in many] == [lexical.retrieve(q, k=3).keys for q in ["sofa", "lamp"]]


# -- raw baseline --------------------------------------------------------------------------------
def test_raw_tantivy_baseline(tmp_path: Path) -> None:
    raw = RawTantivyRetriever().index(products(CATALOG))
    assert raw.retrieve("headphones", k=10).keys[0] in {("us", "4"), ("us", "5"), ("de", "2")}
    assert raw.retrieve("headphnes", k=10).keys == []  # no typo tolerance
    assert raw.retrieve("lighting", k=10).keys == []  # title only
    for query in WEIRD:
        raw.retrieve(query, k=3)
    with pytest.raises(InvalidInputError, match="no filters"):
        raw.retrieve("sofa", filters=Filters(domain="us"))
    raw.save(tmp_path / "raw")
    loaded = RawTantivyRetriever.load(tmp_path / "raw")
    assert loaded.retrieve("sofa", k=10).keys == raw.retrieve("sofa", k=10).keys


def test_matching_keys_and_facets_of_are_the_same_for_few_and_many_keys(
    lexical: LexicalRetriever,
) -> None:
    """A few keys are asked as a union of term queries, many as one term-set query (faster from
    about 500 keys on): both find the same products, unknown keys match nothing."""
    known: list[ProductKey] = [("us", "1"), ("us", "2"), ("us", "4"), ("de", "1"), ("de", "2")]
    unknown: list[ProductKey] = [("us", f"missing-{i}") for i in range(400)]
    us, anywhere = Filters(domain="us"), None
    for query, filters, want in [
        ("sofa", us, {("us", "1"), ("us", "2")}),
        ("headphones", anywhere, {("us", "4"), ("de", "2")}),
    ]:
        assert lexical.matching_keys(query, filters, known) == want
        assert lexical.matching_keys(query, filters, known + unknown) == want
    assert lexical.facets_of(known + unknown) == lexical.facets_of(known)
    assert sum(lexical.facets_of(known)["brand"].values()) == len(known)


def test_keys_read_from_different_files_share_their_strings(tmp_path: Path) -> None:
    """The lexical and the dense row maps are read from different files; their keys' strings
    are interned, so a search's lookups of one source's keys in the other's map compare
    addresses, not bytes (``product_key``)."""
    from shopsearch.retrieval.dense_rows import ProductRows

    LexicalRetriever().index(products(CATALOG)).save(tmp_path / "lexical")
    loaded = LexicalRetriever.load(tmp_path / "lexical")
    rows = ProductRows()
    rows.append(products(CATALOG))  # its own pyarrow → Python strings
    assert len(loaded.keys_) == len(CATALOG)
    for key in loaded.keys_.values():
        other = rows.keys[rows.row_of[key]]
        assert other == key
        assert other is not key
        assert other[0] is key[0]
        assert other[1] is key[1]


def test_the_union_of_neighbours_matches_and_scores_as_tantivys_fuzzy_query() -> None:
    lexical = LexicalRetriever().index(products(CATALOG))
    searcher = lexical._fitted().searcher()
    schema = lexical.schema_
    for field in ("title", "brand", "category"):
        terms = FuzzyTerms(t for t, _ in searcher.terms_with_prefix(field, ""))
        vocabulary = [t for t, _ in searcher.terms_with_prefix(field, "")]
        typos = [t[:1] + t[2:] for t in vocabulary] + [t[::-1] for t in vocabulary]
        typos += [t[1] + t[0] + t[2:] for t in vocabulary if len(t) > 1] + ["zzzzz"]
        for word in vocabulary + typos:
            fuzzy = Query.boost_query(Query.fuzzy_term_query(schema, field, word, 1, True), 2.5)
            near = terms.neighbours(word)
            union = Query.boolean_query(
                [(Occur.Should, Query.term_query(schema, field, t)) for t in near]
            )
            ours = Query.const_score_query(union, 2.5) if near else Query.empty_query()
            want = searcher.search(fuzzy, limit=100).hits
            got = searcher.search(ours, limit=100).hits
            assert sorted((s, a.doc) for s, a in got) == sorted((s, a.doc) for s, a in want), (
                field,
                word,
            )


def test_the_neighbours_follow_index_writes() -> None:
    lexical = LexicalRetriever().index(products(CATALOG))
    assert lexical.retrieve("zepelin", k=10).keys == []
    lexical.upsert(products([product("us", "z1", "Zeppelin model kit")]))
    assert lexical.retrieve("zepelin", k=10).keys == [("us", "z1")]
    assert lexical.retrieve("zeppelni", k=10).keys == [("us", "z1")]  # a swap


def test_deleting_keeps_the_fuzzy_terms_and_writes_find_them_before_the_next_search() -> None:
    lexical = LexicalRetriever().index(products(CATALOG))
    found = lexical._fuzzy_terms
    assert found[0] == lexical._generation  # found by index(), not by the first search
    lexical.delete([("us", "1")])
    assert lexical._fuzzy_terms[1] is found[1]  # the same terms, still current
    assert lexical._fuzzy_terms[0] == lexical._generation
    assert ("us", "2") in lexical.retrieve("soffa", k=10).keys  # "sofa" one edit away
    lexical.upsert(products([product("us", "z2", "Zeppelin poster")]))
    assert lexical._fuzzy_terms[0] == lexical._generation
    assert lexical._fuzzy_terms[1] is not found[1]
