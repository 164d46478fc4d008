"""Serving-time features: the training features of (request, candidates) from a log snapshot.

:meth:`ServingFeatures.from_workspace` runs the sample builder's SQL once over the workspace and
keeps, in memory and as per-domain numpy arrays, the *final* counts (everything logged so far)
per product, per (query, product) and per domain, each query's most clicked leaf, the products'
title-token postings, brands, leaves and prices, and every user's behaviours sorted by time.
A request then costs array look-ups: BM25 over the postings of the few query tokens, brand and
category matches per distinct brand / leaf among the candidates, and the derived features from
the very function the training samples use (:func:`~shopsearch.ranking.samples.derive_arrays`),
so training and serving cannot drift: a request served after the logs gets exactly the features
it would get as a logged sample (tested). The position is unknown (0).

:meth:`ServingFeatures.batch` goes straight to the model's tensors with the ids of an encoder
precomputed per product (:meth:`ServingFeatures.bind`) — no pandas per request;
:meth:`ServingFeatures.samples` gives the same features as :class:`Samples` rows (for tests and
tools).
"""

from __future__ import annotations

import math
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import RankingBatch
from shopsearch.ranking.feature_names import DENSE_FEATURES, SPARSE_FEATURES
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.samples import (
    KINDS,
    SampleConfig,
    Samples,
    derive_arrays,
    events_frame,
    prepare_tables,
)
from shopsearch.store.workspace import Workspace

if TYPE_CHECKING:
    from shopsearch.ranking.dense_feature import DenseSimilarity

_SPLIT = re.compile(r"[^a-z0-9]+")
_K1, _B = 1.2, 0.75
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_NO_COUNTS = (0.0, 0.0, 0.0, 0.0)


def tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens, as the sample builder's SQL splits them."""
    return [t for t in _SPLIT.split(text.lower()) if t]


#: One product: id, brand, leaf, top category, price, category median price, brand tokens, last
#: category tokens, title tokens.
_Record = tuple[str, str, str, str, float, float, list[str], list[str], list[str]]


class _Domain:
    """One domain's products as arrays; row ``n`` (the last) is the "unknown product" row."""

    def __init__(self, records: list[_Record], counts: dict[str, tuple[float, ...]]) -> None:
        n = len(records)
        self.pids = [sys.intern(str(r[0])) for r in records]  # see product_key
        self.index = {pid: i for i, pid in enumerate(self.pids)}
        self.price = np.zeros(n + 1)
        self.cat_median = np.full(n + 1, math.nan)
        self.length = np.zeros(n + 1)
        self.counts = np.zeros((n + 1, 4))
        brands: dict[str, int] = {"": 0}
        leaves: dict[str, int] = {"": 0}
        self.brand_tokens: list[frozenset[str]] = [frozenset()]
        self.leaf_tokens: list[frozenset[str]] = [frozenset()]
        self.leaf_tops: list[str] = [""]
        self.brand_code = np.zeros(n + 1, np.int64)
        self.leaf_code = np.zeros(n + 1, np.int64)
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for i, (pid, brand, leaf, top, price, median, btok, ctok, ttok) in enumerate(records):
            self.price[i], self.cat_median[i] = price, median
            self.length[i] = len(ttok)
            self.counts[i] = counts.get(pid, _NO_COUNTS)
            if brand not in brands:
                brands[brand] = len(brands)
                self.brand_tokens.append(frozenset(btok))
            if leaf not in leaves:
                leaves[leaf] = len(leaves)
                self.leaf_tokens.append(frozenset(ctok))
                self.leaf_tops.append(top)
            self.brand_code[i], self.leaf_code[i] = brands[brand], leaves[leaf]
            tf: dict[str, int] = {}
            for t in ttok:
                tf[t] = tf.get(t, 0) + 1
            for t, count in tf.items():
                entry = postings.setdefault(t, ([], []))
                entry[0].append(i)
                entry[1].append(float(count))
        self.brands = np.array(list(brands), dtype=object)
        self.leaves = np.array(list(leaves), dtype=object)
        self.postings = {
            t: (np.asarray(rows, np.int64), np.asarray(tfs, np.float64))
            for t, (rows, tfs) in postings.items()
        }
        self.encoded: tuple[int, dict[str, npt.NDArray[np.int64]]] | None = None

    def rows(self, product_ids: list[str]) -> I64:
        """Row of each product id (``n`` = unknown)."""
        unknown = len(self.pids)
        get = self.index.get
        return np.fromiter((get(p, unknown) for p in product_ids), np.int64, len(product_ids))


class _User:
    """One user's behaviours sorted by time (stable): views into the snapshot's arrays."""

    def __init__(
        self,
        tsu: I64,
        items: npt.NDArray[np.object_],
        leaves: npt.NDArray[np.object_],
        kinds: I64,
        log_price: F64,
    ) -> None:
        self.tsu, self.items, self.leaves, self.kinds, self.log_price = (
            tsu,
            items,
            leaves,
            kinds,
            log_price,
        )


def _users(events: pd.DataFrame) -> dict[str, _User]:
    """Every user's behaviours, sorted by (user, time) once and sliced per user."""
    codes, names = pd.factorize(events["user_id"].astype(str))
    tsu = events["tsu"].to_numpy(np.int64)
    order = np.lexsort((tsu, codes))
    codes, tsu = codes[order], tsu[order]
    items = events["product_id"].to_numpy(object)[order]
    leaves = events["leaf"].to_numpy(object)[order]
    kinds = np.asarray(events["kind"].map(KINDS).to_numpy(np.int64)[order], np.int64)
    log_price = events["log_price"].to_numpy(np.float64)[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else codes
    ends = np.r_[starts[1:], len(codes)]
    return {
        str(names[codes[a]]): _User(tsu[a:b], items[a:b], leaves[a:b], kinds[a:b], log_price[a:b])
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    }


@dataclass
class RequestFeatures:
    """Every feature of one request's candidates (one domain).

    Attributes:
        rows: each candidate's row in the domain table.
        dense: every dense feature column by name (``DENSE_FEATURES``, plus ``dense_sim`` when a
            similarity was given).
        query_leaf: the query's most clicked leaf, else its predicted leaf (``""``: neither).
        seq_items, seq_leaves: object ``[L]`` the user's last behaviours, most recent first.
        seq_kinds: int ``[L]`` their kinds (0 = padding).
        seq_age: float ``[L]`` log1p(hours) before the request.
        long_tail: whether the user is long-tail.
    """

    rows: I64
    dense: dict[str, F64]
    query_leaf: str
    seq_items: npt.NDArray[np.object_]
    seq_leaves: npt.NDArray[np.object_]
    seq_kinds: I64
    seq_age: F64
    long_tail: bool


class ServingFeatures:
    """A snapshot of the logs for computing ranking features at serving time.

    Build with :meth:`from_workspace`.
    """

    def __init__(self, config: SampleConfig) -> None:
        self.config = config
        self.domains: dict[str, _Domain] = {}
        self.idf: dict[str, float] = {}
        self.avgdl = 1.0
        self.query_counts: dict[tuple[str, str], tuple[I64, F64, F64]] = {}
        self.domain_counts: dict[str, tuple[float, float, float, float]] = {}
        self.query_leaf: dict[str, str] = {}
        self.users: dict[str, _User] = {}

    @classmethod
    def from_workspace(
        cls, workspace: Workspace, config: SampleConfig | None = None
    ) -> ServingFeatures:
        """The snapshot of everything the workspace has logged."""
        snap = cls(config or SampleConfig())
        con = workspace.connect()
        prepare_tables(con)
        counts: dict[str, dict[str, tuple[float, ...]]] = {}
        for domain, pid, *vals in con.execute(
            "SELECT domain, product_id, max(imps), max(clks), max(crts), max(buys) "
            "FROM _pcum GROUP BY ALL"
        ).fetchall():
            counts.setdefault(str(domain), {})[str(pid)] = tuple(float(v) for v in vals)
        prods = con.execute(
            "SELECT domain, product_id, brand, leaf, top, coalesce(price, 0.0), cat_median, "
            "btok, ctok, ttok FROM _prod ORDER BY domain, product_id"
        ).fetchall()
        by_domain: dict[str, list[_Record]] = {}
        for domain, pid, brand, leaf, top, price, median, btok, ctok, ttok in prods:
            by_domain.setdefault(str(domain), []).append(
                (
                    str(pid),
                    str(brand or ""),
                    str(leaf or ""),
                    str(top or ""),
                    float(price),
                    math.nan if median is None else float(median),
                    [str(t) for t in btok or ()],
                    [str(t) for t in ctok or ()],
                    [str(t) for t in ttok or ()],
                )
            )
        snap.domains = {d: _Domain(records, counts.get(d, {})) for d, records in by_domain.items()}
        snap.idf = {
            str(t): float(v) for t, v in con.execute("SELECT token, idf FROM _idf").fetchall()
        }
        avg = con.execute("SELECT avg(len(ttok)) FROM _prod").fetchone()
        snap.avgdl = float(avg[0]) if avg and avg[0] else 1.0
        qp = con.execute(
            "SELECT domain, qnorm, product_id, max(imps), max(clks) FROM _qcum GROUP BY ALL "
            "ORDER BY domain, qnorm"
        ).df()
        for (domain, qnorm), part in qp.groupby(["domain", "qnorm"], sort=False):
            table = snap.domains.get(str(domain))
            if table is None:
                continue
            rows = table.rows(part["product_id"].astype(str).tolist())
            order = np.argsort(rows, kind="stable")
            snap.query_counts[(str(domain), str(qnorm))] = (
                rows[order],
                part.iloc[:, 3].to_numpy(np.float64)[order],
                part.iloc[:, 4].to_numpy(np.float64)[order],
            )
        for domain, *vals in con.execute(
            "SELECT domain, max(imps), max(clks), max(crts), max(buys) FROM _gcum GROUP BY ALL"
        ).fetchall():
            snap.domain_counts[str(domain)] = tuple(float(v) for v in vals)  # type: ignore[assignment]
        snap.query_leaf = dict(
            con.execute("SELECT qnorm, arg_max(qleaf, tsu) FROM _qleaf GROUP BY ALL").fetchall()
        )
        snap.users = _users(events_frame(con))
        return snap

    # -- one request ---------------------------------------------------------------------------
    def _table(self, domain: str) -> _Domain:
        table = self.domains.get(domain)
        if table is None:
            table = self.domains[domain] = _Domain([], {})
        return table

    def request(
        self,
        query: str,
        domain: str,
        product_ids: list[str],
        user_id: str | None,
        now_us: int,
        similarity: DenseSimilarity | None = None,
        predicted_leaf: str = "",
        given: Mapping[str, F64] | None = None,
    ) -> RequestFeatures:
        """Every feature of ``product_ids`` (of ``domain``) for a new request at ``now_us``.

        ``predicted_leaf``: the query's category as query understanding predicted it; it stands
        in for the query's most clicked leaf when the log has none (an unseen query).
        ``given``: dense features an earlier pipeline stage computed per product (e.g.
        ``relevance``), one value per product id.
        """
        table = self._table(domain)
        rows = table.rows(product_ids)
        n = len(rows)
        qtok = tokens(query)
        qnorm = " ".join(qtok)
        qset = set(qtok)
        # BM25 and matched terms over the postings of the query's distinct tokens.
        norm = _K1 * (1 - _B + _B * table.length[rows] / self.avgdl)
        bm25 = np.zeros(n)
        matched = np.zeros(n)
        for t in qset:
            posting = table.postings.get(t)
            if posting is None:
                continue
            prow, ptf = posting
            at = np.minimum(np.searchsorted(prow, rows), len(prow) - 1)
            hit = prow[at] == rows
            tf = np.where(hit, ptf[at], 0.0)
            bm25 += np.where(hit, self.idf.get(t, 0.0) * tf * (_K1 + 1) / (tf + norm), 0.0)
            matched += hit
        brand_codes, brand_inv = np.unique(table.brand_code[rows], return_inverse=True)
        brand_ok = np.array(
            [bool(table.brand_tokens[c]) and table.brand_tokens[c] <= qset for c in brand_codes],
            np.float64,
        )
        leaf_codes, leaf_inv = np.unique(table.leaf_code[rows], return_inverse=True)
        cat_ok = np.array([bool(table.leaf_tokens[c] & qset) for c in leaf_codes], np.float64)
        qleaf = str(self.query_leaf.get(qnorm, "") or "") or predicted_leaf
        qtop = qleaf.split(" > ", 1)[0]
        leaf_match = np.array([qleaf != "" and table.leaves[c] == qleaf for c in leaf_codes])
        top_match = np.array([qleaf != "" and table.leaf_tops[c] == qtop for c in leaf_codes])
        qp_imps, qp_clks = np.zeros(n), np.zeros(n)
        qp = self.query_counts.get((domain, qnorm))
        if qp is not None:
            prow, pimps, pclks = qp
            at = np.minimum(np.searchsorted(prow, rows), len(prow) - 1)
            hit = (prow[at] == rows) & (rows < len(table.pids))
            qp_imps, qp_clks = np.where(hit, pimps[at], 0.0), np.where(hit, pclks[at], 0.0)
        counts = table.counts[rows]
        g = self.domain_counts.get(domain, _NO_COUNTS)
        col = {
            "price": table.price[rows],
            "cat_median": table.cat_median[rows],
            "matched": matched,
            "query_terms": np.full(n, float(len(qtok))),
            "imps": counts[:, 0],
            "clks": counts[:, 1],
            "crts": counts[:, 2],
            "buys": counts[:, 3],
            "qp_imps": qp_imps,
            "qp_clks": qp_clks,
            "g_imps": np.full(n, g[0]),
            "g_clks": np.full(n, g[1]),
            "g_crts": np.full(n, g[2]),
            "g_buys": np.full(n, g[3]),
        }
        derived = derive_arrays(
            col, np.full(n, qleaf != ""), leaf_match[leaf_inv.ravel()],
            top_match[leaf_inv.ravel()], self.config.alpha,
        )  # fmt: skip
        dense: dict[str, F64] = {
            "bm25": bm25,
            "query_terms": col["query_terms"],
            "brand_in_query": brand_ok[brand_inv.ravel()],
            "category_in_query": cat_ok[leaf_inv.ravel()],
            **derived,
        }
        seq = self._sequence(user_id, now_us, dense["log_price"], dense)
        if similarity is not None:
            from shopsearch.ranking.feature_names import DENSE_SIM

            dense[DENSE_SIM] = similarity.scores(query, domain, product_ids)
        for name, values in (given or {}).items():
            dense[name] = np.asarray(values, np.float64)
        return RequestFeatures(rows, dense, qleaf, *seq)

    def _sequence(
        self, user_id: str | None, now_us: int, log_price: F64, dense: dict[str, F64]
    ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_], I64, F64, bool]:
        """The user's last behaviours strictly before ``now_us`` (as the sample builder's
        ``_sequences``), and the user features it derives from them, written into ``dense``."""
        length = self.config.seq_len
        items = np.full(length, "", dtype=object)
        leaves = np.full(length, "", dtype=object)
        kinds = np.zeros(length, np.int64)
        age = np.zeros(length)
        user = self.users.get(user_id or "")
        n_hist = 0
        mean = 0.0
        if user is not None:
            end = int(np.searchsorted(user.tsu, now_us, side="left"))
            n_hist = end
            take = np.arange(end - 1, max(end - 1 - length, -1), -1)
            k = len(take)
            items[:k], leaves[:k], kinds[:k] = user.items[take], user.leaves[take], user.kinds[take]
            hours = (now_us - user.tsu[take]) / 3.6e9
            age[:k] = np.log1p(np.maximum(hours, 0.0))
            if k:
                mean = float(user.log_price[take].sum() / k)
        n = len(log_price)
        has = n_hist > 0 and bool(kinds.any())
        dense["user_history"] = np.full(n, math.log1p(n_hist))
        dense["has_user_prices"] = np.full(n, float(has))
        dense["price_rel_user"] = log_price - mean if has else np.zeros(n)
        return items, leaves, kinds, age, n_hist <= self.config.long_tail_max

    # -- encoded for a model -------------------------------------------------------------------
    def bind(self, encoder: FeatureEncoder) -> None:
        """Precompute every product's encoder ids (item, category path, brand, leaf)."""
        for table in self.domains.values():
            self._encoded(table, encoder)

    def _encoded(self, table: _Domain, encoder: FeatureEncoder) -> dict[str, I64]:
        if table.encoded is not None and table.encoded[0] == id(encoder):
            return table.encoded[1]
        pids = np.array([*table.pids, ""], dtype=object)
        leaves = table.leaves[table.leaf_code]
        ids = {
            "item": encoder.ids("items", pids),
            "path": encoder.category_paths(leaves),
            "brand": encoder.ids("brand", table.brands[table.brand_code]),
            "leaf": encoder.ids("leaf", leaves),
        }
        table.encoded = (id(encoder), ids)
        return ids

    def batch(
        self,
        encoder: FeatureEncoder,
        query: str,
        domain: str,
        product_ids: list[str],
        user_id: str | None,
        now_us: int,
        similarity: DenseSimilarity | None = None,
        predicted_leaf: str = "",
        given: Mapping[str, F64] | None = None,
    ) -> tuple[RankingBatch, F64]:
        """The model's tensors for the candidates, and their prices (``predicted_leaf``,
        ``given``: see :meth:`request`).

        Raises:
            InvalidInputError: when the encoder reads ``dense_sim`` and no similarity is given,
                or a feature of the pipeline (``relevance``) that is not given.
        """
        names = encoder.dense_names_
        feats = self.request(
            query, domain, product_ids, user_id, now_us, similarity, predicted_leaf, given
        )
        missing = [name for name in names if name not in feats.dense]
        if missing:
            raise InvalidInputError(
                f"the ranking model reads {missing}, which this engine cannot compute; serve "
                "with a dense retriever or retrain the ranking stage"
            )
        table = self._table(domain)
        ids = self._encoded(table, encoder)
        rows, n = feats.rows, len(feats.rows)
        dense = encoder.standardise(np.stack([feats.dense[name] for name in names], axis=1))
        domain_id = int(encoder.ids("domain", np.array([domain], dtype=object))[0])
        qleaf = np.array([feats.query_leaf], dtype=object)
        sparse = np.empty((n, len(SPARSE_FEATURES)), np.int64)
        sparse[:, 0] = domain_id
        sparse[:, 1] = ids["brand"][rows]
        sparse[:, 2] = ids["leaf"][rows]
        sparse[:, 3] = int(encoder.ids("query_leaf", qleaf)[0])
        seq_items = encoder.ids("items", feats.seq_items)
        seq_items[feats.seq_kinds == 0] = 0
        seq_cats = encoder.ids("categories", feats.seq_leaves)
        zeros = torch.zeros(n, dtype=torch.float32)
        batch = RankingBatch(
            dense=torch.from_numpy(dense),
            sparse=torch.from_numpy(sparse),
            item=torch.from_numpy(ids["item"][rows]),
            item_category=torch.from_numpy(ids["path"][rows]),
            query_category=torch.from_numpy(encoder.category_paths(qleaf)).expand(n, -1),
            domain=torch.full((n,), domain_id, dtype=torch.int64),
            position=torch.zeros(n, dtype=torch.int64),
            seq_items=torch.from_numpy(seq_items).expand(n, -1),
            seq_categories=torch.from_numpy(seq_cats).expand(n, -1),
            seq_kinds=torch.from_numpy(feats.seq_kinds).expand(n, -1),
            seq_age=torch.from_numpy(feats.seq_age.astype(np.float32)).expand(n, -1),
            group=torch.zeros(n, dtype=torch.int64),
            click=zeros,
            cart=zeros,
            purchase=zeros,
            weight=torch.ones(n, dtype=torch.float32),
        )
        return batch, table.price[rows]

    # -- as samples ----------------------------------------------------------------------------
    def samples(
        self,
        query: str,
        domain: str,
        product_ids: list[str],
        user_id: str | None,
        now_us: int,
        similarity: DenseSimilarity | None = None,
    ) -> Samples:
        """Feature rows of ``product_ids`` (of ``domain``) for a new request at ``now_us``."""
        feats = self.request(query, domain, product_ids, user_id, now_us, similarity)
        table = self._table(domain)
        rows, n = feats.rows, len(feats.rows)
        request_id = uuid.uuid4().hex
        frame = pd.DataFrame(
            {
                "request_id": request_id,
                "product_id": list(product_ids),
                "session_id": None,
                "user_id": user_id or f"anonymous-{request_id}",
                "domain": domain,
                "tsu": np.full(n, now_us, np.int64),
                "position": np.zeros(n, np.int64),
                "qnorm": " ".join(tokens(query)),
                "click": 0.0,
                "cart": 0.0,
                "purchase": 0.0,
                "price": table.price[rows],
                "cat_median": table.cat_median[rows],
                "brand": table.brands[table.brand_code[rows]],
                "leaf": table.leaves[table.leaf_code[rows]],
                "top": np.array(table.leaf_tops, dtype=object)[table.leaf_code[rows]],
                "query_leaf": feats.query_leaf,
                "req": np.zeros(n, np.int64),
                "long_tail": feats.long_tail,
                **{name: feats.dense[name] for name in feats.dense if name not in ("price",)},
            }
        )
        extra = tuple(name for name in feats.dense if name not in DENSE_FEATURES)
        return Samples(
            rows=frame,
            seq_items=feats.seq_items[None, :],
            seq_leaves=feats.seq_leaves[None, :],
            seq_kinds=feats.seq_kinds[None, :].astype(np.int8),
            seq_age=feats.seq_age[None, :].astype(np.float32),
            dense_names=(*DENSE_FEATURES, *extra) if extra else None,
        )


__all__ = ["RequestFeatures", "ServingFeatures", "tokens"]
