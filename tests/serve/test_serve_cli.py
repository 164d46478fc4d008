"""``shopsearch serve`` refuses clearly when there is nothing to serve."""

from __future__ import annotations

from shopsearch.cli import run
from shopsearch.store.workspace import Workspace


def test_serve_without_a_bundle_names_the_index_command(tmp_path, capsys):
    ws = Workspace.create(tmp_path / "ws")
    assert run(["serve", "--workspace", str(ws.root)]) == 2
    assert "shopsearch index --workspace" in capsys.readouterr().err.replace("\n", "")


def test_serve_with_shards_needs_one_worker(workspace, capsys):
    args = ["serve", "-w", str(workspace.root), "--ray-address", "local", "--shards", "2"]
    assert run([*args, "--workers", "2"]) == 2
    assert "--workers 1" in capsys.readouterr().err.replace("\n", "")


def test_serve_shards_need_a_ray_address(workspace, capsys):
    assert run(["serve", "-w", str(workspace.root), "--shards", "2"]) == 2
    assert "add --ray-address" in capsys.readouterr().err.replace("\n", "")
