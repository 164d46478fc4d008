"""``shopsearch search``: load time apart from the search, the lean start of a lexical bundle,
the HTTP response's shape with ``--json`` and a readable table."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pandas as pd
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


def test_search_json_is_the_http_response(
    lexical_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from shopsearch.config import load_settings
    from shopsearch.serve.app import create_app
    from shopsearch.serve.models import ItemOut, SearchOut
    from shopsearch.store.workspace import Workspace

    root = tmp_path / "ws"
    shutil.copytree(lexical_workspace, root)
    capsys.readouterr()
    assert run(["search", "sofa", "-w", str(root), "--json", "--size", "1", "--page", "2"]) == 0
    body = orjson.loads(capsys.readouterr().out)
    app = create_app(Workspace.open(root), load_settings(root))
    with TestClient(app) as client:
        answer = client.get("/search", params={"q": "sofa", "size": 1, "page": 2})
    assert answer.status_code == 200
    http = answer.json()

    assert list(body) == list(http) == list(SearchOut.model_fields)
    SearchOut.model_validate(body)
    assert list(body["items"][0]) == list(ItemOut.model_fields)
    same = ("query", "domain", "total", "page", "size", "items", "facets")
    assert {k: body[k] for k in same} == {k: http[k] for k in same}
    assert (body["page"], body["size"], body["items"][0]["position"]) == (2, 1, 2)
    assert [s["name"] for s in body["pipeline"]] == [s["name"] for s in http["pipeline"]]


#: Home Depot's catalog as it reaches the table: no brand, no category, no price, long titles.
HOME_DEPOT = pd.DataFrame(
    {
        "product_id": ["100001", "100002", "100003"],
        "title": [
            "Simpson Strong-Tie 12-Gauge Angle with Extra Long Galvanized Steel Legs for Heavy "
            "Duty Outdoor Deck and Fence Framing Projects",
            "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat Wood and Concrete Coating "
            "for Decks Patios and Pool Surrounds",
            "Deck screws 3 in. exterior coated 5 lb box",
        ],
        "brand": ["", "", ""],
        "category": ["", "", ""],
        "price": [None, None, 12.5],
    }
)


def test_search_table_fits_the_terminal_without_empty_columns(
    indexed: Callable[[Path, pd.DataFrame, list[str]], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = indexed(tmp_path / "ws", HOME_DEPOT, ["lexical"])
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    assert run(["search", "deck", "-w", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), out
    header = next(line for line in lines if "title" in line)
    assert "brand" not in header
    assert "category" not in header
    assert "nan" not in out
    rows = [line for line in lines if re.search(r"\b10000[123]\b", line)]
    assert len(rows) == 3  # one line per result: long titles are cut, not wrapped
    simpson = next(line for line in rows if "100001" in line)
    assert "Simpson Strong-Tie" in simpson
    assert "…" in simpson
    screws = next(line for line in rows if "100003" in line)
    assert "12.50" in screws
