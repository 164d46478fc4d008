"""The event log's compaction while serving runs in a helper process at low CPU priority."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from shopsearch.events.compaction import CompactionResult
from shopsearch.serve import app as app_module
from shopsearch.serve.background import NICENESS, PARENT_CHECK_S, BackgroundProcess
from shopsearch.store.workspace import Workspace

from .conftest import Serve


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


def test_a_dead_helper_fails_its_job_and_the_next_job_gets_a_new_one() -> None:
    async def jobs() -> tuple[int, int]:
        helper = BackgroundProcess()
        try:
            first = await helper.run(os.getpid)
            os.kill(first, signal.SIGKILL)
            with pytest.raises(BrokenProcessPool):  # noticed at once, or during this job
                await helper.run(time.sleep, 0.5)
            return first, await helper.run(os.getpid)
        finally:
            helper.close()

    first, second = asyncio.run(jobs())
    assert second not in (first, os.getpid())


def test_the_server_compacts_its_log_while_serving_in_the_helper(
    workspace: Workspace, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The serving process's own compaction fails: only the helper's rounds can move rows.
    def fails(ws: Workspace) -> CompactionResult:
        raise RuntimeError("compacted in the serving process")

    monkeypatch.setattr(app_module, "compact_event_log", fails)
    with serve(workspace, compact_every_s=0.2) as client:
        for query in ("sofa", "grey", "shoes"):
            assert client.get("/search", params={"q": query}).status_code == 200
        deadline = time.monotonic() + 30
        while workspace.table("requests").num_rows < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        moved = workspace.table("requests").num_rows  # the three, and the warm-up search's
        assert moved >= 3
        counted = f'shopsearch_event_log_compacted_rows_total{{table="requests"}} {moved:.1f}'
        assert counted in client.get("/metrics").text


_OWNER = """
import asyncio, os, sys, time
from shopsearch.serve.background import BackgroundProcess

async def main():
    helper = BackgroundProcess()
    print(await helper.run(os.getpid), flush=True)
    time.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_the_helper_ends_when_its_owner_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True
    ) as owner:
        try:
            assert owner.stdout is not None
            helper = int(owner.stdout.readline())
            assert _alive(helper)
        finally:
            owner.kill()
    deadline = time.monotonic() + 10 * PARENT_CHECK_S
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(helper)
