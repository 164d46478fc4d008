"""Evaluation on a local Ray cluster (started here on 127.0.0.1, 2 CPUs): the tasks run in other
processes, and the intervals and reports equal those of a run without Ray."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsearch.cli import run
from shopsearch.evaluate import metrics
from shopsearch.evaluate.parallel import on_cluster, parallel_map, running_on_cluster
from shopsearch.evaluate.report import Report, evaluate_run

ray = pytest.importorskip("ray")
# Ray's own modules warn about their deprecated settings on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _pid_plus(offset: int, item: int) -> tuple[int, int]:
    return os.getpid(), offset + item


def _remote_rmse(driver: int, y: np.ndarray, p: np.ndarray) -> float:
    assert os.getpid() != driver, "a bootstrap block ran in the driver"
    return metrics.rmse(y, p)


def test_parallel_map_runs_tasks_elsewhere_in_order(cluster: None) -> None:
    with on_cluster(None):
        assert running_on_cluster()
        got = parallel_map(_pid_plus, (i for i in range(9)), 100)  # more than in flight
    assert not running_on_cluster()
    assert [value for _, value in got] == [100 + i for i in range(9)]
    assert os.getpid() not in {pid for pid, _ in got}


def test_bootstrap_blocks_on_the_cluster_equal_a_local_run(
    cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 3000)  # 100 groups: blocks of 30 resamples
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(100), 4)
    labels = rng.integers(0, 2, size=400)
    scores = np.round(labels + rng.normal(size=400), 1)  # ties across groups
    rmse_here = functools.partial(_remote_rmse, -1)
    local = (
        metrics.auc_ci(labels, scores, groups, n_resamples=200, seed=5),
        metrics.group_bootstrap_ci(rmse_here, groups, labels, scores, n_resamples=200, seed=5),
    )
    rmse_remote = functools.partial(_remote_rmse, os.getpid())
    with on_cluster(None):
        remote = (
            metrics.auc_ci(labels, scores, groups, n_resamples=200, seed=5),
            metrics.group_bootstrap_ci(
                rmse_remote, groups, labels, scores, n_resamples=200, seed=5
            ),
        )
    assert remote == local


def test_evaluate_run_on_the_cluster_equals_a_local_run(cluster: None) -> None:
    rng = np.random.default_rng(0)
    qrels = {f"q{i}": {f"d{j}": float(rng.integers(0, 3)) for j in range(8)} for i in range(60)}
    run_ = {q: [f"d{j}" for j in rng.permutation(10)] for q in qrels}
    local = evaluate_run(run_, qrels, ks=(5,), n_resamples=300, seed=1)
    with on_cluster(None):
        remote = evaluate_run(run_, qrels, ks=(5,), n_resamples=300, seed=1)
    assert len(remote.ci) == 4
    assert remote.ci == local.ci
    assert remote.metrics == local.metrics


def _report(path: Path) -> dict[str, Any]:
    data = Report.read(path).to_dict()
    del data["timing_s"], data["created"]
    return data


@pytest.mark.slow
def test_ranking_sim_on_the_cluster_writes_the_local_report(
    cluster: None, tiny_workspace: Path, tmp_path: Path
) -> None:
    argv = [
        "eval", "ranking", "--dataset", "sim", "--workspace", str(tiny_workspace),
        "--models", "dnn,lightgbm", "--epochs", "1",
    ]  # fmt: skip
    here, there = tmp_path / "here.json", tmp_path / "there.json"
    assert run([*argv, "--report", str(here)]) == 0
    assert run([*argv, "--report", str(there), "--ray-address", "local", "--workers", "2"]) == 0
    local, remote = _report(here), _report(there)
    assert len(local["systems"]) == 5
    assert remote == local
    assert set(Report.read(there).timing_s) == set(Report.read(here).timing_s)
