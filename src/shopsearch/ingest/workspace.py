"""Ingest: validate what a loader read, store the good rows, report the bad ones.

Order: domains, then products and judgments (upserted by key), then requests, impressions and
interactions (appended). A domain the format implies (``_implied``) is stored only when the
workspace lacks it, so it never overwrites one a domains file declared. Each table is one atomic
write, so a crash mid-ingest keeps every table written before it whole and leaves no half file.
Impressions and interactions must name a request that is in the same ingest or already stored.

Counts are per table and in that table's rows: ``kept`` rows stored, ``rejected`` rows refused
(plus the :data:`UNREADABLE` records the loader could not read as rows), ``repeated`` rows whose
key a later row of the same ingest replaced. For each table given: rows = kept + rejected +
repeated, except that an implied domain already stored is left out of every count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from shopsearch.catalog.models import UNKNOWN_CURRENCY, UNKNOWN_LANGUAGE
from shopsearch.datasets.base import LoadedData, Malformed
from shopsearch.ingest.validate import REJECT_COLUMNS, Validated, show, validate_frame
from shopsearch.store.atomic import write_bytes
from shopsearch.store.schema import TABLES, UPSERT_KEYS
from shopsearch.store.workspace import Workspace, with_unknowns

_DOMAIN_TABLES = ("products", "judgments", "requests")
_EVENT_TABLES = ("impressions", "interactions")

#: Key of ``IngestResult.rejected`` for records that could not be read as rows of any table.
UNREADABLE = "unreadable"


@dataclass
class IngestResult:
    """What an ingest stored and rejected, per table (see the module docstring).

    Attributes:
        kept: rows stored per table, for each table the loader gave rows of.
        rejected: rows rejected per table (only tables with rejects), and :data:`UNREADABLE`.
        repeated: rows per upserted table whose key a later row of the same ingest replaced.
        report: the rejects report, when anything was rejected.
        added_domains: domains registered by ``add_domains``.
        repaired_domains: stored domains whose empty language or currency was set to unknown.
        unknown_domains: domains rows name that are neither stored nor declared nor added.
        products: the product rows stored (new or replaced), for indexing them.
    """

    kept: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    repeated: dict[str, int] = field(default_factory=dict)
    report: Path | None = None
    added_domains: list[str] = field(default_factory=list)
    repaired_domains: list[str] = field(default_factory=list)
    unknown_domains: list[str] = field(default_factory=list)
    products: pa.Table | None = None


def _used_domains(data: LoadedData, known: set[str]) -> dict[str, tuple[str, int]]:
    """Domains the rows name that are not in ``known``, sorted, with the first row naming each."""
    used: dict[str, tuple[str, int]] = {}
    for name in _DOMAIN_TABLES:
        frame = getattr(data, name)
        if frame is None or "domain" not in frame:
            continue
        firsts = frame.reset_index(drop=True).drop_duplicates(subset="domain")
        files = firsts["_file"] if "_file" in firsts else pd.Series("", index=firsts.index)
        rows = firsts["_row"] if "_row" in firsts else pd.Series(firsts.index + 1, firsts.index)
        for domain, file, row in zip(firsts["domain"], files, rows, strict=True):
            if isinstance(domain, str) and domain.strip() and domain not in known:
                used.setdefault(domain, (str(file), int(row)))
    return dict(sorted(used.items()))


def _added_domains(used: dict[str, tuple[str, int]]) -> pd.DataFrame:
    """Domains rows for ``add_domains``: name = id, language and currency unknown."""
    return pd.DataFrame(
        {
            "domain_id": list(used),
            "name": list(used),
            "language": UNKNOWN_LANGUAGE,
            "currency": UNKNOWN_CURRENCY,
            "_file": [file for file, _ in used.values()],
            "_row": [row for _, row in used.values()],
        }
    )


def _without_stored_implied(domains: pd.DataFrame | None, known: set[str]) -> pd.DataFrame | None:
    """The domains rows to store: a domain the format implies is left out when it is stored."""
    if domains is None or "_implied" not in domains:
        return domains
    implied = domains["_implied"].fillna(False).astype(bool)
    return domains[~(implied & domains["domain_id"].isin(known))]


def _repair_domains(workspace: Workspace) -> list[str]:
    """Set the empty language / currency of stored domains to unknown; the ids repaired."""
    broken = [
        row
        for row in workspace.table("domains").to_pylist()
        if not (row["language"] and row["currency"])
    ]
    if broken:
        repaired = [with_unknowns(row) for row in broken]
        workspace.upsert("domains", pa.Table.from_pylist(repaired, schema=TABLES["domains"]))
    return [row["domain_id"] for row in broken]


def _unreadable(records: list[Malformed]) -> list[dict[str, object]]:
    return [
        {
            "file": m.file,
            "row": m.row,
            "table": "",
            "field": "",
            "value": show(m.text),
            "reason": m.reason,
        }
        for m in records
    ]


def ingest(workspace: Workspace, data: LoadedData, add_domains: bool = False) -> IngestResult:
    """Validate and store ``data``; returns the counts per table and the rejects report path.

    A domain stored with an empty language or currency (by an older ``--add-domains``) is
    repaired first: set to unknown, nothing else changed.

    Args:
        workspace: where to store.
        data: rows from a loader.
        add_domains: register domains that rows name but neither the workspace nor a domains
            file declares (name = id, language ``und``, currency ``XXX``) instead of rejecting
            those rows.
    """
    result = IngestResult(repaired_domains=_repair_domains(workspace))
    rejects = _unreadable(data.malformed)
    if data.malformed:
        result.rejected[UNREADABLE] = len(data.malformed)
    known = {d.domain_id for d in workspace.domains()}

    domains = _without_stored_implied(data.domains, known)
    if add_domains:
        declared = set() if domains is None else {str(v) for v in domains["domain_id"]}
        extra = _used_domains(data, known | declared)
        if extra:
            added = _added_domains(extra)
            domains = added if domains is None or domains.empty else pd.concat([domains, added])
            result.added_domains = list(extra)
    if domains is not None and not domains.empty:
        checked = validate_frame("domains", domains, known)
        rejects += checked.rejects
        _store(workspace, "domains", checked, result)
        known |= set(checked.table["domain_id"].to_pylist())
    result.unknown_domains = list(_used_domains(data, known))

    request_ids: set[str] | None = None
    for name in ("products", "judgments", "requests", *_EVENT_TABLES):
        frame = getattr(data, name)
        if frame is None or frame.empty:
            continue
        checked = validate_frame(name, frame, known)
        if name in _EVENT_TABLES and checked.table.num_rows:
            if request_ids is None:
                request_ids = _stored_request_ids(workspace)
            checked = _require_known_requests(checked, request_ids)
        rejects += [{**r, "table": name} for r in checked.rejects]
        _store(workspace, name, checked, result)

    if rejects:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        report = workspace.dir("rejects") / f"{stamp}-{data.format}.csv"
        csv = pd.DataFrame(rejects, columns=REJECT_COLUMNS).to_csv(index=False)
        write_bytes(report, csv.encode())
        result.report = report
    return result


def _store(workspace: Workspace, name: str, checked: Validated, result: IngestResult) -> None:
    """Store the good rows of one table and count them in ``result``."""
    good = checked.table
    if name in UPSERT_KEYS:
        stored = workspace.upsert(name, good)
        if good.num_rows > stored:
            result.repeated[name] = good.num_rows - stored
    else:
        workspace.append(name, good)
        stored = good.num_rows
    result.kept[name] = stored
    if name == "products" and good.num_rows:
        result.products = good
    if checked.rejected:
        result.rejected[name] = checked.rejected


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
