"""``shopsearch train --workspace W --stage ranking|retrieval|query|relevance|prerank|rerank|
allocation``: learn a stage from the logs (for query and relevance also from judgments; for
prerank from the logged stream)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from shopsearch.cli.app import app
from shopsearch.cli.progress import console, heartbeat, progress_bar, say, step_progress
from shopsearch.config import Settings, load_settings
from shopsearch.errors import InvalidInputError
from shopsearch.store.workspace import Workspace

if TYPE_CHECKING:
    from shopsearch.retrieval.learned_train import TwoTowerBackend

STAGES = ("ranking", "retrieval", "query", "relevance", "prerank", "rerank", "allocation")


@app.command()
def train(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")],
    stage: Annotated[
        str,
        typer.Option(
            help="Stage to train: ranking, retrieval, query, relevance, prerank, rerank or "
            "allocation."
        ),
    ] = "ranking",
    model: Annotated[
        str | None,
        typer.Option(
            help="Ranking model (registry name); for retrieval a comma list of two-tower, "
            "two-tower-pq, gcn, sci-two-tower, generative, genrec (default from config); for "
            "query a comma list of query components (default: all)."
        ),
    ] = None,
    position_bias: Annotated[
        str | None, typer.Option(help="Position bias handling: none, feature or ipw.")
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Most training epochs (relevance: the cross-encoder teacher's)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Train the ranking model or the two-tower retrievers data-parallel on a Ray "
            "cluster: auto (the cluster this machine joined), HOST:PORT, or local (start one "
            'here); needs pip install "shopsearch[ray]".'
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Ray workers training at once.", min=1)] = 2,
    ray_storage: Annotated[
        str | None,
        typer.Option(
            help="Folder or URI every Ray worker can write, for the trained model's hand-over "
            "(default: a temporary folder, enough on one machine)."
        ),
    ] = None,
) -> None:
    """Train a stage on the workspace's logs and publish a new current bundle with it.

    Examples: shopsearch train --workspace W --stage ranking --model dnn --position-bias ipw;
    shopsearch train --workspace W --stage retrieval --model two-tower,gcn;
    shopsearch train --workspace W --stage relevance --epochs 2 (distils a cross-encoder
    teacher, trained on the judgments or else the logs within relevance.teacher_budget_s
    seconds, into the BERT2DNN student the relevance stage serves, with its gate);
    shopsearch train --workspace W --stage prerank (the light pre-ranker, HCCP by default:
    [prerank] objective, from the stream logged for [pipeline] stream_sample of searches);
    shopsearch train --workspace W --stage rerank --epochs 10 (PODM-MI diversity re-ranking
    from the logged lists; served with [rerank] method = "podm-mi");
    shopsearch train --workspace W --stage allocation (MODRL-TA traffic allocation: simulated
    interactions from the logs first, then the live logs served since its last training).
    With --ray-address the ranking model (torch or LightGBM), or for --stage retrieval the
    two-tower encoders, train on --workers Ray workers, each on its share of the logged requests
    (queries); the bundle is the same as a local one's.
    """
    if stage not in STAGES:
        raise InvalidInputError(f"stage {stage!r} is not trainable here; use one of {STAGES}")
    if ray_address is not None and stage not in ("ranking", "retrieval"):
        raise InvalidInputError(
            f"--ray-address trains --stage ranking or retrieval; train --stage {stage} without it"
        )
    backend = None
    if ray_address is not None:
        from shopsearch.ray_cluster import cluster_address, ray_module
        from shopsearch.training.distributed_train import RayTraining

        ray_module()  # without the extra: the install command now, not after the samples
        backend = RayTraining(cluster_address(ray_address), workers, ray_storage)
    settings = load_settings(workspace, config)
    if stage == "query":
        _train_query(Workspace.open(workspace), settings, model)
        return
    if stage == "relevance":
        _train_relevance(Workspace.open(workspace), settings, epochs)
        return
    if stage == "prerank":
        _train_prerank(Workspace.open(workspace), settings, epochs)
        return
    if stage == "rerank":
        _train_rerank(Workspace.open(workspace), settings, epochs)
        return
    if stage == "allocation":
        _train_allocation(Workspace.open(workspace), settings)
        return
    if stage == "retrieval":
        _train_retrieval(Workspace.open(workspace), settings, model, epochs, backend)
        return
    from shopsearch.training.ranking import train_ranking_bundle

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

    with heartbeat("train"), progress_bar(f"training {ranking.model}", "epochs") as advance:

        def epoch(done: int, total: int, train_loss: float, valid_loss: float) -> None:
            say(f"epoch {done}/{total}: train loss {train_loss:.4f}, "
                f"validation loss {valid_loss:.4f}")  # fmt: skip
            advance(done, total)

        ws = Workspace.open(workspace)
        bundle = train_ranking_bundle(ws, ranking, progress=epoch, backend=backend)
    console.print(f"trained ranking model {ranking.model!r}; published bundle {bundle}")


def _with_epochs(settings: Settings, section: str, field: str, epochs: int | None) -> Settings:
    """``settings`` with ``[section] field = epochs`` (``--epochs``; ``None``: unchanged).

    Raises:
        InvalidInputError: epochs below 1.
    """
    if epochs is None:
        return settings
    if epochs < 1:
        raise InvalidInputError(f"--epochs {epochs} is not allowed; use 1 or more")
    part = getattr(settings, section).model_copy(update={field: epochs})
    return settings.model_copy(update={section: part})


def _train_retrieval(
    workspace: Workspace,
    settings: Settings,
    model: str | None,
    epochs: int | None,
    backend: TwoTowerBackend | None = None,
) -> None:
    """``--stage retrieval``: train the learned retrievers (the two-tower encoders on
    ``backend``), publish them in a new bundle."""
    from shopsearch.retrieval.learned_train import check_models
    from shopsearch.training.retrieval import train_retrieval_bundle

    models = check_models([m.strip() for m in model.split(",") if m.strip()]) if model else []
    settings = _with_epochs(settings, "retrieval", "learned_epochs", epochs)
    with heartbeat("train"), step_progress() as progress:
        bundle = train_retrieval_bundle(workspace, settings, models, progress, say, backend)
    console.print(f"trained learned retrieval; published bundle {bundle}")


def _train_allocation(workspace: Workspace, settings: Settings) -> None:
    """``--stage allocation``: fit MODRL-TA on the logs, publish it in a new bundle."""
    from shopsearch.training.allocation import train_allocation_bundle

    with heartbeat("training traffic allocation"):
        bundle = train_allocation_bundle(workspace, settings, say=say)
    console.print(f"trained traffic allocation (MODRL-TA); published bundle {bundle}")


def _train_query(workspace: Workspace, settings: Settings, model: str | None) -> None:
    """``--stage query``: fit the query components, publish them in a new bundle."""
    from shopsearch.training.query import train_query_bundle

    names = [m.strip() for m in model.split(",") if m.strip()] if model else []
    with heartbeat("training query understanding"):
        bundle = train_query_bundle(workspace, settings, names, say=say)
    console.print(f"trained query understanding; published bundle {bundle}")


def _train_relevance(workspace: Workspace, settings: Settings, epochs: int | None) -> None:
    """``--stage relevance``: distil the relevance model, publish it in a new bundle."""
    from shopsearch.training.relevance import train_relevance_bundle

    settings = _with_epochs(settings, "relevance", "teacher_epochs", epochs)
    with heartbeat("training relevance"):
        bundle = train_relevance_bundle(workspace, settings, say=say)
    console.print(f"trained the relevance model; published bundle {bundle}")


def _train_prerank(workspace: Workspace, settings: Settings, epochs: int | None) -> None:
    """``--stage prerank``: train the pre-ranker on the logged stream, publish it."""
    from shopsearch.training.prerank import train_prerank_bundle

    settings = _with_epochs(settings, "prerank", "epochs", epochs)
    with heartbeat("train"), progress_bar("training the pre-ranker", "steps") as advance:

        def step(done: int, total: int, _loss: float) -> None:
            advance(done, total)

        bundle = train_prerank_bundle(workspace, settings, say, step)
    console.print(f"trained the pre-ranker ({settings.prerank.objective}); published {bundle}")


def _train_rerank(workspace: Workspace, settings: Settings, epochs: int | None) -> None:
    """``--stage rerank``: fit PODM-MI on the logs, publish it in a new bundle."""
    from shopsearch.training.rerank import train_rerank_bundle

    settings = _with_epochs(settings, "rerank", "epochs", epochs)
    with heartbeat("training the re-ranker"):
        bundle = train_rerank_bundle(workspace, settings, say=say)
    console.print(f"trained the PODM-MI re-ranker; published bundle {bundle}")
