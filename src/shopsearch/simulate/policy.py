"""Ranking policies: what the simulated users are shown.

A policy takes a :class:`RequestBatch` (the simulated requests: domain, user, query, time, ids)
and returns the ranked product ids of each (:class:`Ranking`). Any engine can be wrapped as a
policy by implementing :meth:`RankingPolicy.rank`. Policies that already work with the world's
product indices may override :meth:`RankingPolicy.rank_matrix` to skip the id round-trip (the
built-in :class:`RandomPolicy` and
:class:`~shopsearch.simulate.lexical.LexicalNoisePolicy` do).

A ranking may be shorter than ``k``; it must not repeat a product or name a product the request's
domain does not carry (the simulator raises :class:`~shopsearch.errors.InvalidInputError`).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from shopsearch.errors import InvalidInputError
from shopsearch.simulate.common import F32, I32, I64, POLICY, stream
from shopsearch.store.schema import TABLES


@dataclass(frozen=True)
class RequestBatch:
    """Simulated requests to rank, one entry per request.

    Attributes:
        request_ids: request ids.
        session_ids: session ids.
        user_ids: user ids.
        domains: domain ids.
        queries: the typed queries.
        timestamps: request times (``datetime64[us]``, UTC).
    """

    request_ids: list[str]
    session_ids: list[str]
    user_ids: list[str]
    domains: list[str]
    queries: list[str]
    timestamps: npt.NDArray[np.datetime64]

    def __len__(self) -> int:
        return len(self.request_ids)


@dataclass(frozen=True)
class Ranking:
    """Ranked product ids per request, best first, and optionally a logged score per product."""

    product_ids: list[list[str]]
    scores: list[list[float]] | None = None


@dataclass(frozen=True)
class RankMatrix:
    """Rankings as arrays over the world's product indices.

    Attributes:
        items: ``(requests, k)`` product index per position, ``-1`` for an empty position.
        scores: named ``(requests, k)`` scores logged with each impression.
    """

    items: I32
    scores: dict[str, F32] = field(default_factory=dict)


class RankingPolicy(ABC):
    """Ranks products for simulated requests. Subclasses set ``name`` and implement :meth:`rank`."""

    #: Name of the policy (also the key of its score in the logged impression scores).
    name: ClassVar[str] = "policy"
    #: Share of requests whose stream a policy that has one records (:meth:`record_stream`).
    stream_sample: float = 0.0
    _stream: list[pa.Table]

    def sampled(self, request_id: str) -> bool:
        """Whether this request's stream is recorded (drawn from its id: no other draw moves)."""
        return self.stream_sample > 0 and zlib.crc32(request_id.encode()) < (
            self.stream_sample * 2**32
        )

    def record_stream(
        self,
        request_id: str,
        domain: str,
        stage: str,
        product_ids: list[str],
        scores: list[float],
    ) -> None:
        """Keep what ``stage`` passed on for one request (best first), for :meth:`take_stream`."""
        if not hasattr(self, "_stream"):
            self._stream = []
        n = len(product_ids)
        self._stream.append(
            pa.table(
                {
                    "request_id": [request_id] * n,
                    "domain": [domain] * n,
                    "stage": [stage] * n,
                    "product_id": product_ids,
                    "position": pa.array(range(1, n + 1), pa.int32()),
                    "score": pa.array(scores, pa.float64()),
                },
                schema=TABLES["stream"],
            )
        )

    def take_stream(self) -> pa.Table:
        """The stream rows recorded since the last call (the ``stream`` table's schema)."""
        kept = getattr(self, "_stream", [])
        self._stream = []
        return pa.concat_tables([TABLES["stream"].empty_table(), *kept])

    @abstractmethod
    def rank(self, batch: RequestBatch, k: int) -> Ranking:
        """At most ``k`` product ids per request of ``batch``, best first."""

    def rank_matrix(self, batch: RequestBatch, k: int, products: pd.Index) -> RankMatrix:
        """:meth:`rank` as product indices (``products`` maps product id → index)."""
        ranking = self.rank(batch, k)
        return ranking_to_matrix(ranking, len(batch), k, products, self.name)


def ranking_to_matrix(
    ranking: Ranking, n: int, k: int, products: pd.Index, name: str
) -> RankMatrix:
    """Check a :class:`Ranking` and convert it to a :class:`RankMatrix`."""
    if len(ranking.product_ids) != n:
        raise InvalidInputError(
            f"policy {name!r} returned {len(ranking.product_ids)} rankings for {n} requests; "
            "return one (possibly empty) list per request"
        )
    lengths = np.array([len(ids) for ids in ranking.product_ids], dtype=np.int64)
    if lengths.size and lengths.max() > k:
        raise InvalidInputError(
            f"policy {name!r} returned {int(lengths.max())} products for a request; "
            f"return at most k={k}"
        )
    flat = [pid for ids in ranking.product_ids for pid in ids]
    found = products.get_indexer(pd.Index(flat)) if flat else np.zeros(0, dtype=np.int64)
    if (found < 0).any():
        unknown = flat[int(np.flatnonzero(found < 0)[0])]
        raise InvalidInputError(
            f"policy {name!r} returned product {unknown!r}, which is not in the catalog; "
            "return product ids of the products table"
        )
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = np.full((n, k), -1, dtype=np.int32)
    items[rows, cols] = found
    scores: dict[str, F32] = {}
    if ranking.scores is not None:
        score_lengths = np.array([len(s) for s in ranking.scores], dtype=np.int64)
        if len(ranking.scores) != n or not np.array_equal(score_lengths, lengths):
            raise InvalidInputError(
                f"policy {name!r} returned scores that do not match its product ids one to one"
            )
        values = np.zeros((n, k), dtype=np.float32)
        values[rows, cols] = [s for row in ranking.scores for s in row]
        scores[name] = values
    return RankMatrix(items, scores)


class CatalogPolicy(RankingPolicy):
    """Base of policies built from a ``products`` table (workspace schema).

    Args:
        products: the products of every domain (``domain``, ``product_id``, ``title`` used).
        seed: seed of the policy's own randomness (drawn per batch from its request ids).
    """

    def __init__(self, products: pa.Table, seed: int = 0) -> None:
        self.seed = seed
        self.domain_ids_: list[str] = sorted(set(products.column("domain").to_pylist()))
        self.domain_index_ = {d: i for i, d in enumerate(self.domain_ids_)}
        domains = products.column("domain").to_pylist()
        self.product_ids_: list[str] = products.column("product_id").to_pylist()
        rows = np.array([self.domain_index_[d] for d in domains], dtype=np.int64)
        #: Table rows of each domain's products.
        self.domain_rows_: list[I64] = [
            np.flatnonzero(rows == i) for i in range(len(self.domain_ids_))
        ]
        #: product id → position, over the distinct product ids of the table.
        self.index_ = pd.Index(self.product_ids_).unique()
        self._global: tuple[pd.Index, I32] | None = None

    def domain_codes(self, batch: RequestBatch) -> I64:
        """Domain index of each request (fails clearly for a domain without products)."""
        try:
            return np.array([self.domain_index_[d] for d in batch.domains], dtype=np.int64)
        except KeyError as exc:
            raise InvalidInputError(
                f"domain {exc.args[0]!r} has no products in the policy's catalog; domains are "
                f"{', '.join(self.domain_ids_)}"
            ) from None

    def global_rows(self, products: pd.Index) -> I32:
        """Product index (in ``products``) of every table row, cached per index."""
        if self._global is None or self._global[0] is not products:
            found = products.get_indexer(pd.Index(self.product_ids_)).astype(np.int32)
            self._global = (products, found)
        return self._global[1]

    def batch_rng(self, batch: RequestBatch) -> np.random.Generator:
        """The policy's random stream for ``batch``: the same batch gets the same draws."""
        ends = (batch.request_ids[0], batch.request_ids[-1]) if len(batch) else ("", "")
        keys = [zlib.crc32(e.encode()) for e in ends]
        return stream(self.seed, POLICY, *keys, len(batch))

    def rank(self, batch: RequestBatch, k: int) -> Ranking:
        """Rankings as product ids (through :meth:`rank_matrix`)."""
        matrix = self.rank_matrix(batch, k, self.index_)
        ids = np.asarray(self.index_)
        valid = matrix.items >= 0
        logged = next(iter(matrix.scores.values()), None)
        return Ranking(
            [ids[row[keep]].tolist() for row, keep in zip(matrix.items, valid, strict=True)],
            None
            if logged is None
            else [row[keep].tolist() for row, keep in zip(logged, valid, strict=True)],
        )


class RandomPolicy(CatalogPolicy):
    """``k`` distinct products of the request's domain, drawn at random.

    Each list is a uniformly random ``k``-subset in random order (the lists of one batch are runs
    of one shared random permutation, so they are not independent of each other).
    """

    name = "random"

    def rank_matrix(self, batch: RequestBatch, k: int, products: pd.Index) -> RankMatrix:
        """Random lists (see the class docstring)."""
        rng = self.batch_rng(batch)
        codes = self.domain_codes(batch)
        global_rows = self.global_rows(products)
        items = np.full((len(batch), k), -1, dtype=np.int32)
        for d, table_rows in enumerate(self.domain_rows_):
            rows = np.flatnonzero(codes == d)
            items[rows, : min(k, table_rows.size)] = global_rows[
                random_distinct(rng, table_rows, rows.size, k)
            ]
        return RankMatrix(items)


def random_distinct(rng: np.random.Generator, pool: I64, n: int, k: int) -> I64:
    """``n`` rows of ``min(k, len(pool))`` distinct random members of ``pool``, shuffled."""
    width = min(k, pool.size)
    order = rng.permutation(pool.size)
    offsets = rng.integers(0, max(pool.size, 1), n)
    picks = order[(offsets[:, None] + np.arange(width)[None, :]) % max(pool.size, 1)]
    out: I64 = pool[rng.permuted(picks, axis=1)]
    return out
