"""Ingest: validate what a loader read, store the good rows, report the bad ones.

Order: domains, then products and judgments (upserted by key), then requests, impressions and
interactions (appended). Each table is one atomic write, so a crash mid-ingest keeps every table
written before it whole and leaves no half file. Impressions and interactions must name a request
that is in the same ingest or already stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from shopsearch.datasets.base import LoadedData
from shopsearch.ingest.validate import REJECT_COLUMNS, Validated, validate_frame
from shopsearch.store.atomic import write_bytes
from shopsearch.store.schema import UPSERT_KEYS
from shopsearch.store.workspace import Workspace

_DOMAIN_TABLES = ("products", "judgments", "requests")
_EVENT_TABLES = ("impressions", "interactions")


@dataclass
class IngestResult:
    """What an ingest stored and rejected."""

    kept: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    report: Path | None = None
    added_domains: list[str] = field(default_factory=list)


def _new_domains(data: LoadedData, known: set[str]) -> list[str]:
    seen: set[str] = set()
    for name in _DOMAIN_TABLES:
        frame = getattr(data, name)
        if frame is not None and "domain" in frame:
            seen.update(str(v) for v in frame["domain"].dropna().unique() if str(v).strip())
    return sorted(seen - known)


def ingest(workspace: Workspace, data: LoadedData, add_domains: bool = False) -> IngestResult:
    """Validate and store ``data``; returns counts and the rejects report path (if any).

    Args:
        workspace: where to store.
        data: rows from a loader.
        add_domains: register domains that rows name but no domains table declares
            (name = id, language ``en``, currency ``USD``) instead of rejecting those rows.
    """
    result = IngestResult()
    rejects: list[dict[str, object]] = []
    known = {d.domain_id for d in workspace.domains()}

    domains = data.domains
    if add_domains:
        declared = set() if domains is None else {str(v) for v in domains["domain_id"]}
        extra = _new_domains(data, known | declared)
        if extra:
            added = pd.DataFrame({"domain_id": extra, "name": extra, "_file": "", "_row": 0})
            domains = added if domains is None else pd.concat([domains, added])
            result.added_domains = extra
    if domains is not None:
        checked = validate_frame("domains", domains, known)
        rejects += checked.rejects
        result.kept["domains"] = workspace.upsert("domains", checked.table)
        known |= set(checked.table["domain_id"].to_pylist())

    request_ids: set[str] | None = None
    for name in ("products", "judgments", "requests", *_EVENT_TABLES):
        frame = getattr(data, name)
        if frame is None:
            continue
        checked = validate_frame(name, frame, known)
        if name in _EVENT_TABLES and checked.table.num_rows:
            if request_ids is None:
                request_ids = _stored_request_ids(workspace)
            checked = _require_known_requests(checked, request_ids)
        rejects += [{**r, "table": name} for r in checked.rejects]
        good = checked.table
        if name in UPSERT_KEYS:
            result.kept[name] = workspace.upsert(name, good)
        else:
            workspace.append(name, good)
            result.kept[name] = good.num_rows

    result.rejected = len({(r["file"], r["row"], r["table"]) for r in rejects})
    if rejects:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        report = workspace.dir("rejects") / f"{stamp}-{data.format}.csv"
        csv = pd.DataFrame(rejects, columns=REJECT_COLUMNS).to_csv(index=False)
        write_bytes(report, csv.encode())
        result.report = report
    return result


def _stored_request_ids(workspace: Workspace) -> set[str]:
    return set(workspace.table("requests", columns=["request_id"])["request_id"].to_pylist())


def _require_known_requests(checked: Validated, known: set[str]) -> Validated:
    """Reject event rows whose request is neither in this ingest nor stored."""
    ids = checked.table["request_id"].to_pylist()
    return checked.reject(
        [i in known for i in ids],
        "request_id",
        lambda i: f"unknown request_id {ids[i]!r}: no such request in this ingest or the workspace",
    )
