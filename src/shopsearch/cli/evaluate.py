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
