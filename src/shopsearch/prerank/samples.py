"""Hybrid sample construction (HCCP): the whole logged stream of a request as one graded list.

A pre-ranker chooses among *every* retrieved candidate, but a model trained on what was shown
learns only from the products earlier stages already liked (sample selection bias). HCCP's
answer is to learn from the multi-level stream. For each request whose stream was logged (the
``stream`` table; :mod:`shopsearch.pipeline.stream`) every candidate gets the deepest level it
reached:

====== ==========================================================
level  the candidate was ...
====== ==========================================================
0      retrieved, but not passed on by pre-ranking
1      pre-ranked (and ranked), but not shown
2      shown, not clicked
3      clicked
4      added to the cart
5      purchased
====== ==========================================================

The list keeps, per candidate, the upstream features a pre-ranker has at serving time (the
retrieval score over the request's best, and the retrieval position) and, when the logged
engine ranked, the ranking model's value of the candidate (``nan`` otherwise): what the
consistency term and ``baseline/prerank-distill`` imitate. A shown product that retrieval's
logged list does not hold (the stream is cut at ``stream_depth``) is added at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from shopsearch.errors import InvalidInputError
from shopsearch.store.workspace import Workspace

F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]

#: The levels, lowest first (see the module docstring).
LEVELS: tuple[str, ...] = ("retrieved", "pre-ranked", "shown", "clicked", "carted", "purchased")
SHOWN = 2
_ACTIONS = {"click": 3, "add_to_cart": 4, "purchase": 5}
#: The stage whose stream entry holds the ranking model's values.
RANK_STAGE = "rank"
RETRIEVE_STAGE = "retrieve"


@dataclass(frozen=True)
class StreamList:
    """One request's graded candidates.

    Attributes:
        request_id: the stored request id.
        query: what was searched.
        domain: the market.
        product_ids: the candidates, in retrieval's order.
        levels: the level of each (see :data:`LEVELS`).
        upstream: ``[n, 2]`` the serving-time upstream features of each
            (:func:`upstream_features`).
        ranker: the ranking model's value of each (``nan`` where it did not score it).
    """

    request_id: str
    query: str
    domain: str
    product_ids: list[str]
    levels: I8
    upstream: F32
    ranker: F32


def upstream_features(scores: npt.ArrayLike, positions: npt.ArrayLike, pool: int) -> F32:
    """``[n, 2]``: the retrieval score over the list's best (0 when nothing scores above 0),
    and ``log1p(position) / log1p(pool)`` (1-based positions)."""
    s = np.asarray(scores, np.float64)
    best = float(s.max()) if s.size else 0.0
    relative = s / best if best > 0 else np.zeros_like(s)
    depth = np.log1p(np.asarray(positions, np.float64)) / np.log1p(max(pool, 1))
    return np.stack([relative, depth], axis=1).astype(np.float32)


def stream_lists(
    stream: pa.Table, requests: pa.Table, impressions: pa.Table, interactions: pa.Table
) -> list[StreamList]:
    """The graded lists of every request with a logged ``retrieve`` stream.

    Raises:
        InvalidInputError: no request has a logged stream.
    """
    frame = stream.select(["request_id", "stage", "product_id", "position", "score"]).to_pandas()
    retrieved = frame[frame["stage"] == RETRIEVE_STAGE]
    if retrieved.empty:
        raise InvalidInputError(
            "no logged stream to learn pre-ranking from: the stream table has no 'retrieve' "
            "rows; serve with [pipeline] stream_sample > 0 (or simulate, whose logging policy "
            "records it) and compact the event log"
        )
    later = frame[frame["stage"] != RETRIEVE_STAGE]
    passed = set(zip(later["request_id"], later["product_id"], strict=True))
    ranked = later[later["stage"] == RANK_STAGE]
    ranker = dict(zip(zip(ranked["request_id"], ranked["product_id"], strict=True),
                      ranked["score"], strict=True))  # fmt: skip
    shown = impressions.select(["request_id", "product_id"]).to_pandas()
    shown = shown[shown["request_id"].isin(set(retrieved["request_id"]))]
    acts = interactions.select(["request_id", "product_id", "kind"]).to_pandas()
    acted: dict[tuple[str, str], int] = {}
    for rid, pid, kind in zip(acts["request_id"], acts["product_id"], acts["kind"], strict=True):
        level = _ACTIONS.get(kind, 0)
        if level > acted.get((rid, pid), 0):
            acted[(rid, pid)] = level
    shown_of = shown.groupby("request_id")["product_id"].agg(list).to_dict()
    req = requests.select(["request_id", "query", "domain"]).to_pandas().set_index("request_id")
    out: list[StreamList] = []
    for rid, rows in retrieved.sort_values(["request_id", "position"]).groupby("request_id"):
        if rid not in req.index:
            continue
        ids = rows["product_id"].tolist()
        pool = len(ids)
        scores = rows["score"].to_numpy(np.float64)
        positions = rows["position"].to_numpy(np.float64)
        extra = [p for p in shown_of.get(rid, []) if p not in set(ids)]
        if extra:  # shown beyond the logged depth: not retrieved as far as the stream knows
            ids = ids + extra
            scores = np.concatenate([scores, np.zeros(len(extra))])
            positions = np.concatenate([positions, np.full(len(extra), pool + 1.0)])
        shown_here = set(shown_of.get(rid, []))
        levels = np.array(
            [
                max(
                    acted.get((rid, p), 0),
                    SHOWN if p in shown_here else (1 if (rid, p) in passed else 0),
                )
                for p in ids
            ],
            np.int8,
        )
        out.append(
            StreamList(
                str(rid),
                str(req.at[rid, "query"]),
                str(req.at[rid, "domain"]),
                ids,
                levels,
                upstream_features(scores, positions, max(pool, 1)),
                np.array([ranker.get((rid, p), np.nan) for p in ids], np.float32),
            )
        )
    if not out:
        raise InvalidInputError(
            "the logged stream names no request of the requests table: its searches are not "
            "in the workspace (stream rows are logged with their search, so the two tables "
            "were filled from different logs)"
        )
    return out


def catalog_frame(workspace: Workspace) -> pd.DataFrame:
    """The products the pre-ranker's product side reads (``domain``, ``product_id``,
    ``title``, ``brand``, ``category``)."""
    columns = ["domain", "product_id", "title", "brand", "category"]
    frame: pd.DataFrame = workspace.table("products", columns).to_pandas()
    return frame


def level_counts(lists: list[StreamList]) -> dict[str, int]:
    """How many candidates reached each level, over ``lists``."""
    counts = np.bincount(np.concatenate([s.levels for s in lists]), minlength=len(LEVELS))
    return {name: int(counts[i]) for i, name in enumerate(LEVELS)}


def product_stats(impressions: pa.Table, interactions: pa.Table) -> pd.DataFrame:
    """Per product id: ``log1p`` of its impressions, clicks and purchases in the logs."""
    shown = impressions.column("product_id").to_pandas().value_counts()
    acts = interactions.select(["product_id", "kind"]).to_pandas()
    clicks = acts.loc[acts["kind"] == "click", "product_id"].value_counts()
    bought = acts.loc[acts["kind"] == "purchase", "product_id"].value_counts()
    frame = pd.DataFrame({"shown": shown, "clicks": clicks, "purchases": bought}).fillna(0.0)
    return frame.apply(np.log1p).astype(np.float32)


__all__ = [
    "LEVELS",
    "RANK_STAGE",
    "RETRIEVE_STAGE",
    "SHOWN",
    "StreamList",
    "catalog_frame",
    "level_counts",
    "product_stats",
    "stream_lists",
    "upstream_features",
]
