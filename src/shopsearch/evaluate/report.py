"""Evaluation reports in the DESIGN.md format, and the per-system evaluation helper.

A report is one JSON object::

    {"suite": "relevance", "dataset": {...counts...}, "primary_metric": "ndcg@10",
     "systems": {"baseline/bm25s": {"ndcg@10": 0.41, "ci95": {"ndcg@10": [0.39, 0.43]}},
                 "shopsearch/hybrid": {"ndcg@10": 0.47, ..., "by_domain": {...}}},
     "timing_s": {...}, "created": "2025-01-01T12:00:00+00:00", "config": {...}}

In a system's entry, numbers are metrics, ``ci95`` holds ``[low, high]`` per metric, and any
other key (``by_domain``, ``long_tail``, ...) is a nested object given as ``extra``. A metric
the data leave undefined (an AUC on test rows of one class) is ``null``, and ``undefined``
holds the reason: ``{"auc_cart": null, "undefined": {"auc_cart": "AUC is undefined: ..."}}``;
a suite never drops such a metric silently. The
``ci95`` key keeps its name whatever ``alpha`` the intervals were computed with; suites use the
default 0.05.

Suites call :func:`evaluate_run` once per system and pass its result to
:meth:`Report.add_evaluation`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import orjson

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.metrics import FloatArray, JudgedRun, bootstrap_ci, parse_metric
from shopsearch.evaluate.parallel import parallel_map
from shopsearch.store.atomic import write_json

__all__ = [
    "CI_KEY",
    "SYSTEM_PREFIXES",
    "UNDEFINED_KEY",
    "Report",
    "RunEvaluation",
    "evaluate_run",
]

Q = TypeVar("Q", bound=Hashable)
D = TypeVar("D", bound=Hashable)

#: Every system name starts with one of these: baselines vs shopsearch's own systems.
SYSTEM_PREFIXES: tuple[str, ...] = ("baseline/", "shopsearch/")
#: Key of the confidence intervals inside a system's entry.
CI_KEY = "ci95"
#: Key of the reasons of a system's undefined (``null``) metrics inside its entry.
UNDEFINED_KEY = "undefined"


# --------------------------------------------------------------------------- evaluate_run


@dataclass(frozen=True)
class RunEvaluation(Generic[Q]):
    """Ranking metrics of one system on one query set.

    Attributes:
        query_ids: the evaluated queries; every ``per_query`` array is aligned to it, so two
            systems evaluated on the same qrels can be compared with
            :func:`~shopsearch.evaluate.metrics.paired_bootstrap_diff`.
        per_query: metric name → value per query.
        metrics: metric name → mean over the queries.
        ci: metric name → ``(low, high)`` bootstrap interval (empty when not computed).
    """

    query_ids: list[Q]
    per_query: dict[str, FloatArray]
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)


def evaluate_run(
    run: Mapping[Q, Sequence[D]],
    qrels: Mapping[Q, Mapping[D, float]],
    ks: Sequence[int] = (10,),
    *,
    metrics: Sequence[str] | None = None,
    rel_threshold: float = 1,
    query_ids: Sequence[Q] | None = None,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> RunEvaluation[Q]:
    """Compute ranking metrics, their means and bootstrap CIs for one system.

    The run is joined with the qrels once; definitions and the query set are those of
    :mod:`shopsearch.evaluate.metrics` (trec_eval's; by default every query of ``qrels``).

    Args:
        run: ``{query_id: [product_id, ...]}``, best first.
        qrels: ``{query_id: {product_id: grade}}``.
        ks: cut-offs; each gives ``ndcg@k``, ``recall@k`` and ``map@k``, plus ``mrr`` once.
            Ignored when ``metrics`` is given.
        metrics: explicit metric names, e.g. ``("ndcg@10", "recall@100", "map@5", "mrr")``.
        rel_threshold: minimum grade of a relevant product (inclusive; ir-measures' ``rel=``).
        query_ids: queries to evaluate (default: all of ``qrels``); see
            :func:`~shopsearch.evaluate.metrics.relevant_query_ids`.
        n_resamples: bootstrap resamples over queries; 0 skips the intervals.
        alpha: 1 - confidence level of the intervals.
        seed: bootstrap seed (the same for every metric and system, so runs are reproducible).

    Returns:
        A :class:`RunEvaluation` keyed by the metric names, in the order requested.

    Raises:
        InvalidInputError: for unknown metric names, bad cut-offs, or bad run/qrels values.
    """
    if metrics is None:
        names = [f"{kind}@{k}" for k in ks for kind in ("ndcg", "recall", "map")] + ["mrr"]
    else:
        names = list(dict.fromkeys(metrics))
    if not names:
        raise InvalidInputError("no metrics requested; give ks or metrics, e.g. ('ndcg@10',)")
    cutoffs = [parse_metric(name)[1] for name in names]
    depth = max((k for k in cutoffs if k is not None), default=1)
    if None in cutoffs:  # mrr without a cut-off looks at whole lists
        depth = max(depth, *(len(ranked) for ranked in run.values()))
    judged = JudgedRun(run, qrels, query_ids=query_ids, depth=depth)
    per_query = {name: judged.metric(name, rel_threshold) for name in names}
    means = {name: float(values.mean()) for name, values in per_query.items()}
    ci: dict[str, tuple[float, float]] = {}
    if n_resamples:  # one task per metric on a cluster (shopsearch.evaluate.parallel)
        bounds = parallel_map(_interval, per_query.values(), (n_resamples, alpha, seed))
        ci = dict(zip(per_query, bounds, strict=True))
    return RunEvaluation(judged.query_ids, per_query, means, ci)


def _interval(settings: tuple[int, float, int], values: FloatArray) -> tuple[float, float]:
    n_resamples, alpha, seed = settings
    return bootstrap_ci(values, n_resamples=n_resamples, alpha=alpha, seed=seed)


# --------------------------------------------------------------------------- report


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    """Plain JSON types so reports round-trip: numpy values and tuples converted, and
    non-finite floats (which JSON cannot hold) written as ``null``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _check_metric_name(system: str, metric: Any) -> None:
    if not isinstance(metric, str) or not metric or metric in (CI_KEY, UNDEFINED_KEY):
        raise InvalidInputError(f"metric name {metric!r} is not allowed in {system!r}")


def _finite(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidInputError(f"{what}={value!r} is not allowed; use a finite number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{what}={number} is not allowed; use a finite number")
    return number


@dataclass
class Report:
    """Builder of one evaluation report (see the module docstring for the format).

    Args:
        suite: the evaluation suite, e.g. ``"relevance"``.
        primary_metric: the metric every system must report; listed first in tables.
        dataset: counts describing the evaluation data (queries, judgments, products...).
        config: the settings the suite ran with.

    Attributes:
        systems: system name → entry (metrics, ``ci95``, extra objects); use
            :meth:`add_system` to fill it.
        timing_s: step name → seconds.
        created: ISO 8601 UTC time the report was created.
    """

    suite: str
    primary_metric: str
    dataset: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    timing_s: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not isinstance(self.suite, str) or not self.suite:
            raise InvalidInputError(f"suite={self.suite!r} is not allowed; name the suite")
        if not isinstance(self.primary_metric, str) or not self.primary_metric:
            raise InvalidInputError(
                f"primary_metric={self.primary_metric!r} is not allowed; use e.g. 'ndcg@10'"
            )

    def add_system(
        self,
        name: str,
        metrics: Mapping[str, float],
        ci: Mapping[str, tuple[float, float]] | None = None,
        extra: Mapping[str, Any] | None = None,
        undefined: Mapping[str, str] | None = None,
    ) -> None:
        """Add one system's results.

        Args:
            name: ``baseline/<name>`` or ``shopsearch/<name>``, unique in the report.
            metrics: metric name → finite value; must include the primary metric.
            ci: metric name → ``(low, high)`` for some of ``metrics``.
            extra: nested objects stored beside the metrics, e.g. ``{"by_domain": {...},
                "long_tail": {...}}``; keys must not clash with metric names, ``ci95`` or
                ``undefined``.
            undefined: metric name → why the data leave it undefined; each is stored as
                ``null`` with its reason under ``undefined``.

        Raises:
            InvalidInputError: for a bad or duplicate name, a missing primary metric,
                non-finite values, an interval for an unknown or undefined metric or with
                low > high, a metric both given and undefined, an undefined metric without a
                reason, or clashing extra keys.
        """
        if not isinstance(name, str) or not any(
            name.startswith(p) and len(name) > len(p) for p in SYSTEM_PREFIXES
        ):
            raise InvalidInputError(
                f"system name {name!r} is not allowed; start it with one of "
                f"{', '.join(SYSTEM_PREFIXES)} followed by a name, e.g. 'baseline/bm25s'"
            )
        if name in self.systems:
            raise InvalidInputError(f"system {name!r} is already in the report; use a new name")
        if self.primary_metric not in metrics:
            raise InvalidInputError(
                f"system {name!r} lacks the primary metric {self.primary_metric!r}; "
                f"it reports {sorted(metrics)}"
            )
        entry: dict[str, Any] = {}
        for metric, value in metrics.items():
            _check_metric_name(name, metric)
            entry[metric] = _finite(f"{name} {metric}", value)
        reasons: dict[str, str] = {}
        for metric, reason in (undefined or {}).items():
            _check_metric_name(name, metric)
            if metric in entry:
                raise InvalidInputError(
                    f"{name} {metric} is given both a value and a reason it is undefined; "
                    "give one of them"
                )
            if not isinstance(reason, str) or not reason.strip():
                raise InvalidInputError(
                    f"{name} {metric} is undefined without a reason; say why the data leave "
                    "it undefined"
                )
            entry[metric] = None
            reasons[metric] = reason
        if ci:
            intervals: dict[str, list[float]] = {}
            for metric, bounds in ci.items():
                if metric not in entry or metric in reasons:
                    raise InvalidInputError(
                        f"interval for {metric!r} but {name!r} has no such metric; "
                        f"give intervals only for {sorted(set(entry) - set(reasons))}"
                    )
                if len(bounds) != 2:
                    raise InvalidInputError(
                        f"interval {bounds!r} for {name} {metric} is not (low, high)"
                    )
                low = _finite(f"{name} {metric} ci low", bounds[0])
                high = _finite(f"{name} {metric} ci high", bounds[1])
                if low > high:
                    raise InvalidInputError(
                        f"interval [{low}, {high}] for {name} {metric} has low > high"
                    )
                intervals[metric] = [low, high]
            entry[CI_KEY] = intervals
        if reasons:
            entry[UNDEFINED_KEY] = reasons
        for key, value in (extra or {}).items():
            if key in entry or key in (CI_KEY, UNDEFINED_KEY):
                raise InvalidInputError(
                    f"extra key {key!r} of {name!r} clashes with a metric, {CI_KEY!r} or "
                    f"{UNDEFINED_KEY!r}; rename it"
                )
            if not isinstance(value, Mapping):
                raise InvalidInputError(
                    f"extra[{key!r}] of {name!r} is a {type(value).__name__}; give an object "
                    "(dict), numbers belong in metrics"
                )
            entry[str(key)] = _jsonable(value)
        self.systems[name] = entry

    def add_evaluation(
        self,
        name: str,
        evaluation: RunEvaluation[Any],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a system from :func:`evaluate_run`'s result (means and intervals)."""
        self.add_system(name, evaluation.metrics, evaluation.ci or None, extra)

    def timing(self, step: str, seconds: float) -> None:
        """Record how long ``step`` took, in seconds (replaces an earlier value)."""
        value = _finite(f"timing {step!r}", seconds)
        if value < 0:
            raise InvalidInputError(f"timing {step!r}={value} is negative; use seconds >= 0")
        self.timing_s[step] = value

    @contextlib.contextmanager
    def timer(self, step: str) -> Iterator[None]:
        """Context manager recording the wall time of its block as ``timing_s[step]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timing(step, time.perf_counter() - start)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types, keys in the documented order."""
        value: dict[str, Any] = _jsonable(
            {
                "suite": self.suite,
                "dataset": self.dataset,
                "primary_metric": self.primary_metric,
                "systems": self.systems,
                "timing_s": self.timing_s,
                "created": self.created,
                "config": self.config,
            }
        )
        return value

    def to_json(self) -> str:
        """The report as indented JSON text (as :meth:`write` stores it)."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode()

    def write(self, path: str | Path) -> Path:
        """Write the report atomically as JSON; returns the path."""
        target = Path(path)
        write_json(target, self.to_dict())
        return target

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Rebuild (and re-validate) a report from :meth:`to_dict` output.

        Raises:
            InvalidInputError: for missing keys or invalid systems.
        """
        missing = [k for k in ("suite", "primary_metric", "systems") if k not in data]
        if missing:
            raise InvalidInputError(f"report lacks {missing}; it is not a shopsearch report")
        report = cls(
            suite=data["suite"],
            primary_metric=data["primary_metric"],
            dataset=dict(data.get("dataset", {})),
            config=dict(data.get("config", {})),
            created=data.get("created") or _now(),
        )
        for name, entry in data["systems"].items():
            reserved = (CI_KEY, UNDEFINED_KEY)
            metrics = {
                k: v
                for k, v in entry.items()
                if k not in reserved and v is not None and not isinstance(v, Mapping)
            }
            extra = {k: v for k, v in entry.items() if k not in reserved and isinstance(v, Mapping)}
            ci = {k: (v[0], v[1]) for k, v in entry.get(CI_KEY, {}).items()}
            reasons = {k: "" for k, v in entry.items() if v is None}  # "": rejected as no reason
            reasons.update(entry.get(UNDEFINED_KEY, {}))
            report.add_system(name, metrics, ci or None, extra or None, reasons or None)
        for step, seconds in data.get("timing_s", {}).items():
            report.timing(step, seconds)
        return report

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        """Parse :meth:`to_json` output."""
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"report is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInputError("report JSON is not an object")
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: str | Path) -> Report:
        """Read a report written by :meth:`write`."""
        return cls.from_json(Path(path).read_bytes())

    def metric_names(self) -> list[str]:
        """All metric names over the systems: the primary first, then by first appearance."""
        names = [self.primary_metric]
        for entry in self.systems.values():
            for key, value in entry.items():
                if key != CI_KEY and not isinstance(value, Mapping) and key not in names:
                    names.append(key)
        return names

    def render_table(self, digits: int = 4) -> str:
        """A plain-text table for the CLI: systems as rows, metrics as columns.

        Each cell is ``value [low, high]`` when an interval is known; ``n/a`` marks a metric
        the data leave undefined for a system, ``-`` one it did not report.

        Args:
            digits: decimals shown.

        Returns:
            The table, lines joined with ``\\n`` (no trailing newline).
        """
        columns = self.metric_names()
        header = ["system", *columns]
        rows = [header]
        for name, entry in self.systems.items():
            cells = [name]
            intervals = entry.get(CI_KEY, {})
            for metric in columns:
                if metric not in entry:
                    cells.append("-")
                    continue
                if entry[metric] is None:
                    cells.append("n/a")
                    continue
                cell = f"{entry[metric]:.{digits}f}"
                if metric in intervals:
                    low, high = intervals[metric]
                    cell += f" [{low:.{digits}f}, {high:.{digits}f}]"
                cells.append(cell)
            rows.append(cells)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        rule = "  ".join("-" * w for w in widths)
        title = f"{self.suite} (primary metric: {self.primary_metric})"
        return "\n".join([title, line(header), rule, *(line(r) for r in rows[1:])])
