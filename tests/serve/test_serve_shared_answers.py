"""Answers shared between workers: each worker's cached answers reach the others' caches
through journal files, only for the same bundle, whole records only, across file changes."""

from __future__ import annotations

import functools
import pickle
import struct
import time
from pathlib import Path

from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.request import SearchResponse
from shopsearch.serve.engines import SIGNAL_DIR, bundle_name
from shopsearch.serve.shared_answers import SharedAnswers, journal_folder
from shopsearch.text.query_cache import LRUCache

from .conftest import lexical_settings


def _settings():
    """No search drawn for stream recording (1% by default), which skips the caches."""
    settings = lexical_settings()
    settings.pipeline.stream_sample = 0.0
    return settings


def _answer(n: int) -> SearchResponse:
    return SearchResponse(f"id{n}", [], n, {}, {"total": 1.0})


def _record(bundle: str, key: tuple[object, ...], answer: SearchResponse) -> bytes:
    meta, payload = pickle.dumps((bundle, key)), pickle.dumps(answer)
    return struct.pack("<II", len(meta), len(payload)) + meta + payload


def _records(journal: Path) -> list[tuple[str, tuple[object, ...], SearchResponse]]:
    data, at, found = journal.read_bytes(), 0, []
    while at < len(data):
        meta_size, size = struct.unpack_from("<II", data, at)
        bundle, key = pickle.loads(data[at + 8 : at + 8 + meta_size])
        answer = pickle.loads(data[at + 8 + meta_size : at + 8 + meta_size + size])
        found.append((bundle, key, answer))
        at += 8 + meta_size + size
    return found


def _shared(engine: Engine, answers: SharedAnswers) -> None:
    """What the server does with each engine it loads."""
    tag = answers.new_load(bundle_name(engine))
    engine.on_answer = functools.partial(answers.publish, tag)
    engine.responses.fallback = functools.partial(answers.answer, tag)


def test_an_answer_one_worker_computes_is_a_cache_hit_for_the_other(workspace, tmp_path) -> None:
    first = Engine.load(workspace, _settings())
    second = Engine.load(workspace, _settings())
    mine = SharedAnswers(tmp_path / "run", worker="a")
    theirs = SharedAnswers(tmp_path / "run", worker="b")
    _shared(first, mine)
    _shared(second, theirs)
    computed = first.search(SearchParams("grey sofa", "us"))
    assert theirs.tag == mine.tag == f"{bundle_name(second)}#0"
    assert theirs.absorb() == 1
    assert theirs.absorb() == 0  # nothing new
    assert mine.absorb() == 0  # a worker does not read its own journal
    answer = second.search(SearchParams("grey sofa", "us"))
    assert set(answer.timings_ms) == {"cache", "total"}
    assert answer.request_id != computed.request_id
    assert [i.product_id for i in answer.items] == [i.product_id for i in computed.items]
    assert (answer.total, answer.facets) == (computed.total, computed.facets)
    assert (second.responses.stats().hits, second.responses.stats().misses) == (1, 0)
    assert theirs.waiting() == 0  # taken into the cache, which answers the next one itself
    assert set(second.search(SearchParams("grey sofa", "us")).timings_ms) == {"cache", "total"}
    # the answer second computed for another search is not sent back to second
    second.search(SearchParams("oak table", "us"))
    assert mine.absorb() == 1
    assert theirs.absorb() == 0
    # a user's search is not cached, so not shared either
    first.search(SearchParams("grey sofa", "us", user_id="u1"))
    assert theirs.absorb() == 0


def test_a_reload_of_the_same_bundle_shares_nothing_from_before_it(workspace, tmp_path) -> None:
    first = Engine.load(workspace, _settings())
    second = Engine.load(workspace, _settings())
    mine = SharedAnswers(tmp_path, worker="a")
    theirs = SharedAnswers(tmp_path, worker="b")
    _shared(first, mine)
    _shared(second, theirs)
    first.search(SearchParams("grey sofa", "us"))  # before the reload
    assert theirs.absorb() == 1
    reloaded = Engine.load(workspace, _settings())  # a new snapshot of the log
    _shared(reloaded, theirs)
    assert theirs.tag == f"{bundle_name(reloaded)}#1"
    assert theirs.waiting() == 0  # what waited for the engine before goes
    assert "retrieve" in reloaded.search(SearchParams("grey sofa", "us")).timings_ms
    first.search(SearchParams("oak table", "us"))  # a worker that has not followed yet
    assert theirs.absorb() == 0


def test_answers_of_another_bundle_are_not_given(tmp_path) -> None:
    mine = SharedAnswers(tmp_path, worker="a")
    theirs = SharedAnswers(tmp_path, worker="b")
    mine.publish("bundle-old", ("q",), _answer(1))
    mine.publish("bundle-1", ("q",), _answer(2))
    assert theirs.absorb("bundle-1") == 1
    assert theirs.answer("bundle-2", ("q",)) is None  # this worker has reloaded meanwhile
    found = theirs.answer("bundle-1", ("q",))
    assert found is not None
    assert found.total == 2
    assert theirs.answer("bundle-1", ("q",)) is None  # given once
    mine.publish("bundle-1", ("r",), _answer(3))
    mine.publish("bundle-2", ("s",), _answer(4))
    assert theirs.absorb("bundle-2") == 1  # a new bundle: what waited for the old one goes
    assert theirs.answer("bundle-1", ("r",)) is None
    assert theirs.answer("bundle-2", ("s",)) is not None


def test_a_cache_miss_asks_the_fallback_and_counts_a_hit() -> None:
    cache = LRUCache[str](4)
    given = {"b": "from elsewhere"}
    cache.fallback = lambda key: given.pop(key, None)  # type: ignore[arg-type]
    cache.store(["a"], ["here"])
    assert cache.lookup(["a", "b", "c"]) == ["here", "from elsewhere", None]
    assert (cache.stats().hits, cache.stats().misses) == (2, 1)
    assert cache.lookup(["b"]) == ["from elsewhere"]  # kept from then on
    assert cache.lookup(["b"], count=False) == ["from elsewhere"]
    assert cache.stats().hits == 3


def test_a_failing_write_ends_publishing_and_no_search_fails(tmp_path, monkeypatch, caplog) -> None:
    writer = SharedAnswers(tmp_path, worker="a")
    reader = SharedAnswers(tmp_path, worker="b")

    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("shopsearch.serve.shared_answers.os.write", full_disk)
    writer.publish("bundle-1", ("q",), _answer(1))  # no exception
    monkeypatch.undo()
    assert "stopped sharing answers" in caplog.text
    writer.publish("bundle-1", ("r",), _answer(2))  # publishing has ended
    assert reader.absorb("bundle-1") == 0


def test_a_worker_starting_mid_record_reads_from_the_next_whole_one(tmp_path) -> None:
    journal = tmp_path / "z-000000.answers"
    second = _record("bundle-1", ("second",), _answer(2))
    journal.write_bytes(_record("bundle-1", ("first",), _answer(1)) + second[:7])
    reader = SharedAnswers(tmp_path, worker="b")  # "z" is half way through its second record
    with journal.open("ab") as file:
        file.write(second[7:])
    assert reader.absorb("bundle-1") == 1
    assert reader.answer("bundle-1", ("second",)) is not None


def test_journals_written_before_a_worker_starts_are_not_read(tmp_path) -> None:
    early = SharedAnswers(tmp_path, worker="a")
    early.publish("bundle-1", ("old",), _answer(1))
    reader = SharedAnswers(tmp_path, worker="b")
    assert reader.absorb("bundle-1") == 0
    early.publish("bundle-1", ("new",), _answer(2))
    late = SharedAnswers(tmp_path, worker="c")  # a worker that starts later: read from its start
    late.publish("bundle-1", ("later",), _answer(3))
    assert reader.absorb("bundle-1") == 2
    assert reader.answer("bundle-1", ("old",)) is None


def test_waiting_answers_are_bounded_oldest_first(tmp_path) -> None:
    writer = SharedAnswers(tmp_path, worker="a")
    reader = SharedAnswers(tmp_path, worker="b", capacity=3)
    for n in range(5):
        writer.publish("bundle-1", (n,), _answer(n))
    assert reader.absorb("bundle-1") == 5
    assert reader.waiting() == 3
    assert [reader.answer("bundle-1", (n,)) is not None for n in range(5)] == [False] * 2 + [
        True
    ] * 3


def test_a_record_still_being_written_is_read_once_whole(tmp_path) -> None:
    reader = SharedAnswers(tmp_path, worker="b")
    record = _record("bundle-1", ("q",), _answer(7))
    journal = tmp_path / "z-000000.answers"
    journal.write_bytes(record[:10])
    assert reader.absorb("bundle-1") == 0
    with journal.open("ab") as file:
        file.write(record[10:])
    assert reader.absorb("bundle-1") == 1
    found = reader.answer("bundle-1", ("q",))
    assert found is not None
    assert found.total == 7


def test_a_journal_moves_to_new_files_and_keeps_two(tmp_path) -> None:
    size = len(_record("bundle-1", (10,), _answer(10)))
    writer = SharedAnswers(tmp_path, worker="a", max_file_bytes=3 * size + size // 2)
    reader = SharedAnswers(tmp_path, worker="b", capacity=1000)
    kept = 0
    for n in range(60):  # three records a file
        writer.publish("bundle-1", (n,), _answer(n))
        assert len(list(tmp_path.glob("a-*.answers"))) <= 2
        if n % 2 == 1:  # two behind at most: never a deleted file
            kept += reader.absorb("bundle-1")
    kept += reader.absorb("bundle-1")
    assert kept == 60  # every record, in every file, once
    assert len(list(tmp_path.glob("a-*.answers"))) == 2
    assert all(reader.answer("bundle-1", (n,)).total == n for n in range(60))  # type: ignore[union-attr]
    # a reader more than a whole file behind skips what was deleted, and goes on
    for n in range(60, 120):
        writer.publish("bundle-1", (n,), _answer(n))
    behind = reader.absorb("bundle-1")
    assert 0 < behind < 60
    assert reader.answer("bundle-1", (119,)) is not None
    writer.publish("bundle-1", (120,), _answer(120))
    assert reader.absorb("bundle-1") == 1


def test_a_closed_journal_publishes_nothing(tmp_path) -> None:
    writer = SharedAnswers(tmp_path, worker="a")
    reader = SharedAnswers(tmp_path, worker="b")
    writer.close()
    writer.publish("bundle-1", ("q",), _answer(1))
    assert reader.absorb("bundle-1") == 0


def test_an_unreadable_record_is_skipped_and_reading_goes_on(tmp_path, caplog) -> None:
    reader = SharedAnswers(tmp_path, worker="b")
    broken = struct.pack("<II", 3, 3) + b"abcdef"
    journal = tmp_path / "z-000000.answers"
    journal.write_bytes(broken + _record("bundle-1", ("q",), _answer(5)))
    assert reader.absorb("bundle-1") == 1
    assert "unreadable answer" in caplog.text
    found = reader.answer("bundle-1", ("q",))
    assert found is not None
    assert found.total == 5


def test_a_server_of_several_workers_takes_the_others_answers(serve, workspace) -> None:
    folder = journal_folder(workspace.root / SIGNAL_DIR, "run1")
    with serve(workspace, _settings(), workers=2, run_id="run1") as client:
        first = client.get("/search", params={"q": "grey sofa", "domain": "us"}).json()
        (journal,) = folder.glob("*.answers")  # this worker's own
        ((tag, key, answer),) = _records(journal)  # the warm-up search is not cached
        assert (key[0], answer.total) == ("grey sofa", first["total"])
        # another worker's answer to a search this worker has not seen
        other = SharedAnswers(folder, worker="peer")
        theirs = ("oak table", *key[1:])
        other.publish(tag, theirs, SearchResponse("x", [], 4242, {}, {"total": 1.0}))
        time.sleep(1.0)  # the worker reads the others' journals every 0.1 s
        again = client.get("/search", params={"q": "oak table", "domain": "us"}).json()
        assert again["total"] == 4242
        assert set(again["timings_ms"]) == {"cache", "total"}


def test_one_worker_or_sharing_off_writes_no_journal(serve, workspace) -> None:
    settings = lexical_settings()
    settings.serve.share_answers = False
    for options, chosen in (
        ({"workers": 1, "run_id": "r1"}, None),
        ({"workers": 2, "run_id": "r2"}, settings),
    ):
        with serve(workspace, chosen, **options) as client:
            found = client.get("/search", params={"q": "grey sofa", "domain": "us"})
            assert found.status_code == 200
            assert not list((workspace.root / SIGNAL_DIR).glob("answers-*"))
