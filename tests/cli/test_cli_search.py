"""``shopsearch search``: load time apart from the search, the lean start of a lexical bundle,
the HTTP response's shape with ``--json`` and a readable table."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from shopsearch.cli import run
from shopsearch.text.encoders import MiniLMEncoder

#: Seconds added to loading MiniLM in the timing test: a load the search timings must not show.
SLOW_LOAD = 1.0


def test_search_times_the_bundle_load_apart_from_the_search(
    dense_workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    load_model = MiniLMEncoder._load_model

    def slow_load(self: MiniLMEncoder) -> None:
        time.sleep(SLOW_LOAD)
        load_model(self)

    monkeypatch.setattr(MiniLMEncoder, "_load_model", slow_load)
    capsys.readouterr()
    assert run(["search", "sofa", "-w", str(dense_workspace), "--json"]) == 0
    captured = capsys.readouterr()
    body = orjson.loads(captured.out)
    assert "retrieve.dense" in body["timings_ms"]
    assert body["timings_ms"]["total"] < 1000 * SLOW_LOAD  # the first search, models loaded
    loaded = re.search(r"loaded bundle-\S+ in ([\d,]+) ms", captured.err)
    assert loaded is not None, captured.err
    assert int(loaded.group(1).replace(",", "")) >= 1000 * SLOW_LOAD


def test_a_lexical_bundle_searches_without_torch(lexical_workspace: Path) -> None:
    """Checked in a fresh process, as ``python -X importtime`` would show it."""
    code = (
        "import sys\n"
        "from shopsearch.cli import run\n"
        f"status = run(['search', 'sofa', '-w', {str(lexical_workspace)!r}])\n"
        "heavy = sorted({'torch', 'sentence_transformers', 'transformers'} & set(sys.modules))\n"
        "print('status', status, 'heavy', *heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.split()[-3:] == ["status", "0", "heavy"], done.stdout + done.stderr
