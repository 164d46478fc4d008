"""QueryVectorCache (LRU, counts, off switch) and QueryBatcher (concurrent queries batched)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from shopsearch.text.encoders import Encoder, MiniLMEncoder
from shopsearch.text.query_cache import FloatMatrix, QueryBatcher, QueryVectorCache

WAIT_S = 30.0  # an upper bound for waits on other threads, never a measured time


def vec(value: float) -> FloatMatrix:
    return np.full((1, 3), value, np.float32)


def test_cache_hits_misses_and_lru_eviction() -> None:
    seen: list[tuple[int, int, int]] = []
    cache = QueryVectorCache(2, observer=lambda h, m, e: seen.append((h, m, e)))
    assert cache.lookup(["a", "b"]) == [None, None]
    cache.store(["a", "b"], np.concatenate([vec(1), vec(2)]))
    a, b = cache.lookup(["a", "b"])
    assert a is not None
    assert b is not None
    assert a[0] == 1
    assert b[0] == 2
    cache.lookup(["a"])  # "a" is now the most recently used: "b" goes first
    cache.store(["c"], vec(3))
    assert [v is not None for v in cache.lookup(["a", "b", "c"])] == [True, False, True]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.size) == (5, 3, 1, 2)
    assert stats.hit_rate == pytest.approx(5 / 8)
    assert seen == [(0, 2, 0), (2, 0, 0), (1, 0, 0), (0, 0, 1), (2, 1, 0)]


def test_cache_stores_copies_and_resize_and_clear() -> None:
    cache = QueryVectorCache(3)
    vectors = np.concatenate([vec(1), vec(2), vec(3)])
    cache.store(["a", "b", "c"], vectors)
    vectors[:] = 0
    got = cache.lookup(["a"])[0]
    assert got is not None
    assert got[0] == 1
    cache.resize(1)  # keeps the most recently used: "a"
    assert len(cache) == 1
    assert cache.lookup(["a"])[0] is not None
    assert cache.stats().evictions == 2
    cache.clear()
    assert len(cache) == 0
    assert cache.stats().hits == 0
    assert cache.stats().hit_rate is None
    with pytest.raises(ValueError, match="capacity"):
        QueryVectorCache(-1)


def test_disabled_cache_counts_misses_and_keeps_nothing() -> None:
    cache = QueryVectorCache(0)
    cache.store(["a"], vec(1))
    assert cache.lookup(["a", "a"]) == [None, None]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.size, stats.capacity) == (0, 2, 0, 0)
    assert stats.hit_rate == 0.0


def test_minilm_query_key_ignores_case_and_spacing_only() -> None:
    encoder = MiniLMEncoder()  # the model is not loaded for this
    assert encoder.query_key("  Office \t CHAIR ") == "office chair"
    assert encoder.query_key("office-chair") != encoder.query_key("office chair")
    assert Encoder.query_key(encoder, " As Typed ") == " As Typed "


class GatedEncoder:
    """Encodes texts to their lengths; the first call waits until the test opens the gate."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, texts: list[str]) -> FloatMatrix:
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.gate.wait(WAIT_S)
        if any(t == "boom" for t in texts):
            raise RuntimeError("encoder failed")
        return np.array([[len(t), 1.0] for t in texts], np.float32)


def _in_threads(calls: list[Callable[[], object]]) -> tuple[list[object], list[threading.Thread]]:
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:  # checked by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    return results, threads


def _wait_queued(batcher: QueryBatcher, n: int) -> None:
    done = threading.Event()
    for _ in range(int(WAIT_S * 100)):
        with batcher._lock:
            if len(batcher._queue) >= n:
                done.set()
                break
        done.wait(0.01)
    assert done.is_set(), f"{n} callers never queued"


def _gated_run(max_batch: int, texts: list[list[str]]) -> tuple[GatedEncoder, list[object]]:
    """One caller encodes (gated) while ``texts`` callers queue; then the gate opens."""
    encoder = GatedEncoder()
    batcher = QueryBatcher(encoder, max_batch=max_batch)
    first, first_threads = _in_threads([lambda: batcher.encode(["a"])])
    assert encoder.entered.wait(WAIT_S)  # the first caller encodes at once, alone
    rest, threads = _in_threads([lambda t=t: batcher.encode(t) for t in texts])
    _wait_queued(batcher, len(texts))
    encoder.gate.set()
    for thread in first_threads + threads:
        thread.join(WAIT_S)
    assert np.asarray(first[0])[0, 0] == 1
    assert encoder.calls[0] == ["a"]
    assert batcher.batches == len(encoder.calls)
    return encoder, rest


def test_batcher_encodes_waiting_callers_in_one_batch_duplicates_once() -> None:
    texts = [["bb"], ["ccc"], ["bb"], ["dddd", "eeeee"]]
    encoder, rest = _gated_run(8, texts)
    assert [np.asarray(r)[:, 0].tolist() for r in rest] == [[2], [3], [2], [4, 5]]
    assert len(encoder.calls) == 2
    assert sorted(encoder.calls[1]) == ["bb", "ccc", "dddd", "eeeee"]


def test_batcher_batches_hold_at_most_max_batch_queries() -> None:
    texts = [["bb"], ["ccc"], ["dddd"], ["eeeee"], ["ffffff"]]
    encoder, rest = _gated_run(2, texts)
    assert [int(np.asarray(r)[0, 0]) for r in rest] == [2, 3, 4, 5, 6]
    assert [len(c) for c in encoder.calls[1:]] == [2, 2, 1]


def test_batcher_hands_an_error_to_every_caller_of_the_batch_and_goes_on() -> None:
    encoder = GatedEncoder()
    batcher = QueryBatcher(encoder, max_batch=8)
    _first, first_threads = _in_threads([lambda: batcher.encode(["a"])])
    assert encoder.entered.wait(WAIT_S)
    rest, threads = _in_threads([lambda: batcher.encode(["boom"]), lambda: batcher.encode(["xy"])])
    _wait_queued(batcher, 2)
    encoder.gate.set()
    for thread in first_threads + threads:
        thread.join(WAIT_S)
    assert isinstance(rest[0], RuntimeError)
    assert isinstance(rest[1], RuntimeError)
    assert int(np.asarray(batcher.encode(["xyz"]))[0, 0]) == 3  # the batcher still works


def test_batcher_single_call_larger_than_max_batch_is_one_batch() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> FloatMatrix:
        calls.append(texts)
        return np.array([[len(t)] for t in texts], np.float32)

    batcher = QueryBatcher(encode, max_batch=2)
    out = batcher.encode(["a", "bb", "ccc", "a"])
    assert out[:, 0].tolist() == [1, 2, 3, 1]
    assert calls == [["a", "bb", "ccc"]]
    with pytest.raises(ValueError, match="max_batch"):
        QueryBatcher(encode, max_batch=0)
