"""``shopsearch eval transfer --dataset sim`` on a tiny two-market workspace."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from shopsearch.cli import run
from shopsearch.ranking.train import TrainConfig
from shopsearch.transfer.protocol import _enough_steps


def test_eval_transfer_sim_writes_a_report(
    two_domain_workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "transfer.json"
    argv = [
        "eval", "transfer", "--dataset", "sim", "-w", str(two_domain_workspace),
        "--report", str(out), "--fractions", "0.5,1.0", "--epochs", "1",
        "--methods", "cdan-w,target-only,zero-shot",
    ]  # fmt: skip
    assert run(argv) == 0
    report = orjson.loads(out.read_bytes())
    assert report["suite"] == "transfer"
    assert report["primary_metric"] == "ndcg@10"
    names = set(report["systems"])
    assert {
        "baseline/logging-policy",
        "shopsearch/cdan-w@0.5",
        "shopsearch/cdan-w@1",
        "baseline/target-only@0.5",
        "baseline/target-only@1",
        "baseline/zero-shot",
    } == names
    target = report["config"]["targets"][0]
    entry = report["systems"]["shopsearch/cdan-w@0.5"]
    assert 0.0 <= entry["ndcg@10"] <= 1.0
    assert set(entry["by_domain"]) == {target}
    assert "simulator" in report["config"]
    capsys.readouterr()
    assert run(["eval", "transfer", "--dataset", "nope", "--report", str(out)]) == 2
    assert "not available" in capsys.readouterr().err


def test_small_training_sets_get_enough_steps() -> None:
    cfg = TrainConfig(epochs=2, batch_size=1024, patience=1)
    assert _enough_steps(cfg, 1_000_000, 200) is cfg
    small = _enough_steps(cfg, 1600, 200)
    assert small.batch_size == 80
    assert small.epochs == 10
    assert small.patience == 2
    assert _enough_steps(cfg, 1600, 0) is cfg
