"""Per-domain counts of a workspace, computed with SQL over its Parquet tables."""

from __future__ import annotations

from shopsearch.events.compaction import compact_event_log
from shopsearch.store.workspace import Workspace

_COUNTS = """
WITH d AS (SELECT domain_id AS domain FROM domains
           UNION SELECT DISTINCT domain FROM products
           UNION SELECT DISTINCT domain FROM requests),
p AS (SELECT domain, count(*) AS n FROM products GROUP BY domain),
r AS (SELECT domain, count(*) AS n, count(DISTINCT user_id) AS users FROM requests GROUP BY domain),
i AS (SELECT r.domain, count(*) AS n FROM impressions i JOIN requests r USING (request_id)
      GROUP BY r.domain),
x AS (SELECT r.domain,
             count(*) FILTER (WHERE x.kind = 'click') AS clicks,
             count(*) FILTER (WHERE x.kind = 'add_to_cart') AS carts,
             count(*) FILTER (WHERE x.kind = 'purchase') AS purchases
      FROM interactions x JOIN requests r USING (request_id) GROUP BY r.domain)
SELECT d.domain, coalesce(p.n, 0), coalesce(r.users, 0), coalesce(r.n, 0), coalesce(i.n, 0),
       coalesce(x.clicks, 0), coalesce(x.carts, 0), coalesce(x.purchases, 0)
FROM d LEFT JOIN p USING (domain) LEFT JOIN r USING (domain) LEFT JOIN i USING (domain)
       LEFT JOIN x USING (domain)
ORDER BY d.domain
"""

STAT_KEYS = ("products", "users", "requests", "impressions", "clicks", "carts", "purchases")


def workspace_stats(workspace: Workspace) -> dict[str, dict[str, dict[str, int]]]:
    """``{"domains": {domain: {"products": n, "users": n, "requests": n, ...}}}``.

    Served searches and events still in the event log are compacted into the tables first.
    """
    compact_event_log(workspace)
    with workspace.connect() as con:
        rows = con.execute(_COUNTS).fetchall()
    return {
        "domains": {
            str(row[0]): {key: int(value) for key, value in zip(STAT_KEYS, row[1:], strict=True)}
            for row in rows
        }
    }
