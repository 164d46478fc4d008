"""The event log's compaction while serving runs in a helper process at low CPU priority."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

from shopsearch.events.compaction import CompactionResult
from shopsearch.serve import app as app_module
from shopsearch.serve.background import NICENESS, BackgroundProcess
from shopsearch.store.workspace import Workspace

from .conftest import Serve


def test_a_job_runs_in_another_process_at_lower_priority() -> None:
    async def jobs() -> tuple[int, int]:
        helper = BackgroundProcess()
        try:
            return await helper.run(os.getpid), await helper.run(os.nice, 0)
        finally:
            helper.close()

    pid, niceness = asyncio.run(jobs())
    assert pid != os.getpid()
    assert niceness == min(os.nice(0) + NICENESS, 19)


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
