"""Server concurrency plumbing: first-come-first-served search slots, compute-thread limits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from shopsearch.serve.state import FairSemaphore
from shopsearch.serve.threads import thread_env

WAIT_S = 30.0  # an upper bound for waits on other threads, never a measured time


def test_fair_semaphore_admits_waiters_in_arrival_order() -> None:
    slots = FairSemaphore(1)
    order: list[int] = []
    slots.__enter__()  # the test holds the only slot
    threads = []
    for i in range(5):

        def take(i: int = i) -> None:
            with slots:
                order.append(i)

        thread = threading.Thread(target=take)
        thread.start()
        threads.append(thread)
        for _ in range(int(WAIT_S * 100)):  # wait until this one queues before the next
            with slots._lock:
                if len(slots._waiters) == i + 1:
                    break
            threading.Event().wait(0.01)
    slots.__exit__(None, None, None)
    for thread in threads:
        thread.join(WAIT_S)
    assert order == [0, 1, 2, 3, 4]
    assert slots._free == 1
    with pytest.raises(ValueError, match="slots"):
        FairSemaphore(0)


def test_fair_semaphore_holds_at_most_its_slots() -> None:
    slots = FairSemaphore(2)
    inside, most = 0, 0
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def work() -> None:
        nonlocal inside, most
        barrier.wait(WAIT_S)
        for _ in range(50):
            with slots:
                with lock:
                    inside += 1
                    most = max(most, inside)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert most <= 2
    assert slots._free == 2


def test_thread_env() -> None:
    assert thread_env(0) == {}
    env = thread_env(1)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["TOKENIZERS_PARALLELISM"] == "false"
    assert thread_env(3)["MKL_NUM_THREADS"] == "3"


@pytest.mark.timeout(120)
def test_limit_compute_threads_caps_torch_faiss_and_encoders() -> None:
    # a process of its own: the limits are process-wide and would leak into other tests
    code = (
        "import faiss, torch\n"
        "from shopsearch.serve.threads import limit_compute_threads\n"
        "from shopsearch.text import encoders\n"
        "limit_compute_threads(1)\n"
        "print(torch.get_num_threads(), faiss.omp_get_max_threads(), encoders._capped(8))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=110
    )
    assert out.stdout.split() == ["1", "1", "1"]


def test_compute_threads_limited_restores_the_process_settings() -> None:
    import torch

    from shopsearch.serve.threads import compute_threads_limited
    from shopsearch.text import encoders

    before, cap = torch.get_num_threads(), encoders._thread_cap
    with compute_threads_limited(1):
        assert torch.get_num_threads() == 1
        assert encoders._capped(4) == 1
    assert torch.get_num_threads() == before
    assert encoders._thread_cap == cap
    with compute_threads_limited(0):
        assert torch.get_num_threads() == before


@pytest.mark.timeout(120)
def test_limit_this_thread_reaches_threads_started_after_the_process_limit() -> None:
    # OpenMP thread counts are per thread: a limit set in the main thread after faiss loaded
    # (as `shopsearch serve` with one worker does) does not reach the threads searches run on
    code = (
        "import threading, faiss, os\n"
        "from shopsearch.serve.threads import limit_compute_threads, limit_this_thread\n"
        "limit_compute_threads(1)\n"
        "seen = []\n"
        "def search_thread():\n"
        "    seen.append(faiss.omp_get_max_threads())\n"
        "    limit_this_thread(1)\n"
        "    limit_this_thread(1)  # the second call in a thread is a no-op\n"
        "    seen.append(faiss.omp_get_max_threads())\n"
        "thread = threading.Thread(target=search_thread)\n"
        "thread.start()\n"
        "thread.join()\n"
        "print(os.cpu_count(), *seen)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in thread_env(1)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=110,
        env=env,
    )
    cores, unlimited, limited = (int(x) for x in out.stdout.split())
    assert limited == 1
    if cores > 1:  # the bug this guards against: the thread kept every core
        assert unlimited == cores


def test_the_server_sets_the_gil_switch_interval_while_it_runs(workspace, serve, config) -> None:
    settings = config()
    settings.serve.gil_switch_interval_us = 2000
    before = sys.getswitchinterval()
    try:
        with serve(workspace, settings) as client:
            assert sys.getswitchinterval() == pytest.approx(0.002)
            assert client.get("/search", params={"q": "lamp"}).status_code == 200
        assert sys.getswitchinterval() == before  # restored when the app stops
    finally:
        sys.setswitchinterval(before)
