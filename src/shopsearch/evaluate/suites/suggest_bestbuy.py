"""``shopsearch eval query --dataset suggest-bestbuy``: query autocompletion on a real query
log, Best Buy's (``user, sku, category, query, click_time, query_time``; each row a click).

The suggesters learn from ``--train`` and are scored on ``--test``, two files of that format
split by user (``shopsearch split train.csv --by user --train-out tr.csv --test-out te.csv``),
so no tested user's queries were learned from. A search is one ``(user, query, query_time)``:
its rows are its clicks (stage 1; the log has no purchases, so the outcome-weighted ranking
counts clicked searches). Protocol, metrics and systems are those of ``suggest-sim``
(:func:`~shopsearch.evaluate.suites.suggest_sim.score_suggesters`): MRR of the issued query
given its typed prefixes, beside the most-frequent-completion baseline. Every Best Buy search
was followed by a click, so ``clicked`` is every request and never filters a suggestion out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.suggest_sim import PRIMARY, held_out_requests, score_suggesters
from shopsearch.progress import Say
from shopsearch.query.data import QueryData

_COLUMNS = ("user", "sku", "query", "query_time")
_CATALOG = ["domain", "product_id", "title", "brand", "category", "description"]
#: The market of every Best Buy search.
DOMAIN = "bestbuy"


@dataclass
class SuggestBestBuyConfig:
    """Inputs of the Best Buy autocompletion suite."""

    train: Annotated[Path, option("Training log (Best Buy train.csv format)")]
    test: Annotated[Path, option("Held-out log of the same format (other users)")]
    max_test_requests: Annotated[
        int, option("Most test requests scored (seeded sample)", low=1)
    ] = 5000
    size: Annotated[int, option("Suggestions shown per prefix", low=1, high=20)] = 10
    max_prefix: Annotated[int, option("Longest prefix typed (characters)", low=1)] = 20
    systems: Annotated[tuple[str, ...], option("Comma list of systems", default_text="all")] = ()
    n_resamples: int = 200
    seed: Annotated[int, option("Seed of sampling and bootstrap")] = 0


def read_log(path: Path) -> QueryData:
    """A Best Buy clicks file as :class:`QueryData` (one search per user, query and time).

    Raises:
        InvalidInputError: a missing file or missing columns.
    """
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist; give a Best Buy clicks CSV")
    rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in _COLUMNS if c not in rows]
    if missing:
        raise InvalidInputError(f"{path} lacks columns {missing}; it is not a Best Buy clicks file")
    searches = rows.groupby(["user", "query", "query_time"], sort=False).ngroup()
    rows = rows.assign(request_id="r" + searches.astype(str))
    first = rows.drop_duplicates("request_id")
    queries = pd.DataFrame(
        {
            "request_id": first["request_id"],
            "session_id": first["user"],
            "user_id": first["user"],
            "domain": DOMAIN,
            "query": first["query"],
            "timestamp": pd.to_datetime(first["query_time"], errors="coerce", format="mixed"),
        }
    ).sort_values(["timestamp", "request_id"], kind="stable")
    outcomes = pd.DataFrame(
        {
            "request_id": rows["request_id"],
            "domain": DOMAIN,
            "query": rows["query"],
            "product_id": rows["sku"],
            "stage": 1,
            "category": rows.get("category", ""),
        }
    ).drop_duplicates(["request_id", "product_id"])
    catalog = pd.DataFrame(columns=_CATALOG)
    return QueryData(catalog, queries.reset_index(drop=True), outcomes, "events")


def run_suggest_bestbuy_suite(config: SuggestBestBuyConfig, say: Say) -> Report:
    """Fit every system on the training log and score it on the held-out one."""
    train = read_log(config.train)
    held = read_log(config.test)
    if len(held.queries) > config.max_test_requests:
        ids = random.Random(config.seed).sample(
            list(held.queries["request_id"]), config.max_test_requests
        )
        keep = set(ids)
        held = QueryData(
            held.catalog,
            held.queries[held.queries["request_id"].isin(keep)].reset_index(drop=True),
            held.outcomes[held.outcomes["request_id"].isin(keep)].reset_index(drop=True),
            held.source,
        )
    test = held_out_requests(held)
    report = Report(
        suite=SuggestBestBuySuite.name,
        primary_metric=PRIMARY,
        dataset={
            "name": "bestbuy",
            "train": str(config.train),
            "test": str(config.test),
            "split": "by user (the files)",
            "train_requests": len(train.queries),
            "train_users": int(train.queries["user_id"].nunique()),
            "test_users": int(held.queries["user_id"].nunique()),
            "scored_test_requests": len(test.frame),
        },
        config={"seed": config.seed, "size": config.size, "max_prefix": config.max_prefix},
    )
    say(f"{len(train.queries)} training and {len(test.frame)} scored test searches")
    score_suggesters(train, test, config.systems, config.size, config.max_prefix, report, say,
                     config.n_resamples, config.seed)  # fmt: skip
    return report


@SUITES.register()
class SuggestBestBuySuite(Suite[SuggestBestBuyConfig]):
    """Query autocompletion on Best Buy's real query log (split by user): MRR of the issued
    query given its typed prefixes, beside the most-frequent-completion baseline.

    Example: shopsearch eval query --dataset suggest-bestbuy --train tr.csv --test te.csv
    --report r.json
    """

    name = "query/suggest-bestbuy"
    config_type = SuggestBestBuyConfig
    primary_metric = PRIMARY

    def run(self, config: SuggestBestBuyConfig, say: Say) -> Report:
        """See :func:`run_suggest_bestbuy_suite`."""
        return run_suggest_bestbuy_suite(config, say)


__all__ = ["DOMAIN", "SuggestBestBuyConfig", "SuggestBestBuySuite", "read_log",
           "run_suggest_bestbuy_suite"]  # fmt: skip
