"""GenRec's training data from the search log: pages (one per request) with the user's history.

A **page** is one logged request with at least one interaction: its query, market, user and
time, and the products the user interacted with on it, ordered by how far they went (purchase
> add to cart > click) and then by their position on the page. The **history** of a request is
what production knows when the request arrives: the products its user interacted with (click
or better) in requests logged *strictly before* it, most recent first (within one request:
the page order), each product once (its most recent interaction), at most ``history_size``.
Nothing later than the request is read, so a test request's history is made of earlier logged
requests only (:class:`UserHistories` answers any ``(user, time)``).

The tables are the workspace's (``requests``, ``impressions``, ``interactions``), passed as
arrow tables so this module needs no workspace.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.mmse_samples import furthest_stages

#: Most history items per request (GenRec's ``H``).
HISTORY_SIZE = 20
#: Interactions below this stage (a click) are not interactions of a page or a history.
CLICK_STAGE = 2.0
#: Position of an interacted product the impressions do not list (after every listed one).
_UNLISTED = 1 << 30


def timestamps_us(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.int64]:
    """Microseconds since the epoch of a timestamp (or already integer) column.

    Raises:
        InvalidInputError: a column of another type.
    """
    kind = column.type
    if pa.types.is_timestamp(kind):
        column = pc.cast(column, pa.timestamp("us", tz=kind.tz))
        return np.asarray(pc.cast(column, pa.int64()).to_numpy(), np.int64)
    if pa.types.is_integer(kind):
        return np.asarray(column.to_numpy(), np.int64)
    raise InvalidInputError(f"timestamps must be a timestamp or integer column, not {kind}")


def _columns(table: pa.Table, name: str, needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise InvalidInputError(f"the {name} table lacks column(s) {', '.join(missing)}")


def _interacted(
    impressions: pa.Table, interactions: pa.Table
) -> dict[str, list[tuple[str, float]]]:
    """Request id → its interacted products (stage >= click) in page order."""
    _columns(impressions, "impressions", ("request_id", "product_id", "position"))
    _columns(interactions, "interactions", ("request_id", "product_id", "kind"))
    reached = {k: v for k, v in furthest_stages(interactions).items() if v >= CLICK_STAGE}
    if not reached:
        return {}
    keys = pa.table(
        {
            "request_id": pa.array([k[0] for k in reached], pa.string()),
            "product_id": pa.array([k[1] for k in reached], pa.string()),
        }
    )
    shown = impressions.select(["request_id", "product_id", "position"])
    shown = shown.cast(
        pa.schema(
            [("request_id", pa.string()), ("product_id", pa.string()), ("position", pa.int64())]
        )
    )
    joined = keys.join(shown, ["request_id", "product_id"], join_type="left outer")
    position: dict[tuple[str, str], int] = {}
    for rid, pid, pos in zip(
        joined.column("request_id").to_pylist(),
        joined.column("product_id").to_pylist(),
        joined.column("position").to_pylist(),
        strict=True,
    ):
        value = _UNLISTED if pos is None else int(pos)
        position[(rid, pid)] = min(position.get((rid, pid), _UNLISTED), value)
    pages: dict[str, list[tuple[str, float]]] = {}
    for (rid, pid), stage in reached.items():
        pages.setdefault(rid, []).append((pid, stage))
    for rid, items in pages.items():
        items.sort(key=lambda item: (-item[1], position[(rid, item[0])], item[0]))
    return pages


@dataclass(frozen=True)
class _Request:
    request_id: str
    user: str
    domain: str
    query: str
    timestamp: int


def _requests(requests: pa.Table) -> list[_Request]:
    _columns(requests, "requests", ("request_id", "user_id", "domain", "query", "timestamp"))
    times = timestamps_us(requests.column("timestamp"))
    return [
        _Request(rid, user, domain, query, int(ts))
        for rid, user, domain, query, ts in zip(
            requests.column("request_id").to_pylist(),
            requests.column("user_id").to_pylist(),
            requests.column("domain").to_pylist(),
            requests.column("query").to_pylist(),
            times.tolist(),
            strict=True,
        )
    ]


class UserHistories:
    """Per user, the interacted products of their logged requests in time order.

    Args:
        requests: logged requests (``request_id``, ``user_id``, ``domain``, ``query``,
            ``timestamp``); the history is built from these only.
        impressions: shown products (``request_id``, ``product_id``, ``position``).
        interactions: events (``request_id``, ``product_id``, ``kind``).

    Raises:
        InvalidInputError: a table without the columns named.
    """

    def __init__(self, requests: pa.Table, impressions: pa.Table, interactions: pa.Table) -> None:
        self.requests = _requests(requests)
        self.interacted = _interacted(impressions, interactions)
        events: dict[str, list[tuple[int, str, str]]] = {}
        for request in self.requests:
            if request.request_id in self.interacted:
                events.setdefault(request.user, []).append(
                    (request.timestamp, request.request_id, request.domain)
                )
        self._times: dict[str, list[int]] = {}
        self._items: dict[str, list[list[tuple[ProductKey, float]]]] = {}
        for user, rows in events.items():
            rows.sort()
            self._times[user] = [t for t, _, _ in rows]
            self._items[user] = [
                [((domain, pid), stage) for pid, stage in self.interacted[rid]]
                for _, rid, domain in rows
            ]

    def before(
        self, user: str, timestamp: int, size: int = HISTORY_SIZE
    ) -> tuple[tuple[ProductKey, ...], tuple[float, ...]]:
        """The user's products interacted with strictly before ``timestamp`` (microseconds),
        most recent first, each once, at most ``size``; and each one's stage."""
        times = self._times.get(user)
        if not times or size < 1:
            return (), ()
        keys: list[ProductKey] = []
        stages: list[float] = []
        seen: set[ProductKey] = set()
        for at in range(bisect.bisect_left(times, timestamp) - 1, -1, -1):
            for key, stage in self._items[user][at]:
                if key not in seen:
                    seen.add(key)
                    keys.append(key)
                    stages.append(stage)
                    if len(keys) == size:
                        return tuple(keys), tuple(stages)
        return tuple(keys), tuple(stages)


@dataclass(frozen=True)
class Page:
    """One logged request with its interactions and its user's history.

    Attributes:
        request_id: the logged request.
        query: its query text.
        domain: its market.
        user: its user.
        timestamp: its time, microseconds since the epoch.
        items: the interacted products, purchase > cart > click, then by position.
        stages: each item's stage (click 2, add to cart 2.5, purchase 3).
        history: the user's earlier interacted products, most recent first.
        history_stages: each history product's stage.
    """

    request_id: str
    query: str
    domain: str
    user: str
    timestamp: int
    items: tuple[ProductKey, ...]
    stages: tuple[float, ...]
    history: tuple[ProductKey, ...]
    history_stages: tuple[float, ...]


@dataclass(frozen=True)
class PageSamples:
    """GenRec's pages (see the module docstring).

    Attributes:
        pages: one per request with an interaction, in time order.
        histories: the user histories they were built from (to give later requests theirs).
    """

    pages: list[Page]
    histories: UserHistories

    @classmethod
    def from_events(
        cls,
        requests: pa.Table,
        impressions: pa.Table,
        interactions: pa.Table,
        request_ids: Sequence[str] | None = None,
        history_size: int = HISTORY_SIZE,
    ) -> PageSamples:
        """The pages of ``request_ids`` (default: every request) that have an interaction.

        Histories come from every request of ``requests`` logged strictly before the page;
        pass only the requests a model may know about (e.g. the training ones, when building
        training pages, so no later request leaks in).

        Raises:
            InvalidInputError: a table without the needed columns, or ``history_size < 0``.
        """
        if history_size < 0:
            raise InvalidInputError(f"history_size={history_size} must be >= 0")
        histories = UserHistories(requests, impressions, interactions)
        wanted = None if request_ids is None else set(request_ids)
        pages = []
        for request in sorted(histories.requests, key=lambda r: (r.timestamp, r.request_id)):
            items = histories.interacted.get(request.request_id)
            if not items or (wanted is not None and request.request_id not in wanted):
                continue
            history, stages = histories.before(request.user, request.timestamp, history_size)
            pages.append(
                Page(
                    request.request_id,
                    request.query,
                    request.domain,
                    request.user,
                    request.timestamp,
                    tuple((request.domain, pid) for pid, _ in items),
                    tuple(stage for _, stage in items),
                    history,
                    stages,
                )
            )
        return cls(pages, histories)


__all__ = ["CLICK_STAGE", "HISTORY_SIZE", "Page", "PageSamples", "UserHistories", "timestamps_us"]
