"""``shopsearch eval ranking --dataset bestbuy``: which SKU a query's searcher clicks.

Each TEST row (user, sku, category, query, click_time, query_time) is one request whose only
relevant SKU is the clicked one; the metric is ``map@5`` (with one relevant SKU, the reciprocal
rank within the top 5), 95% bootstrap CIs over requests.

* ``baseline/query-popularity``: the SKUs most clicked in TRAIN for the normalised query
  (lower-cased, punctuation stripped, spaces collapsed), then the globally most clicked.
* ``shopsearch/<model>``: a learned ranker over candidates = the query's most clicked SKUs, the
  SKUs of similar TRAIN queries (cosine of character 3-gram vectors of the normalised text,
  which catches misspellings such as "modern warefare") and the globally most clicked. Features
  (encoder column in brackets): log1p clicks for the exact query [``qp_log_clicks``], their
  smoothed share of the query's clicks [``qp_ctr_prior``], the query's clicks
  [``qp_log_impressions``], similarity-weighted share over similar queries [``bm25``], the best
  similarity of a query that clicked the SKU [``matched_share``], global log1p clicks
  [``log_clicks``] and share [``ctr_prior``], the SKU's share of clicks in the 14 days before the
  query [``cart_prior``], whether the SKU's category is the query's most clicked category
  [``leaf_match``], the baseline's rank [``price_rel_user``]. The SKU id is the item id and the
  category the leaf.

Training requests are TRAIN's own rows, their features counted on the other user folds of TRAIN
(out-of-fold, so no row sees its own click); recency uses only clicks before the query time.
Models learn from click labels only.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.click_samples import train_and_add
from shopsearch.progress import Say
from shopsearch.ranking.click_samples import click_only_config, make_samples
from shopsearch.ranking.samples import Samples

_COLUMNS = ("user", "sku", "category", "query", "click_time", "query_time")
_PUNCT = re.compile(r"[^a-z0-9 ]+")
_SPACE = re.compile(r"\s+")
_K = 5
_RECENT_DAYS = 14


@dataclass(frozen=True)
class RankingBestBuyConfig:
    """Inputs of the Best Buy ranking suite.

    Attributes:
        train: clicks the systems learn from (Best Buy ``train.csv`` format).
        test: held-out clicks, evaluated.
        models: registry names to train (default: lightgbm and dnn).
        epochs: most training epochs per torch model.
        n_exact: candidates from the exact query.
        n_similar: similar TRAIN queries consulted, and candidates taken from them.
        n_global: globally most clicked candidates.
        alpha: pseudo-clicks of the share smoothing.
        folds: user folds of TRAIN; a training row's features are counted on the other folds.
        seed: seed of training and bootstraps.
    """

    train: Annotated[Path, option("Training log")]
    test: Annotated[Path, option("Held-out log of the same format")]
    models: Annotated[tuple[str, ...], option("Comma list of registry models")] = (
        "lightgbm",
        "dnn",
    )
    epochs: Annotated[int, option("Most training epochs per torch model")] = 2
    n_exact: int = 10
    n_similar: int = 10
    n_global: int = 5
    alpha: float = 2.0
    folds: int = 5
    seed: Annotated[int, option("Seed for training and bootstrap")] = 0


def normalise(query: str) -> str:
    """Lower-case, punctuation stripped, whitespace collapsed."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", query.lower())).strip()


def read_clicks(path: Path) -> pd.DataFrame:
    """The clicks file with a normalised query ``q`` and a query time ``t`` (seconds).

    Raises:
        InvalidInputError: for a missing file or missing columns.
    """
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist; give a Best Buy clicks CSV")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in _COLUMNS if c not in frame]
    if missing:
        raise InvalidInputError(f"{path} lacks columns {missing}; it is not a Best Buy clicks file")
    frame["q"] = frame["query"].map(normalise)
    stamp = pd.to_datetime(frame["query_time"], errors="coerce", format="mixed")
    frame["t"] = stamp.astype("int64").to_numpy(np.float64) / 1e9
    return frame.reset_index(drop=True)


class _TrigramIndex:
    """Cosine similarity of character 3-gram count vectors of normalised queries."""

    def __init__(self, queries: list[str]) -> None:
        self.queries = queries
        self.vocab: dict[str, int] = {}
        self.matrix = self._vectors(queries, grow=True)

    @staticmethod
    def _grams(text: str) -> Counter[str]:
        padded = f"  {text} "
        return Counter(padded[i : i + 3] for i in range(len(padded) - 2))

    def _vectors(self, texts: list[str], grow: bool) -> sparse.csr_matrix:
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for i, text in enumerate(texts):
            for gram, count in self._grams(text).items():
                j = self.vocab.setdefault(gram, len(self.vocab)) if grow else self.vocab.get(gram)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    vals.append(float(count))
        matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(self.vocab)))
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        scale = sparse.diags(1.0 / np.maximum(norms, 1e-12))
        out: sparse.csr_matrix = sparse.csr_matrix(scale @ matrix)
        return out

    def similar(self, texts: list[str], n: int) -> list[list[tuple[str, float]]]:
        """For each text, the ``n`` most similar indexed queries other than itself."""
        out: list[list[tuple[str, float]]] = []
        for start in range(0, len(texts), 256):
            chunk = texts[start : start + 256]
            sims = (self._vectors(chunk, grow=False) @ self.matrix.T).tocsr()
            out.extend(self._top(sims, chunk, n))
        return out

    def _top(
        self, sims: sparse.csr_matrix, texts: list[str], n: int
    ) -> list[list[tuple[str, float]]]:
        out: list[list[tuple[str, float]]] = []
        for i, text in enumerate(texts):
            row = sims.getrow(i)
            order = np.argsort(-row.data, kind="stable")
            found = [
                (self.queries[row.indices[j]], float(row.data[j]))
                for j in order
                if self.queries[row.indices[j]] != text
            ]
            out.append(found[:n])
        return out


class _Stats:
    """Click counts of TRAIN: per (query, sku), per query, per sku, and click times per sku."""

    def __init__(self, train: pd.DataFrame) -> None:
        self.pair = train.groupby(["q", "sku"]).size()
        self.query = train.groupby("q").size()
        self.sku = train.groupby("sku").size().sort_values(ascending=False, kind="stable")
        self.total = float(len(train))
        self.category = train.groupby("sku")["category"].agg(lambda s: s.mode().iloc[0])
        self.query_category = train.groupby("q")["category"].agg(lambda s: s.mode().iloc[0])
        self.by_query: dict[str, list[str]] = {
            str(q): list(g.sort_values(ascending=False, kind="stable").index.get_level_values(1))
            for q, g in self.pair.groupby(level=0)
        }
        self.times = {str(s): np.sort(g.to_numpy()) for s, g in train.groupby("sku")["t"]}
        self.all_times = np.sort(train["t"].to_numpy())
        self.index = _TrigramIndex(sorted(self.by_query))

    def baseline(self, q: str, k: int) -> list[str]:
        """The query's most clicked SKUs, then the globally most clicked."""
        ranked = list(self.by_query.get(q, []))[:k]
        for sku in self.sku.index:
            if len(ranked) >= k:
                break
            if sku not in ranked:
                ranked.append(str(sku))
        return ranked


def _candidates(requests: pd.DataFrame, stats: _Stats, cfg: RankingBestBuyConfig) -> pd.DataFrame:
    """One row per (request, candidate SKU) with its features from ``stats``."""
    queries = sorted(set(requests["q"]))
    similar = dict(zip(queries, stats.index.similar(queries, cfg.n_similar), strict=True))
    fuzzies = {q: _fuzzy(stats, similar[q], cfg.n_similar) for q in queries}
    top_global = [str(s) for s in stats.sku.index[: cfg.n_global]]
    records: list[dict[str, object]] = []
    for req, (q, sku_clicked, t) in enumerate(
        zip(requests["q"], requests["sku"], requests["t"], strict=True)
    ):
        q_total = float(stats.query.get(q, 0))
        fuzzy, best, fuzzy_top = fuzzies[q]
        exact = stats.by_query.get(q, [])
        pool = list(dict.fromkeys([*exact[: cfg.n_exact], *fuzzy_top, *top_global]))
        baseline = stats.baseline(q, _K)
        q_leaf = str(stats.query_category.get(q, "")) if q_total > 0 else ""
        recent_all = _count_between(stats.all_times, t)
        for sku in pool:
            n_pair = float(stats.pair.get((q, sku), 0))
            n_sku = float(stats.sku.get(sku, 0))
            recent = _count_between(stats.times.get(sku, np.zeros(0)), t)
            records.append(
                {
                    "req": req,
                    "product_id": sku,
                    "click": int(sku == sku_clicked),
                    "qp_log_clicks": np.log1p(n_pair),
                    "qp_ctr_prior": (n_pair + cfg.alpha * n_sku / stats.total)
                    / (q_total + cfg.alpha),
                    "qp_log_impressions": np.log1p(q_total),
                    "bm25": fuzzy.get(sku, 0.0),
                    "matched_share": best.get(sku, 0.0),
                    "log_clicks": np.log1p(n_sku),
                    "ctr_prior": n_sku / stats.total,
                    "cart_prior": recent / max(recent_all, 1.0),
                    "leaf_match": float(bool(q_leaf) and stats.category.get(sku, "") == q_leaf),
                    "price_rel_user": float(baseline.index(sku) + 1) / _K
                    if sku in baseline
                    else 2.0,
                    "leaf": str(stats.category.get(sku, "")),
                    "query_leaf": q_leaf,
                }
            )
    rows = pd.DataFrame.from_records(records)
    rows["request_id"] = requests["request_id"].to_numpy(object)[rows["req"].to_numpy()]
    rows["position"] = 1
    rows["domain"] = "bestbuy"
    return rows


def _fuzzy(
    stats: _Stats, similar: list[tuple[str, float]], n: int
) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Similarity-weighted click shares over similar queries, the best similarity per SKU,
    and the ``n`` SKUs with the largest weighted share."""
    fuzzy: dict[str, float] = {}
    best: dict[str, float] = {}
    for other, sim in similar:
        other_total = float(stats.query[other])
        for sku in stats.by_query[other][:n]:
            fuzzy[sku] = fuzzy.get(sku, 0.0) + sim * float(stats.pair[(other, sku)]) / other_total
            best[sku] = max(best.get(sku, 0.0), sim)
    top = sorted(fuzzy, key=fuzzy.__getitem__, reverse=True)[:n]
    return fuzzy, best, top


def _count_between(times: npt.NDArray[np.float64], t: float) -> float:
    """Clicks in the ``_RECENT_DAYS`` before ``t`` (strictly before)."""
    start = t - _RECENT_DAYS * 86400.0
    return float(np.searchsorted(times, t, "left") - np.searchsorted(times, start, "left"))


def _out_of_fold(train: pd.DataFrame, cfg: RankingBestBuyConfig) -> pd.DataFrame:
    """Candidates of TRAIN's rows, each fold's features counted on the other folds (users are
    assigned to folds, so a row never sees its own or its user's clicks)."""
    users = train["user"].unique()
    rng = np.random.default_rng(cfg.seed)
    fold_of = dict(zip(users, rng.integers(0, cfg.folds, len(users)), strict=True))
    fold = train["user"].map(fold_of).to_numpy()
    parts: list[pd.DataFrame] = []
    for f in range(cfg.folds):
        rest = train[fold != f]
        part = train[fold == f]
        if rest.empty or part.empty:
            continue
        rows = _candidates(part.reset_index(drop=True), _Stats(rest), cfg)
        rows["req"] = part.index.to_numpy()[rows["req"].to_numpy()]
        parts.append(rows)
    if not parts:
        raise InvalidInputError("TRAIN needs clicks of at least two users to learn a ranker")
    return pd.concat(parts, ignore_index=True)


def _samples(rows: pd.DataFrame, n_requests: int) -> Samples:
    return make_samples(rows, np.full((n_requests, 1), "", dtype=object))


def run_ranking_bestbuy_suite(cfg: RankingBestBuyConfig, say: Say | None = None) -> Report:
    """Baseline and learned rankers on TEST clicks (see the module docstring)."""
    tell = say or (lambda _message: None)
    report = Report(
        suite="ranking",
        primary_metric=RankingBestBuySuite.primary_metric,
        config={
            "dataset": "bestbuy",
            "train": cfg.train,
            "test": cfg.test,
            "epochs": cfg.epochs,
            "n_exact": cfg.n_exact,
            "n_similar": cfg.n_similar,
            "n_global": cfg.n_global,
            "alpha": cfg.alpha,
            "recent_days": _RECENT_DAYS,
            "seed": cfg.seed,
            "labels": "click only",
        },
    )
    with report.timer("samples"):
        tell("counting clicks and building candidates")
        train, test = read_clicks(cfg.train), read_clicks(cfg.test)
        if train.empty or test.empty:
            raise InvalidInputError("TRAIN and TEST must each hold at least one click")
        train["request_id"] = [f"train:{i}" for i in range(len(train))]
        test["request_id"] = [f"test:{i}" for i in range(len(test))]
        stats = _Stats(train)
        train_rows = _out_of_fold(train, cfg)
        test_rows = _candidates(test, stats, cfg)
    # training requests whose click is not among the candidates teach nothing
    keep = train_rows.groupby("request_id")["click"].transform("max") > 0
    train_samples = _samples(train_rows[keep].reset_index(drop=True), len(train))
    test_samples = _samples(test_rows, len(test))
    qrels = {str(r): {str(s): 1.0} for r, s in zip(test["request_id"], test["sku"], strict=True)}
    recall = test_rows.groupby("request_id")["click"].max().reindex(test["request_id"]).fillna(0)
    report.dataset = {
        "train_clicks": len(train),
        "train_queries": int(train["q"].nunique()),
        "test_clicks": len(test),
        "test_queries_unseen": int((~test["q"].isin(set(train["q"]))).sum()),
        "skus": int(pd.concat([train["sku"], test["sku"]]).nunique()),
        "candidate_recall": float(recall.mean()),
        "train_requests_used": train_samples.n_requests,
    }
    with report.timer("baselines"):
        run = {
            str(r): stats.baseline(q, _K)
            for r, q in zip(test["request_id"], test["q"], strict=True)
        }
        report.add_evaluation(
            "baseline/query-popularity",
            evaluate_run(run, qrels, metrics=(f"map@{_K}",), seed=cfg.seed),
        )
    train_and_add(
        report,
        train_samples,
        test_samples,
        qrels,
        (f"map@{_K}",),
        cfg.models,
        click_only_config(cfg.epochs, cfg.seed),
        "none",
        tell,
        lightgbm_name="shopsearch/lightgbm",
    )
    return report


@SUITES.register()
class RankingBestBuySuite(Suite[RankingBestBuyConfig]):
    """Ranking models on Best Buy clicks: MAP@5 of the clicked SKU.

    Example: shopsearch eval ranking --dataset bestbuy --train A.csv --test B.csv
    --report r.json
    """

    name = "ranking/bestbuy"
    config_type = RankingBestBuyConfig
    primary_metric = f"map@{_K}"

    def run(self, config: RankingBestBuyConfig, say: Say) -> Report:
        """:func:`run_ranking_bestbuy_suite`."""
        return run_ranking_bestbuy_suite(config, say)


__all__ = [
    "RankingBestBuyConfig",
    "RankingBestBuySuite",
    "normalise",
    "read_clicks",
    "run_ranking_bestbuy_suite",
]
