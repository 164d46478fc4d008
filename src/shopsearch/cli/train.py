"""``shopsearch train --workspace W --stage ranking``: learn a stage from the workspace's logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.config import load_settings
from shopsearch.errors import InvalidInputError
from shopsearch.store.workspace import Workspace

STAGES = ("ranking",)


@app.command()
def train(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")],
    stage: Annotated[str, typer.Option(help="Stage to train: ranking.")] = "ranking",
    model: Annotated[
        str | None, typer.Option(help="Ranking model (registry name; default from config).")
    ] = None,
    position_bias: Annotated[
        str | None, typer.Option(help="Position bias handling: none, feature or ipw.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Most training epochs.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
) -> None:
    """Train a stage on the workspace's logs and publish a new current bundle with it.

    Example: shopsearch train --workspace W --stage ranking --model dnn --position-bias ipw
    """
    if stage not in STAGES:
        raise InvalidInputError(f"stage {stage!r} is not trainable here; use one of {STAGES}")
    from shopsearch.ranking.publish import train_ranking_bundle

    settings = load_settings(workspace, config)
    changes: dict[str, object] = {}
    if model is not None:
        changes["model"] = model
    if position_bias is not None:
        changes["position_bias"] = position_bias
    if epochs is not None:
        changes["epochs"] = epochs
    try:
        ranking = settings.ranking.model_validate({**settings.ranking.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid ranking option: {problems}") from exc

    def say(epoch: int, total: int, train_loss: float, valid_loss: float) -> None:
        console.print(
            f"[dim]epoch {epoch}/{total}: train loss {train_loss:.4f}, "
            f"validation loss {valid_loss:.4f}[/dim]",
            highlight=False,
        )

    bundle = train_ranking_bundle(Workspace.open(workspace), ranking, progress=say)
    console.print(f"trained ranking model {ranking.model!r}; published bundle {bundle}")
