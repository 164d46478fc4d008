"""The offline A/B suite: replays on a tiny simulated shop, the engine as a policy, the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.cli import run
from shopsearch.config import RankingSettings
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.online import OnlineConfig, compare, run_online_suite
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.workspace import Workspace
from shopsearch.training.ranking import train_ranking_bundle

TINY = SimulationConfig(domains=2, products=150, users=80, sessions=300, seed=5)


@pytest.fixture(scope="module")
def shop(lexical_shop: Callable[..., Path]) -> Path:
    return lexical_shop("online", TINY)


def test_compare_pairs_the_sessions() -> None:
    frame = pd.DataFrame(
        {"requests": [2.0, 3.0, 1.0], "clicks": [1.0, 0.0, 2.0], "carts": [0.0, 1.0, 0.0],
         "purchases": [0.0, 1.0, 0.0], "gmv": [0.0, 30.0, 0.0]},
        index=["s1", "s2", "s3"],
    )  # fmt: skip
    metrics, ci = compare(frame, frame, 200, 0)
    assert metrics["a"]["clicks"] == pytest.approx(500.0)
    assert metrics["diff"] == {"clicks": 0.0, "carts": 0.0, "purchases": 0.0, "gmv": 0.0}
    assert ci["diff"]["gmv"] == (0.0, 0.0)
    low, high = ci["a"]["gmv"]
    assert low <= metrics["a"]["gmv"] <= high


def test_engine_policies_replay_the_same_sessions(shop: Path) -> None:
    with pytest.raises(InvalidInputError, match="no ranking stage"):
        run_online_suite(OnlineConfig(shop, ("engine", "engine+ranking"), sessions=20))
    train_ranking_bundle(Workspace.open(shop), RankingSettings(model="dnn", epochs=1))
    report = run_online_suite(
        OnlineConfig(shop, ("engine", "engine+ranking"), sessions=40, n_resamples=100)
    )
    assert report.suite == "online"
    assert set(report.systems) == {
        "shopsearch/engine",
        "shopsearch/engine+ranking",
        "shopsearch/diff",
    }
    diff = report.systems["shopsearch/diff"]
    for metric in ("clicks", "carts", "purchases", "gmv"):
        a = report.systems["shopsearch/engine"][metric]
        b = report.systems["shopsearch/engine+ranking"][metric]
        assert diff[metric] == pytest.approx(b - a)
        low, high = diff["ci95"][metric]
        assert low <= diff[metric] <= high
        assert np.isfinite(a)
        assert a >= 0
    assert report.config["simulator"]


def test_cli_logging_vs_random(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    argv = [
        "eval", "online", "-w", str(shop), "--policies", "logging,random",
        "--sessions", "60", "--report", str(out),
    ]  # fmt: skip
    assert run(argv) == 0
    report = Report.read(out)
    assert report.primary_metric == "gmv"
    logging, random = report.systems["baseline/logging"], report.systems["baseline/random"]
    assert logging["clicks"] > random["clicks"]


def test_a_settings_file_is_a_policy(shop: Path, tmp_path: Path) -> None:
    """``engine:FILE.toml`` serves the current bundle with those settings; the same settings
    as ``engine`` give the same replay, a missing file is a clear error."""
    same = tmp_path / "same.toml"
    same.write_text("[ranking]\nenabled = false\n")
    report = run_online_suite(
        OnlineConfig(shop, ("engine", f"engine:{same}"), sessions=30, n_resamples=50)
    )
    diff = report.systems["shopsearch/diff"]
    assert diff["clicks"] == 0.0
    assert diff["purchases"] == 0.0
    with pytest.raises(InvalidInputError, match="does not exist"):
        run_online_suite(OnlineConfig(shop, ("engine", f"engine:{tmp_path / 'no.toml'}")))


def test_the_engine_as_a_policy_logs_its_stream(shop: Path) -> None:
    from shopsearch.config import load_settings
    from shopsearch.evaluate.suites.online import EnginePolicy
    from shopsearch.pipeline.engine import Engine
    from shopsearch.simulate.replay import replay

    ws = Workspace.open(shop)
    settings = load_settings(shop)
    settings.pipeline.prerank_keep = 5
    policy = EnginePolicy(Engine.load(ws, settings), stream_sample=1.0)
    result = replay(ws, policy, 10, seed=3, keep_logs=True)
    assert result.logs is not None
    stream = result.logs.stream.to_pandas()
    requests = result.logs.requests.to_pandas()
    assert set(stream["request_id"]) <= set(requests["request_id"])
    assert {"retrieve", "prerank"} <= set(stream["stage"])
    assert stream[stream["stage"] == "prerank"].groupby("request_id").size().max() <= 5
