"""Training samples for ranking: one row per logged impression, built with SQL over Parquet.

Each row carries the funnel labels (click, cart, purchase; a cart or purchase implies a click),
the logged position, and features known *before* the request was served:

* text match of the query and the product (BM25 over title tokens, matched-term share, brand in
  query, leaf-category words in query);
* price, log price, price relative to the category's median in its domain and to the user's past
  behaviour prices;
* popularity and smoothed CTR / cart-rate / CVR priors per product and per (query, product),
  computed from events strictly before the request's timestamp (impressions at their request's
  time, clicks / carts / purchases at their own time) with DuckDB ``ASOF`` joins over running
  sums, smoothed towards the domain's running rate: ``(clicks + a * prior) / (impressions + a)``;
* whether the product's leaf category is the query's inferred category (the leaf clicked most
  for the query text before the request);
* the user's last ``seq_len`` behaviours before the request (item, leaf, kind, age) and whether
  the user is long-tail (at most ``long_tail_max`` earlier behaviours).

Nothing here reads the simulator's ground truth. Rows are ordered by request time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import InvalidInputError

if TYPE_CHECKING:
    from shopsearch.ranking.dense_feature import DenseSimilarity

#: A dense feature of (query, product) pairs: ``(queries, domains, product_ids) -> [n]``.
PairFeature = Callable[
    [npt.NDArray[np.object_], npt.NDArray[np.object_], npt.NDArray[np.object_]],
    npt.NDArray[np.float64],
]

#: Behaviour kinds in the sequence (0 is padding).
KINDS: dict[str, int] = {"click": 1, "add_to_cart": 2, "purchase": 3}

_TOKENS = "list_filter(regexp_split_to_array(lower({x}), '[^a-z0-9]+'), lambda t: t <> '')"
_K1, _B = 1.2, 0.75


@dataclass(frozen=True)
class SampleConfig:
    """How samples are built.

    Attributes:
        seq_len: behaviours kept in the user sequence (most recent first).
        alpha: pseudo-impressions of the Bayesian smoothing of every rate prior.
        long_tail_max: a user with at most this many earlier behaviours is long-tail.
    """

    seq_len: int = 20
    alpha: float = 20.0
    long_tail_max: int = 2


@dataclass
class Samples:
    """Impression rows plus the behaviour sequence of each row's request.

    Attributes:
        rows: one row per impression (ids, labels, position, raw features, ``req`` = index
            into the per-request arrays, ``long_tail``).
        seq_items: object ``[n_requests, L]`` product ids of the user's last behaviours
            (``""`` = padding), most recent first.
        seq_leaves: object ``[n_requests, L]`` their leaf category paths (``" > "``-joined).
        seq_kinds: int8 ``[n_requests, L]`` behaviour kinds (0 = padding).
        seq_age: float32 ``[n_requests, L]`` log1p(hours) before the request.
        dense_names: the numeric feature columns a model should read, when they differ from the
            workspace default (:data:`~shopsearch.ranking.feature_names.DENSE_FEATURES`), e.g. a
            suite's extra columns; ``None`` = the default.
    """

    rows: pd.DataFrame
    seq_items: npt.NDArray[np.object_]
    seq_leaves: npt.NDArray[np.object_]
    seq_kinds: npt.NDArray[np.int8]
    seq_age: npt.NDArray[np.float32]
    dense_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, mask: npt.NDArray[np.bool_]) -> Samples:
        """The samples of the rows where ``mask`` holds (sequences are shared, not copied)."""
        return replace(self, rows=self.rows.loc[mask].reset_index(drop=True))

    @property
    def n_requests(self) -> int:
        """Distinct requests among the rows."""
        return int(self.rows["request_id"].nunique())


def split_by_time(samples: Samples, test_fraction: float) -> tuple[Samples, Samples]:
    """Split by request time: the last ``test_fraction`` of requests are the test part.

    Never splits a request's impressions (rows are grouped by request).

    Raises:
        InvalidInputError: for a fraction outside (0, 1) or too few requests to split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInputError(f"test_fraction={test_fraction} is not allowed; use 0 < f < 1")
    firsts = (
        samples.rows.groupby("request_id", sort=False)["tsu"].first().sort_values(kind="stable")
    )
    n_test = round(len(firsts) * test_fraction)
    if n_test < 1 or n_test >= len(firsts):
        raise InvalidInputError(
            f"{len(firsts)} requests cannot be split with test_fraction={test_fraction}; "
            "log more requests or change the fraction"
        )
    test_ids = firsts.index[len(firsts) - n_test :]
    is_test = samples.rows["request_id"].isin(test_ids).to_numpy()
    return samples.subset(~is_test), samples.subset(is_test)


def build_samples(
    con: duckdb.DuckDBPyConnection,
    config: SampleConfig | None = None,
    similarity: DenseSimilarity | None = None,
    pair_features: Mapping[str, PairFeature] | None = None,
) -> Samples:
    """Samples from a connection with views ``requests``, ``impressions``, ``interactions``,
    ``products`` (e.g. :meth:`~shopsearch.store.workspace.Workspace.connect`).

    Args:
        con: the connection.
        config: how samples are built.
        similarity: when given, rows also get ``dense_sim`` (the cosine of the logged query and
            the product under the dense encoder) and the samples' ``dense_names`` include it.
        pair_features: further dense features of (logged query, product) pairs by name (e.g.
            ``relevance``: the relevance student's score), each computed by its function from
            the rows' queries, domains and product ids; ``dense_names`` include them.

    Raises:
        InvalidInputError: when there are no impressions.
    """
    cfg = config or SampleConfig()
    prepare_tables(con)
    raw = con.execute(_RAW_SQL).df()
    if raw.empty:
        raise InvalidInputError("the workspace logs no impressions; simulate or ingest events")
    samples = attach_sequences(derive_features(raw, cfg.alpha), events_frame(con), cfg)
    if similarity is None and not pair_features:
        return samples
    from shopsearch.ranking.feature_names import DENSE_FEATURES, DENSE_SIM

    queries = dict(con.execute("SELECT request_id, query FROM requests").fetchall())
    rows = samples.rows
    logged = rows["request_id"].map(queries).fillna("").to_numpy(object)
    domains = rows["domain"].to_numpy(object)
    product_ids = rows["product_id"].to_numpy(object)
    names: list[str] = []
    if similarity is not None:
        rows[DENSE_SIM] = similarity.scores_many(logged, domains, product_ids)
        names.append(DENSE_SIM)
    for name, feature in (pair_features or {}).items():
        rows[name] = np.asarray(feature(logged, domains, product_ids), np.float64)
        names.append(name)
    return replace(samples, dense_names=(*DENSE_FEATURES, *names))


def attach_sequences(rows: pd.DataFrame, events: pd.DataFrame, cfg: SampleConfig) -> Samples:
    """Samples of feature ``rows`` with each request's user sequence from ``events``.

    Adds ``req``, ``user_history``, ``long_tail``, ``has_user_prices``, ``price_rel_user``.
    """
    requests = rows.groupby("request_id", sort=False).head(1)[["request_id", "user_id", "tsu"]]
    rows["req"] = pd.Index(requests["request_id"]).get_indexer(rows["request_id"])
    seq = _sequences(events, requests, cfg.seq_len)
    req = rows["req"].to_numpy()
    n_hist = seq.pop("n_hist")[req]
    rows["user_history"] = np.log1p(n_hist)
    rows["long_tail"] = n_hist <= cfg.long_tail_max
    log_prices = seq.pop("seq_log_price")
    valid = seq["seq_kinds"] > 0
    counts = valid.sum(axis=1)
    user_mean = np.where(counts > 0, (log_prices * valid).sum(axis=1) / np.maximum(counts, 1), 0.0)
    has = counts[req] > 0
    rows["has_user_prices"] = has.astype(np.float64)
    rows["price_rel_user"] = np.where(has, rows["log_price"].to_numpy() - user_mean[req], 0.0)
    return Samples(
        rows=rows,
        seq_items=seq["seq_items"],
        seq_leaves=seq["seq_leaves"],
        seq_kinds=seq["seq_kinds"].astype(np.int8),
        seq_age=seq["seq_age"].astype(np.float32),
    )


def prepare_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Temp tables of tokens, labels, running counts and the query-leaf timeline."""
    _prepare(con)
    _query_leaf_table(con)


def events_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Behaviours (user, time, product, kind, leaf, log price) after :func:`prepare_tables`."""
    frame: pd.DataFrame = con.execute(
        """
        SELECT i.user_id, epoch_us(i.timestamp) AS tsu, i.product_id, i.kind,
               coalesce(p.leaf, '') AS leaf, ln(1 + coalesce(p.price, 0.0)) AS log_price
        FROM interactions i JOIN _req r USING (request_id)
        LEFT JOIN _prod p ON p.domain = r.domain AND p.product_id = i.product_id
        WHERE i.kind IN ('click', 'add_to_cart', 'purchase')
        """
    ).df()
    return frame


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    qtok = _TOKENS.format(x="query")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _req AS
        SELECT request_id, session_id, user_id, domain, {qtok} AS qtok,
               array_to_string({qtok}, ' ') AS qnorm, timestamp AS ts
        FROM requests;
        CREATE OR REPLACE TEMP TABLE _prod AS
        SELECT domain, product_id, brand, price,
               array_to_string(category, ' > ') AS leaf, category[1] AS top,
               {_TOKENS.format(x="title")} AS ttok, {_TOKENS.format(x="brand")} AS btok,
               {_TOKENS.format(x="category[len(category)]")} AS ctok,
               median(price) OVER (PARTITION BY domain, array_to_string(category, ' > '))
                   AS cat_median
        FROM products;
        CREATE OR REPLACE TEMP TABLE _imp AS
        SELECT i.request_id, i.product_id, i.position, coalesce(i.price, p.price) AS price,
               r.session_id, r.user_id, r.domain, r.qtok, r.qnorm, r.ts
        FROM impressions i JOIN _req r USING (request_id)
        LEFT JOIN _prod p ON p.domain = r.domain AND p.product_id = i.product_id;
        CREATE OR REPLACE TEMP TABLE _lab AS
        SELECT request_id, product_id, min(timestamp) AS click_ts,
               min(timestamp) FILTER (WHERE kind IN ('add_to_cart', 'purchase')) AS cart_ts,
               min(timestamp) FILTER (WHERE kind = 'purchase') AS buy_ts
        FROM interactions WHERE kind IN ('click', 'add_to_cart', 'purchase') GROUP BY ALL;
        CREATE OR REPLACE TEMP TABLE _ev AS
        SELECT domain, product_id, qnorm, ts, 1 AS imp, 0 AS clk, 0 AS crt, 0 AS buy FROM _imp
        UNION ALL SELECT r.domain, l.product_id, r.qnorm, l.click_ts, 0, 1, 0, 0
            FROM _lab l JOIN _req r USING (request_id)
        UNION ALL SELECT r.domain, l.product_id, r.qnorm, l.cart_ts, 0, 0, 1, 0
            FROM _lab l JOIN _req r USING (request_id) WHERE l.cart_ts IS NOT NULL
        UNION ALL SELECT r.domain, l.product_id, r.qnorm, l.buy_ts, 0, 0, 0, 1
            FROM _lab l JOIN _req r USING (request_id) WHERE l.buy_ts IS NOT NULL;
        """
    )
    for name, keys in (
        ("_gcum", "domain"),
        ("_pcum", "domain, product_id"),
        ("_qcum", "domain, qnorm, product_id"),
    ):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {name} AS
            SELECT {keys}, ts,
                   sum(imp) OVER w AS imps, sum(clk) OVER w AS clks,
                   sum(crt) OVER w AS crts, sum(buy) OVER w AS buys
            FROM (SELECT {keys}, ts, sum(imp) AS imp, sum(clk) AS clk, sum(crt) AS crt,
                         sum(buy) AS buy FROM _ev GROUP BY ALL)
            WINDOW w AS (PARTITION BY {keys} ORDER BY ts ROWS UNBOUNDED PRECEDING)
            """
        )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _ptok AS
        SELECT domain, product_id, token, count(*) AS tf, any_value(dl) AS dl
        FROM (SELECT domain, product_id, len(ttok) AS dl, unnest(ttok) AS token FROM _prod)
        GROUP BY ALL;
        CREATE OR REPLACE TEMP TABLE _idf AS
        SELECT token, ln(1 + (n - df + 0.5) / (df + 0.5)) AS idf
        FROM (SELECT token, count(*) AS df FROM _ptok GROUP BY token),
             (SELECT count(*) AS n FROM _prod);
        CREATE OR REPLACE TEMP TABLE _bm25 AS
        SELECT i.request_id, i.product_id,
               sum(d.idf * p.tf * {_K1 + 1} / (p.tf + {_K1} * (1 - {_B} + {_B} * p.dl / a.avgdl)))
                   AS bm25,
               count(*) AS matched
        FROM (SELECT DISTINCT request_id, product_id, domain, unnest(qtok) AS token FROM _imp) i
        JOIN _ptok p ON p.domain = i.domain AND p.product_id = i.product_id
                    AND p.token = i.token
        JOIN _idf d ON d.token = i.token,
        (SELECT avg(len(ttok)) AS avgdl FROM _prod) a
        GROUP BY ALL;
        """
    )


def _query_leaf_table(con: duckdb.DuckDBPyConnection) -> None:
    """``_qleaf(qnorm, tsu, qleaf)``: the query's most clicked leaf after each click, in time."""
    clicks = con.execute(
        """
        SELECT r.qnorm, epoch_us(l.click_ts) AS tsu, p.leaf
        FROM _lab l JOIN _req r USING (request_id)
        JOIN _prod p ON p.domain = r.domain AND p.product_id = l.product_id
        ORDER BY l.click_ts
        """
    ).fetchall()
    counts: dict[str, dict[str, int]] = {}
    best: dict[str, str] = {}
    out_q, out_ts, out_leaf = [], [], []
    for qnorm, ts, leaf in clicks:
        per = counts.setdefault(qnorm, {})
        per[leaf] = per.get(leaf, 0) + 1
        top = best.get(qnorm)
        if top is None or per[leaf] > per[top]:
            best[qnorm] = leaf
        out_q.append(qnorm)
        out_ts.append(ts)
        out_leaf.append(best[qnorm])
    frame = pd.DataFrame(
        {
            "qnorm": pd.Series(out_q, dtype=object),
            "tsu": pd.Series(out_ts, dtype=np.int64),
            "qleaf": pd.Series(out_leaf, dtype=object),
        }
    )
    con.register("_qleaf_frame", frame)
    con.execute("CREATE OR REPLACE TEMP TABLE _qleaf AS SELECT * FROM _qleaf_frame")
    con.unregister("_qleaf_frame")


_RAW_SQL = """
SELECT s.request_id, s.session_id, s.user_id, s.domain, s.product_id,
       epoch_us(s.ts) AS tsu, s.position, s.qnorm,
       (l.click_ts IS NOT NULL)::DOUBLE AS click,
       (l.cart_ts IS NOT NULL)::DOUBLE AS cart,
       (l.buy_ts IS NOT NULL)::DOUBLE AS purchase,
       coalesce(s.price, 0.0) AS price, p.cat_median,
       coalesce(p.brand, '') AS brand, coalesce(p.leaf, '') AS leaf, coalesce(p.top, '') AS top,
       coalesce(q.qleaf, '') AS query_leaf,
       coalesce(b.bm25, 0.0) AS bm25, coalesce(b.matched, 0)::DOUBLE AS matched,
       len(s.qtok)::DOUBLE AS query_terms,
       coalesce(len(p.btok) > 0 AND list_has_all(s.qtok, p.btok), false)::DOUBLE
           AS brand_in_query,
       coalesce(len(p.ctok) > 0 AND list_has_any(s.qtok, p.ctok), false)::DOUBLE
           AS category_in_query,
       coalesce(c.imps, 0)::DOUBLE AS imps, coalesce(c.clks, 0)::DOUBLE AS clks,
       coalesce(c.crts, 0)::DOUBLE AS crts, coalesce(c.buys, 0)::DOUBLE AS buys,
       coalesce(qp.imps, 0)::DOUBLE AS qp_imps, coalesce(qp.clks, 0)::DOUBLE AS qp_clks,
       coalesce(g.imps, 0)::DOUBLE AS g_imps, coalesce(g.clks, 0)::DOUBLE AS g_clks,
       coalesce(g.crts, 0)::DOUBLE AS g_crts, coalesce(g.buys, 0)::DOUBLE AS g_buys
FROM _imp s
LEFT JOIN _prod p ON p.domain = s.domain AND p.product_id = s.product_id
LEFT JOIN _lab l ON l.request_id = s.request_id AND l.product_id = s.product_id
LEFT JOIN _bm25 b ON b.request_id = s.request_id AND b.product_id = s.product_id
ASOF LEFT JOIN _gcum g ON g.domain = s.domain AND s.ts > g.ts
ASOF LEFT JOIN _pcum c ON c.domain = s.domain AND c.product_id = s.product_id AND s.ts > c.ts
ASOF LEFT JOIN _qcum qp ON qp.domain = s.domain AND qp.qnorm = s.qnorm
                       AND qp.product_id = s.product_id AND s.ts > qp.ts
ASOF LEFT JOIN _qleaf q ON q.qnorm = s.qnorm AND epoch_us(s.ts) > q.tsu
ORDER BY tsu, s.request_id, s.position
"""

#: Raw count / match columns that :func:`derive_features` turns into features.
RAW_COLUMNS: tuple[str, ...] = (
    "price",
    "cat_median",
    "brand",
    "leaf",
    "top",
    "query_leaf",
    "bm25",
    "matched",
    "query_terms",
    "brand_in_query",
    "category_in_query",
    "imps",
    "clks",
    "crts",
    "buys",
    "qp_imps",
    "qp_clks",
    "g_imps",
    "g_clks",
    "g_crts",
    "g_buys",
)


_COUNTS = (
    "price",
    "cat_median",
    "matched",
    "query_terms",
    "imps",
    "clks",
    "crts",
    "buys",
    "qp_imps",
    "qp_clks",
    "g_imps",
    "g_clks",
    "g_crts",
    "g_buys",
)


def derive_features(raw: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Features from raw counts and matches (one formula for training and serving).

    Rate priors are smoothed towards the domain's running rate (itself smoothed towards fixed
    small rates): ``ctr = (clicks + alpha * domain_ctr) / (impressions + alpha)``; the
    (query, product) CTR is smoothed towards the product's.
    """
    col = {name: raw[name].to_numpy(np.float64) for name in _COUNTS}
    query_leaf = raw["query_leaf"].to_numpy(object).astype(str)
    query_top = np.array([q.split(" > ", 1)[0] for q in query_leaf], dtype=str)
    leaf_match = (query_leaf != "") & (query_leaf == raw["leaf"].to_numpy(object).astype(str))
    top_match = (query_leaf != "") & (query_top == raw["top"].to_numpy(object).astype(str))
    derived = derive_arrays(col, query_leaf != "", leaf_match, top_match, alpha)
    out = pd.concat([raw, pd.DataFrame(derived, index=raw.index)], axis=1)
    return out


def derive_arrays(
    col: Mapping[str, npt.NDArray[np.float64]],
    has_leaf: npt.NDArray[np.bool_],
    leaf_match: npt.NDArray[np.bool_],
    top_match: npt.NDArray[np.bool_],
    alpha: float,
) -> dict[str, npt.NDArray[np.float64]]:
    """:func:`derive_features` on arrays: ``col`` holds the numeric raw columns (``_COUNTS``);
    the category matches of the query's leaf are given (serving computes them per request)."""
    price, median = col["price"], col["cat_median"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.log((1.0 + price) / (1.0 + median))
    gctr = (col["g_clks"] + 1.0) / (col["g_imps"] + 25.0)
    gcart = (col["g_crts"] + 1.0) / (col["g_clks"] + 10.0)
    gcvr = (col["g_buys"] + 1.0) / (col["g_clks"] + 50.0)
    ctr = (col["clks"] + alpha * gctr) / (col["imps"] + alpha)
    derived = {
        "log_price": np.log1p(np.maximum(price, 0.0)),
        "price_rel_category": np.where(np.isfinite(rel), rel, 0.0),
        "matched_share": col["matched"] / np.maximum(col["query_terms"], 1.0),
        "has_query_leaf": has_leaf.astype(np.float64),
        "leaf_match": leaf_match.astype(np.float64),
        "top_match": top_match.astype(np.float64),
        "log_impressions": np.log1p(col["imps"]),
        "log_clicks": np.log1p(col["clks"]),
        "log_purchases": np.log1p(col["buys"]),
        "ctr_prior": ctr,
        "cart_prior": (col["crts"] + alpha * gcart) / (col["clks"] + alpha),
        "cvr_prior": (col["buys"] + alpha * gcvr) / (col["clks"] + alpha),
        "qp_log_impressions": np.log1p(col["qp_imps"]),
        "qp_log_clicks": np.log1p(col["qp_clks"]),
        "qp_ctr_prior": (col["qp_clks"] + alpha * ctr) / (col["qp_imps"] + alpha),
    }
    return derived


def _sequences(events: pd.DataFrame, requests: pd.DataFrame, seq_len: int) -> dict[str, Any]:
    """Each request's user's last ``seq_len`` behaviours strictly before the request."""
    users = pd.Index(pd.concat([events["user_id"], requests["user_id"]]).unique())
    ev_user = users.get_indexer(events["user_id"])
    ev_ts = events["tsu"].to_numpy(dtype=np.int64)
    order = np.lexsort((ev_ts, ev_user))
    ev_user, ev_ts = ev_user[order], ev_ts[order]
    rq_user = users.get_indexer(requests["user_id"])
    rq_ts = requests["tsu"].to_numpy(dtype=np.int64)
    # Events of a user strictly before the request: merge requests into the sorted events,
    # a request sorting before events of the same user and time.
    n_ev = len(ev_user)
    all_user = np.concatenate([ev_user, rq_user])
    all_ts = np.concatenate([ev_ts, rq_ts])
    tag = np.concatenate([np.ones(n_ev, np.int8), np.zeros(len(rq_user), np.int8)])
    merged = np.lexsort((tag, all_ts, all_user))
    events_before = np.cumsum(tag[merged]) - tag[merged]
    end = np.empty(len(rq_user), np.int64)
    is_req = merged >= n_ev
    end[merged[is_req] - n_ev] = events_before[is_req]
    start = np.searchsorted(ev_user, rq_user, side="left")
    n_hist = (end - start).astype(np.int64)
    idx = end[:, None] - 1 - np.arange(seq_len)[None, :]
    valid = idx >= start[:, None]
    safe = np.where(valid, idx, 0)
    items = events["product_id"].to_numpy(dtype=object)[order]
    leaves = events["leaf"].to_numpy(dtype=object)[order]
    kinds = events["kind"].map(KINDS).to_numpy(dtype=np.int64)[order]
    log_price = events["log_price"].to_numpy(dtype=np.float64)[order]
    if n_ev == 0:
        shape = (len(rq_user), seq_len)
        return {
            "seq_items": np.full(shape, "", dtype=object),
            "seq_leaves": np.full(shape, "", dtype=object),
            "seq_kinds": np.zeros(shape, np.int64),
            "seq_age": np.zeros(shape, np.float64),
            "seq_log_price": np.zeros(shape, np.float64),
            "n_hist": n_hist,
        }
    hours = (rq_ts[:, None] - ev_ts[safe]) / 3.6e9
    return {
        "seq_items": np.where(valid, items[safe], ""),
        "seq_leaves": np.where(valid, leaves[safe], ""),
        "seq_kinds": np.where(valid, kinds[safe], 0),
        "seq_age": np.where(valid, np.log1p(np.maximum(hours, 0.0)), 0.0),
        "seq_log_price": np.where(valid, log_price[safe], 0.0),
        "n_hist": n_hist,
    }


__all__ = [
    "KINDS",
    "RAW_COLUMNS",
    "PairFeature",
    "SampleConfig",
    "Samples",
    "attach_sequences",
    "build_samples",
    "derive_arrays",
    "derive_features",
    "events_frame",
    "prepare_tables",
    "split_by_time",
]
