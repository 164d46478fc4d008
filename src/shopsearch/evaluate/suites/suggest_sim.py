"""``shopsearch eval query --dataset suggest-sim``: query autocompletion on held-out logged
queries of the simulator.

**Split by time.** The last ``test_fraction`` of the workspace's requests are tested; the
suggesters learn from the earlier ones only (:meth:`QueryData.from_workspace
<shopsearch.query.data.QueryData.from_workspace>` on the training request ids). At most
``max_test_requests`` test requests (a seeded sample) are scored.

**Protocol** (:func:`score_suggesters`, shared with ``suggest-bestbuy``). A test request is a
query the user finally issued; the user is taken to type it one character at a time, and at
every prefix the suggester shows ``size`` completions in the request's market. The reciprocal
rank of the issued query among them (0 when it is not shown) is averaged over the test requests
long enough for the prefix:

* ``mrr_prefix2``, ``mrr_prefix4`` (primary), ``mrr_prefix6``: after 2, 4, 6 characters (of the
  query written as the suggester stores it, :func:`~shopsearch.query.suggest.query_key`);
* ``mrr_prefix_all``: each request's mean over its prefixes of 1 to ``max_prefix`` characters;
* ``coverage``: the share of test requests whose query the suggester can suggest at all (it was
  logged in training, and for ``shopsearch/*`` led to a click) — the ceiling of every MRR.

The same metrics on the ``clicked`` slice (test searches followed by a click: the queries worth
suggesting) are under ``clicked``; 95% bootstrap CIs over requests; ``vs_baseline`` is the
paired bootstrap difference to ``baseline/frequency``; ``latency`` holds the p50/p99 wall time
of one :meth:`~shopsearch.query.suggest.QuerySuggester.complete` call in this process (what
``GET /suggest`` spends beyond HTTP) and its CPU time (``cpu_*``: the same without the waits of
a busy machine).

**Systems** (:data:`SYSTEMS`): ``baseline/frequency``, the most frequent logged completions (no
outcome weighting, every logged query, no typo tolerance); ``shopsearch/suggest``, the
``suggest`` component as trained (ranked by clicks and purchases, never a query without a
click, one typo forgiven from 4 characters when the exact completions are too few); two
ablations: ``shopsearch/suggest-exact`` (no typo tolerance) and
``shopsearch/suggest-by-frequency`` (only queries with a click, ranked by frequency: the
filter without the outcome ranking).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.metrics import bootstrap_ci, paired_bootstrap_diff
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.progress import Say
from shopsearch.query.data import QueryData
from shopsearch.query.suggest import MAX_KEY_CHARS, QuerySuggester, query_key
from shopsearch.store.workspace import Workspace

#: System name → the :class:`QuerySuggester` parameters it runs with.
SYSTEMS: dict[str, dict[str, Any]] = {
    "baseline/frequency": {"weighting": "frequency", "min_clicks": 0, "typo_min_chars": 0},
    "shopsearch/suggest": {},
    "shopsearch/suggest-exact": {"typo_min_chars": 0},
    "shopsearch/suggest-by-frequency": {"weighting": "frequency"},
}
BASELINE = "baseline/frequency"
#: The prefix lengths with a metric of their own.
PREFIX_LENGTHS = (2, 4, 6)
PRIMARY = "mrr_prefix4"


@dataclass(frozen=True)
class SuggestTest:
    """The scored test requests: ``domain``, ``key`` (the issued query as stored) and
    ``clicked`` (the search was followed by a click)."""

    frame: pd.DataFrame


@dataclass
class SuggestSimConfig:
    """Inputs of the simulated autocompletion suite."""

    workspace: Annotated[
        Path, option("Simulated workspace (tables only read)", flags=("--workspace", "-w"))
    ]
    test_fraction: Annotated[
        float, option("Share of the latest requests tested", low=0, high=1)
    ] = 0.2
    max_test_requests: Annotated[
        int, option("Most test requests scored (seeded sample)", low=1)
    ] = 5000
    size: Annotated[int, option("Suggestions shown per prefix", low=1, high=20)] = 10
    max_prefix: Annotated[int, option("Longest prefix typed (characters)", low=1)] = 20
    systems: Annotated[tuple[str, ...], option("Comma list of systems", default_text="all")] = ()
    n_resamples: int = 200
    seed: Annotated[int, option("Seed of sampling and bootstrap")] = 0


def run_suggest_sim_suite(config: SuggestSimConfig, say: Say) -> Report:
    """Split the workspace's log by time, fit and score every system (see the module
    docstring)."""
    workspace = Workspace.open(config.workspace)
    train_ids, test_ids = split_by_time(workspace, config.test_fraction)
    data = QueryData.from_workspace(workspace, train_ids)
    sample = test_ids
    if len(sample) > config.max_test_requests:
        sample = sorted(random.Random(config.seed).sample(test_ids, config.max_test_requests))
    test = held_out_requests(QueryData.from_workspace(workspace, sample))
    report = Report(
        suite=SuggestSimSuite.name,
        primary_metric=PRIMARY,
        dataset={
            "name": "sim",
            "workspace": str(config.workspace),
            "split": "by time",
            "train_requests": len(train_ids),
            "test_requests": len(test_ids),
            "scored_test_requests": len(test.frame),
            "clicked_test_requests": int(test.frame["clicked"].sum()),
        },
        config={"seed": config.seed, "size": config.size, "max_prefix": config.max_prefix},
    )
    say(f"{len(train_ids)} training and {len(test.frame)} scored test requests")
    score_suggesters(data, test, config.systems, config.size, config.max_prefix, report, say,
                     config.n_resamples, config.seed)  # fmt: skip
    return report


def split_by_time(workspace: Workspace, test_fraction: float) -> tuple[list[str], list[str]]:
    """The request ids before and after the cut that leaves ``test_fraction`` to test.

    Raises:
        InvalidInputError: a fraction outside ``(0, 1)`` or fewer than 10 logged requests.
    """
    if not 0 < test_fraction < 1:
        raise InvalidInputError(f"test_fraction={test_fraction}: use 0 < test_fraction < 1")
    ids = [
        str(r)
        for (r,) in workspace.connect()
        .execute("SELECT request_id FROM requests ORDER BY timestamp, request_id")
        .fetchall()
    ]
    if len(ids) < 10:
        raise InvalidInputError(
            f"workspace {workspace.root} has {len(ids)} logged requests; simulate at least 10"
        )
    cut = len(ids) - max(1, round(test_fraction * len(ids)))
    return ids[:cut], ids[cut:]


def held_out_requests(data: QueryData) -> SuggestTest:
    """The test requests of ``data`` whose query can be typed (not blank, not too long)."""
    clicked = set(data.outcomes.loc[data.outcomes["stage"] >= 1, "request_id"])
    frame = pd.DataFrame(
        {
            "domain": data.queries["domain"].astype(str),
            "key": data.queries["query"].astype(str).map(query_key),
            "clicked": data.queries["request_id"].isin(clicked),
        }
    )
    keep = (frame["key"] != "") & (frame["key"].str.len() <= MAX_KEY_CHARS)
    return SuggestTest(frame[keep].reset_index(drop=True))


def score_suggesters(
    data: QueryData,
    test: SuggestTest,
    systems: Sequence[str],
    size: int,
    max_prefix: int,
    report: Report,
    say: Say,
    n_resamples: int = 200,
    seed: int = 0,
) -> None:
    """Fit each system on ``data`` and add its metrics on ``test`` to ``report``.

    Raises:
        InvalidInputError: an unknown system name, or no test request.
    """
    chosen = list(systems) or list(SYSTEMS)
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown:
        raise InvalidInputError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    if test.frame.empty:
        raise InvalidInputError("no test request has a query to type; log more searches")
    per_row: dict[str, dict[str, npt.NDArray[np.float64]]] = {}
    for name in chosen:
        say(f"fitting and scoring {name}")
        with report.timer(f"fit/{name}"):
            suggester = QuerySuggester(**SYSTEMS[name]).fit(data)
        start = time.perf_counter()
        values, seconds = _reciprocal_ranks(suggester, test.frame, size, max_prefix)
        report.timing(f"score/{name}", time.perf_counter() - start)
        per_row[name] = values
        clicked = test.frame["clicked"].to_numpy(bool)
        summary = _summary(values, np.ones(len(test.frame), bool), n_resamples, seed)
        wall, cpu = 1000 * seconds[:, 0], 1000 * seconds[:, 1]
        extra: dict[str, Any] = {
            "latency": {
                "calls": len(seconds),
                "p50_ms": float(np.percentile(wall, 50)),
                "p99_ms": float(np.percentile(wall, 99)),
                "cpu_p50_ms": float(np.percentile(cpu, 50)),
                "cpu_p99_ms": float(np.percentile(cpu, 99)),
            }
        }
        if clicked.any():
            sliced = _summary(values, clicked, n_resamples, seed)
            extra["clicked"] = {
                **sliced.metrics,
                "requests": int(clicked.sum()),
                "ci95": {k: list(v) for k, v in sliced.ci.items()},
            }
        if name != BASELINE and BASELINE in per_row:
            extra["vs_baseline"] = _versus(values, per_row[BASELINE], n_resamples, seed)
        report.add_system(
            name, summary.metrics, ci=summary.ci, extra=extra, undefined=summary.undefined
        )


def _reciprocal_ranks(
    suggester: QuerySuggester, frame: pd.DataFrame, size: int, max_prefix: int
) -> tuple[dict[str, npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    """Per test row: the reciprocal rank at each of :data:`PREFIX_LENGTHS` (NaN when the query
    is shorter), the mean over prefixes 1..``max_prefix``, and whether it is suggestible; and
    the time of every ``complete`` call (each distinct query of a market typed once)."""
    seconds: list[tuple[float, float]] = []
    by_query: dict[tuple[str, str], tuple[list[float], bool]] = {}
    for domain, key in sorted(set(zip(frame["domain"], frame["key"], strict=True))):
        ranks: list[float] = []
        for length in range(1, min(len(key), max_prefix) + 1):
            begin, cpu = time.perf_counter(), time.thread_time()
            shown = suggester.complete(key[:length], domain, size)
            seconds.append((time.perf_counter() - begin, time.thread_time() - cpu))
            found = [s.query for s in shown]
            ranks.append(1.0 / (found.index(key) + 1) if key in found else 0.0)
        by_query[(domain, key)] = (ranks, suggester.suggestible(key, domain))
    rows = [by_query[(d, k)] for d, k in zip(frame["domain"], frame["key"], strict=True)]
    values = {
        f"mrr_prefix{n}": np.array([r[n - 1] if len(r) >= n else np.nan for r, _ in rows])
        for n in PREFIX_LENGTHS
    }
    values["mrr_prefix_all"] = np.array([float(np.mean(r)) for r, _ in rows])
    values["coverage"] = np.array([float(ok) for _, ok in rows])
    return values, np.array(seconds, dtype=np.float64).reshape(-1, 2)


@dataclass
class _Summary:
    """Means, bootstrap intervals, and why a metric has no value (no query that long)."""

    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    undefined: dict[str, str]


def _summary(
    values: Mapping[str, npt.NDArray[np.float64]],
    rows: npt.NDArray[np.bool_],
    n_resamples: int,
    seed: int,
) -> _Summary:
    """Means (over the rows where defined) and bootstrap intervals of ``values`` on ``rows``."""
    out = _Summary({}, {}, {})
    for name, column in values.items():
        kept = column[rows & ~np.isnan(column)]
        if not len(kept):
            out.undefined[name] = "no test query is that long"
            continue
        out.metrics[name] = float(kept.mean())
        if n_resamples:
            out.ci[name] = bootstrap_ci(kept, n_resamples=n_resamples, seed=seed)
    return out


def _versus(
    ours: Mapping[str, npt.NDArray[np.float64]],
    baseline: Mapping[str, npt.NDArray[np.float64]],
    n_resamples: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Paired bootstrap differences (ours - baseline) of the MRR metrics."""
    out: dict[str, dict[str, float]] = {}
    for name in ours:
        if not name.startswith("mrr"):
            continue
        defined = ~np.isnan(ours[name])
        if not defined.any():
            continue
        diff = paired_bootstrap_diff(
            ours[name][defined], baseline[name][defined], max(n_resamples, 1), seed=seed
        )
        out[name] = {
            "diff": diff.mean_diff,
            "low": diff.low,
            "high": diff.high,
            "p_value": diff.p_value,
        }
    return out


@SUITES.register()
class SuggestSimSuite(Suite[SuggestSimConfig]):
    """Query autocompletion on the simulator's held-out queries (split by time): MRR of the
    issued query given its typed prefixes, beside the most-frequent-completion baseline.

    Example: shopsearch eval query --dataset suggest-sim --workspace W --report r.json
    """

    name = "query/suggest-sim"
    config_type = SuggestSimConfig
    primary_metric = PRIMARY

    def run(self, config: SuggestSimConfig, say: Say) -> Report:
        """See :func:`run_suggest_sim_suite`."""
        return run_suggest_sim_suite(config, say)


__all__ = [
    "SYSTEMS",
    "SuggestSimConfig",
    "SuggestSimSuite",
    "SuggestTest",
    "held_out_requests",
    "run_suggest_sim_suite",
    "score_suggesters",
    "split_by_time",
]
