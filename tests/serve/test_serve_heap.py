"""The server freezes the heap with the engine in it, so full collections stay short."""

from __future__ import annotations

import gc
import weakref

from shopsearch.config import Settings
from shopsearch.serve.engines import LiveEngine
from shopsearch.serve.heap import CollectorPauses, freeze_new, settle_heap


class _Node:
    def __init__(self) -> None:
        self.other: object = self


def test_settle_heap_collects_garbage_cycles_then_freezes_the_rest() -> None:
    try:
        cycle = _Node()
        gone = weakref.ref(cycle)
        kept = [_Node()]
        del cycle
        assert gone() is not None  # a cycle: reference counting alone does not free it
        settle_heap()
        assert gone() is None
        assert gc.get_freeze_count() > 0
        # frozen objects are out of the collector's generations
        assert all(o is not kept for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_the_served_engine_is_frozen_after_loading_and_after_each_reload(
    workspace, monkeypatch
) -> None:
    monkeypatch.delenv("SHOPSEARCH_SERVE__FREEZE_HEAP", raising=False)  # conftest: off
    try:
        gc.unfreeze()
        LiveEngine(workspace, Settings(serve={"freeze_heap": False}), None)
        assert gc.get_freeze_count() == 0
        live = LiveEngine(workspace, Settings(serve={"freeze_heap": True}), None)
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        live.reload(None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_collector_pauses_are_recorded_by_generation_until_stopped() -> None:
    pauses = CollectorPauses()
    pauses.start()
    gc.collect()
    pauses.stop()
    generation, seconds = pauses.drain()[-1]
    assert generation == 2
    assert seconds >= 0.0
    assert pauses.drain() == []
    gc.collect()
    assert pauses.drain() == []


def test_metrics_report_the_collector_pauses(client) -> None:
    gc.collect()
    text = client.get("/metrics").text
    assert 'shopsearch_gc_pause_seconds_count{generation="2"}' in text


def test_freeze_new_collects_new_cycles_and_freezes_what_survives() -> None:
    try:
        settle_heap()
        cycle = _Node()
        gone = weakref.ref(cycle)
        kept = _Node()
        del cycle
        assert any(o is kept for o in gc.get_objects())  # not frozen yet
        freeze_new()
        assert gone() is None
        assert all(o is not kept for o in gc.get_objects())  # frozen now
    finally:
        gc.unfreeze()
