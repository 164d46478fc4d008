"""Long commands report progress as log lines when their output is not a terminal."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
from rich.console import Console

from shopsearch.cli import run
from shopsearch.cli.progress import ProgressLines, heartbeat, say


def test_progress_lines_come_first_then_every_few_seconds_then_last() -> None:
    out = io.StringIO()
    now = [100.0]
    lines = ProgressLines(
        "encoding products",
        "products",
        every=10.0,
        clock=lambda: now[0],
        out=Console(file=out, width=40),
    )
    lines(0, 5110)  # the first report: a line
    now[0] = 105.0
    lines(1000, 5110)  # within 10 s of the last line: quiet
    now[0] = 111.0
    lines(2000, 5110)
    now[0] = 112.0
    lines(5110, 5110)  # the last report: a line at once
    lines(5110, 5110)  # told again (another layer confirming it): quiet
    assert out.getvalue().splitlines() == [
        "encoding products: 0/5,110 products (0%) in 0:00:00",
        "encoding products: 2,000/5,110 products (39%) in 0:00:11, 182 products/s, "
        "about 0:00:17 left",
        "encoding products: 5,110/5,110 products (100%) in 0:00:12, 426 products/s",
    ]


def test_a_quiet_job_says_it_is_still_running_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    with heartbeat("eval relevance", every=0.05, out=Console(file=out, width=40)):
        say("encoding the catalog with MiniLM")
        time.sleep(0.4)
    lines = out.getvalue().splitlines()
    assert lines
    assert lines[0] == (
        "eval relevance: still running after 0:00:00; last: encoding the catalog with MiniLM"
    )
    assert "encoding the catalog with MiniLM" in capsys.readouterr().err


def test_index_logs_every_product_of_every_source_off_a_terminal(
    dense_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-indexing: every product vector is cached, and still each one counts as done."""
    root = tmp_path / "ws"
    shutil.copytree(dense_workspace, root)
    capsys.readouterr()
    assert run(["index", "-w", str(root)]) == 0
    err = capsys.readouterr().err
    assert "indexing lexical: 3/3 products (100%)" in err
    assert "indexing dense: 3/3 products (100%)" in err
    assert "indexed 3 products" in err
