"""``shopsearch serve`` refuses clearly when there is nothing to serve."""

from __future__ import annotations

from shopsearch.cli import main
from shopsearch.store.workspace import Workspace


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return 0 if exc.code is None else int(exc.code)
    return 0


def test_serve_without_a_bundle_names_the_index_command(tmp_path, capsys):
    ws = Workspace.create(tmp_path / "ws")
    assert _run(["serve", "--workspace", str(ws.root)]) == 2
    assert "shopsearch index --workspace" in capsys.readouterr().err.replace("\n", "")

