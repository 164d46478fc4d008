"""The logged stream: what each stage passed on, recorded for a sample of searches, reaches the
workspace's ``stream`` table through the event log."""

from __future__ import annotations

from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.engine import Engine, SearchParams


def test_a_sampled_search_logs_its_stream(workspace, serve, config):
    settings = config()
    settings.pipeline.stream_sample = 1.0
    settings.pipeline.prerank_keep = 1
    with serve(workspace, settings) as client:
        found = client.get("/search", params={"q": "grey", "domain": "us"}).json()
    compact_event_log(workspace)  # the server compacted at shutdown; nothing is left
    rows = workspace.table("stream").to_pylist()
    stages = {}
    for row in rows:
        assert row["request_id"] == found["request_id"]
        stages.setdefault(row["stage"], []).append(row)
    # retrieval found every grey product of us; pre-ranking kept its window of one
    assert {r["product_id"] for r in stages["retrieve"]} == {"1", "6"}
    assert [r["position"] for r in stages["prerank"]] == [1]
    assert all(r["domain"] == "us" for r in rows)
    assert [r["score"] for r in stages["retrieve"]] == sorted(
        (r["score"] for r in stages["retrieve"]), reverse=True
    )


def test_no_stream_is_logged_unless_sampled(workspace, serve, config):
    settings = config()
    settings.pipeline.stream_sample = 0.0
    with serve(workspace, settings) as client:
        client.get("/search", params={"q": "grey"})
    compact_event_log(workspace)
    assert workspace.table("requests").num_rows > 0
    assert workspace.table("stream").num_rows == 0


def test_the_engine_records_each_stage_that_changed_the_candidates(workspace, config):
    settings = config()
    settings.pipeline.prerank_keep = 1
    engine = Engine.load(workspace, settings)
    response = engine.search(SearchParams("grey", domain="us", record_stream=True))
    assert response.stream is not None
    assert [entry.stage for entry in response.stream] == ["retrieve", "prerank"]
    retrieved, kept = response.stream
    assert kept.keys == retrieved.keys[:1]
    assert engine.search(SearchParams("grey", domain="us", record_stream=False)).stream is None
    sampled = [engine.search(SearchParams("grey")).stream for _ in range(20)]
    assert sum(s is not None for s in sampled) <= 5  # the default samples 1%
