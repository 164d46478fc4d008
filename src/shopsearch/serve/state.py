"""Everything one server process shares between its endpoints."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType

from shopsearch.catalog.models import Domain
from shopsearch.config import Settings
from shopsearch.events.log import EventLog
from shopsearch.events.searches import SearchLog
from shopsearch.serve.engines import LiveEngine
from shopsearch.serve.metrics import Metrics
from shopsearch.serve.request_ids import RequestIds
from shopsearch.store.workspace import Workspace


class FairSemaphore:
    """A counting semaphore that admits waiters in arrival order.

    ``threading.Semaphore`` wakes an arbitrary waiter, so under overload some searches wait
    again and again (a p99 many times the p50); here a released slot goes to the longest
    waiting thread.

    Args:
        slots: how many holders at once (>= 1).
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots={slots} is not allowed; use slots >= 1")
        self.slots = slots
        self._free = slots
        self._lock = threading.Lock()
        self._waiters: deque[threading.Event] = deque()

    def __enter__(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # the releasing thread hands its slot over

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._free += 1


@dataclass
class ServerState:
    """One server process's workspace, engine, event log, request ids and metrics.

    Attributes:
        searches: the served searches and their recorded events, as the log has them.
        workers: how many worker processes serve this workspace (catalog writes need 1).
        domains: the workspace's domains (re-read on reload and when a write names a new one).
        search_slots: at most ``serve.search_concurrency`` searches compute at once; the rest
            wait their turn, first come first served, instead of thrashing the CPU.
        compute: the threads searches run on (``serve.search_concurrency`` of them), off the
            event loop; shut down with :meth:`close`.
        on_loop: searches run on the event loop itself, one at a time, when the engine is
            free (``serve.search_on_event_loop``; by default with several workers).
    """

    workspace: Workspace
    settings: Settings
    live: LiveEngine
    log: EventLog
    searches: SearchLog
    ids: RequestIds
    metrics: Metrics
    workers: int
    domains: list[Domain]
    search_slots: FairSemaphore = field(init=False)
    compute: ThreadPoolExecutor = field(init=False)
    on_loop: bool = field(init=False)

    def __post_init__(self) -> None:
        slots = self.settings.serve.search_concurrency
        self.search_slots = FairSemaphore(slots)
        self.compute = ThreadPoolExecutor(slots, thread_name_prefix="shopsearch-search")
        on_loop = self.settings.serve.search_on_event_loop
        self.on_loop = self.workers > 1 if on_loop is None else on_loop

    def close(self) -> None:
        """Wait for the searches still computing and stop the compute threads."""
        self.compute.shutdown(wait=True)

    def refresh_domains(self) -> list[Domain]:
        """Re-read the workspace's domains."""
        self.domains = self.workspace.domains()
        return self.domains
