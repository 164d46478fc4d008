"""``shopsearch eval ranking --dataset trivago``: click ranking of the shown hotels.

Each ``clickout item`` row of the RecSys Challenge 2019 events file is one request: the items of
its ``impressions`` list (top first) are the candidates, the ``reference`` is the click. The
metric is ``mrr`` of the clicked item (clickouts whose item is not among the shown are skipped),
with 95% bootstrap CIs over clickouts.

Features (all position-free, known before the clickout), with the encoder column they fill:

* ``log_price``: log1p(price); ``price_rel_category``: log price minus the log median price of
  the list; ``price_rel_user``: the price's rank within the list, scaled to [0, 1];
* session behaviour from the rows of the same session strictly before the clickout's step (any
  action referencing an item): ``top_match`` = the item was interacted with, ``bm25`` =
  log1p(count of those interactions), ``matched_share`` = it was the last item interacted with,
  ``leaf_match`` = 1 / (1 + steps since the last interaction with it), ``brand_in_query`` =
  an earlier clickout on it, ``has_query_leaf`` = some shown item was interacted with;
  ``user_history`` = log1p(earlier steps), ``query_terms`` = log(list length);
* priors from TRAIN clickouts: ``log_impressions``, ``log_clicks``, ``ctr_prior`` per item and
  ``qp_log_impressions``, ``qp_log_clicks``, ``qp_ctr_prior`` per (city, item), smoothed
  ``(clicks + a * rate) / (shown + a)``; on training rows the row's own session is left out
  (no leakage);
* the session's earlier items (most recent first) are the behaviour sequence; the platform
  (country) is the domain.

Context features (:data:`CONTEXT_FEATURES`, extra dense columns after the workspace's, read by
LightGBM and every torch model alike), from the clickout's own list and the session's earlier
steps only (the core features of the RecSys Challenge 2019 winners):

* **the shown rank as an input feature**: ``shown_rank`` (1-based place of the item in the
  impression list), ``shown_rank_share`` (rank / (length - 1)), ``list_length``. The list is
  trivago's upstream ranker's output, known when the clickout happens, so the rank is the same
  kind of input as a retrieval score handed to a re-ranker: the models re-rank trivago's list
  given its order. This is *not* the position-bias machinery (below), which stays as it is;
* the item against the session's last item interaction: ``last_ref_in_list`` (that item is in
  this list), ``rank_minus_last_ref`` / ``abs_rank_minus_last_ref`` (places below / away from it;
  the click is often just below), ``is_last_ref`` and its kind (``last_ref_clickout``,
  ``last_ref_image``, ``last_ref_other``), ``is_last_clickout_ref``;
* the item's earlier interactions by kind (``n_item_clickouts``, ``n_item_images``,
  ``n_item_other``), ``log_seconds_since_item``; the session's ``log_seconds_since_last_action``
  and ``last_action_clickout``;
* earlier lists: ``in_prev_list``, ``prev_list_rank`` and ``rank_minus_prev_rank`` (its rank in
  the session's previous clickout list), ``n_earlier_lists`` (earlier lists showing it);
* price: ``price_rel_clicked`` (log price minus the mean log price of the items the session
  clicked out earlier, with ``has_clicked_prices``), ``price_rel_min`` (above the list's
  cheapest).

The logged position is used only as the torch models' training-time bias term
(``position_bias="feature"``); scoring sets that term's position to 0, so at test time the
position enters a model only through ``shown_rank`` and friends, exactly as on training rows.
Baselines: ``baseline/impression-order`` (the order shown) and ``baseline/lightgbm``
(LambdaMART on the same features). Models are trained on click labels only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.click_samples import ranked_lists, train_and_add
from shopsearch.progress import Say
from shopsearch.ranking.click_samples import click_only_config, make_samples
from shopsearch.ranking.samples import Samples

_ITEM_ACTIONS = (
    "clickout item",
    "interaction item image",
    "interaction item info",
    "interaction item rating",
    "interaction item deals",
    "search for item",
)
_NEEDED = (
    "session_id",
    "step",
    "action_type",
    "reference",
    "platform",
    "city",
    "impressions",
    "prices",
    "timestamp",
)


@dataclass(frozen=True)
class RankingTrivagoConfig:
    """Inputs of the trivago ranking suite.

    Attributes:
        train: events file (Parquet or CSV) the systems learn from.
        test: events file of other sessions, evaluated.
        models: registry names to train (default: all).
        epochs: most training epochs per torch model.
        seq_len: earlier session items kept in the behaviour sequence.
        alpha: pseudo-impressions of the CTR smoothing.
        seed: seed of training and bootstraps.
    """

    train: Annotated[Path, option("Training log")]
    test: Annotated[Path, option("Held-out log of the same format")]
    models: Annotated[
        tuple[str, ...], option("Comma list of registry models", default_text="every model")
    ] = ()
    epochs: Annotated[int, option("Most training epochs per torch model")] = 2
    seq_len: int = 10
    alpha: float = 20.0
    seed: Annotated[int, option("Seed for training and bootstrap")] = 0


def read_events(path: Path) -> pd.DataFrame:
    """The events file with the columns the suite needs, sorted by session and step.

    Raises:
        InvalidInputError: for a missing file or missing columns.
    """
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist; give a trivago events file")
    frame = pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path)
    missing = [c for c in _NEEDED if c not in frame]
    if missing:
        raise InvalidInputError(f"{path} lacks columns {missing}; it is not a trivago events file")
    frame = frame[list(_NEEDED)].copy()
    frame["step"] = frame["step"].astype(np.int64)
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    for name in ("reference", "impressions", "prices", "city", "platform"):
        frame[name] = frame[name].fillna("").astype(str)
    return frame.sort_values(["session_id", "step"], kind="stable").reset_index(drop=True)


def _clickout_rows(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (clickout, shown item) with position, price and the click label."""
    clicks = events[
        (events["action_type"] == "clickout item") & (events["impressions"] != "")
    ].copy()
    clicks["request_id"] = clicks["session_id"] + ":" + clicks["step"].astype(str)
    clicks["product_id"] = clicks["impressions"].str.split("|")
    clicks["price"] = clicks["prices"].str.split("|")
    clicks = clicks[clicks["product_id"].str.len() == clicks["price"].str.len()]
    rows = clicks.explode(["product_id", "price"], ignore_index=True)
    rows["position"] = rows.groupby("request_id").cumcount() + 1
    rows["price"] = pd.to_numeric(rows["price"], errors="coerce").fillna(0.0)
    rows["click"] = (rows["product_id"] == rows["reference"]).astype(np.int64)
    has_click = rows.groupby("request_id")["click"].transform("max") > 0
    return rows[has_click].reset_index(drop=True)


def _price_features(rows: pd.DataFrame) -> None:
    log_price = np.log1p(rows["price"].to_numpy(np.float64))
    rows["log_price"] = log_price
    by = rows.groupby("request_id")["log_price"]
    rows["price_rel_category"] = log_price - by.transform("median").to_numpy()
    rank = by.rank(method="average").to_numpy()
    size = by.transform("size").to_numpy(np.float64)
    rows["price_rel_user"] = (rank - 1) / np.maximum(size - 1, 1)
    rows["query_terms"] = np.log(size)


def _session_features(rows: pd.DataFrame, events: pd.DataFrame) -> None:
    """Interactions with the item in the same session strictly before the clickout's step."""
    acts = events[events["action_type"].isin(_ITEM_ACTIONS) & (events["reference"] != "")]
    acts = acts[["session_id", "step", "reference", "action_type"]].rename(
        columns={"step": "act_step", "reference": "product_id", "action_type": "action"}
    )
    keys = rows[["request_id", "session_id", "step", "product_id"]]
    pairs = keys.merge(acts, on=["session_id", "product_id"])
    pairs = pairs[pairs["act_step"] < pairs["step"]]
    pairs = pairs.assign(clickout=(pairs["action"] == "clickout item").astype(np.float64))
    agg = pairs.groupby(["request_id", "product_id"]).agg(
        n=("act_step", "size"), last=("act_step", "max"), clickout=("clickout", "max")
    )
    joined = keys.join(agg, on=["request_id", "product_id"])
    count = joined["n"].fillna(0).to_numpy(np.float64)
    gap = (joined["step"] - joined["last"]).to_numpy(np.float64)
    rows["top_match"] = (count > 0).astype(np.float64)
    rows["bm25"] = np.log1p(count)
    rows["brand_in_query"] = joined["clickout"].fillna(0).to_numpy(np.float64)
    rows["has_query_leaf"] = rows.groupby("request_id")["top_match"].transform("max")
    rows["leaf_match"] = np.where(count > 0, 1.0 / (1.0 + np.nan_to_num(gap, nan=0.0)), 0.0)
    last_item = _last_items(rows, acts)
    rows["matched_share"] = (rows["product_id"] == last_item).astype(np.float64)


#: Numeric columns the trivago samples add after the workspace's dense features (see the module
#: docstring); all known when the clickout's list is shown.
CONTEXT_FEATURES: tuple[str, ...] = (
    "shown_rank",
    "shown_rank_share",
    "list_length",
    "last_ref_in_list",
    "rank_minus_last_ref",
    "abs_rank_minus_last_ref",
    "is_last_ref",
    "last_ref_clickout",
    "last_ref_image",
    "last_ref_other",
    "is_last_clickout_ref",
    "n_item_clickouts",
    "n_item_images",
    "n_item_other",
    "log_seconds_since_item",
    "log_seconds_since_last_action",
    "last_action_clickout",
    "in_prev_list",
    "prev_list_rank",
    "rank_minus_prev_rank",
    "n_earlier_lists",
    "price_rel_clicked",
    "has_clicked_prices",
    "price_rel_min",
)
_F = {name: i for i, name in enumerate(CONTEXT_FEATURES)}
_CLICKOUT, _IMAGE = 0, 1


class _SessionState:
    """What a session has done so far, updated step by step."""

    def __init__(self) -> None:
        self.last_ref = ""
        self.last_kind = -1
        self.last_clickout_ref = ""
        self.last_ts: int | None = None
        self.last_action_clickout = False
        self.counts: dict[str, list[int]] = {}
        self.item_ts: dict[str, int] = {}
        self.prev_list: dict[str, int] = {}
        self.n_lists: dict[str, int] = {}
        self.clicked_log_prices: list[float] = []

    def features(
        self, items: list[str], log_prices: npt.NDArray[np.float64], ts: int
    ) -> npt.NDArray[np.float64]:
        """``[len(items), len(CONTEXT_FEATURES)]`` for a list shown at time ``ts``."""
        n = len(items)
        out = np.zeros((n, len(CONTEXT_FEATURES)), np.float64)
        rank = np.arange(n, dtype=np.float64)
        out[:, _F["shown_rank"]] = rank + 1
        out[:, _F["shown_rank_share"]] = rank / max(n - 1, 1)
        out[:, _F["list_length"]] = n
        where = {item: k for k, item in enumerate(items)}
        last_rank = where.get(self.last_ref)
        if last_rank is not None:
            out[:, _F["last_ref_in_list"]] = 1.0
            out[:, _F["rank_minus_last_ref"]] = rank - last_rank
            out[:, _F["abs_rank_minus_last_ref"]] = np.abs(rank - last_rank)
            out[last_rank, _F["is_last_ref"]] = 1.0
            kind = self.last_kind
            column = (
                "last_ref_clickout"
                if kind == _CLICKOUT
                else "last_ref_image"
                if kind == _IMAGE
                else "last_ref_other"
            )
            out[last_rank, _F[column]] = 1.0
        clickout_rank = where.get(self.last_clickout_ref)
        if clickout_rank is not None:
            out[clickout_rank, _F["is_last_clickout_ref"]] = 1.0
        if self.last_ts is not None:
            out[:, _F["log_seconds_since_last_action"]] = np.log1p(max(ts - self.last_ts, 0))
        out[:, _F["last_action_clickout"]] = float(self.last_action_clickout)
        if self.clicked_log_prices:
            out[:, _F["price_rel_clicked"]] = log_prices - float(np.mean(self.clicked_log_prices))
            out[:, _F["has_clicked_prices"]] = 1.0
        out[:, _F["price_rel_min"]] = log_prices - float(log_prices.min()) if n else 0.0
        for k, item in enumerate(items):
            counts = self.counts.get(item)
            if counts is not None:
                out[k, _F["n_item_clickouts"]] = counts[0]
                out[k, _F["n_item_images"]] = counts[1]
                out[k, _F["n_item_other"]] = counts[2]
                out[k, _F["log_seconds_since_item"]] = np.log1p(max(ts - self.item_ts[item], 0))
            prev = self.prev_list.get(item)
            if prev is not None:
                out[k, _F["in_prev_list"]] = 1.0
                out[k, _F["prev_list_rank"]] = prev + 1
                out[k, _F["rank_minus_prev_rank"]] = k - prev
            out[k, _F["n_earlier_lists"]] = self.n_lists.get(item, 0)
        return out

    def update(
        self, kind: int, ref: str, ts: int, items: list[str], log_prices: npt.NDArray[np.float64]
    ) -> None:
        """Record one step (``kind`` -1 for an action on no item)."""
        self.last_ts = ts
        self.last_action_clickout = kind == _CLICKOUT
        if kind >= 0 and ref:
            self.last_ref, self.last_kind = ref, kind
            counts = self.counts.setdefault(ref, [0, 0, 0])
            counts[min(kind, 2)] += 1
            self.item_ts[ref] = ts
        if kind == _CLICKOUT and ref:
            self.last_clickout_ref = ref
        if items:
            self.prev_list = {item: k for k, item in enumerate(items)}
            for item in items:
                self.n_lists[item] = self.n_lists.get(item, 0) + 1
            if ref in self.prev_list:
                self.clicked_log_prices.append(float(log_prices[self.prev_list[ref]]))


def _number(text: str) -> float:
    """``float(text)``, 0 when it is not a finite number."""
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if np.isfinite(value) else 0.0


def _context_features(rows: pd.DataFrame, events: pd.DataFrame) -> None:
    """The :data:`CONTEXT_FEATURES` of every row, from its clickout and the session's earlier
    steps (one pass over the events in session and step order)."""
    wanted = set(rows["request_id"])
    kinds = {name: i for i, name in enumerate(_ITEM_ACTIONS)}
    per_request: dict[str, npt.NDArray[np.float64]] = {}
    state = _SessionState()
    session = None
    for sid, step, action, ref, ts, imps, prices in zip(
        events["session_id"].to_numpy(object),
        events["step"].to_numpy(np.int64),
        events["action_type"].to_numpy(object),
        events["reference"].to_numpy(object),
        events["timestamp"].to_numpy(np.int64),
        events["impressions"].to_numpy(object),
        events["prices"].to_numpy(object),
        strict=True,
    ):
        if sid != session:
            session, state = sid, _SessionState()
        kind = kinds.get(action, -1)
        items: list[str] = imps.split("|") if kind == _CLICKOUT and imps else []
        price_list = prices.split("|") if items else []
        if len(price_list) != len(items):
            items = []
        log_prices = np.log1p(np.maximum([_number(p) for p in price_list], 0.0))
        request_id = f"{sid}:{step}"
        if items and request_id in wanted:
            per_request[request_id] = state.features(items, log_prices, int(ts))
        state.update(kind, str(ref), int(ts), items, log_prices)
    order = pd.unique(rows["request_id"].to_numpy(object))
    stacked = np.concatenate([per_request[str(r)] for r in order], axis=0)
    if len(stacked) != len(rows):
        raise InvalidInputError("a clickout's list changed between passes; check the events file")
    for name, column in zip(CONTEXT_FEATURES, stacked.T, strict=True):
        rows[name] = column


def _last_items(rows: pd.DataFrame, acts: pd.DataFrame) -> npt.NDArray[np.object_]:
    """Per row, the item of the session's last interaction before the clickout ('' if none)."""
    requests = rows.drop_duplicates("request_id")[["request_id", "session_id", "step"]]
    pairs = requests.merge(acts, on="session_id")
    pairs = pairs[pairs["act_step"] < pairs["step"]].sort_values("act_step")
    last = pairs.groupby("request_id")["product_id"].last()
    out: npt.NDArray[np.object_] = rows["request_id"].map(last).fillna("").to_numpy(object)
    return out


def _sequences(
    rows: pd.DataFrame, events: pd.DataFrame, seq_len: int
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float32]]:
    """Each request's earlier session items (most recent first) and their log1p(hours) ages."""
    requests = rows.drop_duplicates("request_id")[["request_id", "session_id", "step", "timestamp"]]
    acts = events[events["action_type"].isin(_ITEM_ACTIONS) & (events["reference"] != "")]
    by_session = {
        s: (g["step"].to_numpy(), g["reference"].to_numpy(object), g["timestamp"].to_numpy())
        for s, g in acts.groupby("session_id", sort=False)
    }
    items = np.full((len(requests), seq_len), "", dtype=object)
    ages = np.zeros((len(requests), seq_len), np.float32)
    empty = (np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0, np.int64))
    for i, (session, step, stamp) in enumerate(
        zip(requests["session_id"], requests["step"], requests["timestamp"], strict=True)
    ):
        steps, refs, stamps = by_session.get(session, empty)
        before = np.flatnonzero(steps < step)[::-1][:seq_len]
        items[i, : len(before)] = refs[before]
        ages[i, : len(before)] = np.log1p(np.maximum(stamp - stamps[before], 0) / 3600.0)
    rows["req"] = pd.Index(requests["request_id"]).get_indexer(rows["request_id"])
    rows["user_history"] = np.log1p((rows["step"] - 1).clip(lower=0).to_numpy(np.float64))
    return items, ages


def _counts(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return rows.groupby(keys).agg(shown=("click", "size"), clicks=("click", "sum"))


def _prior_features(rows: pd.DataFrame, train_rows: pd.DataFrame, own: bool, alpha: float) -> None:
    """Smoothed CTR priors from ``train_rows``; ``own`` leaves each row's session out."""
    rate = float(train_rows["click"].mean())
    for keys, prefix in ((["product_id"], ""), (["city", "product_id"], "qp_")):
        total = rows[keys].join(_counts(train_rows, keys), on=keys)
        shown = total["shown"].fillna(0).to_numpy(np.float64)
        clicks = total["clicks"].fillna(0).to_numpy(np.float64)
        if own:
            session = rows[["session_id", *keys]].join(
                _counts(train_rows, ["session_id", *keys]), on=["session_id", *keys]
            )
            shown = shown - session["shown"].fillna(0).to_numpy(np.float64)
            clicks = clicks - session["clicks"].fillna(0).to_numpy(np.float64)
        impressions_key = "qp_log_impressions" if prefix else "log_impressions"
        rows[impressions_key] = np.log1p(shown)
        rows[f"{prefix}log_clicks"] = np.log1p(clicks)
        rows[f"{prefix}ctr_prior"] = (clicks + alpha * rate) / (shown + alpha)


def build_trivago_samples(
    events: pd.DataFrame, train_rows: pd.DataFrame | None, cfg: RankingTrivagoConfig
) -> Samples:
    """Samples of every clickout of ``events``.

    Args:
        events: the events of one split (:func:`read_events`).
        train_rows: the training split's clickout rows for the priors; ``None`` when ``events``
            is the training split itself (its own session is then left out of each row's priors).
        cfg: the suite settings.

    Raises:
        InvalidInputError: when no clickout has its clicked item among the shown.
    """
    rows = _clickout_rows(events)
    if rows.empty:
        raise InvalidInputError("no clickout with its clicked item among the shown; check the file")
    _price_features(rows)
    _session_features(rows, events)
    _context_features(rows, events)
    items, ages = _sequences(rows, events, cfg.seq_len)
    prior_source = rows if train_rows is None else train_rows
    _prior_features(rows, prior_source, train_rows is None, cfg.alpha)
    rows["domain"] = rows["platform"]
    rows["tsu"] = rows["timestamp"]
    return make_samples(rows, items, ages, CONTEXT_FEATURES)


def run_ranking_trivago_suite(cfg: RankingTrivagoConfig, say: Say | None = None) -> Report:
    """Train every click-only model on TRAIN and report the MRR on TEST (module docstring)."""
    tell = say or (lambda _message: None)
    report = Report(
        suite="ranking",
        primary_metric=RankingTrivagoSuite.primary_metric,
        config={
            "dataset": "trivago",
            "train": cfg.train,
            "test": cfg.test,
            "epochs": cfg.epochs,
            "seq_len": cfg.seq_len,
            "alpha": cfg.alpha,
            "seed": cfg.seed,
            "labels": "click only (cart / purchase losses off)",
            "position_bias": "feature (training only; scored at position 0)",
            "shown_rank_feature": "the impression-list rank is an input feature (re-ranking "
            "trivago's shown list), train and test alike",
        },
    )
    with report.timer("samples"):
        tell("building samples")
        train_events, test_events = read_events(cfg.train), read_events(cfg.test)
        train = build_trivago_samples(train_events, None, cfg)
        test = build_trivago_samples(test_events, train.rows, cfg)
    rows = test.rows
    clicked = rows[rows["click"] == 1]
    qrels = {
        str(r): {str(p): 1.0}
        for r, p in zip(clicked["request_id"], clicked["product_id"], strict=True)
    }
    report.dataset = {
        "train_clickouts": train.n_requests,
        "train_impressions": len(train),
        "test_clickouts": test.n_requests,
        "test_impressions": len(test),
        "test_sessions": int(rows["session_id"].nunique()),
        "test_items": int(rows["product_id"].nunique()),
    }
    with report.timer("baselines"):
        order = -rows["position"].to_numpy(np.float64)
        report.add_evaluation(
            "baseline/impression-order",
            evaluate_run(ranked_lists(rows, order), qrels, metrics=("mrr",), seed=cfg.seed),
        )
    train_and_add(
        report,
        train,
        test,
        qrels,
        ("mrr",),
        cfg.models,
        click_only_config(cfg.epochs, cfg.seed),
        "feature",
        tell,
    )
    return report


@SUITES.register()
class RankingTrivagoSuite(Suite[RankingTrivagoConfig]):
    """Ranking models on trivago clickouts: MRR of the clicked hotel among those shown.

    Example: shopsearch eval ranking --dataset trivago --train A.parquet --test B.parquet
    --report r.json
    """

    name = "ranking/trivago"
    config_type = RankingTrivagoConfig
    primary_metric = "mrr"

    def run(self, config: RankingTrivagoConfig, say: Say) -> Report:
        """:func:`run_ranking_trivago_suite`."""
        return run_ranking_trivago_suite(config, say)


__all__ = [
    "CONTEXT_FEATURES",
    "RankingTrivagoConfig",
    "RankingTrivagoSuite",
    "build_trivago_samples",
    "read_events",
    "run_ranking_trivago_suite",
]
