"""The trivago transfer protocol on a tiny multi-platform events frame written here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.cli import main
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.transfer_trivago import (
    TransferTrivagoConfig,
    choose_markets,
    clickouts_per_platform,
    macro_mrr,
    run_transfer_trivago,
    subsample_sessions,
)

TrivagoEvents = Callable[..., pd.DataFrame]  # the conftest fixture
PLATFORMS = {"BIG": 60, "S1": 16, "S2": 12}  # sessions per platform in the training file
TEST_PLATFORMS = {"BIG": 20, "S1": 10, "S2": 8, "TINY": 2}


def _platforms(sessions: dict[str, int]) -> list[str]:
    return [platform for platform, n in sessions.items() for _ in range(n)]


@pytest.fixture(scope="module")
def files(
    tmp_path_factory: pytest.TempPathFactory, trivago_events: TrivagoEvents
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tv-transfer")
    train, test = root / "train.parquet", root / "test.parquet"
    trivago_events(_platforms(PLATFORMS), 0, "a").to_parquet(train)
    trivago_events(_platforms(TEST_PLATFORMS), 1, "b").to_parquet(test)
    return train, test


def test_markets_by_rule_and_by_name(trivago_events: TrivagoEvents) -> None:
    train = clickouts_per_platform(trivago_events(_platforms(PLATFORMS), 0, "a"))
    test = clickouts_per_platform(trivago_events(_platforms(TEST_PLATFORMS), 1, "b"))
    assert train.to_dict() == PLATFORMS
    assert choose_markets(train, test, 50, 5) == (["BIG"], ["S1", "S2"])
    assert choose_markets(train, test, 50, 5, ("S2",)) == (["BIG"], ["S2"])
    with pytest.raises(InvalidInputError, match="sources or have no test clickouts"):
        choose_markets(train, test, 50, 5, ("BIG",))
    with pytest.raises(InvalidInputError, match="--source-min-clickouts"):
        choose_markets(train, test, 1000, 5)


def test_subsample_keeps_sources_and_a_share_of_target_sessions(
    trivago_events: TrivagoEvents,
) -> None:
    events = trivago_events(_platforms(PLATFORMS), 0, "a")
    kept = subsample_sessions(events, ["S1", "S2"], 0.25, seed=0)
    sessions = kept.groupby("platform")["session_id"].nunique().to_dict()
    assert sessions == {"BIG": 60, "S1": 4, "S2": 3}
    # whole sessions are kept: both of a kept session's rows
    assert kept.groupby("session_id").size().eq(2).all()
    assert subsample_sessions(events, ["S1"], 1.0, seed=0) is events
    with pytest.raises(InvalidInputError, match="fraction"):
        subsample_sessions(events, ["S1"], 0.0, seed=0)


def test_macro_mrr_weighs_platforms_equally() -> None:
    value, ci = macro_mrr({"a": np.ones(100), "b": np.zeros(2)}, 200, 0)
    assert value == pytest.approx(0.5)
    assert ci == (pytest.approx(0.5), pytest.approx(0.5))


def test_protocol_reports_mrr_per_target(files: tuple[Path, Path]) -> None:
    cfg = TransferTrivagoConfig(
        *files,
        source_min_clickouts=50,
        target_min_test=5,
        fractions=(0.5, 1.0),
        methods=("cdan-w", "target-only", "zero-shot"),
        epochs=1,
        n_resamples=50,
    )
    report = run_transfer_trivago(cfg)
    assert report.primary_metric == "mrr"
    assert set(report.systems) == {
        "baseline/impression-order",
        "shopsearch/cdan-w@0.5",
        "baseline/target-only@0.5",
        "baseline/zero-shot@0.5",
        "shopsearch/cdan-w",
        "baseline/target-only",
        "baseline/zero-shot",
    }
    for entry in report.systems.values():
        assert set(entry["by_domain"]) == {"S1", "S2"}
        mean = np.mean([v["mrr"] for v in entry["by_domain"].values()])
        assert entry["mrr"] == pytest.approx(mean)
        assert 0.0 < entry["mrr"] <= 1.0
    versus = report.systems["shopsearch/cdan-w@0.5"]["vs"]
    assert set(versus) == {"baseline/zero-shot@0.5", "baseline/target-only@0.5"}
    diff = versus["baseline/zero-shot@0.5"]
    assert diff["mrr_diff"] == pytest.approx(
        report.systems["shopsearch/cdan-w@0.5"]["mrr"]
        - report.systems["baseline/zero-shot@0.5"]["mrr"]
    )
    assert report.dataset["train_requests@0.5"] == {"BIG": 60, "S1": 8, "S2": 6}
    assert report.dataset["test_requests"] == {"S1": 10, "S2": 8}
    assert report.config["sources"] == ["BIG"]


def test_cli_writes_the_report(files: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "tv.json"
    main(
        ["eval", "transfer", "--dataset", "trivago", "--train", str(files[0]), "--test",
         str(files[1]), "--targets", "S1", "--source-min-clickouts", "50", "--methods",
         "pooled", "--epochs", "1", "--report", str(out)]
    )  # fmt: skip
    report = Report.read(out)
    assert set(report.systems) == {"baseline/impression-order", "baseline/pooled"}
    assert set(report.systems["baseline/pooled"]["by_domain"]) == {"S1"}
