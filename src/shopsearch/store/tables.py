"""Committing Parquet parts to workspace tables under a name the caller chooses.

:class:`~shopsearch.store.workspace.Workspace` names new parts itself; the event log's
compaction needs to name a part before writing it, so that re-running a half-finished
compaction can tell whether the part is already in the table. These helpers follow the
workspace's documented layout (``W/tables/<table>/manifest.json`` listing
``part-*.parquet``) and write order (the part atomically, then the manifest atomically). Call
them holding :meth:`Workspace.lock`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace


def table_folder(workspace: Workspace, name: str) -> Path:
    """The folder of a workspace table."""
    return workspace.root / "tables" / name


def new_part_name(tag: str | None = None) -> str:
    """A fresh part file name (``tag``: 12 characters that make it recognisable)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"part-{stamp}-{(tag or uuid.uuid4().hex)[:12]}.parquet"


def write_manifest(workspace: Workspace, name: str, parts: Sequence[str]) -> None:
    """Make ``parts`` (already written into the table folder) the table's content."""
    write_json(table_folder(workspace, name) / "manifest.json", {"parts": list(parts)})
