"""Joining a Ray cluster, and evaluation without one: the clear error when Ray is missing, and
``parallel_map`` running here outside ``on_cluster`` (no Ray needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from shopsearch.cli import run
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.parallel import on_cluster, parallel_map, running_on_cluster
from shopsearch.ray_cluster import cluster_address, ray_module


def _pid_plus(offset: int, item: int) -> tuple[int, int]:
    return os.getpid(), offset + item


def test_parallel_map_runs_here_in_order_outside_a_cluster() -> None:
    assert not running_on_cluster()
    got = parallel_map(_pid_plus, iter(range(5)), 10)
    assert got == [(os.getpid(), 10 + i) for i in range(5)]
    assert parallel_map(_pid_plus, [], 0) == []


def test_local_names_a_new_instance() -> None:
    assert cluster_address("local") is None
    assert cluster_address("auto") == "auto"
    assert cluster_address("10.0.0.1:6379") == "10.0.0.1:6379"


def test_without_ray_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(InvalidInputError, match=r'pip install "shopsearch\[ray\]"'):
        ray_module()
    with pytest.raises(InvalidInputError, match="Ray is not installed"), on_cluster(None):
        pass
    report = tmp_path / "r.json"
    argv = ["eval", "ranking", "--workspace", str(tmp_path), "--report", str(report)]
    assert run([*argv, "--ray-address", "local"]) == 2
    assert "Ray is not installed" in capsys.readouterr().err
    assert not report.exists()


def test_workers_below_one_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="workers=0"), on_cluster(None, workers=0):
        pass
