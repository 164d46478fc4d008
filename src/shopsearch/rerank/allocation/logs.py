"""The allocator's data from a workspace: logged impressions with their outcomes, and which
products are new (created less than ``[allocation] new_days`` days before the first logged
request); and an allocator built from the ``[allocation]`` settings. Shared by ``shopsearch
train --stage allocation`` and ``shopsearch eval stages``."""

from __future__ import annotations

import duckdb
import pandas as pd

from shopsearch.config import AllocationSettings
from shopsearch.errors import InvalidInputError
from shopsearch.rerank.allocation.modrl_ta import MODRLTA

_LOGS = """
with acts as (
    select request_id, product_id,
           bool_or(kind = 'click') as clicked, bool_or(kind = 'purchase') as purchased
    from interactions group by request_id, product_id
), products_new as (
    select domain, product_id, bool_or(created_at >= $since) as new
    from products group by domain, product_id
)
select i.request_id, r.timestamp, r.domain, i.product_id, i.position,
       coalesce(a.clicked, false) as clicked, coalesce(a.purchased, false) as purchased,
       coalesce(p.new, false) as new
from impressions i
join requests r using (request_id)
left join acts a on a.request_id = i.request_id and a.product_id = i.product_id
left join products_new p on p.domain = r.domain and p.product_id = i.product_id
"""


def new_since(con: duckdb.DuckDBPyConnection, new_days: int) -> pd.Timestamp:
    """The creation time from which a product counts as new: ``new_days`` before the first
    logged request.

    Raises:
        InvalidInputError: for a workspace without logged requests.
    """
    first = con.execute("select min(timestamp) from requests").fetchone()
    if first is None or first[0] is None:
        raise InvalidInputError("the workspace has no logged requests; ingest or simulate logs")
    return pd.Timestamp(first[0]) - pd.Timedelta(days=new_days)


def allocation_frames(
    con: duckdb.DuckDBPyConnection, since: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The logged impressions (:data:`~shopsearch.rerank.allocation.modrl_ta.LOG_COLUMNS`) and
    the catalog's ``domain, product_id, new``, products created from ``since`` being new."""
    logs = con.execute(_LOGS, {"since": since.to_pydatetime()}).fetch_df()
    catalog = con.execute(
        "select domain, product_id, bool_or(created_at >= $since) as new from products "
        "group by domain, product_id",
        {"since": since.to_pydatetime()},
    ).fetch_df()
    for frame in (logs, catalog):
        frame["new"] = frame["new"].astype(bool)
    return logs, catalog


def make_model(settings: AllocationSettings, seed: int = 0) -> MODRLTA:
    """An unfitted allocator with the settings' parameters."""
    return MODRLTA(
        gamma=settings.gamma,
        members=settings.members,
        max_shift=settings.max_shift,
        window=settings.window,
        priorities=settings.priorities,
        purchase_tolerance=settings.purchase_tolerance,
        ramp_days=settings.ramp_days,
        seed=seed,
    )


def recent_requests(con: duckdb.DuckDBPyConnection, n: int) -> list[tuple[str, str, str]]:
    """``(query, domain, user_id)`` of the last ``n`` logged requests, oldest first."""
    rows = con.execute(
        "select query, domain, user_id from requests order by timestamp desc limit $n", {"n": n}
    ).fetchall()
    return [(str(q), str(d), str(u)) for q, d, u in reversed(rows)]


__all__ = ["allocation_frames", "make_model", "new_since", "recent_requests"]
