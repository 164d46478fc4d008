"""Everything one server process shares between its endpoints."""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    workspace: Workspace
    settings: Settings
    live: LiveEngine
    log: EventLog
    ids: RequestIds
    metrics: Metrics
    workers: int
    domains: list[Domain]

    def refresh_domains(self) -> list[Domain]:
        """Re-read the workspace's domains."""
        self.domains = self.workspace.domains()
        return self.domains
