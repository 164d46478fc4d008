"""``shopsearch eval SUITE ... --report FILE``: evaluation suites that write a JSON report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console

eval_app = typer.Typer(help="Evaluation suites; each writes a JSON report.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def _say(message: str) -> None:
    console.print(f"[dim]{message}[/dim]", highlight=False)


@eval_app.command("relevance")
def relevance(
    dataset: Annotated[str, typer.Option(help="Judgment format: homedepot, crowdflower, generic, "
                                              "wands or esci.")],
    test: Annotated[list[Path], typer.Option(help="Test judgments (repeat for several files).")],
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")],
    train: Annotated[
        list[Path] | None, typer.Option(help="Training judgments; systems learn only from these.")
    ] = None,
    products: Annotated[
        list[Path] | None, typer.Option(help="Extra products (generic format) for the catalog.")
    ] = None,
    cache_dir: Annotated[
        Path, typer.Option(help="Embedding cache (content-hashed; reused across runs).")
    ] = Path(".shopsearch-cache"),
    rel_threshold: Annotated[
        float | None, typer.Option(help="Grade at which a product counts as relevant "
                                        "(default: the format's; Home Depot 2.33).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for bootstrap and sampling.")] = 0,
) -> None:
    """Full-catalog retrieval on human judgments: NDCG@10, recall@100 and MRR with 95% CIs.

    Example: shopsearch eval relevance --dataset homedepot --train A.csv --test B.csv
    --report r.json
    """
    from shopsearch.evaluate.suites.relevance import RelevanceSuiteConfig, run_relevance_suite

    config = RelevanceSuiteConfig(
        dataset=dataset,
        test=test,
        train=train or [],
        products=products or [],
        cache_dir=cache_dir,
        rel_threshold=rel_threshold,
        seed=seed,
    )
    result = run_relevance_suite(config, say=_say)
    result.write(report)
    console.print(result.render_table(), highlight=False)
    console.print(f"report written to {report}")


@eval_app.command("ranking")
def ranking(
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")],
    dataset: Annotated[str, typer.Option(help="Log source: sim (a simulated workspace).")] = "sim",
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="Simulated workspace (sim).")
    ] = None,
    models: Annotated[
        str, typer.Option(help="Comma list of registry models (default: every model).")
    ] = "",
    epochs: Annotated[int, typer.Option(help="Most training epochs per torch model.")] = 2,
    test_fraction: Annotated[float, typer.Option(help="Share of latest requests tested.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for training and bootstrap.")] = 0,
) -> None:
    """Ranking models on logs: AUC / GAUC per task and NDCG@10 against the simulator's truth.

    Example: shopsearch eval ranking --dataset sim --workspace W --report r.json
    """
    from shopsearch.errors import InvalidInputError
    from shopsearch.evaluate.suites.ranking_sim import RankingSimConfig, run_ranking_sim_suite

    if dataset != "sim":
        raise InvalidInputError(f"--dataset {dataset!r} is not available here; use --dataset sim")
    if workspace is None:
        raise InvalidInputError("--dataset sim needs --workspace W (a simulated workspace)")
    config = RankingSimConfig(
        workspace=workspace,
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        test_fraction=test_fraction,
        epochs=epochs,
        seed=seed,
    )
    result = run_ranking_sim_suite(config, say=_say)
    result.write(report)
    console.print(result.render_table(), highlight=False)
    console.print(f"report written to {report}")
