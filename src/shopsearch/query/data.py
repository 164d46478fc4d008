"""What query understanding learns from: a shop's catalog and its users' queries.

:class:`QueryData` is built from a workspace's search log (:meth:`QueryData.from_workspace`) or
from graded judgments (:meth:`QueryData.from_judgments`), never from the simulator's ground
truth. It holds, in plain pandas frames:

* ``catalog``: the products (``domain, product_id, title, brand, category, description``) —
  the shop's own vocabulary: product words, brands, model numbers, category names;
* ``queries``: one row per logged request (``request_id, session_id, user_id, domain, query,
  timestamp``), in time order;
* ``outcomes``: one row per (request, product) the user acted on, with the furthest stage it
  reached (``stage``: click 1, add-to-cart 2, purchase 3; for judgments, the grade rescaled so
  that the format's relevant grade is at least 1) and the product's category.

From these a component derives what it needs: query frequencies per market, reformulations
inside a session (a query followed by another of the same session), and (query, product)
pairs whose categories say what the query was after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopsearch.catalog.candidates import ProductKey
from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.errors import InvalidInputError
from shopsearch.store.workspace import Workspace

#: The stage of each interaction kind (the furthest one reached counts).
STAGES: Mapping[str, int] = {"click": 1, "add_to_cart": 2, "purchase": 3}

_CATALOG_COLUMNS = ["domain", "product_id", "title", "brand", "category", "description"]
_QUERY_COLUMNS = ["request_id", "session_id", "user_id", "domain", "query", "timestamp"]
_OUTCOME_COLUMNS = ["request_id", "domain", "query", "product_id", "stage", "category"]


@dataclass
class QueryData:
    """A shop's catalog, queries and what users did after them (see the module docstring).

    Attributes:
        catalog: one row per product; ``category`` is the path joined with ``" > "``.
        queries: one row per logged request, in time order (empty for judgments).
        outcomes: one row per (request, product) acted on, furthest ``stage`` first.
        source: ``"events"`` or ``"judgments"``.
    """

    catalog: pd.DataFrame
    queries: pd.DataFrame
    outcomes: pd.DataFrame
    source: str

    @classmethod
    def from_workspace(
        cls, workspace: Workspace, request_ids: Sequence[str] | None = None
    ) -> QueryData:
        """The workspace's products and logged requests (only ``request_ids`` if given).

        Raises:
            InvalidInputError: no products, or no logged request and no judgment.
        """
        catalog = _catalog(workspace)
        if workspace.count("requests") == 0:
            judged = workspace.table("judgments").to_pandas()
            if judged.empty:
                raise InvalidInputError(
                    f"workspace {workspace.root} has no search log and no judgments to learn "
                    "query understanding from; ingest events ('shopsearch ingest events FILE "
                    "-w W') or judgments ('shopsearch ingest judgments FILE -w W')"
                )
            qrels: dict[str, dict[ProductKey, float]] = {}
            for row in judged.itertuples(index=False):
                qrels.setdefault(str(row.query), {})[(str(row.domain), str(row.product_id))] = (
                    float(row.grade)
                )
            grades = judged["grade"].to_numpy(float)
            relevant = float(grades.min() + grades.max()) / 2
            return cls.from_judgments(catalog, qrels, relevant)
        con = workspace.connect()
        queries = con.execute(
            "SELECT request_id, coalesce(session_id, request_id) AS session_id, user_id, "
            "domain, query, timestamp FROM requests ORDER BY timestamp, request_id"
        ).df()
        outcomes = con.execute(
            "SELECT x.request_id, r.domain, r.query, x.product_id, "
            "max(CASE x.kind WHEN 'purchase' THEN 3 WHEN 'add_to_cart' THEN 2 ELSE 1 END) "
            "AS stage FROM interactions x JOIN requests r USING (request_id) "
            "GROUP BY x.request_id, r.domain, r.query, x.product_id"
        ).df()
        if request_ids is not None:
            keep = set(request_ids)
            queries = queries[queries["request_id"].isin(keep)]
            outcomes = outcomes[outcomes["request_id"].isin(keep)]
        outcomes = _with_category(outcomes, catalog)
        return cls(
            catalog,
            queries.reset_index(drop=True)[_QUERY_COLUMNS],
            outcomes[_OUTCOME_COLUMNS],
            "events",
        )

    @classmethod
    def from_judgments(
        cls,
        catalog: pd.DataFrame,
        qrels: Mapping[str, Mapping[ProductKey, float]],
        relevant: float,
    ) -> QueryData:
        """Judged (query, product) pairs as outcomes: a pair graded at least ``relevant`` is a
        click (stage 1), the top grade a purchase (stage 3); lower grades are left out.

        Args:
            catalog: the products, columns as :attr:`catalog`.
            qrels: query → product key → grade.
            relevant: the grade from which a product counts as relevant.
        """
        top = max((g for judged in qrels.values() for g in judged.values()), default=relevant)
        rows = [
            (f"j{i}", domain, query, pid, 3 if grade >= top else 1)
            for i, (query, judged) in enumerate(sorted(qrels.items()))
            for (domain, pid), grade in judged.items()
            if grade >= relevant
        ]
        outcomes = pd.DataFrame(rows, columns=["request_id", "domain", "query", "product_id",
                                               "stage"])  # fmt: skip
        queries = pd.DataFrame(
            [(f"j{i}", f"j{i}", "judge", "", q, 0) for i, q in enumerate(sorted(qrels))],
            columns=_QUERY_COLUMNS,
        )
        domains = {q: next(iter(j))[0] for q, j in qrels.items() if j}
        queries["domain"] = queries["query"].map(domains).fillna("")
        outcomes = _with_category(outcomes, _frame(catalog))
        return cls(_frame(catalog), queries, outcomes[_OUTCOME_COLUMNS], "judgments")

    # -- what components derive ----------------------------------------------------------------
    def query_counts(self) -> pd.DataFrame:
        """``domain, query, requests, clicks, purchases``: how often each query was typed and
        how often it led somewhere, most typed first."""
        typed = self.queries.groupby(["domain", "query"]).size().rename("requests")
        acted = (
            self.outcomes.assign(
                clicks=self.outcomes["stage"] >= 1, purchases=self.outcomes["stage"] >= 3
            )
            .groupby(["domain", "query"])[["clicks", "purchases"]]
            .sum()
        )
        counts = pd.concat([typed, acted], axis=1).fillna(0).reset_index()
        counts[["requests", "clicks", "purchases"]] = counts[
            ["requests", "clicks", "purchases"]
        ].astype(np.int64)
        return counts.sort_values(["requests", "query"], ascending=[False, True]).reset_index(
            drop=True
        )

    def reformulations(self) -> pd.DataFrame:
        """``session_id, before, after``: each query followed by a different one in the same
        session (the raw material of spelling and rewriting pairs)."""
        q = self.queries[["session_id", "query"]]
        following = q.groupby("session_id")["query"].shift(-1)
        pairs = pd.DataFrame(
            {"session_id": q["session_id"], "before": q["query"], "after": following}
        ).dropna()
        return pairs[pairs["before"] != pairs["after"]].reset_index(drop=True)

    def vocabulary(self) -> pd.Series:
        """Lower-cased words of the catalog (titles, brands, categories) with their counts."""
        return catalog_vocabulary(self.catalog)


def catalog_vocabulary(catalog: pd.DataFrame) -> pd.Series:
    """Lower-cased words of a catalog's titles, brands and categories, with their counts."""
    frame = _frame(catalog)
    text = (
        frame["title"] + " " + frame["brand"] + " "
        + frame["category"].str.replace(CATEGORY_SEPARATOR, " ")
    )  # fmt: skip
    words = text.str.lower().str.findall(r"[^\W_]+").explode().dropna()
    return words.value_counts()


def _catalog(workspace: Workspace) -> pd.DataFrame:
    products = workspace.table("products")
    if products.num_rows == 0:
        raise InvalidInputError(
            f"workspace {workspace.root} has no products; ingest or simulate some first"
        )
    return _frame(products.to_pandas())


def _frame(products: pd.DataFrame) -> pd.DataFrame:
    """The catalog columns, with ``category`` as a ``" > "``-joined path."""
    out = products.copy()
    for column in _CATALOG_COLUMNS:
        if column not in out:
            out[column] = ""
    out["category"] = [
        CATEGORY_SEPARATOR.join(c) if isinstance(c, list | tuple | np.ndarray) else (c or "")
        for c in out["category"]
    ]
    out = out[_CATALOG_COLUMNS].fillna("")
    return out.drop_duplicates(["domain", "product_id"], keep="last").reset_index(drop=True)


def _with_category(outcomes: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    merged = outcomes.merge(
        catalog[["domain", "product_id", "category"]], on=["domain", "product_id"], how="left"
    )
    merged["category"] = merged["category"].fillna("")
    return merged.sort_values("stage", ascending=False, kind="stable").reset_index(drop=True)


__all__ = ["STAGES", "QueryData", "catalog_vocabulary"]
