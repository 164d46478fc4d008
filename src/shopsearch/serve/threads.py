"""Compute-library threads of a server process (``[serve] compute_threads``).

A worker runs up to ``search_concurrency`` searches at once on its thread pool. If each of them
also fans out into torch intra-op, faiss (OpenMP) or BLAS threads sized to every core, a 2-core
machine runs dozens of busy threads that wait on each other: throughput drops as clients are
added and tail latency explodes. With one thread per library the concurrent searches are the
parallelism, and the operating system schedules exactly what wants to run.

Two layers, because a library reads its thread count at different times:

- environment variables (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
  ``TOKENIZERS_PARALLELISM``), set in ``shopsearch serve`` before worker processes start, so
  libraries loaded there start with the limit;
- calls into the libraries already loaded in this process: ``threadpoolctl`` (BLAS and OpenMP
  pools), ``torch.set_num_threads`` through
  :func:`~shopsearch.text.encoders.cap_encoder_threads` (also caps encoders loaded later), and
  ``faiss.omp_set_num_threads``.

OpenMP keeps its thread count per thread (an ICV each thread inherits from the environment read
when the runtime loaded, not from ``omp_set_num_threads`` calls in other threads), so a limit
set in the main thread does not reach the threads searches run on once a library was loaded
before the environment variables were set (``shopsearch serve`` with one worker imports faiss
and numpy before it sets them). :func:`limit_this_thread` sets it in the calling thread, once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

from shopsearch.text import encoders
from shopsearch.text.encoders import cap_encoder_threads

_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """The environment variables that start compute libraries with ``threads`` threads.

    Args:
        threads: threads per library; 0 returns no variables (library defaults).
    """
    if threads == 0:
        return {}
    env = dict.fromkeys(_ENV, str(threads))
    env["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"
    return env


def limit_compute_threads(threads: int) -> None:
    """Limit this process's compute libraries to ``threads`` threads each (0: leave them).

    Process-wide and lasting: meant for server processes, not for library code.
    """
    if threads < 0:
        raise ValueError(f"threads={threads} is not allowed; use threads >= 0 (0: defaults)")
    if threads == 0:
        return
    os.environ.update(thread_env(threads))
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(limits=threads)
    cap_encoder_threads(threads)
    if "faiss" in sys.modules:
        import faiss

        faiss.omp_set_num_threads(threads)


_limited = threading.local()


def limit_this_thread(threads: int) -> None:
    """Give the calling thread's OpenMP and BLAS pools ``threads`` threads (0: leave them).

    Cheap after the first call in a thread (a thread-local check), so a server calls it before
    every search on its worker threads.
    """
    if threads == 0 or getattr(_limited, "threads", None) == threads:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    if "faiss" in sys.modules:
        import faiss

        faiss.omp_set_num_threads(threads)
    _limited.threads = threads


@contextlib.contextmanager
def compute_threads_limited(threads: int) -> Iterator[None]:
    """:func:`limit_compute_threads` for the block only (environment untouched), for timing
    an engine in process the way a server worker runs it (0: no change)."""
    if threads == 0:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch_threads, cap = torch.get_num_threads(), encoders._thread_cap
    with threadpool_limits(limits=threads):
        cap_encoder_threads(threads)
        try:
            yield
        finally:
            encoders._thread_cap = cap
            torch.set_num_threads(torch_threads)
