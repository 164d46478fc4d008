"""The torch training loop: mini-batch Adam on :meth:`RankingModel.loss` with early stopping.

Validation is a split *by request* (never by row): :func:`split_by_group` keeps every
impression of a request on one side. Training is seeded and uses ``threads`` torch threads.

The same loop trains data-parallel: given :class:`~shopsearch.replicas.Replicas`, each replica
runs it on its share of the requests (:func:`~shopsearch.replicas.shard_rows`) with
``ceil(batch_size / world)`` rows per step, the gradients averaged across replicas before each
step (``shopsearch.training.distributed_train`` launches it on Ray Train). One replica trains
exactly as a local run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import RankingBatch, RankingModel
from shopsearch.replicas import Replicas, shard_rows

#: ``progress(epoch, epochs, train_loss, valid_loss)`` after each epoch.
Progress = Callable[[int, int, float, float], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the training loop.

    Attributes:
        epochs: most passes over the training batch.
        batch_size: impressions per step.
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty.
        patience: epochs without a validation improvement before stopping.
        seed: seed of initialisation and shuffling.
        threads: torch intra-op threads (1 by default: on a shared 2-core machine two threads
            measured 4x slower per step than one, from contention).
        task_weights: weight of each task's loss.
    """

    epochs: int = 3
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 1
    seed: int = 0
    threads: int = 1
    task_weights: dict[str, float] = field(
        default_factory=lambda: {"click": 1.0, "cart": 1.0, "purchase": 1.0}
    )


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        model: the fitted model (weights of the best validation epoch), in eval mode.
        history: per epoch ``{"train_loss", "valid_loss", "seconds"}``.
        best_epoch: 1-based epoch whose weights were kept.
    """

    model: RankingModel
    history: list[dict[str, float]]
    best_epoch: int


def split_by_group(
    batch: RankingBatch, fraction: float, seed: int = 0
) -> tuple[RankingBatch, RankingBatch]:
    """Random split by request (``batch.group``): about ``fraction`` of requests go right."""
    if not 0.0 < fraction < 1.0:
        raise InvalidInputError(f"fraction={fraction} is not allowed; use 0 < fraction < 1")
    groups = batch.group.numpy()
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    chosen = unique[rng.random(len(unique)) < fraction]
    right = np.isin(groups, chosen)
    if right.all() or not right.any():
        raise InvalidInputError(
            f"{len(unique)} requests are too few to hold out {fraction:.0%} for validation"
        )
    left_rows = torch.from_numpy(np.flatnonzero(~right))
    right_rows = torch.from_numpy(np.flatnonzero(right))
    return batch.index(left_rows), batch.index(right_rows)


def _loss_total(model: RankingModel, batch: RankingBatch, cfg: TrainConfig) -> tuple[float, int]:
    """The task loss summed over ``batch``'s rows, and the rows."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(batch), 8192):
            part = batch.index(torch.arange(start, min(start + 8192, len(batch))))
            part.weight = torch.ones_like(part.weight)
            # the task loss alone: a regulariser (CDAN-W's sliced Wasserstein term draws fresh
            # random directions on every call) would make early stopping pick noise
            loss = model.loss(part, model(part), cfg.task_weights, regularise=False)
            total += float(loss) * len(part)
            n += len(part)
    return total, n


def _shard(batch: RankingBatch, replicas: Replicas | None) -> RankingBatch:
    """This replica's requests of ``batch`` (all of it without replicas or with one)."""
    if replicas is None or replicas.world == 1:
        return batch
    rows = shard_rows(batch.group.numpy(), replicas.rank, replicas.world)
    return batch.index(torch.from_numpy(rows))


def _mean(totals: tuple[float, float], replicas: Replicas | None) -> float:
    """``total / count`` over every replica."""
    total, count = totals if replicas is None else replicas.sum(totals)
    return total / max(count, 1)


def fit(
    model: RankingModel,
    train: RankingBatch,
    valid: RankingBatch | None = None,
    config: TrainConfig | None = None,
    progress: Progress | None = None,
    replicas: Replicas | None = None,
) -> TrainResult:
    """Train ``model`` on ``train``, keeping the weights of the best ``valid`` loss.

    Args:
        model: an untrained ranking model.
        train: training impressions (``weight`` holds per-row loss weights).
        valid: validation impressions (split by request); without it every epoch runs and
            the last weights are kept.
        config: the loop's hyper-parameters.
        progress: called after each epoch.
        replicas: train as one data-parallel replica of these (see the module docstring);
            every replica is given the same ``model``, ``train`` and ``valid`` and returns the
            same weights.

    Raises:
        InvalidInputError: for an empty training batch or a non-finite loss.
    """
    cfg = config or TrainConfig()
    if len(train) == 0:
        raise InvalidInputError("no training impressions; log some searches first")
    torch.set_num_threads(cfg.threads)
    rank = 0 if replicas is None else replicas.rank
    torch.manual_seed(cfg.seed + rank)
    generator = torch.Generator().manual_seed(cfg.seed + rank)
    train, size = _shard(train, replicas), cfg.batch_size
    if replicas is not None:
        valid = None if valid is None else _shard(valid, replicas)
        size = max(1, math.ceil(cfg.batch_size / replicas.world))
        replicas.sync(model, parameters=True)
    steps = math.ceil(len(train) / size)
    steps = steps if replicas is None else replicas.most(steps)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    best, best_epoch, best_state, stale = math.inf, 0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)
        running, seen = 0.0, 0
        for step in range(steps):
            part = train.index(order[step * size : (step + 1) * size])
            running += _step(model, part, cfg, optimiser, replicas, epoch)
            seen += len(part)
        train_loss = _mean((running, seen), replicas)
        valid_loss = train_loss
        if valid is not None:
            valid_loss = _mean(_loss_total(model, valid, cfg), replicas)
        history.append(
            {
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                "seconds": time.perf_counter() - start,
            }
        )
        if progress is not None:
            progress(epoch, cfg.epochs, train_loss, valid_loss)
        if valid is None or valid_loss < best:
            best, best_epoch, stale = valid_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, best_epoch)


def _step(
    model: RankingModel,
    part: RankingBatch,
    cfg: TrainConfig,
    optimiser: torch.optim.Optimizer,
    replicas: Replicas | None,
    epoch: int,
) -> float:
    """One optimiser step on ``part`` (a replica with no rows left still joins the gradient
    exchange); returns the loss summed over its rows."""
    optimiser.zero_grad()
    total = 0.0
    if len(part):
        loss = model.loss(part, model(part), cfg.task_weights)
        if not torch.isfinite(loss):
            raise InvalidInputError(
                f"{model.name} loss became {float(loss)} in epoch {epoch}; lower the "
                f"learning rate (lr={cfg.lr})"
            )
        loss.backward()  # type: ignore[no-untyped-call]
        total = float(loss.detach()) * len(part)
    if replicas is not None:
        replicas.average_gradients(model.parameters(), len(part))
    optimiser.step()
    if replicas is not None:
        replicas.sync(model)
    return total


def predict(
    model: RankingModel, batch: RankingBatch, batch_size: int = 8192
) -> dict[str, npt.NDArray[np.float64]]:
    """Serving-time funnel probabilities (positions set to 0): ``{"click": ..., ...}``."""
    if model.training:
        model.eval()
    outs: dict[str, list[npt.NDArray[np.float64]]] = {"click": [], "cart": [], "purchase": []}
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            if len(batch) <= batch_size:  # one request at serving: no copy
                part = replace(batch, position=torch.zeros_like(batch.position))
            else:
                part = batch.index(torch.arange(start, min(start + batch_size, len(batch))))
                part.position = torch.zeros_like(part.position)
            out = model(part)
            for task, values in outs.items():
                values.append(out.of(task).double().numpy())
    return {
        task: np.concatenate(values) if values else np.zeros(0) for task, values in outs.items()
    }


__all__ = ["Progress", "TrainConfig", "TrainResult", "fit", "predict", "split_by_group"]
