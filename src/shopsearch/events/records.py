"""The event log's record format: one checksummed JSON line per served search or interaction.

A line is ``<crc32 of the JSON, 8 hex digits> <JSON>\\n``. A line whose checksum or JSON does
not verify (a torn write at a crash) is skipped, never half-read. Two record types:

- ``{"type": "search", "request": {...}, "impressions": [{...}, ...]}``: one served search and
  the products it showed (each impression without the repeated ``request_id``, with the
  ``domain`` of its product);
- ``{"type": "interaction", ...}``: one ``interactions`` row, with the client's ``event_id`` if
  it gave one.

Field names and meanings are those of the workspace tables (:mod:`shopsearch.store.schema`);
timestamps are UTC microseconds since the epoch.

**Markets.** A search over every market (request domain ``*``) is stored as one ``requests`` row
per market it showed products of, ``<request_id>@<market>`` (:func:`market_request_id`), with
that market's impressions, and an interaction with one of them is stored under that id, so each
market's rows join its own products. A search that showed nothing keeps its ``*`` row.

**Repeats.** An event with an ``event_id`` is the one event of that id for its stored request;
an event without one repeats a recorded event when every field but the timestamp is equal
(:class:`RecordedEvents`). :class:`LogRows` keeps the first of each and counts the rest.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import pyarrow as pa

from shopsearch.store.schema import TABLES

#: The tables the event log fills, in the order they are committed.
LOG_TABLES = ("requests", "impressions", "interactions", "stream")


class StageStream(Protocol):
    """What one stage of a recorded stream passed on (a
    :class:`~shopsearch.pipeline.request.StreamEntry`)."""

    @property
    def stage(self) -> str: ...
    @property
    def keys(self) -> Sequence[tuple[str, str]]: ...
    @property
    def scores(self) -> Sequence[float]: ...


@dataclass(frozen=True)
class Shown:
    """One shown product of a logged search."""

    product_id: str
    position: int
    price: float | None
    scores: Mapping[str, float]
    domain: str | None = None


#: What identifies an event apart from its ``event_id``: the stored request id, product id,
#: kind, user id and value (everything but the timestamp, which a retry may not repeat).
EventFields = tuple[str, str, str, str, float]


def market_request_id(request_id: str, search_domain: str, domain: str) -> str:
    """The request id under which a search's rows of market ``domain`` are stored.

    That is the search's own ``request_id`` when it searched that market, and
    ``<request_id>@<domain>`` for one market of a search over every market.
    """
    return request_id if domain == search_domain else f"{request_id}@{domain}"


def search_request_id(stored_request_id: str) -> str:
    """The ``request_id`` of the search a stored request id belongs to (see
    :func:`market_request_id`; server-issued ids contain no ``@``)."""
    return stored_request_id.partition("@")[0]


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
    stream: Sequence[StageStream] = (),
) -> bytes:
    """The log line of one served search, the products it showed and (for a search whose
    stream was recorded) what each stage passed on."""
    record: dict[str, Any] = {
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
                "domain": item.domain or domain,
            }
            for item in shown
        ],
    }
    if stream:
        record["stream"] = [
            {
                "stage": entry.stage,
                "domains": [key[0] for key in entry.keys],
                "product_ids": [key[1] for key in entry.keys],
                "scores": list(entry.scores),
            }
            for entry in stream
        ]
    return encode_line(record)


def interaction_line(
    request_id: str,
    user_id: str,
    product_id: str,
    kind: str,
    timestamp: int,
    value: float,
    *,
    event_id: str | None = None,
) -> bytes:
    """The log line of one click, add-to-cart or purchase (``request_id`` as stored)."""
    record: dict[str, Any] = {
        "type": "interaction",
        "request_id": request_id,
        "user_id": user_id,
        "product_id": product_id,
        "kind": kind,
        "timestamp": timestamp,
        "value": value,
    }
    if event_id is not None:
        record["event_id"] = event_id
    return encode_line(record)


def event_fields(interaction: Mapping[str, Any]) -> EventFields:
    """The :data:`EventFields` of an interaction record or row."""
    return (
        interaction["request_id"],
        interaction["product_id"],
        interaction["kind"],
        interaction["user_id"],
        float(interaction["value"]),
    )


@dataclass
class RecordedEvents:
    """Recorded events, to tell a new event from a repeat of one of them (see the module)."""

    fields: set[EventFields] = field(default_factory=set)
    by_id: dict[tuple[str, str], EventFields] = field(default_factory=dict)

    def find(self, fields: EventFields, event_id: str | None) -> EventFields | None:
        """The fields of the recorded event that this one repeats, or ``None`` if it is new.

        With an ``event_id`` the recorded event of that id (whose fields may differ: a
        conflict for the caller to refuse); without one, an event with equal fields.
        """
        if event_id is not None:
            return self.by_id.get((fields[0], event_id))
        return fields if fields in self.fields else None

    def add(self, fields: EventFields, event_id: str | None) -> None:
        """Record an event (a recorded id keeps its first fields)."""
        self.fields.add(fields)
        if event_id is not None:
            self.by_id.setdefault((fields[0], event_id), fields)


_INTERACTION_COLUMNS = TABLES["interactions"].names


@dataclass
class LogRows:
    """Table rows gathered from log records; ``repeats`` counts the repeated events dropped."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    impressions: list[dict[str, Any]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)
    stream: list[dict[str, Any]] = field(default_factory=list)
    repeats: int = 0
    recorded: RecordedEvents = field(default_factory=RecordedEvents)

    def add(self, record: Mapping[str, Any]) -> bool:
        """Add one decoded record's rows; ``False`` (nothing added) for an unknown record."""
        kind = record.get("type")
        if kind == "search":
            self._add_search(record["request"], record["impressions"])
            self._add_stream(record["request"], record.get("stream", ()))
            return True
        if kind == "interaction":
            row = {name: record[name] for name in _INTERACTION_COLUMNS}
            fields, event_id = event_fields(row), record.get("event_id")
            if self.recorded.find(fields, event_id) is None:
                self.recorded.add(fields, event_id)
                self.interactions.append(row)
            else:
                self.repeats += 1
            return True
        return False

    def _add_search(
        self, request: Mapping[str, Any], impressions: Sequence[Mapping[str, Any]]
    ) -> None:
        rid, searched = request["request_id"], request["domain"]
        markets: dict[str, list[dict[str, Any]]] = {}
        for impression in impressions:
            row = dict(impression)
            markets.setdefault(row.pop("domain", None) or searched, []).append(row)
        for market, shown in (markets or {searched: []}).items():
            stored = market_request_id(rid, searched, market)
            self.requests.append({**request, "request_id": stored, "domain": market})
            self.impressions.extend({"request_id": stored, **row} for row in shown)

    def _add_stream(self, request: Mapping[str, Any], stages: Sequence[Mapping[str, Any]]) -> None:
        rid, searched = request["request_id"], request["domain"]
        for entry in stages:
            self.stream.extend(
                {
                    "request_id": market_request_id(rid, searched, market),
                    "domain": market,
                    "stage": entry["stage"],
                    "product_id": product_id,
                    "position": position,
                    "score": score,
                }
                for position, (market, product_id, score) in enumerate(
                    zip(entry["domains"], entry["product_ids"], entry["scores"], strict=True),
                    start=1,
                )
            )

    def table(self, name: str) -> pa.Table:
        """The rows of one of :data:`LOG_TABLES` as an Arrow table of the workspace schema."""
        rows: list[dict[str, Any]] = getattr(self, name)
        return pa.Table.from_pylist(rows, schema=TABLES[name])
