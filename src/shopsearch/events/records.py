"""The event log's record format: one checksummed JSON line per served search or interaction.

A line is ``<crc32 of the JSON, 8 hex digits> <JSON>\\n``. A line whose checksum or JSON does
not verify (a torn write at a crash) is skipped, never half-read. Two record types:

- ``{"type": "search", "request": {...}, "impressions": [{...}, ...]}``: one ``requests`` row and
  its ``impressions`` rows (without the repeated ``request_id``);
- ``{"type": "interaction", ...}``: one ``interactions`` row.

Field names and meanings are those of the workspace tables (:mod:`shopsearch.store.schema`);
timestamps are UTC microseconds since the epoch.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from shopsearch.store.schema import TABLES

#: The tables the event log fills, in the order they are committed.
LOG_TABLES = ("requests", "impressions", "interactions")


@dataclass(frozen=True)
class Shown:
    """One shown product of a logged search."""

    product_id: str
    position: int
    price: float | None
    scores: Mapping[str, float]


def now_us() -> int:
    """The current UTC time in microseconds since the epoch."""
    return timestamp_us(datetime.now(UTC))


def timestamp_us(moment: datetime) -> int:
    """``moment`` (naive means UTC) in microseconds since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_line(record: Mapping[str, Any]) -> bytes:
    """One record as a checksummed log line."""
    body = orjson.dumps(record)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record of one line (without its newline), or ``None`` if it does not verify."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    try:
        checksum = int(line[:8], 16)
    except ValueError:
        return None
    body = line[9:]
    if zlib.crc32(body) != checksum:
        return None
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def search_line(
    request_id: str,
    user_id: str,
    domain: str,
    query: str,
    filters: Mapping[str, str],
    timestamp: int,
    shown: Sequence[Shown],
) -> bytes:
    """The log line of one served search and the products it showed."""
    return encode_line(
        {
            "type": "search",
            "request": {
                "request_id": request_id,
                "session_id": None,
                "user_id": user_id,
                "domain": domain,
                "query": query,
                "filters": orjson.dumps(dict(filters)).decode(),
                "timestamp": timestamp,
            },
            "impressions": [
                {
                    "product_id": item.product_id,
                    "position": item.position,
                    "price": item.price,
                    "scores": orjson.dumps(dict(item.scores)).decode(),
                }
                for item in shown
            ],
        }
    )


def interaction_line(
    request_id: str, user_id: str, product_id: str, kind: str, timestamp: int, value: float
) -> bytes:
    """The log line of one click, add-to-cart or purchase."""
    return encode_line(
        {
            "type": "interaction",
            "request_id": request_id,
            "user_id": user_id,
            "product_id": product_id,
            "kind": kind,
            "timestamp": timestamp,
            "value": value,
        }
    )


@dataclass
class LogRows:
    """Table rows gathered from log records."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    impressions: list[dict[str, Any]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record: Mapping[str, Any]) -> bool:
        """Add one decoded record's rows; ``False`` (nothing added) for an unknown record."""
        kind = record.get("type")
        if kind == "search":
            request = dict(record["request"])
            self.requests.append(request)
            rid = request["request_id"]
            self.impressions.extend({"request_id": rid, **row} for row in record["impressions"])
            return True
        if kind == "interaction":
            self.interactions.append({k: v for k, v in record.items() if k != "type"})
            return True
        return False

    def table(self, name: str) -> pa.Table:
        """The rows of one of :data:`LOG_TABLES` as an Arrow table of the workspace schema."""
        rows: list[dict[str, Any]] = getattr(self, name)
        return pa.Table.from_pylist(rows, schema=TABLES[name])
