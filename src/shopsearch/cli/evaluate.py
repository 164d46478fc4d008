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


@eval_app.command("retrieval")
def retrieval(
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")],
    workspace: Annotated[
        Path,
        typer.Option(
            "--workspace", "-w", help="Simulated workspace (tables only read; vectors cached)."
        ),
    ],
    dataset: Annotated[str, typer.Option(help="Data: sim (a simulated workspace).")] = "sim",
    test_fraction: Annotated[float, typer.Option(help="Share of latest requests tested.")] = 0.2,
    max_test_requests: Annotated[
        int, typer.Option(help="Most test requests scored (seeded sample).")
    ] = 2000,
    rel_threshold: Annotated[
        int, typer.Option(help="True grade (0-3) at which a product counts for recall.")
    ] = 2,
    epochs: Annotated[int, typer.Option(help="Two-tower training epochs.")] = 3,
    systems: Annotated[
        str, typer.Option(help="Comma list of systems (default: all).")
    ] = "",
    cache_dir: Annotated[
        Path | None, typer.Option(help="MiniLM embedding cache (default W/cache/embeddings).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of sampling, training and bootstrap.")] = 0,
) -> None:
    """Candidate retrieval vs the simulator's true relevance: recall@100, recall@500, NDCG@10,
    index bytes per product, latency, per market and on long-tail queries.

    Example: shopsearch eval retrieval --dataset sim --workspace W --report r.json
    """
    from shopsearch.errors import InvalidInputError
    from shopsearch.evaluate.suites.retrieval_sim import (
        RetrievalSimConfig,
        run_retrieval_sim_suite,
    )

    if dataset != "sim":
        raise InvalidInputError(f"--dataset {dataset!r} is not available; use sim")
    config = RetrievalSimConfig(
        workspace=workspace,
        cache_dir=cache_dir,
        test_fraction=test_fraction,
        max_test_requests=max_test_requests,
        rel_threshold=rel_threshold,
        two_tower={"epochs": epochs},
        seed=seed,
        systems=tuple(s.strip() for s in systems.split(",") if s.strip()),
    )
    result = run_retrieval_sim_suite(config, say=_say)
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


@eval_app.command("transfer")
def transfer(
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")],
    dataset: Annotated[
        str, typer.Option(help="Protocol: sim (a simulated multi-market workspace), relevance "
                               "(judged source and target shops) or trivago (platforms).")
    ] = "sim",
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="Simulated workspace (sim).")
    ] = None,
    fractions: Annotated[
        str, typer.Option(help="Comma list of target training fractions (sim).")
    ] = "0.01,0.05,0.2,1.0",
    source: Annotated[
        str | None,
        typer.Option(help="Source market (sim; default: the largest) or source judgments file "
                          "(relevance)."),
    ] = None,
    methods: Annotated[
        str, typer.Option(help="Comma list of transfer methods (default: every method).")
    ] = "",
    epochs: Annotated[
        int | None,
        typer.Option(help="Most training epochs per model (default: sim 2, relevance 20, "
                          "trivago 3)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Impressions per training step (default: sim and trivago 1024, "
                          "relevance 256)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of subsampling, training and bootstrap.")] = 0,
    source_format: Annotated[
        str, typer.Option(help="Judged format of --source (relevance): homedepot, crowdflower "
                               "or generic.")
    ] = "homedepot",
    target_format: Annotated[
        str, typer.Option(help="Judged format of --target (relevance): crowdflower, generic or "
                               "homedepot.")
    ] = "generic",
    target: Annotated[Path | None, typer.Option(help="Target judgments file (relevance).")] = None,
    target_products: Annotated[
        Path | None, typer.Option(help="Target products file, generic format (relevance).")
    ] = None,
    target_train_fraction: Annotated[
        str | None,
        typer.Option(help="Comma list of target training fractions, split by query (relevance, "
                          "default 0.1) or by session (trivago, default 1.0)."),
    ] = None,
    cache_dir: Annotated[
        Path, typer.Option(help="Embedding cache (relevance; content-hashed, reused).")
    ] = Path(".shopsearch-cache"),
    link_cosine: Annotated[
        float,
        typer.Option(
            min=-1.0, max=1.0,
            help="Least MiniLM title cosine linking a target product to its nearest source "
            "product, after id and normalised-title links (relevance).",
        ),
    ] = 0.9,
    train: Annotated[Path | None, typer.Option(help="Training events file (trivago).")] = None,
    test: Annotated[Path | None, typer.Option(help="Test events, other sessions (trivago).")] = (
        None
    ),
    targets: Annotated[
        str, typer.Option(help="Comma list of target platforms (trivago; default: the rule).")
    ] = "",
    source_min_clickouts: Annotated[
        int, typer.Option(help="Training clickouts that make a platform a source (trivago).")
    ] = 500,
    target_min_test: Annotated[
        int, typer.Option(help="Test clickouts a default target platform needs (trivago).")
    ] = 40,
) -> None:
    """Cross-domain transfer: CDAN-W, PGTL and the baselines (target-only, pooled, zero-shot,
    shared-bottom, STAR, MMoE with domain gates) on data-poor target markets.

    Examples: shopsearch eval transfer --dataset sim --workspace W --report r.json
    --fractions 0.01,0.05,0.2,1.0;
    shopsearch eval transfer --dataset relevance --source-format homedepot --source hd.csv
    --target-format generic --target t.csv --target-products p.csv --target-train-fraction 0.1
    --report r.json;
    shopsearch eval transfer --dataset trivago --train A.parquet --test B.parquet --report r.json
    """
    from shopsearch.errors import InvalidInputError
    from shopsearch.evaluate.report import Report

    names = tuple(m.strip() for m in methods.split(",") if m.strip())
    result: Report
    if dataset == "sim":
        from shopsearch.evaluate.suites.transfer_sim import (
            TransferSimConfig,
            run_transfer_sim_suite,
        )

        if workspace is None:
            raise InvalidInputError("--dataset sim needs --workspace W (a simulated workspace)")
        try:
            values = tuple(float(f) for f in fractions.split(",") if f.strip())
        except ValueError as exc:
            raise InvalidInputError(
                f"--fractions {fractions!r} is not a comma list of numbers, e.g. 0.05,1.0"
            ) from exc
        config = TransferSimConfig(
            workspace=workspace,
            fractions=values,
            source=source,
            methods=names,
            epochs=epochs if epochs is not None else 2,
            batch_size=batch_size if batch_size is not None else 1024,
            seed=seed,
        )
        result = run_transfer_sim_suite(config, say=_say)
    elif dataset == "relevance":
        from shopsearch.evaluate.suites.transfer_relevance import (
            TransferRelevanceConfig,
            fractions_of,
            run_transfer_relevance,
        )

        if source is None or target is None:
            raise InvalidInputError("--dataset relevance needs --source FILE and --target FILE")
        rel = TransferRelevanceConfig(
            source_format=source_format,
            source=[Path(source)],
            target_format=target_format,
            target=[target],
            target_products=[target_products] if target_products else [],
            fractions=fractions_of(target_train_fraction or "0.1"),
            methods=names,
            epochs=epochs if epochs is not None else 20,
            batch_size=batch_size if batch_size is not None else 256,
            cache_dir=cache_dir,
            link_cosine=link_cosine,
            seed=seed,
        )
        result = run_transfer_relevance(rel, say=_say)
    elif dataset == "trivago":
        from shopsearch.evaluate.suites.transfer_relevance import fractions_of
        from shopsearch.evaluate.suites.transfer_trivago import (
            TransferTrivagoConfig,
            run_transfer_trivago,
        )

        if train is None or test is None:
            raise InvalidInputError("--dataset trivago needs --train FILE and --test FILE")
        tv = TransferTrivagoConfig(
            train=train,
            test=test,
            targets=tuple(t.strip() for t in targets.split(",") if t.strip()),
            source_min_clickouts=source_min_clickouts,
            target_min_test=target_min_test,
            fractions=fractions_of(target_train_fraction or "1.0"),
            methods=names,
            epochs=epochs if epochs is not None else 3,
            batch_size=batch_size if batch_size is not None else 1024,
            seed=seed,
        )
        result = run_transfer_trivago(tv, say=_say)
    else:
        raise InvalidInputError(
            f"--dataset {dataset!r} is not available; use sim, relevance or trivago"
        )
    result.write(report)
    console.print(result.render_table(), highlight=False)
    console.print(f"report written to {report}")
