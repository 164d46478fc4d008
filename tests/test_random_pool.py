"""Random bytes for ids: all different, from one OS read per block, fresh after a fork."""

from __future__ import annotations

import os
import threading

import pytest

from shopsearch import random_pool
from shopsearch.random_pool import RandomPool


def test_ids_from_the_pool_are_distinct_and_read_a_block_at_a_time(monkeypatch):
    reads: list[int] = []
    real = os.urandom

    def counted(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(random_pool.os, "urandom", counted)
    pool = RandomPool(block=1200)
    ids = [pool.hex(12) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert reads == [1200] * 10  # 100 ids of 12 bytes per read
    assert len(pool.take(5000)) == 5000  # more than a block at once


def test_threads_never_get_the_same_bytes():
    pool = RandomPool(block=64)
    got: list[bytes] = []

    def draw() -> None:
        got.extend(pool.take(8) for _ in range(2000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == len(got) == 8000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_bytes():
    random_pool.RANDOM.take(1)  # a block is read
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes
        os.write(write, random_pool.RANDOM.take(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != random_pool.RANDOM.take(16)


def test_a_bad_block_size_is_refused():
    with pytest.raises(ValueError, match="block=0"):
        RandomPool(block=0)
