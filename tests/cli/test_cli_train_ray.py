"""``shopsearch train --stage ranking|retrieval --ray-address local --workers 1``: the ranking
model or the two-tower encoder trains on a local Ray cluster (started on 127.0.0.1) into a
bundle equal to a local run's."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shopsearch.cli import run
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHOP = SimulationConfig(domains=2, products=150, users=80, sessions=300, seed=3)
SETTINGS = '[retrieval]\nsources = ["lexical"]\nlearned_buckets = 4096\n'


def _weights(root: Path, pattern: str) -> dict[str, torch.Tensor]:
    (path,) = current_bundle(Workspace.open(root)).glob(pattern)
    return load_file(str(path))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "model", "weights"),
    [
        ("ranking", "dnn", "ranking/model.safetensors"),
        ("retrieval", "two-tower", "retrieval/two_tower/**/weights.safetensors"),
    ],
)
def test_train_on_ray_with_one_worker_equals_local(
    lexical_shop: Callable[..., Path], tmp_path: Path, stage: str, model: str, weights: str
) -> None:
    shop = lexical_shop(f"train-ray-{stage}", SHOP, SETTINGS)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    shutil.copytree(shop, local)
    shutil.copytree(shop, on_ray)
    args = ["train", "--stage", stage, "--model", model, "--epochs", "1"]
    assert run([*args, "-w", str(local)]) == 0
    try:
        code = run([*args, "-w", str(on_ray), "--ray-address", "local", "--workers", "1"])
    finally:
        ray.shutdown()
    assert code == 0
    mine, theirs = _weights(local, weights), _weights(on_ray, weights)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert run(["search", "shoes", "-w", str(on_ray)]) == 0  # the bundle serves


def test_train_on_ray_usage_errors(
    tiny_workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(tiny_workspace)
    assert run(["train", "-w", root, "--ray-address", "local", "--workers", "0"]) == 2
    assert run(["train", "-w", root, "--stage", "rerank", "--ray-address", "local"]) == 2
    assert "--ray-address trains --stage ranking or retrieval" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert run(["train", "-w", root, "--ray-address", "local"]) == 2
    assert 'pip install "shopsearch[ray]"' in capsys.readouterr().err
