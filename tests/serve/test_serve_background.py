"""The event log's compaction while serving runs in a helper process at low CPU priority."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from shopsearch.events.compaction import CompactionResult
from shopsearch.serve import app as app_module
from shopsearch.serve.background import NICENESS, BackgroundProcess
from shopsearch.store.workspace import Workspace

from .conftest import Serve

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _until(seconds: float, check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_job_runs_in_another_process_at_lower_priority_without_ctrl_c() -> None:
    async def jobs() -> tuple[int, int, object]:
        helper = BackgroundProcess()
        try:
            pid, niceness = await helper.run(os.getpid), await helper.run(os.nice, 0)
            return pid, niceness, await helper.run(signal.getsignal, signal.SIGINT)
        finally:
            helper.close()

    pid, niceness, on_ctrl_c = asyncio.run(jobs())
    assert pid != os.getpid()
    assert niceness == min(os.nice(0) + NICENESS, 19)
    assert on_ctrl_c == signal.SIG_IGN  # the worker stops it, after its current job


def test_a_helper_dying_during_a_job_fails_it_and_the_next_job_gets_a_new_one() -> None:
    async def jobs() -> tuple[int, int]:
        helper = BackgroundProcess()
        try:
            first = await helper.run(os.getpid)
            job = asyncio.ensure_future(helper.run(time.sleep, 30))
            await asyncio.sleep(0.5)  # the job is running
            os.kill(first, signal.SIGKILL)
            with pytest.raises(BrokenProcessPool):
                await job
            return first, await helper.run(os.getpid)
        finally:
            helper.close()

    first, second = asyncio.run(jobs())
    assert second not in (first, os.getpid())


@needs_proc
def test_a_helper_found_dead_between_jobs_is_replaced_for_the_next_job() -> None:
    async def jobs() -> tuple[int, int]:
        helper = BackgroundProcess()
        try:
            first = await helper.run(os.getpid)
            os.kill(first, signal.SIGKILL)
            # gone from /proc: the pool has seen it die, marked itself broken and reaped it
            await asyncio.to_thread(_until, 30, lambda: not os.path.exists(f"/proc/{first}"))
            return first, await helper.run(os.getpid)
        finally:
            helper.close()

    first, second = asyncio.run(jobs())
    assert second not in (first, os.getpid())


_OWNER = """
import multiprocessing, os, sys, time
from shopsearch.serve.background import BackgroundProcess

if __name__ == "__main__":
    pool = BackgroundProcess().start()
    if sys.argv[1] == "later":  # the helper has done a job, so its set-up has run
        pool.submit(os.getpid).result()
    print(multiprocessing.active_children()[0].pid, flush=True)
    if sys.argv[1] == "at-once":  # gone before the helper's set-up could run
        os._exit(0)
    time.sleep(60)
"""


@needs_proc
@pytest.mark.parametrize("when", ["at-once", "later"])
def test_the_helper_ends_when_its_owner_is_killed(tmp_path: Path, when: str) -> None:
    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    helper = 0
    with subprocess.Popen(
        [sys.executable, str(script), when], stdout=subprocess.PIPE, text=True
    ) as owner:
        try:
            assert owner.stdout is not None
            helper = int(owner.stdout.readline())
        finally:
            owner.kill()
    try:
        _until(30, lambda: not _alive(helper))
        assert not _alive(helper)
    finally:
        if helper and _alive(helper):
            os.kill(helper, signal.SIGKILL)


def test_the_server_compacts_its_log_while_serving_in_the_helper(
    workspace: Workspace, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The serving process's own compaction fails: only the helper's rounds can move rows.
    def fails(ws: Workspace) -> CompactionResult:
        raise RuntimeError("compacted in the serving process")

    monkeypatch.setattr(app_module, "compact_event_log", fails)
    counted = re.compile(r'shopsearch_event_log_compacted_rows_total\{table="requests"\} (\S+)')

    def rows_and_count() -> tuple[int, float]:
        found = counted.search(client.get("/metrics").text)
        return workspace.table("requests").num_rows, float(found.group(1)) if found else 0.0

    with serve(workspace, compact_every_s=0.2) as client:
        for query in ("sofa", "grey", "shoes"):
            assert client.get("/search", params={"q": query}).status_code == 200
        # the three searches (and the warm-up search after the load) reach the table, and the
        # worker counts what the helper moved
        _until(60, lambda: (state := rows_and_count())[0] >= 3 and state[0] == state[1])
        moved, count = rows_and_count()
        assert moved >= 3
        assert count == moved
