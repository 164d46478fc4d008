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
    dataset: Annotated[
        str, typer.Option(help="Log source: sim (a simulated workspace), trivago or bestbuy.")
    ] = "sim",
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="Simulated workspace (sim).")
    ] = None,
    train: Annotated[
        Path | None, typer.Option(help="Training log (trivago events / Best Buy clicks).")
    ] = None,
    test: Annotated[Path | None, typer.Option(help="Held-out log of the same format.")] = None,
    models: Annotated[
        str,
        typer.Option(
            help="Comma list of registry models (default: every model; bestbuy: lightgbm,dnn)."
        ),
    ] = "",
    epochs: Annotated[int, typer.Option(help="Most training epochs per torch model.")] = 2,
    test_fraction: Annotated[float, typer.Option(help="Share of latest requests tested.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for training and bootstrap.")] = 0,
) -> None:
    """Ranking models on logs: sim (AUC / GAUC, NDCG@10 vs the simulator's truth), trivago (MRR
    of the clicked item) or bestbuy (MAP@5 of the clicked SKU).

    Examples: shopsearch eval ranking --dataset sim --workspace W --report r.json;
    shopsearch eval ranking --dataset trivago --train A.parquet --test B.parquet --report r.json
    """
    from shopsearch.errors import InvalidInputError
    from shopsearch.evaluate.report import Report

    names = tuple(m.strip() for m in models.split(",") if m.strip())
    result: Report
    if dataset in ("trivago", "bestbuy"):
        if train is None or test is None:
            raise InvalidInputError(f"--dataset {dataset} needs --train FILE and --test FILE")
        if dataset == "trivago":
            from shopsearch.evaluate.suites.ranking_trivago import (
                RankingTrivagoConfig,
                run_ranking_trivago_suite,
            )

            tv = RankingTrivagoConfig(train, test, names, epochs=epochs, seed=seed)
            result = run_ranking_trivago_suite(tv, say=_say)
        else:
            from shopsearch.evaluate.suites.ranking_bestbuy import (
                RankingBestBuyConfig,
                run_ranking_bestbuy_suite,
            )

            bb = RankingBestBuyConfig(
                train, test, names or RankingBestBuyConfig.models, epochs=epochs, seed=seed
            )
            result = run_ranking_bestbuy_suite(bb, say=_say)
    elif dataset == "sim":
        from shopsearch.evaluate.suites.ranking_sim import RankingSimConfig, run_ranking_sim_suite

        if workspace is None:
            raise InvalidInputError("--dataset sim needs --workspace W (a simulated workspace)")
        config = RankingSimConfig(
            workspace=workspace,
            models=names,
            test_fraction=test_fraction,
            epochs=epochs,
            seed=seed,
        )
        result = run_ranking_sim_suite(config, say=_say)
    else:
        raise InvalidInputError(
            f"--dataset {dataset!r} is not available; use sim, trivago or bestbuy"
        )
    result.write(report)
    console.print(result.render_table(), highlight=False)
    console.print(f"report written to {report}")


@eval_app.command("online")
def online(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Simulated workspace.")],
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")],
    policies: Annotated[
        str, typer.Option(help="Two policies A,B: logging, engine, engine+ranking or random.")
    ] = "logging,engine",
    sessions: Annotated[int, typer.Option(help="Sessions replayed per policy.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the replayed sessions and bootstrap.")] = 0,
) -> None:
    """Offline A/B test: the simulator replays the same sessions against two policies; clicks,
    carts, purchases and GMV per 1,000 requests with CIs and the paired difference B - A.

    Example: shopsearch eval online -w W --policies logging,engine+ranking --report r.json
    """
    from shopsearch.errors import InvalidInputError
    from shopsearch.evaluate.suites.online import OnlineConfig, run_online_suite

    names = [p.strip() for p in policies.split(",") if p.strip()]
    if len(names) != 2:
        raise InvalidInputError(
            f"--policies {policies!r} must name two policies, e.g. logging,engine"
        )
    config = OnlineConfig(workspace, (names[0], names[1]), sessions=sessions, seed=seed)
    result = run_online_suite(config, say=_say)
    result.write(report)
    console.print(result.render_table(), highlight=False)
    console.print(f"report written to {report}")
