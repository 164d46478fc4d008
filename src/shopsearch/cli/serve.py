"""``shopsearch serve``: the HTTP search API (and web page) over a workspace."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.config import load_settings
from shopsearch.errors import InvalidInputError
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace

WorkspaceOption = Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")]
HostOption = Annotated[
    str | None, typer.Option(help="Address to listen on [default: serve.host, 127.0.0.1].")
]


PortOption = Annotated[
    int | None, typer.Option(min=1, max=65_535, help="TCP port [default: serve.port, 8000].")
]


class HttpServerChoice(StrEnum):
    """``--server`` values (:data:`shopsearch.config.HttpServer`)."""

    uvicorn = "uvicorn"
    granian = "granian"


ServerOption = Annotated[
    HttpServerChoice | None,
    typer.Option(help="HTTP server [default: serve.server, uvicorn]."),
]


@app.command()
def serve(
    workspace: WorkspaceOption,
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes [default: serve.workers, 1]."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Serve the lexical index from shard actors on a Ray cluster: auto, HOST:PORT, "
            'or local (start one here); needs pip install "shopsearch[ray]".'
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(min=1, help="Parts the catalog is split into (with --ray-address) [2]."),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(min=1, help="Actors serving each part (with --ray-address) [1]."),
    ] = None,
    server: ServerOption = None,
) -> None:
    """Serve search, event logging, catalog updates and metrics over HTTP.

    Logged searches and events go to WORKSPACE/log and are compacted into the requests,
    impressions and interactions tables while serving and at shutdown (Ctrl-C).

    With --ray-address the lexical index is split into --shards parts served by --replicas
    Ray actors each; answers are those of one index, the catalog is read-only while sharded,
    and this process stays the one writer of the event log.
    """
    from shopsearch.serve.runner import serve_workspace

    if ray_address is None and (shards is not None or replicas is not None):
        raise InvalidInputError(
            "--shards and --replicas serve from a Ray cluster; add --ray-address "
            "(auto, HOST:PORT, or local to start one here)"
        )
    ws = Workspace.open(workspace)
    settings = load_settings(workspace, config)
    current_bundle(ws)  # a clear error naming 'shopsearch index' when there is none
    bind_host = host or settings.serve.host
    bind_port = port or settings.serve.port
    console.print(
        f"serving {ws.root} at http://{bind_host}:{bind_port}  (Ctrl-C stops)", soft_wrap=True
    )
    serve_workspace(
        ws,
        host=bind_host,
        port=bind_port,
        workers=workers or settings.serve.workers,
        config=config,
        compute_threads=settings.serve.compute_threads,
        shards=None if ray_address is None else f"{ray_address},{shards or 2},{replicas or 1}",
        server=settings.serve.server if server is None else server.value,
    )
