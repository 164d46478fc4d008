"""The ranking commands: eval ranking (sim), train --stage ranking, bench ranking."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from shopsearch.cli import run
from shopsearch.evaluate.report import Report


def test_eval_ranking_sim_report(tiny_workspace: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    code = run(
        [
            "eval", "ranking", "--dataset", "sim", "--workspace", str(tiny_workspace),
            "--report", str(report_path), "--models", "dnn,lightgbm", "--epochs", "1",
        ]
    )  # fmt: skip
    assert code == 0
    report = Report.read(report_path)
    assert report.primary_metric == "ndcg@10"
    assert set(report.systems) == {
        "baseline/logging-policy",
        "shopsearch/dnn",
        "shopsearch/dnn-pb-none",
        "shopsearch/dnn-pb-ipw",
        "baseline/lightgbm",
    }
    dnn = report.systems["shopsearch/dnn"]
    assert 0.0 <= dnn["ndcg@10"] <= 1.0
    assert {"auc_click", "gauc_click", "ndcg@10_purchase", "by_domain", "long_tail"} <= set(dnn)
    assert report.config["simulator"]["sessions"] == 300


def test_train_and_bench_commands(
    tiny_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(tiny_workspace, root)
    assert run(["train", "--workspace", str(root), "--model", "nope"]) == 2
    assert "unknown ranking model 'nope'" in capsys.readouterr().err
    assert run(["train", "--workspace", str(root), "--position-bias", "often"]) == 2
    assert "invalid ranking option" in capsys.readouterr().err
    bench = tmp_path / "bench.json"
    assert run(
        ["bench", "ranking", "--workspace", str(root), "--report", str(bench), "--requests", "5",
         "--candidates", "50"]
    ) == 0  # fmt: skip
    result = orjson.loads(bench.read_bytes())
    assert set(result["systems"]) >= {"dnn", "esmm", "mmoe", "ple", "lightgbm"}
    assert set(result["stage"]) == set(result["systems"])  # the whole stage, features included
    assert all(row["cpu_p99_ms"] > 0 for row in result["stage"].values())
