"""Answers shared between workers: each worker's cached answers reach the others' caches
through journal files, only for the same bundle, whole records only, across file changes."""

from __future__ import annotations

import functools
import pickle
import struct
import time
from pathlib import Path
from types import SimpleNamespace

from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.request import SearchResponse
from shopsearch.serve.engines import SIGNAL_DIR
from shopsearch.serve.shared_answers import SharedAnswers, bundle_of, journal_folder
from shopsearch.text.query_cache import LRUCache

from .conftest import lexical_settings


def _answer(n: int) -> SearchResponse:
    return SearchResponse(f"id{n}", [], n, {}, {"total": 1.0})


def _cache(bundle: str = "bundle-1") -> SimpleNamespace:
    """What :meth:`SharedAnswers.absorb` reads of an engine: its bundle and response cache."""
    return SimpleNamespace(bundle=Path(bundle), responses=LRUCache[SearchResponse](10_000))


def _engine(workspace) -> Engine:
    return Engine.load(workspace, lexical_settings())


def test_an_answer_one_worker_computes_is_a_cache_hit_for_the_other(workspace, tmp_path) -> None:
    first, second = _engine(workspace), _engine(workspace)
    mine = SharedAnswers(tmp_path / "run", worker="a")
    theirs = SharedAnswers(tmp_path / "run", worker="b")
    first.on_answer = functools.partial(mine.publish, bundle_of(first))
    computed = first.search(SearchParams("grey sofa", "us"))
    assert theirs.absorb(second) == 1
    assert theirs.absorb(second) == 0  # nothing new
    assert mine.absorb(first) == 0  # a worker does not read its own journal
    answer = second.search(SearchParams("grey sofa", "us"))
    assert set(answer.timings_ms) == {"cache", "total"}
    assert answer.request_id != computed.request_id
    assert [i.product_id for i in answer.items] == [i.product_id for i in computed.items]
    assert (answer.total, answer.facets) == (computed.total, computed.facets)
    # a user's search is not cached, so not shared either
    first.search(SearchParams("grey sofa", "us", user_id="u1"))
    assert theirs.absorb(second) == 0


def test_answers_of_another_bundle_are_not_taken(tmp_path) -> None:
    mine = SharedAnswers(tmp_path, worker="a")
    theirs = SharedAnswers(tmp_path, worker="b")
    mine.publish("bundle-old", ("q",), _answer(1))
    mine.publish("bundle-1", ("q",), _answer(2))
    cache = _cache("bundle-1")
    assert theirs.absorb(cache) == 1  # type: ignore[arg-type]
    assert cache.responses.lookup([("q",)])[0].total == 2


def test_journals_written_before_a_worker_starts_are_not_read(tmp_path) -> None:
    early = SharedAnswers(tmp_path, worker="a")
    early.publish("bundle-1", ("old",), _answer(1))
    reader = SharedAnswers(tmp_path, worker="b")
    cache = _cache()
    assert reader.absorb(cache) == 0  # type: ignore[arg-type]
    early.publish("bundle-1", ("new",), _answer(2))
    late = SharedAnswers(tmp_path, worker="c")  # a worker that starts later: read from its start
    late.publish("bundle-1", ("later",), _answer(3))
    assert reader.absorb(cache) == 2  # type: ignore[arg-type]
    assert cache.responses.lookup([("old",), ("new",), ("later",)])[0] is None


def test_a_record_still_being_written_is_read_once_whole(tmp_path) -> None:
    reader = SharedAnswers(tmp_path, worker="b")
    payload = pickle.dumps(("bundle-1", ("q",), _answer(7)))
    record = struct.pack("<I", len(payload)) + payload
    journal = tmp_path / "z-000000.answers"
    journal.write_bytes(record[:10])
    cache = _cache()
    assert reader.absorb(cache) == 0  # type: ignore[arg-type]
    with journal.open("ab") as file:
        file.write(record[10:])
    assert reader.absorb(cache) == 1  # type: ignore[arg-type]
    assert cache.responses.lookup([("q",)])[0].total == 7


def test_a_journal_moves_to_new_files_and_keeps_two(tmp_path) -> None:
    record = 4 + len(pickle.dumps(("bundle-1", (10,), _answer(10)), pickle.HIGHEST_PROTOCOL))
    writer = SharedAnswers(tmp_path, worker="a", max_file_bytes=3 * record + record // 2)
    reader = SharedAnswers(tmp_path, worker="b")
    cache = _cache()
    stored = 0
    for n in range(60):  # three records a file
        writer.publish("bundle-1", (n,), _answer(n))
        assert len(list(tmp_path.glob("a-*.answers"))) <= 2
        if n % 2 == 1:  # two behind at most: never a deleted file
            stored += reader.absorb(cache)  # type: ignore[arg-type]
    stored += reader.absorb(cache)  # type: ignore[arg-type]
    assert stored == 60  # every record, in every file, once
    assert len(list(tmp_path.glob("a-*.answers"))) == 2
    assert all(cache.responses.lookup([(n,)])[0].total == n for n in range(60))
    # a reader more than a whole file behind skips what was deleted, and goes on
    for n in range(60, 120):
        writer.publish("bundle-1", (n,), _answer(n))
    behind = reader.absorb(cache)  # type: ignore[arg-type]
    assert 0 < behind < 60
    assert cache.responses.lookup([(119,)])[0].total == 119
    writer.publish("bundle-1", (120,), _answer(120))
    assert reader.absorb(cache) == 1  # type: ignore[arg-type]


def test_a_closed_journal_publishes_nothing(tmp_path) -> None:
    writer = SharedAnswers(tmp_path, worker="a")
    reader = SharedAnswers(tmp_path, worker="b")
    writer.close()
    writer.publish("bundle-1", ("q",), _answer(1))
    assert reader.absorb(_cache()) == 0  # type: ignore[arg-type]


def _records(journal: Path) -> list[tuple[str, tuple[object, ...], SearchResponse]]:
    data, at, found = journal.read_bytes(), 0, []
    while at < len(data):
        (size,) = struct.unpack_from("<I", data, at)
        found.append(pickle.loads(data[at + 4 : at + 4 + size]))
        at += 4 + size
    return found


def test_a_server_of_several_workers_takes_the_others_answers(serve, workspace) -> None:
    folder = journal_folder(workspace.root / SIGNAL_DIR, "run1")
    with serve(workspace, workers=2, run_id="run1") as client:
        first = client.get("/search", params={"q": "grey sofa", "domain": "us"}).json()
        (journal,) = folder.glob("*.answers")  # this worker's own: the warm-up search's
        bundle, key, answer = _records(journal)[-1]  # answer, then this search's
        assert (key[0], answer.total) == ("grey sofa", first["total"])
        # another worker's answer to the same search replaces this worker's own
        other = SharedAnswers(folder, worker="peer")
        other.publish(bundle, key, SearchResponse("x", [], 4242, {}, {"total": 1.0}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            again = client.get("/search", params={"q": "grey sofa", "domain": "us"}).json()
            if again["total"] == 4242:
                break
            time.sleep(0.05)
        assert again["total"] == 4242


def test_one_worker_or_sharing_off_writes_no_journal(serve, workspace) -> None:
    settings = lexical_settings()
    settings.serve.share_answers = False
    for options, chosen in (
        ({"workers": 1, "run_id": "r1"}, None),
        ({"workers": 2, "run_id": "r2"}, settings),
    ):
        with serve(workspace, chosen, **options) as client:
            assert (
                client.get("/search", params={"q": "grey sofa", "domain": "us"}).status_code == 200
            )
            assert not list((workspace.root / SIGNAL_DIR).glob("answers-*"))


def test_an_unreadable_record_is_skipped_and_reading_goes_on(tmp_path, caplog) -> None:
    reader = SharedAnswers(tmp_path, worker="b")
    good = pickle.dumps(("bundle-1", ("q",), _answer(5)))
    broken = b"not a pickle"
    journal = tmp_path / "z-000000.answers"
    journal.write_bytes(b"".join(struct.pack("<I", len(r)) + r for r in (broken, good)))
    cache = _cache()
    assert reader.absorb(cache) == 1  # type: ignore[arg-type]
    assert cache.responses.lookup([("q",)])[0].total == 5
    assert "unreadable answer" in caplog.text
