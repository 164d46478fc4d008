"""The engine being served, its hot reload, and catalog writes to it.

Searches read ``LiveEngine.current`` once and use that :class:`Served` snapshot to the end, so a
reload (build and warm a new engine off to the side, then replace the reference; one pointer
store, atomic) never disturbs a search in flight: it finishes on the old engine, which is freed
when its last search returns. A catalog write changes the current engine in place, under the
write side of a readers-writer lock that every search holds for reading, since the indexes'
incremental updates are not safe to run beside searches.

Reloads and catalog writes are serialized by one mutex, so a reload never loads a bundle halfway
through a catalog write. With several worker processes, the worker that was asked to reload
writes ``W/serve/reload-<run>.json`` (run = one ``shopsearch serve``) and the other workers,
which poll it, load the same bundle; a worker restarted by uvicorn starts on that bundle too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from shopsearch.config import Settings
from shopsearch.errors import WorkspaceError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.serve.errors import ApiError
from shopsearch.serve.heap import settle_heap
from shopsearch.store.atomic import write_json
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace

logger = logging.getLogger(__name__)

SIGNAL_DIR = "serve"


class ReadWriteLock:
    """Many readers or one writer; a waiting writer keeps new readers out (no writer starves)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock for reading."""
        with self._cond:
            while self._writing or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    def writer_active(self) -> bool:
        """Whether a writer holds or waits for the lock, so :meth:`read` would wait now (a
        hint read without the lock: it may change the moment after)."""
        return self._writing or self._waiting_writers > 0

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock alone."""
        with self._cond:
            self._waiting_writers += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


@dataclass(frozen=True)
class Served:
    """An engine with the domains it has products in (computed once per change)."""

    engine: Engine
    domains: frozenset[str]

    @property
    def bundle(self) -> str:
        """The bundle directory name."""
        return bundle_name(self.engine)


@dataclass(frozen=True)
class Reloaded:
    """The outcome of a reload."""

    bundle: str
    previous: str
    products: int
    load_ms: float


class LiveEngine:
    """The served engine: read it, change it in place, or replace it with another bundle.

    Args:
        workspace: the workspace served.
        settings: settings every loaded engine gets.
        run_id: identifies one server run across its worker processes (reload signal file);
            ``None``: this process alone.
        on_load: called with every engine loaded (the first and each reload), before it is
            warmed up and served (the server attaches its metrics).
    """

    def __init__(
        self,
        workspace: Workspace,
        settings: Settings,
        run_id: str | None,
        on_load: Callable[[Engine], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.run_id = run_id
        self.on_load = on_load
        self.changes = threading.Lock()
        self._rw = ReadWriteLock()
        self._seen_signal: str | None = None
        signal = self._read_signal()
        bundle = None
        if signal is not None:
            self._seen_signal = signal["generation"]
            bundle = self._bundle_path(signal["bundle"])
        self.current = _served(self._load(bundle))
        self._settle()

    # -- using the engine ----------------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[Served]:
        """The current engine, safe from catalog writes until the block ends."""
        with self._rw.read():
            yield self.current

    def changing(self) -> bool:
        """Whether a catalog write (:meth:`writing`) holds or waits for the engine, so
        :meth:`reading` would wait now (a hint: it may change the moment after)."""
        return self._rw.writer_active()

    @contextlib.contextmanager
    def writing(self) -> Iterator[Engine]:
        """The current engine to change in place, alone (hold :attr:`changes` around this)."""
        with self._rw.write():
            served = self.current
            yield served.engine
            self.current = _served(served.engine)

    # -- reloading -----------------------------------------------------------------------------
    def reload(self, bundle_name: str | None) -> Reloaded:
        """Load, warm and swap in a bundle (default: the current one); the old keeps serving
        on any failure.

        Raises:
            ApiError: 400 for a malformed name, 404 for a missing bundle, 409 for a bundle that
                does not load or answer a search.
        """
        with self.changes:
            start = time.perf_counter()
            path = self._bundle_path(bundle_name)
            previous = self.current.bundle
            try:
                engine = self._load(path)
            except Exception as exc:  # any failure of a broken bundle: refuse it, keep serving
                logger.warning("reload of %s refused: %s", path, exc)
                raise ApiError(
                    409,
                    "bundle",
                    f"bundle {path.name!r} does not load ({type(exc).__name__}: {exc}); still "
                    f"serving {previous!r}; rebuild it with 'shopsearch index --workspace "
                    f"{self.workspace.root}'",
                ) from exc
            self.current = _served(engine)
            del engine
            self._settle()
            elapsed = 1000 * (time.perf_counter() - start)
            return Reloaded(path.name, previous, len(self.current.engine.products), elapsed)

    def _settle(self) -> None:
        """Freeze the heap with the engine in it (``serve.freeze_heap``)."""
        if self.settings.serve.freeze_heap:
            logger.info("heap settled in %.0f ms", settle_heap())

    def _load(self, bundle: Path | None) -> Engine:
        """Load a bundle and warm it with one search (lazy models load now, not on a user)."""
        engine = Engine.load(self.workspace, self.settings, bundle)
        if self.on_load is not None:
            self.on_load(engine)
        # a recorded stream is never answered from a cache: the pipeline itself runs
        engine.search(SearchParams("warm up", size=1, record_stream=True))
        return engine

    def _bundle_path(self, name: str | None) -> Path:
        if name is None:
            try:
                return current_bundle(self.workspace)
            except WorkspaceError as exc:
                raise ApiError(409, "bundle", str(exc)) from exc
        if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
            raise ApiError(
                400,
                "bundle",
                f"bundle={name!r} is not a bundle directory name; give a name "
                "listed in W/models, such as 'bundle-20240501T120000-abc123'",
            )
        path = self.workspace.root / "models" / name
        if not path.is_dir():
            models = self.workspace.root / "models"
            names = sorted(p.name for p in models.iterdir() if p.is_dir())
            raise ApiError(
                404,
                "bundle",
                f"no bundle {name!r} in {models}; bundles are: "
                f"{', '.join(names) or 'none (build one with shopsearch index)'}",
            )
        return path

    # -- other workers -------------------------------------------------------------------------
    def _signal_path(self) -> Path | None:
        if self.run_id is None:
            return None
        return self.workspace.root / SIGNAL_DIR / f"reload-{self.run_id}.json"

    def _read_signal(self) -> dict[str, str] | None:
        path = self._signal_path()
        if path is None or not path.exists():
            return None
        try:
            signal: dict[str, str] = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return signal

    def announce(self, bundle: str) -> None:
        """Tell the run's other workers to load ``bundle``."""
        path = self._signal_path()
        if path is None:
            return
        generation = uuid.uuid4().hex
        self._seen_signal = generation
        write_json(path, {"bundle": bundle, "generation": generation})

    def follow(self) -> Reloaded | None:
        """Load the bundle another worker announced, if there is a new announcement."""
        signal = self._read_signal()
        if signal is None or signal.get("generation") == self._seen_signal:
            return None
        self._seen_signal = signal.get("generation")
        return self.reload(signal.get("bundle"))


def bundle_name(engine: Engine) -> str:
    """The directory name of ``engine``'s bundle (``(in memory)`` for an engine built here)."""
    return engine.bundle.name if engine.bundle is not None else "(in memory)"


def _served(engine: Engine) -> Served:
    return Served(engine, frozenset(engine.products.domains()))
