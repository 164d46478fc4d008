"""Everything one server process shares between its endpoints."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from shopsearch.catalog.models import Domain
from shopsearch.config import Settings
from shopsearch.serve.engines import LiveEngine
from shopsearch.serve.event_log import EventLog
from shopsearch.serve.metrics import Metrics
from shopsearch.serve.request_ids import RequestIds
from shopsearch.store.workspace import Workspace


@dataclass
class ServerState:
    """One server process's workspace, engine, event log, request ids and metrics.

    Attributes:
        workers: how many worker processes serve this workspace (catalog writes need 1).
        domains: the workspace's domains (re-read on reload and when a write names a new one).
        search_slots: at most ``serve.search_concurrency`` searches compute at once; the rest
            wait their turn instead of thrashing the CPU (throughput stays flat under load).
    """

    workspace: Workspace
    settings: Settings
    live: LiveEngine
    log: EventLog
    ids: RequestIds
    metrics: Metrics
    workers: int
    domains: list[Domain]
    search_slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.search_slots = threading.BoundedSemaphore(self.settings.serve.search_concurrency)

    def refresh_domains(self) -> list[Domain]:
        """Re-read the workspace's domains."""
        self.domains = self.workspace.domains()
        return self.domains
