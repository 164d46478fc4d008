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

The logged position is used only as the torch models' training-time bias term
(``position_bias="feature"``); scoring sets it to 0. Baselines: ``baseline/impression-order``
(the order shown) and ``baseline/lightgbm`` (LambdaMART on the same features). Models are
trained on click labels only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.suites.click_samples import (
    click_only_config,
    make_samples,
    ranked_lists,
    train_and_add,
)
from shopsearch.ranking.samples import Samples

Say = Callable[[str], None]
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

    train: Path
    test: Path
    models: tuple[str, ...] = field(default_factory=tuple)
    epochs: int = 3
    seq_len: int = 10
    alpha: float = 20.0
    seed: int = 0


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
    items, ages = _sequences(rows, events, cfg.seq_len)
    prior_source = rows if train_rows is None else train_rows
    _prior_features(rows, prior_source, train_rows is None, cfg.alpha)
    rows["domain"] = rows["platform"]
    rows["tsu"] = rows["timestamp"]
    return make_samples(rows, items, ages)


def run_ranking_trivago_suite(cfg: RankingTrivagoConfig, say: Say | None = None) -> Report:
    """Train every click-only model on TRAIN and report the MRR on TEST (module docstring)."""
    tell = say or (lambda _message: None)
    report = Report(
        suite="ranking",
        primary_metric="mrr",
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


__all__ = [
    "RankingTrivagoConfig",
    "build_trivago_samples",
    "read_events",
    "run_ranking_trivago_suite",
]
