"""Evaluation metrics with trec_eval definitions, and bootstrap confidence intervals.

Ranking metrics
---------------
A *run* maps a query id to its retrieved product ids, best first; *qrels* map a query id to
``{product_id: grade}``. Grades are finite numbers ``>= 0`` and may be fractional (Home Depot's
averaged 1–3 judgments). Every ranking metric returns one value per query, as a float64 array
aligned to ``query_ids``; its ``.mean()`` is the reported number.

The definitions are trec_eval's, as computed by ir-measures with its pytrec_eval backend:

=================  =====================================  ======================================
shopsearch         ir-measures                            definition
=================  =====================================  ======================================
``ndcg@k``         ``nDCG@k`` (trec_eval ``ndcg_cut_k``)  gain = grade (linear, *not* 2^g - 1),
                                                          discount 1/log2(rank + 1); ideal DCG
                                                          from all judged products of the query
``map@k``          ``AP(rel=t)@k`` (``map_cut_k``)        sum of precision@r over relevant
                                                          ranks r <= k, divided by *all* relevant
                                                          judged products (not min(k, R))
``recall@k``       ``R(rel=t)@k`` (``recall_k``)          relevant in top k / all relevant judged
``mrr`` / ``@k``   ``RR(rel=t)`` (``recip_rank``)         1 / rank of the first relevant product
                                                          (0 if none, or none within k)
=================  =====================================  ======================================

* **Relevance threshold.** A product is relevant when ``grade >= rel_threshold`` (inclusive),
  which is ir-measures' ``rel=`` and trec_eval's ``-l``/``relevance_level``. The default
  ``rel_threshold=1`` is theirs too. trec_eval only takes integer grades, so a fractional
  threshold maps to it by scaling: Home Depot's ``rel_threshold=2.33`` on grades in thirds is
  ``rel=7`` on ``round(3 * grade)``. nDCG does not use the threshold (gains are the grades); it
  is also invariant to scaling the grades, so the same mapping checks it.
* **Unjudged products** in a run count as grade 0 and never as relevant.
* **Which queries.** By default every query in ``qrels``, in the order of ``qrels`` (as
  ir-measures, i.e. ``trec_eval -c``): a query absent from the run, or with an empty list,
  scores 0, and a query with no relevant product scores 0 on every metric and *is* averaged.
  Queries of the run that are not in ``qrels`` are ignored. Pass ``query_ids`` to choose the
  set, for example :func:`relevant_query_ids` to skip queries no system can score on.
* ir-measures' pytrec_eval backend silently ignores the cut-off of ``RR@k``; ``mrr@k`` here
  applies it (it equals ``RR`` on the run cut to k).

Classification and regression
-----------------------------
:func:`auc` (ties count one half, through average ranks) raises :class:`UndefinedMetricError`
(an :class:`~shopsearch.errors.InvalidInputError`) when only one class is present: the AUC is
undefined there and a silent ``nan`` would poison the averages built on it. :func:`gauc` skips
groups with one class (as the DIN paper's GAUC does) and raises it only when no group has both.
A suite catches :class:`UndefinedMetricError` alone, and reports the metric as undefined with
the reason (:meth:`~shopsearch.evaluate.report.Report.add_system`); every other error of bad
input (mismatched lengths, non-finite scores) propagates.

Confidence intervals
--------------------
Percentile bootstrap over the unit that was sampled: queries for ranking metrics
(:func:`bootstrap_ci`, :func:`paired_bootstrap_diff`), groups (users, requests) for AUC and
GAUC (:func:`auc_ci`, :func:`gauc_ci`, and the generic :func:`group_bootstrap_ci`). AUC
resamples reuse one global sort: each resample only re-weights per-(score-tie-block, group)
class counts, so 200 resamples (the default for AUC) of 1M rows take seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import sparse

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.parallel import parallel_map

__all__ = [
    "RANKING_METRICS",
    "JudgedRun",
    "PairedBootstrap",
    "UndefinedMetricError",
    "auc",
    "auc_ci",
    "bootstrap_ci",
    "gauc",
    "gauc_ci",
    "group_bootstrap_ci",
    "ir_measures_name",
    "map_at_k",
    "mrr",
    "ndcg_at_k",
    "paired_bootstrap_diff",
    "parse_metric",
    "recall_at_k",
    "relevant_query_ids",
    "rmse",
]

FloatArray = npt.NDArray[np.float64]
Q = TypeVar("Q", bound=Hashable)
D = TypeVar("D", bound=Hashable)

#: Ranking metric names understood by :func:`parse_metric` (each may take ``@k``).
RANKING_METRICS: tuple[str, ...] = ("ndcg", "map", "recall", "mrr")
_METRIC_RE = re.compile(r"^(ndcg|map|recall|mrr)(?:@(\d+))?$")
_IR_MEASURES = {"ndcg": "nDCG", "map": "AP", "recall": "R", "mrr": "RR"}


class UndefinedMetricError(InvalidInputError):
    """Valid data on which a metric has no value, e.g. an AUC over rows of one class."""


# Elements per resample chunk (index matrices, dense AUC blocks): bounds memory to ~32 MB.
_CHUNK_ELEMENTS = 4_000_000


# --------------------------------------------------------------------------- validation


def _check_k(k: int, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInputError(f"{name}={k!r} is not allowed; use an integer >= 1")
    return int(k)


def _check_threshold(rel_threshold: float) -> float:
    value = float(rel_threshold)
    if not math.isfinite(value):
        raise InvalidInputError(
            f"rel_threshold={rel_threshold!r} is not allowed; use a finite grade, e.g. 1"
        )
    return value


def _float_vector(name: str, values: npt.ArrayLike, *, allow_empty: bool = False) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numbers: {exc}") from exc
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} has shape {arr.shape}; use a 1-D sequence of numbers")
    if arr.size == 0 and not allow_empty:
        raise InvalidInputError(f"{name} is empty; give at least one value")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InvalidInputError(
            f"{name}[{bad[0]}]={arr[bad[0]]} is not allowed ({bad.size} non-finite value(s)); "
            f"{name} must be finite numbers"
        )
    return arr


def _labels_vector(labels: npt.ArrayLike) -> FloatArray:
    y = _float_vector("labels", labels)
    bad = np.flatnonzero((y != 0.0) & (y != 1.0))
    if bad.size:
        raise InvalidInputError(
            f"labels[{bad[0]}]={y[bad[0]]} is not allowed; labels must be 0/1 or booleans"
        )
    return y


def _same_length(**arrays: np.ndarray) -> None:
    sizes = {name: len(a) for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"len({n})={s}" for n, s in sizes.items())
        raise InvalidInputError(f"lengths differ ({shown}); give one value per row in each")


def _check_bootstrap(n_resamples: int, alpha: float) -> None:
    _check_k(n_resamples, "n_resamples")
    if not 0.0 < float(alpha) < 1.0:
        raise InvalidInputError(f"alpha={alpha!r} is not allowed; use 0 < alpha < 1, e.g. 0.05")


def _group_codes(groups: npt.ArrayLike, n_rows: int) -> tuple[npt.NDArray[np.intp], int]:
    arr = np.asarray(groups)
    if arr.ndim != 1:
        raise InvalidInputError(f"groups has shape {arr.shape}; use one group id per row")
    if len(arr) != n_rows:
        raise InvalidInputError(
            f"lengths differ (len(groups)={len(arr)}, rows={n_rows}); give one group id per row"
        )
    try:
        uniques, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise InvalidInputError(f"groups must be sortable ids of one type: {exc}") from exc
    return codes.astype(np.intp).ravel(), len(uniques)


# --------------------------------------------------------------------------- ranking


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split a metric name such as ``"ndcg@10"`` or ``"mrr"`` into ``(kind, k)``.

    Args:
        name: ``ndcg@k``, ``map@k``, ``recall@k``, ``mrr`` or ``mrr@k``.

    Returns:
        The metric kind and its cut-off (``None`` for ``mrr`` without one).

    Raises:
        InvalidInputError: for an unknown name, a missing cut-off or ``k < 1``.
    """
    match = _METRIC_RE.match(name)
    if match is None:
        raise InvalidInputError(
            f"metric {name!r} is not known; use one of ndcg@k, map@k, recall@k, mrr, mrr@k"
        )
    kind, k_text = match.group(1), match.group(2)
    if k_text is None:
        if kind != "mrr":
            raise InvalidInputError(f"metric {name!r} needs a cut-off; use e.g. {kind}@10")
        return kind, None
    return kind, _check_k(int(k_text))


def ir_measures_name(metric: str, rel_threshold: float = 1) -> str:
    """The ir-measures measure that computes ``metric`` at ``rel_threshold``.

    Args:
        metric: a name accepted by :func:`parse_metric`.
        rel_threshold: the relevance threshold; ir-measures' ``rel=`` is an integer, so it must
            be a whole number (scale fractional grades first, see the module docstring).

    Returns:
        For example ``"nDCG@10"``, ``"AP(rel=2)@5"``, ``"R@100"`` or ``"RR(rel=2)"``. Note
        that ir-measures' pytrec_eval backend ignores the cut-off of ``RR@k``.

    Raises:
        InvalidInputError: for an unknown metric or a fractional threshold.
    """
    kind, k = parse_metric(metric)
    threshold = _check_threshold(rel_threshold)
    if not threshold.is_integer():
        raise InvalidInputError(
            f"rel_threshold={rel_threshold} has no ir-measures equivalent (rel= is an integer); "
            "scale the grades so the threshold is a whole number"
        )
    params = "" if kind == "ndcg" or threshold == 1 else f"(rel={int(threshold)})"
    cut = "" if k is None else f"@{k}"
    return f"{_IR_MEASURES[kind]}{params}{cut}"


def relevant_query_ids(qrels: Mapping[Q, Mapping[D, float]], rel_threshold: float = 1) -> list[Q]:
    """Queries of ``qrels`` with at least one product graded ``>= rel_threshold``, in order.

    Args:
        qrels: ``{query_id: {product_id: grade}}``.
        rel_threshold: minimum grade of a relevant product (inclusive).

    Returns:
        The query ids to pass as ``query_ids`` to skip queries no system can score on.
    """
    threshold = _check_threshold(rel_threshold)
    return [q for q, judged in qrels.items() if any(g >= threshold for g in judged.values())]


class JudgedRun(Generic[Q]):
    """A run joined with its qrels once, so that several ranking metrics reuse the join.

    Args:
        run: ``{query_id: [product_id, ...]}``, best first; no duplicates within a query.
        qrels: ``{query_id: {product_id: grade}}`` with finite grades ``>= 0``.
        query_ids: queries to evaluate, each present in ``qrels``; default: all of ``qrels``.
        depth: ranks kept per query; metrics can use cut-offs up to it. ``None`` keeps the
            longest ranked list (needed for ``mrr`` without a cut-off).

    Raises:
        InvalidInputError: for an empty query set, a repeated query id or one missing from
            ``qrels``, a bad grade, a duplicate product in a ranked list or ``depth < 1``.

    Attributes:
        query_ids: the evaluated queries; every metric array is aligned to it.
        depth: the number of ranks kept.
    """

    def __init__(
        self,
        run: Mapping[Q, Sequence[D]],
        qrels: Mapping[Q, Mapping[D, float]],
        *,
        query_ids: Sequence[Q] | None = None,
        depth: int | None = None,
    ) -> None:
        self.query_ids: list[Q] = list(qrels) if query_ids is None else list(query_ids)
        if not self.query_ids:
            raise InvalidInputError("no queries to evaluate; qrels or query_ids is empty")
        if len(set(self.query_ids)) != len(self.query_ids):
            raise InvalidInputError("query_ids lists a query more than once; list each once")
        ranked_lists: list[Sequence[D]] = []
        for q in self.query_ids:
            if q not in qrels:
                raise InvalidInputError(
                    f"query {q!r} has no judgments in qrels; evaluate only judged queries"
                )
            ranked = run.get(q, ())
            if isinstance(ranked, str | bytes):
                raise InvalidInputError(
                    f"run[{q!r}] is a string; give a list of product ids, best first"
                )
            ranked_lists.append(ranked)
        longest = max((len(r) for r in ranked_lists), default=0)
        self.depth: int = max(longest, 1) if depth is None else _check_k(depth, "depth")

        n = len(self.query_ids)
        # NaN marks "unjudged or nothing retrieved": no gain, never relevant.
        self._grades = np.full((n, self.depth), np.nan)
        self._ideal = np.zeros((n, self.depth))
        self._judged: list[FloatArray] = []
        for i, (q, ranked) in enumerate(zip(self.query_ids, ranked_lists, strict=True)):
            judged = qrels[q]
            grades = _grades_of(q, judged)
            self._judged.append(grades)
            top = np.sort(grades)[::-1][: self.depth]
            self._ideal[i, : len(top)] = top
            if len(set(ranked)) != len(ranked):
                dup = next(d for j, d in enumerate(ranked) if d in ranked[:j])
                raise InvalidInputError(
                    f"run[{q!r}] lists product {dup!r} more than once; rank each product once"
                )
            head = ranked[: self.depth]
            self._grades[i, : len(head)] = [judged.get(d, np.nan) for d in head]
        self._discount = 1.0 / np.log2(np.arange(2, self.depth + 2, dtype=np.float64))

    def _cut(self, k: int | None, name: str = "k") -> int:
        if k is None:
            return self.depth
        k = _check_k(k, name)
        if k > self.depth:
            raise InvalidInputError(
                f"{name}={k} is deeper than the {self.depth} ranks kept; "
                f"build the JudgedRun with depth >= {k}"
            )
        return k

    def _relevant(self, k: int, rel_threshold: float) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        threshold = _check_threshold(rel_threshold)
        # NaN (unjudged / not retrieved) becomes -inf: never relevant.
        rel = np.nan_to_num(self._grades[:, :k], nan=-np.inf) >= threshold
        n_rel = np.array([np.count_nonzero(g >= threshold) for g in self._judged], np.float64)
        return rel, n_rel

    def ndcg(self, k: int) -> FloatArray:
        """nDCG@k per query (trec_eval ``ndcg_cut_k``; 0 when no product has a positive grade)."""
        k = self._cut(k)
        dcg = np.nan_to_num(self._grades[:, :k], nan=0.0) @ self._discount[:k]
        idcg = self._ideal[:, :k] @ self._discount[:k]
        result: FloatArray = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
        return result

    def ap(self, k: int, rel_threshold: float = 1) -> FloatArray:
        """AP@k per query (trec_eval ``map_cut_k``; 0 when the query has no relevant product)."""
        k = self._cut(k)
        rel, n_rel = self._relevant(k, rel_threshold)
        precision = np.cumsum(rel, axis=1) / np.arange(1, k + 1, dtype=np.float64)
        total = (precision * rel).sum(axis=1)
        result: FloatArray = np.divide(total, n_rel, out=np.zeros_like(total), where=n_rel > 0)
        return result

    def recall(self, k: int, rel_threshold: float = 1) -> FloatArray:
        """Recall@k per query (trec_eval ``recall_k``; 0 when the query has no relevant product)."""
        k = self._cut(k)
        rel, n_rel = self._relevant(k, rel_threshold)
        found = rel.sum(axis=1).astype(np.float64)
        result: FloatArray = np.divide(found, n_rel, out=np.zeros_like(found), where=n_rel > 0)
        return result

    def rr(self, rel_threshold: float = 1, k: int | None = None) -> FloatArray:
        """Reciprocal rank of the first relevant product within ``k`` (all kept ranks if None)."""
        k = self._cut(k)
        rel, _ = self._relevant(k, rel_threshold)
        first = rel.argmax(axis=1)
        hit = rel[np.arange(len(first)), first]
        return np.where(hit, 1.0 / (first + 1.0), 0.0)

    def metric(self, name: str, rel_threshold: float = 1) -> FloatArray:
        """Per-query values of a metric named as in :func:`parse_metric`, e.g. ``"map@5"``."""
        kind, k = parse_metric(name)
        if kind == "mrr":
            return self.rr(rel_threshold, k)
        assert k is not None  # parse_metric guarantees a cut-off for the others
        if kind == "ndcg":
            return self.ndcg(k)
        if kind == "map":
            return self.ap(k, rel_threshold)
        return self.recall(k, rel_threshold)


def _grades_of(query_id: Hashable, judged: Mapping[D, float]) -> FloatArray:
    try:
        grades = np.fromiter(judged.values(), dtype=np.float64, count=len(judged))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"qrels[{query_id!r}] grades must be numbers: {exc}") from exc
    bad = np.flatnonzero(~np.isfinite(grades) | (grades < 0))
    if bad.size:
        doc = list(judged)[bad[0]]
        raise InvalidInputError(
            f"qrels[{query_id!r}][{doc!r}]={grades[bad[0]]} is not allowed; "
            "grades must be finite numbers >= 0"
        )
    return grades


def _judged(
    run: Mapping[Q, Sequence[D]],
    qrels: Mapping[Q, Mapping[D, float]],
    k: int | None,
    query_ids: Sequence[Q] | None,
) -> JudgedRun[Q]:
    """The :class:`JudgedRun` of ``run`` scored to depth ``k`` (checked; ``None`` = all)."""
    depth = None if k is None else _check_k(k)
    return JudgedRun(run, qrels, query_ids=query_ids, depth=depth)


def ndcg_at_k(
    run: Mapping[Q, Sequence[D]],
    qrels: Mapping[Q, Mapping[D, float]],
    k: int,
    *,
    query_ids: Sequence[Q] | None = None,
) -> FloatArray:
    """nDCG@k per query, as trec_eval's ``ndcg_cut_k`` / ir-measures' ``nDCG@k``.

    Args:
        run: ``{query_id: [product_id, ...]}``, best first.
        qrels: ``{query_id: {product_id: grade}}``; the grade is the gain.
        k: cut-off, ``>= 1``.
        query_ids: queries to evaluate (default: all of ``qrels``, in order).

    Returns:
        One value per query, aligned to ``query_ids``.
    """
    return _judged(run, qrels, k, query_ids).ndcg(k)


def map_at_k(
    run: Mapping[Q, Sequence[D]],
    qrels: Mapping[Q, Mapping[D, float]],
    k: int,
    *,
    rel_threshold: float = 1,
    query_ids: Sequence[Q] | None = None,
) -> FloatArray:
    """AP@k per query (mean it for MAP@k), as trec_eval's ``map_cut_k`` / ``AP(rel=t)@k``.

    Args:
        run: ``{query_id: [product_id, ...]}``, best first.
        qrels: ``{query_id: {product_id: grade}}``.
        k: cut-off, ``>= 1``.
        rel_threshold: minimum grade of a relevant product (inclusive).
        query_ids: queries to evaluate (default: all of ``qrels``, in order).

    Returns:
        One value per query, aligned to ``query_ids``.
    """
    return _judged(run, qrels, k, query_ids).ap(k, rel_threshold)


def recall_at_k(
    run: Mapping[Q, Sequence[D]],
    qrels: Mapping[Q, Mapping[D, float]],
    k: int,
    *,
    rel_threshold: float = 1,
    query_ids: Sequence[Q] | None = None,
) -> FloatArray:
    """Recall@k per query, as trec_eval's ``recall_k`` / ir-measures' ``R(rel=t)@k``.

    Args:
        run: ``{query_id: [product_id, ...]}``, best first.
        qrels: ``{query_id: {product_id: grade}}``.
        k: cut-off, ``>= 1``.
        rel_threshold: minimum grade of a relevant product (inclusive).
        query_ids: queries to evaluate (default: all of ``qrels``, in order).

    Returns:
        One value per query, aligned to ``query_ids``.
    """
    return _judged(run, qrels, k, query_ids).recall(k, rel_threshold)


def mrr(
    run: Mapping[Q, Sequence[D]],
    qrels: Mapping[Q, Mapping[D, float]],
    *,
    rel_threshold: float = 1,
    k: int | None = None,
    query_ids: Sequence[Q] | None = None,
) -> FloatArray:
    """Reciprocal rank per query (mean it for MRR), as trec_eval's ``recip_rank``.

    Args:
        run: ``{query_id: [product_id, ...]}``, best first.
        qrels: ``{query_id: {product_id: grade}}``.
        rel_threshold: minimum grade of a relevant product (inclusive).
        k: optional cut-off: a first relevant product below rank ``k`` scores 0.
        query_ids: queries to evaluate (default: all of ``qrels``, in order).

    Returns:
        One value per query, aligned to ``query_ids``.
    """
    return _judged(run, qrels, k, query_ids).rr(rel_threshold, k)


# --------------------------------------------------------------------------- classification


def _grouped_auc(
    labels: FloatArray, scores: FloatArray, codes: npt.NDArray[np.intp], n_groups: int
) -> tuple[FloatArray, FloatArray]:
    """Per-group ROC AUC (nan for one-class groups) and group sizes, in O(n log n)."""
    n = len(scores)
    order = np.lexsort((scores, codes))
    s, c, y = scores[order], codes[order], labels[order]
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1])
    starts = np.flatnonzero(new_block)
    ends = np.append(starts[1:], n)
    block = np.cumsum(new_block) - 1
    mid_position = (starts + ends - 1) / 2.0  # average 0-based position of each tie block
    group_start = np.searchsorted(c, np.arange(n_groups))
    rank = mid_position[block] - group_start[c] + 1.0  # average 1-based rank within the group
    size = np.bincount(c, minlength=n_groups).astype(np.float64)
    pos = np.bincount(c, weights=y, minlength=n_groups)
    neg = size - pos
    pos_rank_sum = np.bincount(c, weights=rank * y, minlength=n_groups)
    pairs = pos * neg
    u = pos_rank_sum - pos * (pos + 1.0) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_group = np.where(pairs > 0, u / pairs, np.nan)
    return per_group, size


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC: the probability that a random positive outscores a random negative.

    Ties count one half (average ranks, i.e. the Mann–Whitney U statistic).

    Args:
        labels: 0/1 (or boolean) per row.
        scores: finite score per row; higher means more likely positive.

    Returns:
        The AUC in ``[0, 1]``.

    Raises:
        UndefinedMetricError: when only one class is present (the AUC is undefined).
        InvalidInputError: for mismatched lengths, non-finite scores or labels other than 0/1.
    """
    y, s = _labels_vector(labels), _float_vector("scores", scores)
    _same_length(labels=y, scores=s)
    n_pos = int(y.sum())
    if n_pos in (0, len(y)):
        raise UndefinedMetricError(
            f"AUC is undefined: all {len(y)} labels are {int(y[0])}; "
            "give rows of both classes (or use gauc, which skips one-class groups)"
        )
    per_group, _ = _grouped_auc(y, s, np.zeros(len(y), dtype=np.intp), 1)
    return float(per_group[0])


def _gauc_parts(
    labels: npt.ArrayLike, scores: npt.ArrayLike, groups: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    y, s = _labels_vector(labels), _float_vector("scores", scores)
    _same_length(labels=y, scores=s)
    codes, n_groups = _group_codes(groups, len(y))
    per_group, size = _grouped_auc(y, s, codes, n_groups)
    valid = ~np.isnan(per_group)
    if not valid.any():
        raise UndefinedMetricError(
            f"GAUC is undefined: none of the {n_groups} groups has both a positive and a "
            "negative row; give groups with both classes"
        )
    return per_group[valid], size[valid]


def gauc(labels: npt.ArrayLike, scores: npt.ArrayLike, groups: npt.ArrayLike) -> float:
    """Group AUC (DIN): the impression-weighted mean of per-group AUC.

    ``GAUC = sum_g n_g * AUC_g / sum_g n_g`` over the groups (users, requests) that have both a
    positive and a negative row; ``n_g`` is the number of rows (impressions) of group ``g``.
    One-class groups are skipped.

    Args:
        labels: 0/1 (or boolean) per row.
        scores: finite score per row.
        groups: group id per row (any sortable ids).

    Returns:
        The GAUC in ``[0, 1]``.

    Raises:
        UndefinedMetricError: when no group has both classes.
        InvalidInputError: for mismatched lengths or bad values.
    """
    per_group, weight = _gauc_parts(labels, scores, groups)
    return float(np.dot(per_group, weight) / weight.sum())


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error.

    Args:
        y_true: finite targets.
        y_pred: finite predictions, one per target.

    Returns:
        ``sqrt(mean((y_true - y_pred) ** 2))``.

    Raises:
        InvalidInputError: for mismatched lengths, empty or non-finite input.
    """
    t, p = _float_vector("y_true", y_true), _float_vector("y_pred", y_pred)
    _same_length(y_true=t, y_pred=p)
    return float(np.sqrt(np.mean((t - p) ** 2)))


# --------------------------------------------------------------------------- bootstrap


class PairedBootstrap(NamedTuple):
    """Result of :func:`paired_bootstrap_diff`: mean of ``a - b``, its CI and a p-value."""

    mean_diff: float
    low: float
    high: float
    p_value: float


def _resample_counts(
    rng: np.random.Generator, n_units: int, n_resamples: int
) -> Iterator[FloatArray]:
    """Multiplicity of each unit in each resample (n_units draws with replacement).

    Yields (chunk, n_units) blocks so that memory stays bounded for any number of units.
    """
    chunk = max(1, _CHUNK_ELEMENTS // max(n_units, 1))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        drawn = rng.integers(0, n_units, size=(size, n_units))
        drawn += np.arange(size)[:, None] * n_units  # one bincount for all rows of the block
        counts = np.bincount(drawn.ravel(), minlength=size * n_units)
        yield counts.reshape(size, n_units).astype(np.float64)


def _percentile_interval(stats: FloatArray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _bootstrap_means(values: FloatArray, n_resamples: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    n = len(values)
    return np.concatenate([c @ values / n for c in _resample_counts(rng, n, n_resamples)])


def bootstrap_ci(
    per_query_values: npt.ArrayLike,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling queries (the values) with replacement.

    Args:
        per_query_values: one finite value per query, e.g. from :func:`ndcg_at_k`.
        n_resamples: number of bootstrap resamples.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        seed: random seed; the same inputs and seed give the same interval.

    Returns:
        ``(low, high)``.

    Raises:
        InvalidInputError: for empty or non-finite values, ``n_resamples < 1`` or alpha
            outside ``(0, 1)``.
    """
    values = _float_vector("per_query_values", per_query_values)
    _check_bootstrap(n_resamples, alpha)
    return _percentile_interval(_bootstrap_means(values, n_resamples, seed), alpha)


def paired_bootstrap_diff(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedBootstrap:
    """Paired bootstrap of ``mean(a) - mean(b)`` for two systems on the same queries.

    Queries are resampled jointly, so per-query difficulty cancels. The p-value is the
    two-sided bootstrap test with the null-shifted distribution: ``(1 + #{|d*_i - d| >= |d|})
    / (n_resamples + 1)``, where ``d`` is the observed mean difference and ``d*_i`` the
    resampled ones; it is 1 when ``d == 0``.

    Args:
        a: per-query values of system A, aligned with ``b``.
        b: per-query values of system B on the same queries.
        n_resamples: number of bootstrap resamples.
        alpha: 1 - confidence level.
        seed: random seed.

    Returns:
        ``PairedBootstrap(mean_diff, low, high, p_value)``; unpacks as a 4-tuple.

    Raises:
        InvalidInputError: for mismatched lengths or the errors of :func:`bootstrap_ci`.
    """
    x, y = _float_vector("a", a), _float_vector("b", b)
    _same_length(a=x, b=y)
    _check_bootstrap(n_resamples, alpha)
    diff = x - y
    observed = float(diff.mean())
    means = _bootstrap_means(diff, n_resamples, seed)
    low, high = _percentile_interval(means, alpha)
    extreme = np.count_nonzero(np.abs(means - observed) >= abs(observed))
    return PairedBootstrap(observed, low, high, float((1 + extreme) / (n_resamples + 1)))


def _finish_group_stats(stats: FloatArray, alpha: float, what: str) -> tuple[float, float]:
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        raise InvalidInputError(
            f"every bootstrap resample left {what} undefined (one class only); "
            "give more groups with both classes"
        )
    return _percentile_interval(stats, alpha)


def auc_ci(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    n_resamples: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the ROC AUC, resampling groups (or rows) with replacement.

    Rows are sorted once; a resample only re-weights the per-(score tie block, group) class
    counts through a sparse product, so the cost per resample is linear in the rows. Resamples
    that contain one class only are dropped.

    Args:
        labels: 0/1 per row.
        scores: finite score per row.
        groups: the sampling unit per row (request, user); ``None`` resamples rows.
        n_resamples: number of resamples (200 by default: AUC data is usually large).
        alpha: 1 - confidence level.
        seed: random seed.

    Returns:
        ``(low, high)``.

    Raises:
        InvalidInputError: for the input errors of :func:`auc` and bad bootstrap parameters.
    """
    y, s = _labels_vector(labels), _float_vector("scores", scores)
    _same_length(labels=y, scores=s)
    _check_bootstrap(n_resamples, alpha)
    auc(y, s)  # validates that both classes are present
    n = len(y)
    if groups is None:
        codes, n_groups = np.arange(n, dtype=np.intp), n
    else:
        codes, n_groups = _group_codes(groups, n)
    order = np.argsort(s, kind="stable")
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = s[order][1:] != s[order][:-1]
    block = np.empty(n, dtype=np.intp)
    block[order] = np.cumsum(new_block) - 1
    n_blocks = int(new_block.sum())
    shape = (n_blocks, n_groups)
    pos_counts = sparse.csr_array((y, (block, codes)), shape=shape)
    neg_counts = sparse.csr_array((1.0 - y, (block, codes)), shape=shape)

    rng = np.random.default_rng(seed)
    blocks = _resample_counts(rng, n_groups, n_resamples)
    stats = parallel_map(_resampled_auc, blocks, _ClassCounts(pos_counts, neg_counts))
    return _finish_group_stats(np.concatenate(stats), alpha, "the AUC")


class _ClassCounts(NamedTuple):
    """Positives and negatives per (score tie block, group), tie blocks in score order."""

    pos: sparse.csr_array
    neg: sparse.csr_array


def _resampled_auc(counts: _ClassCounts, weights: FloatArray) -> FloatArray:
    """The AUC of each resample, given as a row of group multiplicities (``nan``: one class)."""
    n_blocks = counts.pos.shape[0]
    ones = np.ones(n_blocks)
    stats: list[FloatArray] = []
    # Sub-chunk so the dense (tie blocks x resamples) matrices stay within the budget.
    step = max(1, _CHUNK_ELEMENTS // n_blocks)
    for start in range(0, len(weights), step):
        block = weights[start : start + step].T
        pos = np.asarray(counts.pos @ block)
        neg = np.asarray(counts.neg @ block)
        below = np.cumsum(neg, axis=0)
        below -= 0.5 * neg  # negatives strictly below, plus half the tied ones
        wins = np.einsum("tb,tb->b", pos, below)
        pairs = (ones @ pos) * (ones @ neg)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats.append(np.where(pairs > 0, wins / pairs, np.nan))
    return np.concatenate(stats)


def gauc_ci(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    groups: npt.ArrayLike,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of :func:`gauc`, resampling groups with replacement.

    Per-group AUCs and weights are computed once; only groups with both classes take part
    (the others never count in GAUC), so each resample is a weighted mean.

    Args:
        labels: 0/1 per row.
        scores: finite score per row.
        groups: group id per row.
        n_resamples: number of resamples.
        alpha: 1 - confidence level.
        seed: random seed.

    Returns:
        ``(low, high)``.

    Raises:
        InvalidInputError: for the input errors of :func:`gauc` and bad bootstrap parameters.
    """
    per_group, weight = _gauc_parts(labels, scores, groups)
    _check_bootstrap(n_resamples, alpha)
    rng = np.random.default_rng(seed)
    blocks = _resample_counts(rng, len(per_group), n_resamples)
    stats = np.concatenate([(c @ (weight * per_group)) / (c @ weight) for c in blocks])
    return _percentile_interval(stats, alpha)


def group_bootstrap_ci(
    metric: Callable[..., float],
    groups: npt.ArrayLike,
    *arrays: npt.ArrayLike,
    n_resamples: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of any row-level metric, resampling whole groups.

    Each resample draws groups with replacement, gathers their rows from every array (a group
    drawn twice contributes its rows twice) and calls ``metric(*resampled_arrays)``. Resamples
    where the metric returns ``nan`` or raises :class:`InvalidInputError` (e.g. one class left)
    are dropped. This is the general, slower path; prefer :func:`auc_ci` / :func:`gauc_ci`.

    Args:
        metric: function of the row arrays returning a float, e.g. :func:`rmse`.
        groups: the sampling unit per row.
        *arrays: row-aligned arrays passed to ``metric`` in this order.
        n_resamples: number of resamples.
        alpha: 1 - confidence level.
        seed: random seed.

    Returns:
        ``(low, high)``.

    Raises:
        InvalidInputError: for mismatched lengths, bad bootstrap parameters or when every
            resample fails.
    """
    _check_bootstrap(n_resamples, alpha)
    if not arrays:
        raise InvalidInputError("give at least one row array for the metric")
    columns = [np.asarray(a) for a in arrays]
    n = len(columns[0])
    for i, col in enumerate(columns):
        if col.ndim == 0 or len(col) != n:
            raise InvalidInputError(
                f"lengths differ (arrays[{i}] has {col.size} rows, arrays[0] has {n}); "
                "give row-aligned arrays"
            )
    codes, n_groups = _group_codes(groups, n)
    by_group = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rng = np.random.default_rng(seed)
    # Same resampling stream as auc_ci / gauc_ci: equal seeds give equal resamples.
    blocks = _resample_counts(rng, n_groups, n_resamples)
    rows = _GroupRows(metric, columns, by_group, sizes, starts)
    stats = parallel_map(_resampled_metric, blocks, rows)
    return _finish_group_stats(np.concatenate(stats), alpha, "the metric")


class _GroupRows(NamedTuple):
    """The row arrays of :func:`group_bootstrap_ci` and where each group's rows are."""

    metric: Callable[..., float]
    columns: list[npt.NDArray[Any]]
    by_group: npt.NDArray[np.intp]  # row numbers, grouped
    sizes: npt.NDArray[np.intp]  # rows per group
    starts: npt.NDArray[np.intp]  # first position of each group in by_group


def _resampled_metric(data: _GroupRows, counts: FloatArray) -> FloatArray:
    """The metric of each resample, given as a row of group multiplicities (``nan``: failed)."""
    stats: list[float] = []
    groups = np.arange(len(data.sizes))
    for row in counts.astype(np.intp):
        picked = np.repeat(groups, row)
        lengths = data.sizes[picked]
        offsets = np.repeat(data.starts[picked] - np.cumsum(lengths) + lengths, lengths)
        rows = data.by_group[offsets + np.arange(lengths.sum())]
        try:
            stats.append(float(data.metric(*(col[rows] for col in data.columns))))
        except InvalidInputError:
            stats.append(math.nan)
    return np.array(stats, dtype=np.float64)
