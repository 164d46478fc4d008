"""The lexical index split into shards answers as one index does: the same products in the same
order with the same scores (to float rounding), the same match counts and the same facets."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import Filters
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.base import Hits, QueryPlan
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.retrieval.lexical_shards import (
    TIE_RTOL,
    CorpusStats,
    LexicalShard,
    LocalShards,
    ShardedLexical,
    build_local_shards,
    catalog_positions,
    ghost_plan,
    latest_products,
    partition,
    shard_of,
    tie_order,
)
from shopsearch.store.schema import TABLES

KINDS = ["sofa", "lamp", "table", "chair", "headphones", "speaker", "kettle", "blanket"]
WORDS = ["grey", "oak", "leather", "wireless", "compact", "large", "6 inch", "modern", "vintage"]
BRANDS = ["Acme", "Bolt", "Sonic", "Swift", "Nordic", ""]
TREE = [["Furniture", "Sofas"], ["Furniture", "Tables"], ["Home", "Lighting"], ["Electronics"]]


def catalog(n: int = 160, seed: int = 3) -> pa.Table:
    """Products with repeated titles across markets (ties) and varied field lengths."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = rng.choice(KINDS)
        title = " ".join([*rng.sample(WORDS, rng.randint(0, 3)), kind])
        for domain in ("us", "gb") if i % 4 == 0 else (rng.choice(["us", "gb", "de"]),):
            rows.append(
                {
                    "domain": domain,
                    "product_id": f"p{i}",
                    "title": title,
                    "description": " ".join(rng.choices(WORDS + KINDS, k=rng.randint(0, 12))),
                    "brand": rng.choice(BRANDS),
                    "category": rng.choice(TREE),
                    "price": None if i % 9 == 0 else round(rng.uniform(5, 1500), 2),
                    "attributes": orjson.dumps({"color": rng.choice(WORDS)}).decode(),
                    "in_stock": i % 5 != 0,
                }
            )
    rows.append({**rows[3], "title": "replaced " + rows[3]["title"]})  # a key given twice
    columns = {name: [row.get(name) for row in rows] for name in TABLES["products"].names}
    return pa.table(columns, schema=TABLES["products"])


QUERIES = ["sofa", "grey sofa", "oak table lamp", "wireless headphones", "6 inch lamp",
           "kettel", "vintage leather chair", "", "acme", "modern compact speaker blanket",
           "zzz"]  # fmt: skip
FILTERS = [None, Filters(domain="us"), Filters(category=("Furniture",)), Filters(brand="acme"),
           Filters(price_min=20.0, price_max=600.0, in_stock=True)]  # fmt: skip
PLANS = [None, QueryPlan(rewrites=(("couch", 0.5),)), QueryPlan(head=("lamp",)),
         QueryPlan(boosts=((("Home",), 2.0),))]  # fmt: skip


def assert_same(one: Hits, sharded: Hits) -> None:
    """Equal up to float rounding: keys, scores (rtol 1e-6), totals and facets."""
    a, b = one.candidates, sharded.candidates
    assert a.total == b.total
    assert len(a) == len(b)
    np.testing.assert_allclose(b.scores, a.scores, rtol=TIE_RTOL)
    assert a.keys == b.keys
    assert one.facets == sharded.facets
    prices = [list((hits.facets or {}).get("price", {})) for hits in (one, sharded)]
    assert prices[0] == prices[1]


@pytest.fixture(scope="module")
def products() -> pa.Table:
    return catalog()


@pytest.fixture(scope="module")
def single(products: pa.Table) -> LexicalRetriever:
    return LexicalRetriever().index(products)


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_sharded_answers_equal_one_index(
    products: pa.Table, single: LexicalRetriever, shards: int
) -> None:
    local = build_local_shards(products, shards)
    sharded = ShardedLexical(local, catalog_positions(products))
    assert sum(len(shard) for shard in local.members) == len(single)
    for query in QUERIES:
        for filters in FILTERS:
            for plan in PLANS:
                for k in (5, 100):
                    assert_same(
                        single.search(query, k, filters, plan),
                        sharded.search(query, k, filters, plan),
                    )


def test_matching_keys_and_facets_of_ask_each_products_shard(
    products: pa.Table, single: LexicalRetriever
) -> None:
    sharded = ShardedLexical(build_local_shards(products, 3), catalog_positions(products))
    keys = list(catalog_positions(products))[::3]
    for query in ["sofa", "grey lamp", ""]:
        expected = single.matching_keys(query, Filters(domain="us"), keys)
        assert sharded.matching_keys(query, Filters(domain="us"), keys) == expected
    assert sharded.facets_of(keys) == single.facets_of(keys)


def test_ghost_documents_never_match_and_bring_the_catalogs_statistics(
    products: pa.Table,
) -> None:
    parts = partition(products, 2)
    owns = [CorpusStats.of(latest_products(part)) for part in parts]
    total = CorpusStats.total(owns)
    assert total.docs == len(catalog_positions(products))
    assert total.tokens == CorpusStats.of(latest_products(products)).tokens
    shard = LexicalShard().index_shard(parts[0], total, owns[0])
    assert shard.home_.searcher().num_docs == total.docs  # real products and ghosts
    browse = shard.search("", 1000)  # matches every product, but no ghost
    assert browse.candidates.total == owns[0].docs == len(shard)
    assert shard.search("shopsearchghost", 10).candidates.total == 0


def test_partition_is_stable_and_complete(products: pa.Table) -> None:
    parts = partition(products, 3)
    assert sum(part.num_rows for part in parts) == products.num_rows
    for s, part in enumerate(parts):
        keys = catalog_positions(part)
        assert all(shard_of(key, 3) == s for key in keys)
    assert shard_of(("us", "p1"), 7) == shard_of(("us", "p1"), 7)
    with pytest.raises(InvalidInputError, match="shards=0"):
        partition(products, 0)


def test_a_shard_refuses_statistics_without_its_products(products: pa.Table) -> None:
    part = partition(products, 2)[0]
    smaller = CorpusStats.of(latest_products(part)[:-5])
    with pytest.raises(InvalidInputError, match="do not include this shard"):
        LexicalShard().index_shard(part, smaller)


def test_ties_order_by_catalog_position_and_near_ties_count_as_ties() -> None:
    scores = np.array([1.0, 2.0, 2.0 * (1 + TIE_RTOL / 2), 1.0, 0.5])
    assert tie_order(scores, [4, 3, 9, 0, 1]) == [1, 2, 3, 0, 4]


def test_shards_are_not_saved(products: pa.Table, tmp_path: object) -> None:
    sharded = ShardedLexical(build_local_shards(products, 2), catalog_positions(products))
    with pytest.raises(InvalidInputError, match="not saved"):
        sharded.save(tmp_path)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="build the shards"):
        sharded.index(products)


def test_fewer_ghosts_than_the_catalog_bring_the_averages_to_within_half_a_token(
    products: pa.Table, single: LexicalRetriever
) -> None:
    parts = partition(products, 2)
    owns = [CorpusStats.of(latest_products(part)) for part in parts]
    total = CorpusStats.total(owns)
    ghosts, tokens = ghost_plan(total, owns[0], stats_docs=owns[0].docs + 10)
    assert ghosts < total.docs - owns[0].docs
    for name in tokens:
        average = (owns[0].tokens[name] + tokens[name]) / (owns[0].docs + ghosts)
        assert tokens[name] >= 0
        assert abs(average - total.tokens[name] / total.docs) <= 0.5 / (owns[0].docs + ghosts)
    shards = [LexicalShard(stats_docs=own.docs + 10).index_shard(part, total, own)
              for part, own in zip(parts, owns, strict=True)]  # fmt: skip
    assert shards[0].home_.searcher().num_docs == owns[0].docs + ghosts
    sharded = ShardedLexical(LocalShards(shards), catalog_positions(products))
    for query in QUERIES:  # close to one index's, not equal: the averages differ a little
        one, many = single.search(query, 100), sharded.search(query, 100)
        assert one.candidates.total == many.candidates.total
        assert one.facets == many.facets
        scores = dict(zip(many.candidates.keys, many.candidates.scores, strict=True))
        for key, score in zip(one.candidates.keys, one.candidates.scores, strict=True):
            if key in scores:
                assert scores[key] == pytest.approx(score, rel=0.02)
