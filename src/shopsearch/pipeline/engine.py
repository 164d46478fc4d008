"""The engine: the search stages composed from one bundle and one config.

``Engine.search(params)`` runs query → retrieval (every candidate source, fused) → ranking (when
the bundle has a ``ranking/`` model and ``[ranking] enabled``) → page, with facets from the
lexical index's whole matching set, a per-stage score for each item, and timings. Later stages
(pre-ranking, re-ranking) plug in around ranking.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.store.bundles import bundle_meta, current_bundle, new_bundle_dir, publish_bundle
from shopsearch.store.workspace import Workspace

if TYPE_CHECKING:
    from shopsearch.ranking.stage import RankingStage

Facets = dict[str, dict[str, int]]


@dataclass(frozen=True)
class SearchParams:
    """One search request as the engine takes it."""

    query: str
    domain: str | None = None
    user_id: str | None = None
    filters: Filters = field(default_factory=Filters)
    page: int = 1
    size: int = 10
    explain: bool = False


@dataclass
class ResultItem:
    """One shown product with its final score and, with ``explain``, each stage's score."""

    domain: str
    product_id: str
    title: str
    brand: str
    category: list[str]
    price: float | None
    in_stock: bool
    score: float
    stages: dict[str, float | None] = field(default_factory=dict)


@dataclass
class SearchResponse:
    """What one search returns."""

    request_id: str
    items: list[ResultItem]
    total: int
    facets: Facets
    timings_ms: dict[str, float]


class Engine:
    """Serves searches over one workspace's current bundle.

    Args:
        retrieval: the fused candidate sources.
        products: product lookup for rendering results.
        settings: limits and retrieval depth.
        bundle: the bundle directory the engine was loaded from (``None`` if built in memory).
        ranking: the ranking stage (``None``: results keep the fused order).
    """

    def __init__(
        self,
        retrieval: HybridRetriever,
        products: ProductLookup,
        settings: Settings,
        bundle: Path | None = None,
        ranking: RankingStage | None = None,
    ) -> None:
        self.retrieval = retrieval
        self.products = products
        self.settings = settings
        self.bundle = bundle
        self.ranking = ranking
        lexical = [r for r in retrieval.sources.values() if isinstance(r, LexicalRetriever)]
        self.lexical = lexical[0] if lexical else None
        if self.lexical is not None:
            self.lexical.configure_results(settings.retrieval.result_cache_size)

    # -- building and loading --------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        workspace: Workspace,
        settings: Settings,
        progress: Callable[[int, int], None] | None = None,
    ) -> Engine:
        """Index the workspace's products into a new bundle, publish it, return its engine."""
        products = workspace.table("products")
        if products.num_rows == 0:
            raise InvalidInputError(
                f"workspace {workspace.root} has no products; ingest or simulate some first"
            )
        bundle = new_bundle_dir(workspace)
        retrieval_dir = bundle / "retrieval"
        sources: dict[str, Any] = {}
        if "lexical" in settings.retrieval.sources:
            sources["lexical"] = LexicalRetriever(retrieval_dir / "lexical").index(products)
        if "dense" in settings.retrieval.sources:
            dense = DenseRetriever(
                cache_dir=workspace.dir("cache") / "embeddings",
                hnsw_threshold=settings.retrieval.hnsw_threshold,
                query_cache_size=settings.retrieval.query_cache_size,
                query_batch=settings.retrieval.query_batch,
            )
            sources["dense"] = dense.index(products, progress=progress)
        hybrid = HybridRetriever(
            sources, settings.retrieval.fusion, settings.retrieval.per_source_k
        )
        hybrid.save(retrieval_dir)
        publish_bundle(
            workspace,
            bundle,
            {"stages": {"retrieval": "retrieval"}, "products": products.num_rows},
        )
        return cls(hybrid, ProductLookup(products), settings, bundle)

    @classmethod
    def load(cls, workspace: Workspace, settings: Settings, bundle: Path | None = None) -> Engine:
        """The engine of a bundle (default: the workspace's current bundle)."""
        bundle = bundle or current_bundle(workspace)
        bundle_meta(bundle)
        retrieval = HybridRetriever.load(bundle / "retrieval")
        for source in retrieval.sources.values():
            if isinstance(source, DenseRetriever):  # serving settings beat the saved ones
                source.configure_queries(
                    settings.retrieval.query_cache_size, settings.retrieval.query_batch
                )
        ranking = None
        if settings.ranking.enabled and (bundle / "ranking").is_dir():
            from shopsearch.ranking.stage import RankingStage  # torch: only when a model exists

            dense = next(
                (s for s in retrieval.sources.values() if isinstance(s, DenseRetriever)), None
            )
            ranking = RankingStage.load(bundle / "ranking", workspace, settings.ranking, dense)
        products = ProductLookup(workspace.table("products"))
        return cls(retrieval, products, settings, bundle, ranking)

    # -- searching -------------------------------------------------------------------------------
    def check(self, params: SearchParams) -> Filters:
        """Validate a request against the limits; returns the effective filters."""
        limits = self.settings.search
        if len(params.query) > limits.max_query_chars:
            raise InvalidInputError(
                f"query is {len(params.query)} characters; the limit is {limits.max_query_chars}"
            )
        if not 1 <= params.size <= limits.max_size:
            raise InvalidInputError(f"size={params.size} is not allowed; use 1..{limits.max_size}")
        if not 1 <= params.page <= limits.max_page:
            raise InvalidInputError(f"page={params.page} is not allowed; use 1..{limits.max_page}")
        domains = self.products.domains()
        if params.domain is not None and params.domain not in domains:
            raise InvalidInputError(
                f"unknown domain {params.domain!r}; domains are {', '.join(sorted(domains))}"
            )
        filters = params.filters
        if params.domain is not None:
            filters = Filters(
                domain=params.domain,
                category=filters.category,
                brand=filters.brand,
                price_min=filters.price_min,
                price_max=filters.price_max,
                in_stock=filters.in_stock,
            )
        return filters

    def search(self, params: SearchParams) -> SearchResponse:
        """Run one search through every stage."""
        filters = self.check(params)
        timings: dict[str, float] = {}
        depth = max(self.settings.retrieval.candidates, params.page * params.size)
        per_source = max(depth, self.retrieval.per_source_k)
        lists: dict[str, Candidates] = {}
        facets: Facets = {}
        for name, source in self.retrieval.sources.items():
            start = time.perf_counter()
            if source is self.lexical:
                found = source.search(params.query, per_source, filters)
                lists[name], facets = found.candidates, found.facets
            else:
                lists[name] = source.retrieve(params.query, per_source, filters)
            timings[f"retrieval.{name}"] = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        fused = self.retrieval.fuse(lists, depth)
        timings["retrieval.fusion"] = 1000 * (time.perf_counter() - start)
        stage_scores: dict[str, Any] = {}
        if self.ranking is not None and len(fused):
            start = time.perf_counter()
            ranked = self.ranking.rank(
                fused, params.query, params.user_id, self.settings.retrieval.candidates
            )
            fused, stage_scores = ranked.candidates, ranked.stages
            timings["ranking"] = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        items = self._page(fused, params, stage_scores)
        timings["render"] = 1000 * (time.perf_counter() - start)
        timings["total"] = sum(timings.values())
        return SearchResponse(uuid.uuid4().hex, items, len(fused), facets, timings)

    def _page(
        self, fused: Candidates, params: SearchParams, stage_scores: dict[str, Any]
    ) -> list[ResultItem]:
        start = (params.page - 1) * params.size
        stop = start + params.size
        items: list[ResultItem] = []
        for i in range(start, min(stop, len(fused))):
            row = self.products.get(fused.keys[i])
            if row is None:  # deleted since it was indexed
                continue
            stages: dict[str, float | None] = {}
            if params.explain:
                for name, scores in fused.sources.items():
                    value = float(scores[i])
                    stages[f"retrieval.{name}"] = None if value != value else value
                stages["retrieval.fused"] = float(fused.scores[i])
                for name, scores in stage_scores.items():
                    value = float(scores[i])
                    stages[name] = None if value != value else value
            items.append(
                ResultItem(
                    domain=row["domain"],
                    product_id=row["product_id"],
                    title=row["title"],
                    brand=row["brand"],
                    category=list(row["category"]),
                    price=row["price"],
                    in_stock=bool(row["in_stock"]),
                    score=float(fused.scores[i]),
                    stages=stages,
                )
            )
        return items

    # -- catalog updates -------------------------------------------------------------------------
    # Both write the change into the engine's bundle too (the lexical index updates its files in
    # place; dense indexes are saved again), so a restart serves the updated catalog.
    def upsert_products(self, products: pa.Table) -> None:
        """Add or replace products in every index incrementally (no rebuild)."""
        for source in self.retrieval.sources.values():
            if isinstance(source, LexicalRetriever):
                source.add(products)
            elif isinstance(source, DenseRetriever):
                source.upsert(products)
        self.products.upsert(products)
        self._save_dense()

    def delete_products(self, keys: Iterable[ProductKey]) -> int:
        """Remove products from every index incrementally; returns how many were known.

        Unknown keys are ignored.
        """
        unique = list(dict.fromkeys(keys))
        known = sum(self.products.get(key) is not None for key in unique)
        for source in self.retrieval.sources.values():
            if isinstance(source, LexicalRetriever | DenseRetriever):
                source.delete(unique)
        self.products.delete(unique)
        self._save_dense()
        return known

    def _save_dense(self) -> None:
        if self.bundle is None:
            return
        for name, source in self.retrieval.sources.items():
            if isinstance(source, DenseRetriever):
                source.save(self.bundle / "retrieval" / name)
