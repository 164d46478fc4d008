"""Serving-time features: the training features of (request, candidates) from a log snapshot.

:meth:`ServingFeatures.from_workspace` runs the sample builder's SQL once over the workspace and
keeps, in memory, the *final* counts (everything logged so far) per product, per (query,
product) and per domain, each query's most clicked leaf, the products' tokens and prices, and
every user's behaviours. :meth:`ServingFeatures.samples` then computes the same raw columns for a
new request in Python and derives features with the very function the training samples use
(:func:`~shopsearch.ranking.samples.derive_features`), so training and serving cannot drift: a
request served after the logs gets exactly the features it would get as a logged sample
(tested). The position is unknown (0).
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shopsearch.ranking.samples import (
    SampleConfig,
    Samples,
    attach_sequences,
    derive_features,
    events_frame,
    prepare_tables,
)
from shopsearch.store.workspace import Workspace

_SPLIT = re.compile(r"[^a-z0-9]+")
_K1, _B = 1.2, 0.75


def tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens, as the sample builder's SQL splits them."""
    return [t for t in _SPLIT.split(text.lower()) if t]


@dataclass
class _Product:
    brand: str
    leaf: str
    top: str
    price: float
    cat_median: float
    btok: list[str]
    ctok: list[str]
    tf: dict[str, int]
    length: int


class ServingFeatures:
    """A snapshot of the logs for computing ranking features at serving time.

    Build with :meth:`from_workspace`.
    """

    def __init__(self, config: SampleConfig) -> None:
        self.config = config
        self.products: dict[tuple[str, str], _Product] = {}
        self.idf: dict[str, float] = {}
        self.avgdl = 1.0
        self.counts: dict[tuple[str, str], tuple[float, float, float, float]] = {}
        self.query_counts: dict[tuple[str, str, str], tuple[float, float]] = {}
        self.domain_counts: dict[str, tuple[float, float, float, float]] = {}
        self.query_leaf: dict[str, str] = {}
        self.user_events: dict[str, pd.DataFrame] = {}
        self._no_events = pd.DataFrame(
            {
                "user_id": pd.Series(dtype=object),
                "tsu": pd.Series(dtype=np.int64),
                "product_id": pd.Series(dtype=object),
                "kind": pd.Series(dtype=object),
                "leaf": pd.Series(dtype=object),
                "log_price": pd.Series(dtype=np.float64),
            }
        )

    @classmethod
    def from_workspace(
        cls, workspace: Workspace, config: SampleConfig | None = None
    ) -> ServingFeatures:
        """The snapshot of everything the workspace has logged."""
        snap = cls(config or SampleConfig())
        con = workspace.connect()
        prepare_tables(con)
        prods = con.execute(
            "SELECT domain, product_id, brand, leaf, top, coalesce(price, 0.0), cat_median, "
            "btok, ctok, ttok FROM _prod"
        ).fetchall()
        for domain, pid, brand, leaf, top, price, median, btok, ctok, ttok in prods:
            tf: dict[str, int] = {}
            for t in ttok:
                tf[t] = tf.get(t, 0) + 1
            snap.products[(domain, pid)] = _Product(
                brand,
                leaf,
                top,
                float(price),
                float(median) if median is not None else math.nan,
                list(btok),
                list(ctok),
                tf,
                len(ttok),
            )
        snap.idf = dict(con.execute("SELECT token, idf FROM _idf").fetchall())
        avg = con.execute("SELECT avg(len(ttok)) FROM _prod").fetchone()
        snap.avgdl = float(avg[0]) if avg and avg[0] else 1.0
        for domain, pid, *vals in con.execute(
            "SELECT domain, product_id, max(imps), max(clks), max(crts), max(buys) "
            "FROM _pcum GROUP BY ALL"
        ).fetchall():
            snap.counts[(domain, pid)] = tuple(float(v) for v in vals)  # type: ignore[assignment]
        for domain, qnorm, pid, imps, clks in con.execute(
            "SELECT domain, qnorm, product_id, max(imps), max(clks) FROM _qcum GROUP BY ALL"
        ).fetchall():
            snap.query_counts[(domain, qnorm, pid)] = (float(imps), float(clks))
        for domain, *vals in con.execute(
            "SELECT domain, max(imps), max(clks), max(crts), max(buys) FROM _gcum GROUP BY ALL"
        ).fetchall():
            snap.domain_counts[domain] = tuple(float(v) for v in vals)  # type: ignore[assignment]
        snap.query_leaf = dict(
            con.execute("SELECT qnorm, arg_max(qleaf, tsu) FROM _qleaf GROUP BY ALL").fetchall()
        )
        events = events_frame(con)
        snap.user_events = {
            str(user): frame.reset_index(drop=True)
            for user, frame in events.groupby("user_id", sort=False)
        }
        return snap

    def samples(
        self,
        query: str,
        domain: str,
        product_ids: list[str],
        user_id: str | None,
        now_us: int,
    ) -> Samples:
        """Feature rows of ``product_ids`` (of ``domain``) for a new request at ``now_us``."""
        qtok = tokens(query)
        qnorm = " ".join(qtok)
        qset = set(qtok)
        g = self.domain_counts.get(domain, (0.0, 0.0, 0.0, 0.0))
        qleaf = self.query_leaf.get(qnorm, "")
        raw: dict[str, list[Any]] = {}
        columns = (
            "product_id",
            "price",
            "cat_median",
            "brand",
            "leaf",
            "top",
            "bm25",
            "matched",
            "brand_in_query",
            "category_in_query",
            "imps",
            "clks",
            "crts",
            "buys",
            "qp_imps",
            "qp_clks",
        )
        for name in columns:
            raw[name] = []
        for pid in product_ids:
            prod = self.products.get((domain, pid))
            bm25, matched = 0.0, 0
            if prod is not None:
                norm = _K1 * (1 - _B + _B * prod.length / self.avgdl)
                for t in qset:
                    tf = prod.tf.get(t, 0)
                    if tf:
                        bm25 += self.idf.get(t, 0.0) * tf * (_K1 + 1) / (tf + norm)
                        matched += 1
            counts = self.counts.get((domain, pid), (0.0, 0.0, 0.0, 0.0))
            qp = self.query_counts.get((domain, qnorm, pid), (0.0, 0.0))
            raw["product_id"].append(pid)
            raw["price"].append(prod.price if prod else 0.0)
            raw["cat_median"].append(prod.cat_median if prod else math.nan)
            raw["brand"].append(prod.brand if prod else "")
            raw["leaf"].append(prod.leaf if prod else "")
            raw["top"].append(prod.top if prod else "")
            raw["bm25"].append(bm25)
            raw["matched"].append(float(matched))
            raw["brand_in_query"].append(float(bool(prod and prod.btok and set(prod.btok) <= qset)))
            raw["category_in_query"].append(
                float(bool(prod and prod.ctok and set(prod.ctok) & qset))
            )
            for name, value in zip(("imps", "clks", "crts", "buys"), counts, strict=True):
                raw[name].append(value)
            raw["qp_imps"].append(qp[0])
            raw["qp_clks"].append(qp[1])
        n = len(product_ids)
        frame = pd.DataFrame(raw)
        request_id = uuid.uuid4().hex
        frame.insert(0, "request_id", request_id)
        frame["session_id"] = None
        frame["user_id"] = user_id or f"anonymous-{request_id}"
        frame["domain"] = domain
        frame["tsu"] = np.full(n, now_us, np.int64)
        frame["position"] = np.zeros(n, np.int64)
        frame["qnorm"] = qnorm
        for label in ("click", "cart", "purchase"):
            frame[label] = 0.0
        frame["query_leaf"] = qleaf
        frame["query_terms"] = float(len(qtok))
        for name, value in zip(("g_imps", "g_clks", "g_crts", "g_buys"), g, strict=True):
            frame[name] = value
        rows = derive_features(frame, self.config.alpha)
        events = self.user_events.get(user_id or "", self._no_events)
        return attach_sequences(rows, events, self.config)


__all__ = ["ServingFeatures", "tokens"]
