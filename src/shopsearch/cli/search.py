"""``shopsearch index`` builds the search bundle; ``shopsearch search`` queries it."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shopsearch.catalog.candidates import Filters
from shopsearch.cli.app import app
from shopsearch.cli.progress import console, heartbeat, say, step_progress
from shopsearch.config import Settings, load_settings
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.payload import search_payload
from shopsearch.store.workspace import Workspace

WorkspaceOption = Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="TOML settings file.")]


@app.command()
def index(
    workspace: WorkspaceOption,
    config: ConfigOption = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Encode the products on a Ray cluster first: auto (the cluster this machine "
            'joined), HOST:PORT, or local (start one here); needs pip install "shopsearch[ray]".'
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Ray workers encoding at once.", min=1)] = 2,
) -> None:
    """Index the workspace's products (lexical + dense) into a new current bundle.

    Product embeddings are cached by content hash in WORKSPACE/cache, so re-indexing encodes only
    new or changed products. With --ray-address the products the cache lacks are encoded by
    --workers Ray workers into that cache first; the index is then built from it.
    """
    from shopsearch.training.index import build_index, warm_embeddings

    ws = Workspace.open(workspace)
    settings = load_settings(workspace, config)
    if ray_address is not None:
        from shopsearch.ray_cluster import cluster_address

        with heartbeat("encode on Ray"), step_progress("products") as advance:
            warm_embeddings(ws, settings, cluster_address(ray_address), workers, advance)
    with heartbeat("index"), step_progress("products") as advance:
        engine = build_index(ws, settings, progress=advance, say=say)
    console.print(f"indexed {len(engine.products)} products into {engine.bundle}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What the user typed.")],
    workspace: WorkspaceOption,
    domain: Annotated[
        str | None,
        typer.Option(
            help="Market to search (default: [search] default_domain, else the "
            "workspace's first); * for every market."
        ),
    ] = None,
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the JSON body GET /search answers.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Search the workspace's current bundle and print results with facets.

    Loading the bundle (and its models) is timed apart from the search: the stage timings
    printed are those of a search on a loaded engine, as a server would answer it. --json
    prints exactly what GET /search answers. The table leaves out columns no result fills
    and cuts long titles to the terminal's width.
    """
    ws = Workspace.open(workspace)
    engine = _load(ws, load_settings(workspace, config))
    domain = engine.resolve_domain(domain)  # as GET /search
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
    payload = search_payload(
        response.request_id,
        query,
        domain,
        page,
        size,
        response,
        explain,
        engine.settings.search.max_page,
    )
    if as_json:
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    _print(payload, explain)


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


#: Columns cut to the width left (with "…"), never wrapped: one line per result.
_CUT = ("title", "category")
#: Columns of numbers, aligned right.
_NUMBERS = ("#", "price", "score")


def _price(price: float | None) -> str:
    """A price as shown: blank when the product has none (missing prices load as NaN)."""
    return "" if price is None or math.isnan(price) else f"{price:.2f}"


def _results(payload: dict[str, Any], explain: bool) -> Table:
    """The results table: a column only when some result fills it; ``domain`` only when the
    search spanned every market."""
    items = payload["items"]
    cells: dict[str, list[str]] = {
        "#": [str(item["position"]) for item in items],
        "domain": [item["domain"] for item in items] if payload["domain"] is None else [],
        "id": [item["product_id"] for item in items],
        "title": [item["title"] for item in items],
        "brand": [item["brand"] for item in items],
        "category": [" > ".join(item["category"]) for item in items],
        "price": [_price(item["price"]) for item in items],
        "score": [f"{item['score']:.4f}" for item in items],
    }
    if explain:
        cells["stages"] = [
            ", ".join(f"{k}={'-' if v is None else f'{v:.3f}'}" for k, v in item["stages"].items())
            for item in items
        ]
    shown = {name: values for name, values in cells.items() if any(values)}
    table = Table(title=f"{payload['total']} candidates", title_justify="left")
    for name in shown:
        table.add_column(
            name,
            justify="right" if name in _NUMBERS else "left",
            no_wrap=name not in (*_CUT, "stages"),
        )
    for row in zip(*shown.values(), strict=True):
        table.add_row(*(
            Text(value, no_wrap=True, overflow="ellipsis") if name in _CUT else value
            for name, value in zip(shown, row, strict=True)
        ))  # fmt: skip
    return table


def _print(payload: dict[str, Any], explain: bool) -> None:
    """Results, facets (and with ``explain`` the stages) on stdout; timings on stderr."""
    out = Console(highlight=False)  # stdout, as wide as the terminal (or COLUMNS) is now
    if payload["items"]:
        out.print(_results(payload, explain))
    else:
        out.print(f"no results for {payload['query']!r}", markup=False)
    for facet, counts in payload["facets"].items():
        if counts:
            shown = ", ".join(f"{value} ({n})" for value, n in list(counts.items())[:8])
            out.print(f"[bold]{facet}[/bold]: {escape(shown)}")
    if explain:
        for stage in payload["pipeline"]:
            out.print(
                f"[bold]{stage['name']}[/bold] {stage['status']} {stage['ms']:.2f} ms, "
                f"{stage['candidates']} candidates: {escape(stage['detail'])}"
            )
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in payload["timings_ms"].items())
    console.print(f"[dim]{timings}[/dim]", highlight=False)
