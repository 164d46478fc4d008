"""``shopsearch index`` builds the search bundle; ``shopsearch search`` queries it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from shopsearch.catalog.candidates import Filters
from shopsearch.cli.app import app
from shopsearch.cli.progress import console, heartbeat, say, step_progress
from shopsearch.config import Settings, load_settings
from shopsearch.pipeline.engine import Engine, SearchParams, SearchResponse
from shopsearch.store.workspace import Workspace

WorkspaceOption = Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="TOML settings file.")]


@app.command()
def index(workspace: WorkspaceOption, config: ConfigOption = None) -> None:
    """Index the workspace's products (lexical + dense) into a new current bundle.

    Product embeddings are cached by content hash in WORKSPACE/cache, so re-indexing encodes only
    new or changed products.
    """
    from shopsearch.training.index import build_index

    ws = Workspace.open(workspace)
    settings = load_settings(workspace, config)
    with heartbeat("index"), step_progress("products") as advance:
        engine = build_index(ws, settings, progress=advance, say=say)
    console.print(f"indexed {len(engine.products)} products into {engine.bundle}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What the user typed.")],
    workspace: WorkspaceOption,
    domain: Annotated[str | None, typer.Option(help="Domain (market) to search in.")] = None,
    category: Annotated[
        str | None, typer.Option(help='Category path prefix, e.g. "Furniture > Sofas".')
    ] = None,
    brand: Annotated[str | None, typer.Option(help="Only this brand.")] = None,
    price_min: Annotated[float | None, typer.Option(help="Lowest price (inclusive).")] = None,
    price_max: Annotated[float | None, typer.Option(help="Highest price (inclusive).")] = None,
    in_stock: Annotated[
        bool | None, typer.Option("--in-stock/--any-stock", help="Only products in stock.")
    ] = None,
    size: Annotated[int, typer.Option(help="Results per page.")] = 10,
    page: Annotated[int, typer.Option(help="Page number, from 1.")] = 1,
    explain: Annotated[bool, typer.Option(help="Show each stage's score per result.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Search the workspace's current bundle and print results with facets.

    Loading the bundle (and its models) is timed apart from the search: the stage timings
    printed are those of a search on a loaded engine, as a server would answer it.
    """
    ws = Workspace.open(workspace)
    engine = _load(ws, load_settings(workspace, config))
    filters = Filters(
        category=tuple(p.strip() for p in category.split(">")) if category else None,
        brand=brand,
        price_min=price_min,
        price_max=price_max,
        in_stock=in_stock,
    )
    response = engine.search(
        SearchParams(query, domain, None, filters, page=page, size=size, explain=explain)
    )
    if as_json:
        typer.echo(orjson.dumps(response, option=orjson.OPT_INDENT_2).decode())
        return
    _print(response, explain)


def _load(workspace: Workspace, settings: Settings) -> Engine:
    """The current bundle's engine, warmed up with one search (as ``serve`` does), so models
    that load on first use (MiniLM) load now; says how long it all took."""
    start = time.perf_counter()
    engine = Engine.load(workspace, settings)
    engine.search(SearchParams("warm up", size=1))
    ms = 1000 * (time.perf_counter() - start)
    name = engine.bundle.name if engine.bundle is not None else "the bundle"
    console.print(f"[dim]loaded {name} in {ms:,.0f} ms (its models included)[/dim]",
                  highlight=False, soft_wrap=True)  # fmt: skip
    return engine


def _print(response: SearchResponse, explain: bool) -> None:
    table = Table("#", "domain", "id", "title", "brand", "category", "price", "score",
                  title=f"{response.total} candidates", title_justify="left")
    if explain:
        table.add_column("stages")
    for rank, item in enumerate(response.items, start=1):
        cells = [
            str(rank), item.domain, item.product_id, item.title, item.brand,
            " > ".join(item.category), "" if item.price is None else f"{item.price:.2f}",
            f"{item.score:.4f}",
        ]
        if explain:
            cells.append(", ".join(
                f"{k}={'-' if v is None else f'{v:.3f}'}" for k, v in item.stages.items()
            ))
        table.add_row(*cells)
    console.print(table)
    for facet, counts in response.facets.items():
        shown = ", ".join(f"{value} ({n})" for value, n in list(counts.items())[:8])
        console.print(f"[bold]{facet}[/bold]: {shown}", highlight=False)
    if explain:
        for stage in response.pipeline:
            console.print(
                f"[bold]{stage.name}[/bold] {stage.status} {stage.ms:.2f} ms, "
                f"{stage.candidates} candidates: {stage.detail}",
                highlight=False,
            )
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in response.timings_ms.items())
    console.print(f"[dim]{timings}[/dim]", highlight=False)
