"""Query-side serving helpers: an in-memory LRU of query vectors and a micro-batcher.

Encoding a query with MiniLM is most of a hybrid search's CPU time (~8 ms of ~10 ms on one
core), and both helpers cut it at serving time:

- :class:`QueryVectorCache` keeps the vectors of recent queries. Shop query streams are
  head-heavy (the same short queries repeat), so a few thousand entries (1.5 KB each for 384
  dimensions) answer a large share of searches without the encoder. Keys are the encoder's name
  and version plus the query as the encoder would see it (:meth:`Encoder.query_key
  <shopsearch.text.encoders.Encoder.query_key>`), so "Office  Chair" and "office chair" share an
  entry only for an encoder that cannot tell them apart.
- :class:`QueryBatcher` encodes the queries of concurrent searches together. A transformer
  forward pass over a handful of short queries on CPU is bound by reading the weights, not by
  the number of queries: 8 queries cost about twice one, not eight times. The first caller
  encodes at once (no waiting at low load); callers arriving while a batch runs join the next
  one, which starts as soon as the running one ends.

Both are thread safe: ``shopsearch serve`` runs searches on a thread pool. The LRU itself
(:class:`LRUCache`) also keeps the lexical retriever's recent results
(``LexicalRetriever.configure_results`` in :mod:`shopsearch.retrieval.lexical`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

#: A matrix of row vectors, one per text.
FloatMatrix = npt.NDArray[np.float32]
V = TypeVar("V")


@dataclass(frozen=True)
class CacheStats:
    """Counts since the cache was made (or last cleared)."""

    hits: int
    misses: int
    evictions: int
    size: int
    capacity: int

    @property
    def hit_rate(self) -> float | None:
        """Hits over lookups, or ``None`` before any lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


#: ``observer(hits, misses, evictions)``: told after every lookup round (e.g. Prometheus).
CacheObserver = Callable[[int, int, int], None]


class LRUCache(Generic[V]):
    """A thread-safe least-recently-used map with hit counts (query vectors, search results).

    Args:
        capacity: most values kept; 0 disables the cache (every lookup misses, nothing is
            stored, and misses are still counted).
        observer: called with ``(hits, misses, evictions)`` of each :meth:`lookup` and
            :meth:`store` round, outside the lock.

    Attributes:
        fallback: asked for each key :meth:`lookup` misses (outside the lock); a value it
            returns is stored and counted as a hit (e.g. another process's answer).
    """

    def __init__(self, capacity: int, observer: CacheObserver | None = None) -> None:
        if capacity < 0:
            raise ValueError(f"capacity={capacity} is not allowed; use capacity >= 0 (0: off)")
        self.capacity = capacity
        self.observer = observer
        self.fallback: Callable[[Hashable], V | None] | None = None
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    def __len__(self) -> int:
        return len(self._values)

    def _keep(self, value: V) -> V:
        """What is stored for ``value`` (subclasses copy mutable values)."""
        return value

    def lookup(self, keys: Sequence[Hashable], count: bool = True) -> list[V | None]:
        """The cached value of each key (``None``: a miss); hits become most recently used.

        ``count=False``: a repeated lookup of a key already counted in this request (e.g. a
        ranking feature reusing the vector retrieval just encoded) is left out of the stats.
        """
        found: list[V | None] = []
        fallback = self.fallback
        with self._lock:
            for key in keys:
                value = self._values.get(key)
                if value is not None:
                    self._values.move_to_end(key)
                found.append(value)
        if fallback is not None:
            for i, key in enumerate(keys):
                if found[i] is None and (value := fallback(key)) is not None:
                    found[i] = value
                    self.store([key], [value])
        hits = sum(v is not None for v in found)
        if count:
            with self._lock:
                self._hits += hits
                self._misses += len(found) - hits
        if self.observer is not None and found and count:
            self.observer(hits, len(found) - hits, 0)
        return found

    def store(self, keys: Sequence[Hashable], values: Sequence[V]) -> None:
        """Keep ``values[i]`` under ``keys[i]``, dropping the least recently used."""
        if self.capacity == 0 or not len(keys):
            return
        evicted = 0
        with self._lock:
            for key, value in zip(keys, values, strict=True):
                self._values[key] = self._keep(value)
                self._values.move_to_end(key)
            while len(self._values) > self.capacity:
                self._values.popitem(last=False)
                evicted += 1
            self._evictions += evicted
        if self.observer is not None and evicted:
            self.observer(0, 0, evicted)

    def resize(self, capacity: int) -> None:
        """Change the capacity (0 disables), dropping the least recently used as needed."""
        if capacity < 0:
            raise ValueError(f"capacity={capacity} is not allowed; use capacity >= 0 (0: off)")
        with self._lock:
            self.capacity = capacity
            while len(self._values) > capacity:
                self._values.popitem(last=False)
                self._evictions += 1

    def clear(self) -> None:
        """Forget every value and reset the counts."""
        with self._lock:
            self._values.clear()
            self._hits = self._misses = self._evictions = 0

    def stats(self) -> CacheStats:
        """Hits, misses, evictions, size and capacity."""
        with self._lock:
            return CacheStats(
                self._hits, self._misses, self._evictions, len(self._values), self.capacity
            )


class QueryVectorCache(LRUCache[FloatMatrix]):
    """An :class:`LRUCache` of query vectors; stored vectors are float32 copies, so a caller
    changing its array later does not change the cache."""

    def _keep(self, value: FloatMatrix) -> FloatMatrix:
        return np.array(value, dtype=np.float32, copy=True)


@dataclass
class _Job:
    texts: list[str]
    result: FloatMatrix | None = None
    error: BaseException | None = None
    done: bool = False
    event: threading.Event = field(default_factory=threading.Event)


#: ``observer(queries)``: told the size of each batch encoded (e.g. a Prometheus histogram).
BatchObserver = Callable[[int], None]


class QueryBatcher:
    """Encodes the queries of concurrent callers in shared forward passes.

    One batch runs at a time. A caller that finds no batch running starts one with every
    waiting query (up to ``max_batch`` queries; a single call of more is one batch of its own);
    the others wait for it and then either find their vectors ready or start the next batch.
    Nothing waits on a timer, so a lone caller pays no extra latency.

    Args:
        encode: encodes a list of texts into ``[len(texts), dim]`` rows, in order.
        max_batch: most queries per forward pass; 1 turns batching off (each call alone,
            still one at a time).
        observer: called with the number of distinct queries of each batch.
    """

    def __init__(
        self,
        encode: Callable[[list[str]], FloatMatrix],
        max_batch: int = 16,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch} is not allowed; use max_batch >= 1")
        self.encode_fn = encode
        self.max_batch = max_batch
        self.observer = observer
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        self._busy = False
        self.batches = 0
        self.queries = 0

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        """The vectors of ``texts``, in order, encoded together with other callers' queries.

        Raises:
            Exception: whatever the encoder raised for the batch holding these texts.
        """
        job = _Job(list(texts))
        with self._lock:
            self._queue.append(job)
        while True:
            with self._lock:
                if job.done:
                    break
                if self._busy:
                    batch = None
                else:
                    self._busy = True
                    batch = self._take()
            if batch is None:
                job.event.wait()  # set when a batch holding this job ends, or one frees up
                job.event.clear()
                continue
            self._run(batch)
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _take(self) -> list[_Job]:
        """Waiting jobs from the front, at least one, up to ``max_batch`` texts (lock held)."""
        batch = [self._queue.pop(0)]
        count = len(batch[0].texts)
        while self._queue and count + len(self._queue[0].texts) <= self.max_batch:
            job = self._queue.pop(0)
            count += len(job.texts)
            batch.append(job)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        unique = list(dict.fromkeys(t for job in batch for t in job.texts))
        vectors: FloatMatrix | None = None
        error: BaseException | None = None
        try:
            vectors = self.encode_fn(unique)
        except BaseException as exc:  # handed to every caller of the batch
            error = exc
        row = {text: i for i, text in enumerate(unique)}
        with self._lock:
            for job in batch:
                if vectors is not None:
                    job.result = vectors[[row[t] for t in job.texts]]
                job.error = error
                job.done = True
                job.event.set()
            self._busy = False
            self.batches += 1
            self.queries += len(unique)
            if self._queue:  # wake the next leader
                self._queue[0].event.set()
        if self.observer is not None:
            self.observer(len(unique))
