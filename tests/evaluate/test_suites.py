"""The suite protocol, its registry, and the ``shopsearch eval`` commands built from them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import pytest

from shopsearch.cli import run
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import option, suite_options
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.online import OnlineConfig
from shopsearch.evaluate.suites.ranking_bestbuy import RankingBestBuyConfig
from shopsearch.evaluate.suites.ranking_sim import RankingSimConfig
from shopsearch.evaluate.suites.ranking_trivago import RankingTrivagoConfig
from shopsearch.evaluate.suites.relevance import RelevanceSuiteConfig
from shopsearch.evaluate.suites.retrieval_sim import RetrievalSimConfig
from shopsearch.evaluate.suites.transfer_relevance import TransferRelevanceConfig
from shopsearch.evaluate.suites.transfer_sim import TransferSimConfig
from shopsearch.evaluate.suites.transfer_trivago import TransferTrivagoConfig
from shopsearch.progress import Say

#: Every built-in suite and its primary metric, in registry order.
BUILT_INS = {
    "relevance": "ndcg@10",
    "retrieval/sim": "ndcg@10",
    "ranking/sim": "ndcg@10",
    "ranking/trivago": "mrr",
    "ranking/bestbuy": "map@5",
    "online": "gmv",
    "transfer/sim": "ndcg@10",
    "transfer/relevance": "ndcg@10",
    "transfer/trivago": "mrr",
    "query/sim": "ndcg@10",
    "query/suggest-sim": "mrr_prefix4",
    "query/suggest-bestbuy": "mrr_prefix4",
    "stages/sim": "ndcg@10",
}


@dataclass(frozen=True)
class EchoConfig:
    """The fake suite's inputs."""

    source: Annotated[Path, option("Where the fake reads", metavar="W")]
    scale: Annotated[float, option("Score of the one system")] = 0.5
    tags: Annotated[tuple[str, ...], option("Comma list of tags")] = ("a", "b")
    rounds: int = 3  # not an option


class EchoSuite(Suite[EchoConfig]):
    """A fake outside suite: one system whose score is ``scale``.

    Example: shopsearch eval echo --source S --report r.json
    """

    name = "echo"
    config_type = EchoConfig
    primary_metric = "score"

    def run(self, config: EchoConfig, say: Say) -> Report:
        say("echoing")
        report = Report(
            suite="echo",
            primary_metric="score",
            config={"source": config.source, "tags": list(config.tags), "rounds": config.rounds},
        )
        report.add_system("baseline/echo", {"score": config.scale})
        return report


class MislabelledSuite(EchoSuite):
    """A fake suite whose report names another primary metric than it declares."""

    primary_metric = "mrr"


def _flat(text: str) -> str:
    """Help text without rich's boxes and line wrapping."""
    return " ".join(text.replace("│", " ").split())


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


# --------------------------------------------------------------------------- the registry


def test_every_built_in_suite_is_found_by_name() -> None:
    assert SUITES.names() == list(BUILT_INS)
    for name, metric in BUILT_INS.items():
        suite = SUITES.get(name)
        assert issubclass(suite, Suite)
        assert suite.name == name
        assert suite.primary_metric == metric
        assert dataclasses.is_dataclass(suite.config_type)
        assert suite_options(suite.config_type)
        assert suite.summary().endswith(".")
        assert "Example: shopsearch eval" in (suite.__doc__ or "")
    with pytest.raises(InvalidInputError, match=r"unknown suite 'nope'.*ranking/trivago"):
        SUITES.get("nope")


def test_a_suite_checks_its_config_and_its_primary_metric(tmp_path: Path) -> None:
    report = EchoSuite()(EchoConfig(tmp_path), print)
    assert report.systems["baseline/echo"]["score"] == 0.5
    with pytest.raises(InvalidInputError, match="takes a EchoConfig, not a RankingSimConfig"):
        EchoSuite()(RankingSimConfig(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"declares primary metric 'mrr'.*'score'"):
        MislabelledSuite()(EchoConfig(tmp_path))


# --------------------------------------------------------------------------- options


def test_options_come_from_the_annotated_fields() -> None:
    options = {o.flag: o for o in suite_options(EchoConfig)}
    assert list(options) == ["--source", "--scale", "--tags"]  # rounds is Python-only
    assert options["--source"].required
    assert options["--source"].usage == "--source W"
    assert (options["--scale"].cli_default, options["--tags"].cli_default) == (0.5, "a,b")
    assert options["--tags"].parse(" x, y ,") == ("x", "y")
    assert options["--scale"].parse("0.25") == 0.25
    with pytest.raises(InvalidInputError, match="--scale 'lots' is not a number"):
        options["--scale"].parse("lots")
    policies = {o.flag: o for o in suite_options(OnlineConfig)}["--policies"]
    with pytest.raises(InvalidInputError, match=r"names 1 value\(s\); give 2 .* logging,engine"):
        policies.parse("logging")


def test_options_reject_what_a_command_line_cannot_spell() -> None:
    with pytest.raises(InvalidInputError, match="is not a dataclass"):
        suite_options(int)

    @dataclass
    class Nested:
        weights: Annotated[dict[str, float], option("Weights")]

    with pytest.raises(InvalidInputError, match=r"Nested\.weights has type .* no command-line"):
        suite_options(Nested)


# --------------------------------------------------------------------------- the commands


def test_eval_help_lists_every_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["eval", "--help"]) == 0
    listing = _flat(capsys.readouterr().out)
    for name in BUILT_INS:
        suite = SUITES.get(name)
        family, _, dataset = name.partition("/")
        assert f" {family} " in listing
        summary = suite.summary().rstrip(".")
        assert (f"{dataset}: {summary}" if dataset else summary) in listing


@pytest.mark.parametrize("name", list(BUILT_INS))
def test_the_cli_runs_each_suite_with_its_config_defaults(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given only its required options, a suite runs with exactly its config's defaults, and
    its help shows those defaults: the CLI holds none of its own."""
    suite = SUITES.get(name)
    ran: list[Any] = []

    def fake_run(self: Suite[Any], config: Any, say: Say) -> Report:
        ran.append(config)
        report = Report(suite="fake", primary_metric=self.primary_metric)
        report.add_system("baseline/fake", {self.primary_metric: 1.0})
        return report

    monkeypatch.setattr(suite, "run", fake_run)
    family, _, dataset = name.partition("/")
    command = ["eval", family, *(["--dataset", dataset] if dataset else [])]
    argv, required = [*command, "--report", str(tmp_path / "r.json")], {}
    samples = {Path: str(tmp_path / "x"), str: "homedepot", int: "3", float: "0.5"}
    for opt in suite_options(suite.config_type):
        if opt.required:
            argv += [opt.flag, samples[opt.value_type]]
            required[opt.field] = opt.parse(samples[opt.value_type])
    if "report_path" in {f.name for f in dataclasses.fields(suite.config_type)}:
        required["report_path"] = tmp_path / "r.json"  # set by the CLI: plots go next to it
    assert run(argv) == 0, capsys.readouterr().err
    assert ran == [suite.config_type(**required)]
    assert _read(tmp_path / "r.json")["systems"]["baseline/fake"][suite.primary_metric] == 1.0

    capsys.readouterr()
    assert run(["eval", name, "--help"]) == 0
    shown = _flat(capsys.readouterr().out)
    for opt in suite_options(suite.config_type):
        if opt.default_text is not None:
            assert f"(default: {opt.default_text})" in shown, opt.flag
        elif opt.cli_default not in (None, ""):
            assert f"[default: {opt.cli_default}]" in shown, opt.flag


DOCUMENTED: list[tuple[list[str], str, Any]] = [
    (
        ["eval", "relevance", "--dataset", "homedepot", "--train", "A.csv", "--test", "B.csv"],
        "relevance",
        RelevanceSuiteConfig(
            dataset="homedepot",
            test=[Path("B.csv")],
            train=[Path("A.csv")],
            products=[],
            cache_dir=Path(".shopsearch-cache"),
            rel_threshold=None,
            seed=0,
        ),
    ),
    (
        ["eval", "transfer", "--dataset", "sim", "-w", "W", "--fractions", "0.01,0.05,0.2,1.0",
         "--source", "us", "--methods", "cdan-w,pgtl", "--epochs", "2"],
        "transfer/sim",
        TransferSimConfig(
            workspace=Path("W"),
            fractions=(0.01, 0.05, 0.2, 1.0),
            source="us",
            methods=("cdan-w", "pgtl"),
            epochs=2,
            batch_size=1024,
            seed=0,
        ),
    ),
    (
        ["eval", "transfer", "--dataset", "relevance", "--source-format", "homedepot", "--source",
         "S.csv", "--target-format", "crowdflower", "--target", "T.csv", "--target-products",
         "P.csv", "--target-train-fraction", "0.1"],
        "transfer/relevance",
        TransferRelevanceConfig(
            source_format="homedepot",
            source=[Path("S.csv")],
            target_format="crowdflower",
            target=[Path("T.csv")],
            target_products=[Path("P.csv")],
            fractions=(0.1,),
            methods=(),
            epochs=20,
            batch_size=256,
            cache_dir=Path(".shopsearch-cache"),
            link_cosine=0.9,
            seed=0,
        ),
    ),
    (
        ["eval", "transfer", "--dataset", "trivago", "--train", "A", "--test", "B", "--targets",
         "IT,MX", "--target-train-fraction", "0.2,1.0"],
        "transfer/trivago",
        TransferTrivagoConfig(
            train=Path("A"),
            test=Path("B"),
            targets=("IT", "MX"),
            source_min_clickouts=500,
            target_min_test=40,
            fractions=(0.2, 1.0),
            methods=(),
            epochs=3,
            batch_size=1024,
            seed=0,
        ),
    ),
    (
        ["eval", "retrieval", "--dataset", "sim", "-w", "W", "--max-test-requests", "2000",
         "--rel-threshold", "2"],
        "retrieval/sim",
        RetrievalSimConfig(
            workspace=Path("W"),
            cache_dir=None,
            test_fraction=0.2,
            max_test_requests=2000,
            rel_threshold=2,
            epochs=3,
            seed=0,
            systems=(),
        ),
    ),
    (
        ["eval", "ranking", "--dataset", "sim", "-w", "W"],
        "ranking/sim",
        RankingSimConfig(Path("W"), models=(), test_fraction=0.2, epochs=2, seed=0),
    ),
    (
        ["eval", "ranking", "--dataset", "trivago", "--train", "A", "--test", "B"],
        "ranking/trivago",
        RankingTrivagoConfig(Path("A"), Path("B"), (), epochs=2, seed=0),
    ),
    (
        ["eval", "ranking", "--dataset", "bestbuy", "--train", "A", "--test", "B"],
        "ranking/bestbuy",
        RankingBestBuyConfig(Path("A"), Path("B"), ("lightgbm", "dnn"), epochs=2, seed=0),
    ),
    (
        ["eval", "online", "-w", "W", "--policies", "engine,engine+ranking"],
        "online",
        OnlineConfig(Path("W"), ("engine", "engine+ranking"), sessions=2000, seed=0),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "name", "expected"), DOCUMENTED)
def test_readme_command_lines_build_the_configs_the_old_commands_built(
    argv: list[str], name: str, expected: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README.md's command lines, with the values the hand-written commands passed."""
    suite = SUITES.get(name)
    ran: list[Any] = []

    def fake_run(self: Suite[Any], config: Any, say: Say) -> Report:
        ran.append(config)
        report = Report(suite="fake", primary_metric=self.primary_metric)
        report.add_system("baseline/fake", {self.primary_metric: 1.0})
        return report

    monkeypatch.setattr(suite, "run", fake_run)
    assert run([*argv, "--report", str(tmp_path / "r.json")]) == 0
    assert ran == [expected]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ranking", "--dataset", "trivago", "--train", "A", "--test", "B", "-w", "W"],
         "--workspace does not apply to --dataset trivago; it is an option of --dataset sim: "
         "drop it or choose one of those"),
        (["ranking", "--dataset", "bestbuy", "--test-fraction", "0.2", "--train", "A", "--test",
          "B"], "--test-fraction does not apply to --dataset bestbuy"),
        (["ranking", "--dataset", "bestbuy"],
         "--dataset bestbuy needs --train FILE and --test FILE"),
        (["transfer", "--dataset", "sim"], "--dataset sim needs --workspace W"),
        (["ranking", "--dataset", "nope"],
         "--dataset 'nope' is not available for 'shopsearch eval ranking'; use sim, trivago or "
         "bestbuy"),
        (["online", "-w", "W", "--policies", "logging"], "--policies 'logging' names 1 value(s)"),
        (["transfer", "--dataset", "sim", "-w", "W", "--fractions", "half"],
         "--fractions 'half' is not a comma list of numbers; use e.g. 0.01,0.05,0.2,1.0"),
        (["nope.module:Suite"], "'nope.module:Suite' does not import"),
        (["pathlib:Path"], "'pathlib:Path' is not one of the suites"),
    ],
)  # fmt: skip
def test_wrong_options_are_clear_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["eval", *argv, "--report", str(tmp_path / "r.json")]) == 2
    err = _flat(capsys.readouterr().err)
    assert err.startswith("error: ")
    assert message in err
    assert not (tmp_path / "r.json").exists()


# --------------------------------------------------------------------------- outside suites


def test_a_registered_outside_suite_is_a_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    with SUITES.registered("echo", EchoSuite):
        assert run(["eval", "--help"]) == 0
        assert "echo A fake outside suite" in _flat(capsys.readouterr().out)
        assert run(["eval", "echo", "--help"]) == 0
        shown = _flat(capsys.readouterr().out)
        assert "Score of the one system. [default: 0.5]" in shown
        assert "Comma list of tags. [default: a,b]" in shown
        assert "--rounds" not in shown
        argv = ["eval", "echo", "--source", "S", "--scale", "0.25", "--report", str(out)]
        assert run(argv) == 0
    report = _read(out)
    assert report["systems"]["baseline/echo"]["score"] == 0.25
    assert report["config"] == {"source": "S", "tags": ["a", "b"], "rounds": 3}
    assert "echoing" in capsys.readouterr().err
    assert run(["eval", "echo", "--report", str(out)]) == 2  # unregistered again
    assert "No such command 'echo'" in capsys.readouterr().err


def test_a_suite_joins_a_family_as_a_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    with SUITES.registered("ranking/echo", EchoSuite):
        assert run(["eval", "ranking", "--help"]) == 0
        shown = _flat(capsys.readouterr().out)
        assert "sim, trivago, bestbuy or echo" in shown
        assert "Where the fake reads (echo)." in shown
        argv = ["eval", "ranking", "--dataset", "echo", "--source", "S", "--report", str(out)]
        assert run(argv) == 0
        assert _read(out)["systems"]["baseline/echo"]["score"] == 0.5
        argv = ["eval", "ranking", "--dataset", "trivago", "--source", "S", "--report", str(out)]
        assert run(argv) == 2
        assert "--source does not apply to --dataset trivago" in _flat(capsys.readouterr().err)


def test_an_outside_suite_runs_by_dotted_path(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    path = f"{EchoSuite.__module__}:{EchoSuite.__qualname__}"
    assert run(["eval", path, "--source", "S", "--tags", "x", "--report", str(out)]) == 0
    assert _read(out)["config"]["tags"] == ["x"]
    assert "echo" not in SUITES  # run, not registered


def test_a_suite_and_a_family_of_one_name_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SUITES.registered("online/echo", EchoSuite):
        assert run(["eval", "online", "-w", "W", "--report", str(tmp_path / "r.json")]) == 2
    assert "all claim 'shopsearch eval online'" in _flat(capsys.readouterr().err)
