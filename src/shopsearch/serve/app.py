"""The FastAPI application: :func:`create_app` for one workspace, :func:`app_from_env` for
uvicorn's worker processes.

Life cycle of one process: the engine of the current bundle (or of the bundle the run's other
workers switched to) is loaded when the app is created; at start-up the event log opens its
segment and the process starts following every worker's log (:class:`SearchLog`, which
``POST /events`` checks events against); while serving, the log is compacted into the workspace
tables every ``compact_every_s`` by a helper process at low priority (:mod:`.background`), and
reload announcements and the other workers' log lines are followed every ``follow_every_s``; at
shutdown the log is flushed and closed and compacted once more. The web page (``static/``) is
served at ``/``, the API docs at ``/docs`` and ``/redoc`` from files installed with the package
(``fastapi-offline``), so they work without a network. Bodies over ``[serve] max_body_bytes``
are refused with 413 before they are read, and ``HEAD /health`` answers as ``GET /health``
without the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

import shopsearch
from shopsearch.config import Settings, load_settings
from shopsearch.errors import InvalidInputError
from shopsearch.events.compaction import CompactionResult, compact_event_log
from shopsearch.events.log import LOG_DIR, EventLog
from shopsearch.events.records import LOG_TABLES
from shopsearch.events.searches import SearchLog
from shopsearch.pipeline.engine import Engine
from shopsearch.ray_cluster import cluster_address
from shopsearch.serve.background import BackgroundProcess, compact_at
from shopsearch.serve.engines import SIGNAL_DIR, LiveEngine, bundle_name
from shopsearch.serve.errors import JsonResponse, install_error_handlers
from shopsearch.serve.heap import freeze_new
from shopsearch.serve.metrics import Metrics, MetricsMiddleware
from shopsearch.serve.middleware import BodyLimitMiddleware, HeadAsGetMiddleware
from shopsearch.serve.request_ids import RequestIds, workspace_secret
from shopsearch.serve.routes_admin import admin_router
from shopsearch.serve.routes_catalog import catalog_router
from shopsearch.serve.routes_events import events_router
from shopsearch.serve.routes_search import search_endpoint, search_router
from shopsearch.serve.routes_suggest import suggest_router
from shopsearch.serve.search_fast_path import SearchFastPath
from shopsearch.serve.shards import ShardPlan, shard_engine
from shopsearch.serve.shared_answers import (
    READ_EVERY_S,
    SharedAnswers,
    journal_folder,
)
from shopsearch.serve.state import ServerState
from shopsearch.serve.threads import limit_compute_threads
from shopsearch.store.workspace import Workspace

logger = logging.getLogger(__name__)

#: Environment of ``shopsearch serve``'s worker processes (read by :func:`app_from_env`).
ENV_WORKSPACE = "SHOPSEARCH_SERVER_WORKSPACE"
ENV_CONFIG = "SHOPSEARCH_SERVER_CONFIG"
ENV_WORKERS = "SHOPSEARCH_SERVER_WORKERS"
ENV_RUN = "SHOPSEARCH_SERVER_RUN"
#: ``address,shards,replicas`` of a sharded lexical source (``serve --shards``; address
#: ``local``: a Ray instance started here).
ENV_SHARDS = "SHOPSEARCH_SERVER_SHARDS"

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    workspace: Workspace,
    settings: Settings,
    *,
    workers: int = 1,
    run_id: str | None = None,
    compact_every_s: float | None = None,
    follow_every_s: float = 1.0,
    shards: ShardPlan | None = None,
) -> FastAPI:
    """The search API over ``workspace``'s current bundle.

    Run it with its lifespan (uvicorn, or ``with TestClient(app)``): the event log only writes
    between start-up and shutdown.

    Args:
        workspace: the workspace to serve and log into.
        settings: limits, retrieval and the admin token.
        workers: worker processes serving this workspace (catalog writes need 1).
        run_id: shared by the workers of one ``shopsearch serve`` (reload announcements).
        compact_every_s: period of the event log's compaction into the tables (default:
            ``serve.compact_every_s``).
        follow_every_s: period of checking other workers' reload announcements.
        shards: serve the lexical source from shard actors on Ray (:mod:`.shards`); the
            catalog is then read-only.

    Raises:
        WorkspaceError: the workspace has no bundle (build one with ``shopsearch index``).
        InvalidInputError: ``serve.search_on_event_loop`` is true with ``shards`` (the loop
            would wait for the shard actors' answers).
    """
    if shards is not None and settings.serve.search_on_event_loop:
        raise InvalidInputError(
            "[serve] search_on_event_loop = true with --shards would block the event loop "
            "while the shard actors answer; unset it (sharded searches run on threads)"
        )
    metrics = Metrics()
    shared = _shared_answers(workspace, settings, workers, run_id)

    def loaded(engine: Engine) -> None:
        if shards is not None:  # the old engine's actors end with its last reference
            shard_engine(engine, workspace.table("products"), shards)
        metrics.watch_engine(engine)
        if shared is not None:  # answers shared with the other workers' same load
            tag = shared.new_load(bundle_name(engine))
            engine.on_answer = functools.partial(shared.publish, tag)
            engine.responses.fallback = functools.partial(shared.answer, tag)

    state = ServerState(
        workspace=workspace,
        settings=settings,
        live=LiveEngine(workspace, settings, run_id, on_load=loaded),
        log=EventLog(
            workspace.root / LOG_DIR, linger_s=settings.serve.log_linger_s, observer=metrics
        ),
        searches=SearchLog(workspace),
        ids=RequestIds(workspace_secret(workspace)),
        metrics=metrics,
        workers=workers,
        domains=workspace.domains(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        interval = sys.getswitchinterval()
        sys.setswitchinterval(settings.serve.gil_switch_interval_us / 1e6)
        metrics.collections.start()
        state.log.start()
        state.searches.start()
        helper = BackgroundProcess()
        compact_every = compact_every_s or settings.serve.compact_every_s
        tasks: list[asyncio.Task[None]] = []
        try:
            helper.start()  # before the first search: starting it stops this process a moment
            tasks.append(asyncio.create_task(_compact_every(compact_every, state, helper)))
            tasks.append(asyncio.create_task(_every(follow_every_s, _follow, state)))
            tasks.append(asyncio.create_task(_every(follow_every_s, _read_log, state)))
            if shared is not None:  # what the others answered while this worker loaded, first
                shared.absorb()
                tasks.append(asyncio.create_task(_absorb_answers(shared)))
            if settings.serve.freeze_heap and settings.serve.freeze_every_s > 0:
                freeze = _every(settings.serve.freeze_every_s, _freeze, state)
                tasks.append(asyncio.create_task(freeze))
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(helper.close)
            await asyncio.to_thread(_shutdown, state)
            if shared is not None:
                shared.close()
            metrics.collections.stop()
            sys.setswitchinterval(interval)

    app = FastAPIOffline(
        title="shopsearch",
        version=shopsearch.__version__,
        summary="Search, event logging and catalog updates over one shopsearch workspace.",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.state.shop = state
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.serve.max_body_bytes)
    app.add_middleware(HeadAsGetMiddleware, paths=frozenset({"/health"}))
    search = search_endpoint(state)
    searching = search_router(state, search)
    app.include_router(searching)
    for router in (suggest_router, events_router, catalog_router, admin_router):
        app.include_router(router(state))
    if settings.serve.search_fast_path:
        route = next(r for r in searching.routes if isinstance(r, APIRoute) and r.path == "/search")
        app.add_middleware(
            SearchFastPath,
            state=state,
            route=route,
            search=search,
            handlers=app.exception_handlers,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every answer
    if (STATIC_DIR / "index.html").exists():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.get("/", include_in_schema=False)
        def page() -> FileResponse:
            return FileResponse(STATIC_DIR / "index.html")

    return app


def _shared_answers(
    workspace: Workspace, settings: Settings, workers: int, run_id: str | None
) -> SharedAnswers | None:
    """The journal of this worker's answers for the others (``serve.share_answers``), when
    there are others and answers are cached."""
    if not (workers > 1 and run_id and settings.serve.share_answers):
        return None
    if settings.search.response_cache_size == 0:  # nothing cached, nothing to share
        return None
    return SharedAnswers(
        journal_folder(workspace.root / SIGNAL_DIR, run_id),
        capacity=settings.search.response_cache_size,
    )


def app_from_env() -> FastAPI:
    """The app of one ``shopsearch serve`` worker, configured through the environment.

    The process's compute libraries get ``serve.compute_threads`` threads each (see
    :mod:`shopsearch.serve.threads`) before the engine loads.
    """
    workspace = Workspace.open(os.environ[ENV_WORKSPACE])
    config = os.environ.get(ENV_CONFIG)
    settings = load_settings(workspace.root, Path(config) if config else None)
    limit_compute_threads(settings.serve.compute_threads)
    return create_app(
        workspace,
        settings,
        workers=int(os.environ.get(ENV_WORKERS, "1")),
        run_id=os.environ.get(ENV_RUN),
        shards=shard_plan_from_env(os.environ.get(ENV_SHARDS)),
    )


def shard_plan_from_env(value: str | None) -> ShardPlan | None:
    """The :data:`ENV_SHARDS` value as a plan (``None``: not sharded)."""
    if not value:
        return None
    address, shards, replicas = value.rsplit(",", 2)
    return ShardPlan(cluster_address(address), int(shards), int(replicas))


async def _rounds(seconds: float, one_round: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``one_round`` every ``seconds``; a failed round is logged and the next tries again."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await one_round()
        except Exception:
            logger.exception("%s failed", what)


async def _every(seconds: float, job: Callable[[ServerState], None], state: ServerState) -> None:
    """``job(state)`` every ``seconds``, on a thread."""
    await _rounds(seconds, lambda: asyncio.to_thread(job, state), f"background job {job.__name__}")


async def _absorb_answers(shared: SharedAnswers) -> None:
    """Read the other workers' new answers every :data:`READ_EVERY_S`, on the event loop
    between requests (a tenth of a second's answers at a time), not on a thread that would
    take the GIL from a search."""

    async def absorb() -> None:
        shared.absorb()

    await _rounds(READ_EVERY_S, absorb, "reading the other workers' answers")


async def _compact_every(seconds: float, state: ServerState, helper: BackgroundProcess) -> None:
    """Compact the event log every ``seconds`` in ``helper``'s process (see
    :mod:`.background`: on a thread here it stopped this worker's searches)."""
    root = str(state.workspace.root)

    async def compact() -> None:
        _count_compacted(state, await helper.run(compact_at, root))

    await _rounds(seconds, compact, "compacting the event log")


def _compact(state: ServerState) -> None:
    _count_compacted(state, compact_event_log(state.workspace))


def _count_compacted(state: ServerState, result: CompactionResult) -> None:
    for table in LOG_TABLES:
        rows = getattr(result, table)
        if rows:
            state.metrics.compacted.labels(table).inc(rows)


def _follow(state: ServerState) -> None:
    if state.live.follow() is not None:
        state.metrics.reloads.labels("ok").inc()
        state.refresh_domains()


def _freeze(state: ServerState) -> None:
    freeze_new()


def _read_log(state: ServerState) -> None:
    state.searches.refresh()


def _shutdown(state: ServerState) -> None:
    state.close()  # searches of clients that went away may still be logging
    state.log.close()
    state.searches.close()
    try:
        _compact(state)
    except Exception:  # the log is safe on disk; the next compaction (any command) moves it
        logger.exception("compaction at shutdown failed; the event log will be compacted later")
