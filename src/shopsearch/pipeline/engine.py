"""The engine: one bundle's search pipeline, composed from the configuration.

``Engine.search(params)`` runs the stages of ``[pipeline] stages`` in order — by default
``query → retrieve → prerank → rank → rerank`` (:mod:`shopsearch.pipeline.stages`) — on one
:class:`~shopsearch.pipeline.state.SearchState`, then cuts the requested page. Every stage is
timed and reported (``SearchResponse.pipeline``): it ``ran``, passed the candidates on unchanged
(``identity``, no model for it in the bundle) or was ``skipped`` with the reason. The HTTP
route, ``shopsearch search``, ``bench`` and every evaluation that scores the engine call this
one method.

``total`` is the size of the **matched set** — the products with the query's words (the
lexical source's whole matching set, typo-tolerant, within the filters) plus those a vector
source found closer to the query than its match threshold (its fitted noise level, or
``[retrieval] min_similarity``) — and the facets count that
same set, so both are the same on every page (:meth:`HybridRetriever.search
<shopsearch.retrieval.hybrid.HybridRetriever.search>`). When nothing matches, the response says
so (``notice``) and, when the filters are what left nothing, suggests the search without them.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from shopsearch.catalog.candidates import Filters, ProductKey
from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError
from shopsearch.pipeline.request import (
    ALL_DOMAINS,
    ResultItem,
    SearchParams,
    SearchResponse,
    StageReport,
    Suggestion,
)
from shopsearch.pipeline.stage import STAGES, Absent, Stage, StageContext
from shopsearch.pipeline.stages.rank import RankStage
from shopsearch.pipeline.state import QueryInfo, SearchState
from shopsearch.pipeline.stream import StreamRecorder
from shopsearch.random_pool import RANDOM
from shopsearch.retrieval.base import ServingOptions
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.store.bundles import bundle_meta, current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.text.query_cache import LRUCache

if TYPE_CHECKING:
    from shopsearch.ranking.stage import RankingStage

#: The folder of a bundle that holds its candidate sources.
RETRIEVAL_DIR = "retrieval"


class Engine:
    """Serves searches over one bundle.

    Args:
        retrieval: the fused candidate sources.
        products: product lookup for rendering results.
        settings: limits, retrieval depth and the pipeline's stages.
        bundle: the bundle directory the engine was loaded from (``None`` if built in memory:
            stages that need a model from the bundle are then skipped).
        workspace: the workspace whose logs stages read (``None`` if built in memory).
        stages: built stages by name, used instead of loading those from the bundle (an
            engine built in memory with models fitted in memory, as evaluations do).

    Raises:
        InvalidInputError: a stage name that is not registered.
        WorkspaceError: a stage whose model does not fit the bundle.
    """

    def __init__(
        self,
        retrieval: HybridRetriever,
        products: ProductLookup,
        settings: Settings,
        bundle: Path | None = None,
        workspace: Workspace | None = None,
        stages: Mapping[str, Stage] | None = None,
    ) -> None:
        self.retrieval = retrieval
        self.products = products
        self.settings = settings
        self.bundle = bundle
        self.workspace = workspace
        self._declared: list[str] | None = None  # the workspace's domains, read once
        #: Answers of anonymous searches (:meth:`search`); cleared by every catalog write.
        self.responses: LRUCache[SearchResponse] = LRUCache(settings.search.response_cache_size)
        #: Called with each answer :meth:`search` stores in :attr:`responses`, and its key
        #: (a server passes them to its other workers' caches).
        self.on_answer: Callable[[Hashable, SearchResponse], None] | None = None
        retrieval.configure(
            ServingOptions(
                result_cache_size=settings.retrieval.result_cache_size,
                min_similarity=settings.retrieval.min_similarity,
            )
        )
        context = StageContext(settings, retrieval, products, workspace, bundle)
        given = dict(stages or {})
        classes = [STAGES.get(entry) for entry in settings.pipeline.stages]
        self.stages: list[tuple[str, Stage | Absent]] = [
            (cls.name, given[cls.name] if cls.name in given else cls.load(context))
            for cls in classes
        ]

    @classmethod
    def load(cls, workspace: Workspace, settings: Settings, bundle: Path | None = None) -> Engine:
        """The engine of a bundle (default: the workspace's current bundle)."""
        bundle = bundle or current_bundle(workspace)
        bundle_meta(bundle)
        retrieval = HybridRetriever.load(bundle / RETRIEVAL_DIR)
        serving = settings.retrieval  # serving settings beat the saved ones
        options = ServingOptions(serving.query_cache_size, serving.query_batch)
        retrieval.configure(options)
        products = ProductLookup(workspace.table("products"))
        return cls(retrieval, products, settings, bundle, workspace)

    def stage(self, name: str) -> Stage | None:
        """The running stage called ``name`` (``None`` when it is absent or not configured)."""
        for stage_name, stage in self.stages:
            if stage_name == name and isinstance(stage, Stage):
                return stage
        return None

    @property
    def ranking(self) -> RankingStage | None:
        """The ranking model the ``rank`` stage runs (``None``: no ranking)."""
        stage = self.stage("rank")
        return stage.ranking if isinstance(stage, RankStage) else None

    def default_domain(self) -> str | None:
        """The market a user's search without a domain searches: ``[search] default_domain``,
        else the workspace's first declared domain with products, else the first by name
        (``None``: no products). Library calls with ``domain=None`` search every market."""
        if self.settings.search.default_domain is not None:
            return self.settings.search.default_domain
        present = self.products.domains()
        if self._declared is None:
            workspace = self.workspace
            self._declared = [d.domain_id for d in workspace.domains()] if workspace else []
        return next((d for d in self._declared if d in present), min(present, default=None))

    def resolve_domain(self, domain: str | None) -> str | None:
        """The market a user's search runs in: ``domain``, else :meth:`default_domain`;
        ``*`` is every market (``None``), or the one market of a one-market catalog."""
        chosen = domain if domain is not None else self.default_domain()
        if chosen == ALL_DOMAINS:
            present = self.products.domains()
            return next(iter(present)) if len(present) == 1 else None
        return chosen

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
        """Run one search through every stage and cut the requested page.

        An anonymous search (no user id) whose stream is not recorded may be answered from
        :attr:`responses`: the same request's earlier answer (every stage is deterministic
        without a user, and the cache is cleared by every catalog write), with a fresh request
        id and ``timings_ms`` ``{"cache", "total"}``. The answer is shared: treat it as read-only.
        """
        began = time.perf_counter()
        request_id = RANDOM.hex(16)
        stream = self._stream_recorder(params, request_id)
        key = _response_key(params) if stream is None and params.user_id is None else None
        if key is not None:
            cached = self.responses.lookup([key])[0]
            if cached is not None:
                ms = 1000 * (time.perf_counter() - began)
                return replace(cached, request_id=request_id, timings_ms={"cache": ms, "total": ms})
        state = self._start(params)
        filters = state.filters
        timings: dict[str, float] = {}
        reports: list[StageReport] = []
        for name, stage in self.stages:
            if isinstance(stage, Absent):
                n = len(state.candidates)
                reports.append(StageReport(name, "skipped", 0.0, n, stage.reason))
                continue
            start = time.perf_counter()
            outcome = stage.run(state)
            ms = 1000 * (time.perf_counter() - start)
            timings.update(state.timings_ms)
            state.timings_ms.clear()
            timings[name] = ms
            reports.append(
                StageReport(name, outcome.status, ms, len(state.candidates), outcome.detail)
            )
            if stream is not None:
                stream.record(name, state)
        start = time.perf_counter()
        items = self._page(state)
        timings["render"] = 1000 * (time.perf_counter() - start)
        timings["total"] = 1000 * (time.perf_counter() - began)
        notice, suggestion = None, None
        if state.total == 0:
            notice, suggestion = self._nothing(params, filters, state.query.text)
        response = SearchResponse(
            request_id,
            items,
            state.total,
            state.facets,
            timings,
            reports,
            state.query.text,
            notice,
            suggestion,
            state.query.correction,
            list(state.query.intents),
            None if stream is None else stream.entries,
        )
        if key is not None:
            self.responses.store([key], [response])
            if self.on_answer is not None:
                self.on_answer(key, response)
        return response

    def _start(self, params: SearchParams) -> SearchState:
        """A new search's state, after checking the request against the limits."""
        filters = self.check(params)
        depth = max(self.settings.retrieval.candidates, params.page * params.size)
        return SearchState(params, filters, depth, QueryInfo(params.query, params.query))

    def prepare(self, params: SearchParams, until: str) -> SearchState:
        """The state of a search after the stages before the stage ``until`` (untimed, not
        recorded): where evaluations and benchmarks that vary or time ``until`` start."""
        state = self._start(params)
        for name, stage in self.stages:
            if name == until:
                break
            if isinstance(stage, Stage):
                stage.run(state)
        return state

    def _stream_recorder(self, params: SearchParams, request_id: str) -> StreamRecorder | None:
        """A recorder when this search's stream is logged: as asked, else one search in
        ``1 / stream_sample`` (drawn from the request id, so reproducible)."""
        record = params.record_stream
        if record is None:
            rate = self.settings.pipeline.stream_sample
            record = rate > 0 and zlib.crc32(request_id.encode()) < rate * 2**32
        return StreamRecorder(self.settings.pipeline.stream_depth) if record else None

    def _nothing(
        self, params: SearchParams, filters: Filters, query: str
    ) -> tuple[str, Suggestion | None]:
        """The notice of a search without results, and the same words without the filters
        that left nothing, when those have results."""
        restricted = {
            "category": filters.category is not None,
            "brand": filters.brand is not None,
            "price": filters.price_min is not None or filters.price_max is not None,
            "in_stock": filters.in_stock is not None,
        }
        dropped = tuple(name for name, on in restricted.items() if on)
        where = f" in {params.domain}" if params.domain else ""
        if not dropped:
            return f"no results for {query!r}{where}", None
        wider = self.retrieval.search(query, 1, Filters(domain=filters.domain))
        total = wider.candidates.total or 0
        notice = f"no results for {query!r}{where} with these filters"
        return notice, (Suggestion(query, dropped, total) if total else None)

    def _page(self, state: SearchState) -> list[ResultItem]:
        params, found = state.params, state.candidates
        start = (params.page - 1) * params.size
        stop = start + params.size
        items: list[ResultItem] = []
        for i in range(start, min(stop, len(found))):
            row = self.products.get(found.keys[i])
            if row is None:  # deleted since it was indexed
                continue
            stages: dict[str, float | None] = {}
            if params.explain:
                for name, column in state.columns.items():
                    value = float(column[i])
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
                    score=float(found.scores[i]),
                    stages=stages,
                )
            )
        return items

    # -- catalog updates -------------------------------------------------------------------------
    # Both write the change into the engine's bundle too (every source is saved again; the
    # lexical index already updated its files in place), so a restart serves the updated catalog.
    def upsert_products(self, products: pa.Table) -> None:
        """Add or replace products in every source incrementally (no rebuild)."""
        self.retrieval.upsert(products)
        self.products.upsert(products)
        self._declared = None  # a write may add a domain
        self.responses.clear()
        self._save_sources()

    def delete_products(self, keys: Iterable[ProductKey]) -> int:
        """Remove products from every source incrementally; returns how many were known.

        Unknown keys are ignored.
        """
        unique = list(dict.fromkeys(keys))
        known = sum(self.products.get(key) is not None for key in unique)
        self.retrieval.delete(unique)
        self.products.delete(unique)
        self.responses.clear()
        self._save_sources()
        return known

    def _save_sources(self) -> None:
        if self.bundle is not None:
            self.retrieval.save(self.bundle / RETRIEVAL_DIR)


def _response_key(params: SearchParams) -> tuple[object, ...]:
    """What an anonymous search's answer depends on."""
    return (
        params.query, params.domain, params.filters, params.page, params.size,
        params.explain, params.correct,
    )  # fmt: skip


__all__ = ["RETRIEVAL_DIR", "Engine", "ResultItem", "SearchParams", "SearchResponse"]
