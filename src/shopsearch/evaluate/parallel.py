"""Evaluation on a Ray cluster (``shopsearch eval SUITE --ray-address ...``; issue 19).

Inside ``with on_cluster(address, workers):`` every :func:`parallel_map` of an evaluation runs
its items as Ray tasks of one CPU each; outside it, the same call runs them here one after the
other. A suite is written once, and its report is the same either way: a task runs the same
function on the same inputs, every random draw stays in this process, and the results come back
in the items' order. (The models fix their own thread counts, so a worker computes what this
process would: identical numbers on identical hardware.)

What goes through it:

* the systems of the ranking suites (``ranking`` sim, trivago, bestbuy): each model is trained
  and scores the test set as one task (:func:`~shopsearch.evaluate.suites.click_samples.
  train_and_score`);
* bootstrap intervals: :func:`~shopsearch.evaluate.report.evaluate_run` bootstraps each metric
  as a task, and :func:`~shopsearch.evaluate.metrics.auc_ci` and
  :func:`~shopsearch.evaluate.metrics.group_bootstrap_ci` compute each block of resamples as a
  task; the resamples are drawn here, in the random stream of a local run, so the intervals are
  the same numbers.

Anything a task needs is shipped once per call with ``ray.put``: it must pickle (arrays, frames,
fitted torch or LightGBM models do; an open tantivy index does not, which is why the retrieval
suites' systems run here). The address is that of :mod:`shopsearch.ray_cluster`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from shopsearch.errors import InvalidInputError
from shopsearch.ray_cluster import connect, ray_module

__all__ = ["on_cluster", "parallel_map", "running_on_cluster"]

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

#: Tasks a cluster of this many CPUs may have in flight (``None``: run here).
_IN_FLIGHT: ContextVar[int | None] = ContextVar("shopsearch_eval_in_flight", default=None)


@contextlib.contextmanager
def on_cluster(address: str | None, workers: int = 2) -> Iterator[None]:
    """Run the :func:`parallel_map` calls of the block on a Ray cluster.

    Args:
        address: ``None`` (start a local instance of ``workers`` CPUs), ``"auto"`` or
            ``HOST:PORT`` (see :mod:`shopsearch.ray_cluster`).
        workers: CPUs of a local instance; tasks in flight are twice the cluster's CPUs.

    Raises:
        InvalidInputError: ``workers`` below 1, or Ray not installed.
    """
    if workers < 1:
        raise InvalidInputError(f"workers={workers} is not allowed; use >= 1")
    connect(address, workers)
    cpus = int(ray_module().cluster_resources().get("CPU", workers))
    token = _IN_FLIGHT.set(2 * max(cpus, 1))
    try:
        yield
    finally:
        _IN_FLIGHT.reset(token)


def running_on_cluster() -> bool:
    """Whether :func:`parallel_map` runs its items as Ray tasks here."""
    return _IN_FLIGHT.get() is not None


def _call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    return fn(shared, item)


@functools.cache
def _remote_call() -> Any:
    return ray_module().remote(num_cpus=1)(_call)


def parallel_map(fn: Callable[[S, T], R], items: Iterable[T], shared: S) -> list[R]:
    """``[fn(shared, item) for item in items]``, the items as Ray tasks inside :func:`on_cluster`.

    ``items`` is consumed lazily, with a bounded number of tasks in flight, so a generator of
    large blocks never sits in memory at once. A single item runs here (a task would only add
    the shipping).

    Args:
        fn: a picklable function (a module-level one) of the shared value and one item.
        items: the independent pieces of work.
        shared: what every item needs (shipped once to the cluster's object store).

    Returns:
        The results, in the items' order.
    """
    limit = _IN_FLIGHT.get()
    it = iter(items)
    head = list(itertools.islice(it, 2))
    if limit is None or len(head) < 2:
        return [fn(shared, item) for item in itertools.chain(head, it)]
    ray = ray_module()
    task, stored = _remote_call(), ray.put(shared)
    results: list[R] = []
    pending: deque[Any] = deque()
    for item in itertools.chain(head, it):
        if len(pending) >= limit:
            results.append(ray.get(pending.popleft()))
        pending.append(task.remote(fn, stored, item))
    results.extend(ray.get(list(pending)))
    return results
