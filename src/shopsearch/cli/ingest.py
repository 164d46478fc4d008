"""``shopsearch ingest FORMAT PATH... --workspace DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from shopsearch.catalog.models import UNKNOWN_CURRENCY, UNKNOWN_LANGUAGE
from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.datasets import LOADERS, load
from shopsearch.errors import (
    RejectedRowsError,
    ShopSearchError,
    WorkspaceError,
    describe_counts,
)
from shopsearch.ingest.workspace import UNREADABLE, IngestResult
from shopsearch.ingest.workspace import ingest as ingest_data
from shopsearch.store.workspace import Workspace

WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", "-w", help="Workspace directory (created if missing).")
]

_DOMAINS_FILE = "a domains file (domain_id,name,language,currency)"


@app.command()
def ingest(
    format: Annotated[str, typer.Argument(help="Data format: " + ", ".join(LOADERS.names()))],
    paths: Annotated[list[Path], typer.Argument(help="Input file(s) of that format.")],
    workspace: WorkspaceOption,
    add_domains: Annotated[
        bool,
        typer.Option(
            help="Register domains that rows name but neither the workspace nor a domains file "
            f"declares (language {UNKNOWN_LANGUAGE}, currency {UNKNOWN_CURRENCY}: unknown)."
        ),
    ] = False,
    index: Annotated[
        bool,
        typer.Option(
            "--index/--no-index",
            help="Add stored products to the current search bundle's indexes (as the HTTP "
            "catalog API does), so that they are searchable at once.",
        ),
    ] = True,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
) -> None:
    """Load data of a public or generic format into a workspace.

    Every row is validated: good rows are stored (products upserted by domain and id, events
    appended), bad rows and records that cannot be read as rows go to a rejects report (file,
    row, field, reason) under WORKSPACE/rejects/, and the command exits with status 1 when any
    row was rejected. Stored products go into the current bundle's indexes in place (no
    rebuild); a running ``shopsearch serve`` serves them after ``POST /admin/reload``.
    """
    with console.status(f"reading {format} from {len(paths)} file(s)"):
        data = load(format, paths)
    ws = Workspace.create(workspace)
    with console.status("validating and storing"):
        result = ingest_data(ws, data, add_domains=add_domains)
    for note in [*data.notes, *_notes(result)]:
        console.print(f"[dim]note:[/dim] {note}", highlight=False)
    console.print(f"stored {describe_counts(result.kept)} in {ws.root}", highlight=False)
    if index and result.products is not None:
        _index_products(ws, result.products, config)
    if result.report is not None:
        rejected = {
            "unreadable record(s)" if what == UNREADABLE else what: n
            for what, n in result.rejected.items()
        }
        raise RejectedRowsError(rejected, result.kept, result.report)


def _index_products(ws: Workspace, products: pa.Table, config: Path | None) -> None:
    """Upsert stored products into the current bundle, as the catalog API does."""
    from shopsearch.config import load_settings
    from shopsearch.pipeline.engine import Engine
    from shopsearch.store.bundles import CURRENT_FILE

    if not (ws.root / "models" / CURRENT_FILE).exists():
        return  # no bundle yet: 'shopsearch index' will index every product
    settings = load_settings(ws.root, config)
    with console.status(f"indexing {products.num_rows} product(s) into the current bundle"):
        engine = Engine.load(ws, settings)
        try:
            engine.upsert_products(products)
        except ShopSearchError:
            raise
        except Exception as exc:  # e.g. a server writing the same index right now
            raise WorkspaceError(
                f"the products are stored, but adding them to the current bundle failed "
                f"({type(exc).__name__}: {exc}); run 'shopsearch index -w {ws.root}' to rebuild"
            ) from exc
    bundle = engine.bundle.name if engine.bundle is not None else ""
    console.print(
        f"indexed {products.num_rows} product(s) into bundle {bundle}; a running 'shopsearch "
        "serve' serves them after POST /admin/reload (or a restart)",
        highlight=False,
    )


def _notes(result: IngestResult) -> list[str]:
    """What the user should know about the domains and the counts of an ingest."""
    notes = []
    if result.repaired_domains:
        notes.append(
            f"domain(s) {', '.join(result.repaired_domains)} had an empty language or currency "
            f"(stored by an older --add-domains); they are now {UNKNOWN_LANGUAGE} / "
            f"{UNKNOWN_CURRENCY} (unknown): ingest {_DOMAINS_FILE} to set them"
        )
    if result.added_domains:
        notes.append(
            f"added domains: {', '.join(result.added_domains)} with language "
            f"{UNKNOWN_LANGUAGE}, currency {UNKNOWN_CURRENCY} (unknown): ingest {_DOMAINS_FILE} "
            "to set them"
        )
    if result.unknown_domains:
        notes.append(
            f"domain(s) {', '.join(result.unknown_domains)} are not in the workspace and no "
            f"domains file declares them, so their rows were rejected: ingest {_DOMAINS_FILE} or "
            "re-run with --add-domains"
        )
    for table, n in result.repeated.items():
        notes.append(
            f"{n} {table} row(s) repeat the key of a later row of this ingest; the later row is "
            "stored"
        )
    return notes
