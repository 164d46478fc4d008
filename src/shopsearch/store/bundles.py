"""Model bundles: versioned directories under ``W/models/``, one of them current.

A bundle is ``W/models/<bundle id>/`` holding ``bundle.json`` and one sub-folder per stage. The
file ``W/models/CURRENT`` names the bundle in use; it is replaced atomically, so a reader sees the
old or the new bundle, never a mix. Bundles are never modified after they are published, except
by incremental catalog updates of the current bundle's indexes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

from shopsearch.errors import WorkspaceError
from shopsearch.store.atomic import write_bytes, write_json
from shopsearch.store.workspace import Workspace

BUNDLE_FILE = "bundle.json"
CURRENT_FILE = "CURRENT"


def new_bundle_dir(workspace: Workspace) -> Path:
    """A fresh, empty bundle directory (not yet current)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = workspace.dir("models") / f"bundle-{stamp}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path


def write_bundle_meta(bundle: Path, meta: dict[str, object]) -> None:
    """Write ``bundle.json`` (with the creation time and the bundle's id)."""
    write_json(
        bundle / BUNDLE_FILE, {**meta, "created": datetime.now(UTC).isoformat(), "id": bundle.name}
    )


def make_current(workspace: Workspace, bundle: Path) -> None:
    """Make ``bundle`` the current one (atomically)."""
    write_bytes(workspace.dir("models") / CURRENT_FILE, bundle.name.encode())


def publish_bundle(workspace: Workspace, bundle: Path, meta: dict[str, object]) -> None:
    """Write ``bundle.json`` and make ``bundle`` the current one."""
    write_bundle_meta(bundle, meta)
    make_current(workspace, bundle)


def current_bundle(workspace: Workspace) -> Path:
    """The current bundle directory, or a clear error naming the command that builds one."""
    pointer = workspace.root / "models" / CURRENT_FILE
    if not pointer.exists():
        raise WorkspaceError(
            f"workspace {workspace.root} has no search index yet; build one with "
            f"'shopsearch index --workspace {workspace.root}'"
        )
    bundle = pointer.parent / pointer.read_text().strip()
    if not (bundle / BUNDLE_FILE).exists():
        raise WorkspaceError(f"current bundle {bundle} is missing or incomplete; rebuild it")
    return bundle


def bundle_meta(bundle: Path) -> dict[str, object]:
    """The ``bundle.json`` of a bundle."""
    try:
        meta: dict[str, object] = orjson.loads((bundle / BUNDLE_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError) as exc:
        raise WorkspaceError(f"{bundle} is not a readable bundle: {exc}") from exc
    return meta
