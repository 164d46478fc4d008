"""The default logging policy: BM25 ranking with noise, cached per (domain, query)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shopsearch.simulate import LexicalNoisePolicy, PolicyParams, RandomPolicy, RequestBatch

PRODUCTS = pa.table(
    {
        "domain": ["us"] * 4 + ["gb"] * 2,
        "product_id": ["a", "b", "c", "d", "a", "e"],
        "title": [
            "Norvik Grey Linen Sofa",
            "Acme Black Leather Sofa",
            "Acme Red Kettle",
            "Zentra Desk",
            "Norvik Grey Linen Settee",
            "Acme Torch",
        ],
    }
)


def _batch(queries: list[str], domains: list[str]) -> RequestBatch:
    n = len(queries)
    return RequestBatch(
        request_ids=[f"r{i}" for i in range(n)],
        session_ids=[f"s{i}" for i in range(n)],
        user_ids=["u"] * n,
        domains=domains,
        queries=queries,
        timestamps=np.zeros(n, dtype="datetime64[us]"),
    )


def test_bm25_order_without_noise() -> None:
    policy = LexicalNoisePolicy(PRODUCTS, PolicyParams(temperature=0.0))
    ranking = policy.rank(_batch(["grey linen sofa", "acme"], ["us", "gb"]), k=3)
    assert ranking.product_ids[0][:2] == ["a", "b"]
    assert len(ranking.product_ids[0]) == 3  # completed with a random product of the domain
    assert ranking.product_ids[1] == ["e", "a"]  # gb carries only two products
    assert ranking.scores is not None
    assert ranking.scores[0][0] > ranking.scores[0][1] > 0


def test_noise_moves_products_between_positions() -> None:
    policy = LexicalNoisePolicy(PRODUCTS, PolicyParams(temperature=1.0), seed=1)
    ranking = policy.rank(_batch(["sofa"] * 40, ["us"] * 40), k=2)
    assert {row[0] for row in ranking.product_ids} == {"a", "b"}
    again = policy.rank(_batch(["sofa"] * 40, ["us"] * 40), k=2)
    assert again == ranking  # the same batch gets the same noise


def test_random_policy_lists_distinct_domain_products() -> None:
    ranking = RandomPolicy(PRODUCTS, seed=2).rank(_batch(["x"] * 5, ["us"] * 5), k=3)
    for row in ranking.product_ids:
        assert len(row) == len(set(row)) == 3
        assert set(row) <= {"a", "b", "c", "d"}
