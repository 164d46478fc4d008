"""Ranking and retrieval models trained on a Ray cluster (``pip install "shopsearch[ray]"``;
issue 19).

:class:`RayTraining` is a :class:`~shopsearch.ranking.ranker.Backend` of
:func:`~shopsearch.ranking.ranker.train_ranker` and a
:class:`~shopsearch.retrieval.learned_train.TwoTowerBackend` of
:func:`~shopsearch.retrieval.learned_train.train_learned`: the same model, trained data-parallel
on ``workers`` Ray workers (one CPU each), comes back into this process and is saved in the same
bundle format as a local one.

* Torch models (every ranking model but LightGBM; the joint transfer models ``cdan-w``,
  ``pgtl``, ``star`` ... are ranking models too): Ray Train's ``TorchTrainer`` (gloo, CPU) runs
  the one training loop, :func:`shopsearch.ranking.train.fit`, on each worker as a
  :class:`~shopsearch.replicas.TorchReplicas` replica: each worker trains on its share of the
  requests (never splitting one), the gradients are averaged across workers before each step,
  and worker 0 returns the weights of the best validation epoch.
* The MMSE two-tower encoders of learned retrieval: the same, with their own loop
  (:func:`shopsearch.retrieval.mmse_train.train`, the same hook): each worker takes its share of
  the queries; the sparse gradients of the hashed feature table are averaged as sparse tensors.
* LightGBM: Ray Train's ``LightGBMTrainer`` gives each worker LightGBM's network parameters;
  each builds its dataset from its share of the requests and LightGBM's own data-parallel tree
  learner grows the trees together; worker 0 returns the model text.

With one worker and the same seed the result equals a local fit (the same weights, the same
trees). The epochs' progress is reported when the run ends (the workers train in other
processes). Worker 0 hands its result over as a Ray Train checkpoint in ``storage``: by default
a temporary folder of this machine, which is enough on one machine; a cluster of several
machines needs a folder (or ``s3://`` ... URI) every worker can write.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from shopsearch.errors import InvalidInputError, ShopSearchError
from shopsearch.progress import Progress
from shopsearch.ranking.base import RankingBatch, RankingModel
from shopsearch.ranking.lightgbm_ranker import LightGBMRanker
from shopsearch.ranking.train import Progress as LossProgress
from shopsearch.ranking.train import TrainConfig, TrainResult
from shopsearch.ray_cluster import connect, ray_module
from shopsearch.retrieval.mmse import TwoTowerEncoder
from shopsearch.retrieval.mmse_samples import StagedSamples

_WEIGHTS = "model.safetensors"
_RESULT = "result.json"


class RayTraining:
    """Train ranking models on a Ray cluster (see the module docstring).

    Args:
        address: the cluster: ``None`` starts a local one on 127.0.0.1 with ``workers`` CPUs,
            ``"auto"`` joins the one this machine belongs to, ``HOST:PORT`` a given one.
        workers: training workers (one CPU each).
        storage: where worker 0's result is handed over (default: a temporary folder).

    Raises:
        InvalidInputError: ``workers`` below 1.
    """

    def __init__(
        self, address: str | None = None, workers: int = 2, storage: str | None = None
    ) -> None:
        if workers < 1:
            raise InvalidInputError(f"workers={workers} is not allowed; use 1 or more")
        self.address, self.workers, self.storage = address, workers, storage

    def fit(
        self,
        model: RankingModel,
        train: RankingBatch,
        valid: RankingBatch | None = None,
        config: TrainConfig | None = None,
        progress: LossProgress | None = None,
    ) -> TrainResult:
        """Train the torch ``model`` as :func:`~shopsearch.ranking.train.fit` does, on
        ``workers`` data-parallel workers; ``model`` ends with the returned weights."""
        from safetensors.torch import load_file

        cfg = config or TrainConfig()
        if len(train) == 0:
            raise InvalidInputError("no training impressions; log some searches first")
        with self._run(_torch_worker, (model, train, valid, cfg), "torch") as folder:
            state = load_file(str(folder / _WEIGHTS))
            result = orjson.loads((folder / _RESULT).read_bytes())
        model.load_state_dict(state)
        model.eval()
        history: list[dict[str, float]] = result["history"]
        if progress is not None:
            for epoch, row in enumerate(history, start=1):
                progress(epoch, cfg.epochs, row["train_loss"], row["valid_loss"])
        return TrainResult(model, history, int(result["best_epoch"]))

    def fit_lightgbm(
        self,
        ranker: LightGBMRanker,
        batch: RankingBatch,
        labels: npt.NDArray[np.int32] | None = None,
    ) -> LightGBMRanker:
        """Fit ``ranker`` as :meth:`LightGBMRanker.fit` does, with LightGBM's data-parallel
        learner over ``workers`` workers; returns ``ranker``, fitted."""
        with self._run(_lightgbm_worker, (ranker, batch, labels), "lightgbm") as folder:
            ranker.booster_ = LightGBMRanker.load(folder).booster_
        return ranker

    def fit_two_tower(
        self,
        encoder: TwoTowerEncoder,
        samples: StagedSamples,
        progress: Progress | None = None,
    ) -> TwoTowerEncoder:
        """The two-tower ``encoder`` (unfitted; its settings reach the workers) trained as
        :meth:`TwoTowerEncoder.fit` does, on ``workers`` data-parallel workers."""
        settings = {k: v for k, v in encoder.get_config().items() if k != "path"}
        with self._run(_two_tower_worker, (settings, samples), "torch") as folder:
            fitted = TwoTowerEncoder.load(folder)
            saved = orjson.loads((folder / "config.json").read_bytes())
        fitted.path = None  # the folder was the hand-over's
        fitted.history_ = [float(v) for v in saved.get("history", [])]
        if progress is not None:
            for epoch in range(1, len(fitted.history_) + 1):
                progress(epoch, fitted.epochs)
        return fitted

    @contextlib.contextmanager
    def _run(self, worker: Any, data: tuple[Any, ...], kind: str) -> Iterator[Path]:
        """Run ``worker`` on every Ray Train worker; yields worker 0's checkpoint folder."""
        ray = ray_module()
        connect(self.address, self.workers)
        from ray.train import RunConfig, ScalingConfig

        trainer_class: Any
        if kind == "torch":
            from ray.train.torch import TorchConfig, TorchTrainer

            trainer_class, backend = TorchTrainer, {"torch_config": TorchConfig(backend="gloo")}
        else:
            from ray.train.lightgbm import LightGBMTrainer

            trainer_class, backend = LightGBMTrainer, {}
        with contextlib.ExitStack() as stack:
            storage = self.storage or stack.enter_context(
                tempfile.TemporaryDirectory(prefix="shopsearch-ray-train-")
            )
            trainer = trainer_class(
                worker,
                train_loop_config={"data": ray.put(data)},
                scaling_config=ScalingConfig(num_workers=self.workers, use_gpu=False),
                run_config=RunConfig(name=f"shopsearch-{kind}", storage_path=storage),
                **backend,
            )
            try:
                result = trainer.fit()
            except Exception as exc:  # Ray wraps a worker's error in its own
                raise ShopSearchError(f"training on Ray failed: {exc}") from exc
            if result.checkpoint is None:
                raise ShopSearchError("training on Ray ended without worker 0's result")
            with result.checkpoint.as_directory() as folder:
                yield Path(folder)


def _worker_context() -> tuple[int, int]:
    """This Ray Train worker's rank and the number of workers."""
    import ray.train

    context = ray.train.get_context()
    return int(context.get_world_rank()), int(context.get_world_size())


def _report(rank: int, write: Any) -> None:
    """Every worker reports; worker 0 with a checkpoint of what ``write(folder)`` writes."""
    import ray.train

    if rank != 0:
        ray.train.report({})
        return
    with tempfile.TemporaryDirectory(prefix="shopsearch-result-") as tmp:
        write(Path(tmp))
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _torch_worker(config: dict[str, Any]) -> None:
    """A TorchTrainer worker: the training loop as one replica of the process group."""
    import ray
    from safetensors.torch import save_file

    from shopsearch.ranking.train import fit
    from shopsearch.replicas import TorchReplicas

    model, train, valid, cfg = ray.get(config["data"])
    rank, world = _worker_context()
    result = fit(model, train, valid, cfg, None, TorchReplicas(rank, world))

    def write(folder: Path) -> None:
        state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
        save_file(state, str(folder / _WEIGHTS))
        summary = {"history": result.history, "best_epoch": result.best_epoch}
        (folder / _RESULT).write_bytes(orjson.dumps(summary))

    _report(rank, write)


def _two_tower_worker(config: dict[str, Any]) -> None:
    """A TorchTrainer worker: the two-tower training loop as one replica."""
    import ray

    from shopsearch.replicas import TorchReplicas

    settings, samples = ray.get(config["data"])
    rank, world = _worker_context()
    encoder = TwoTowerEncoder(**settings).fit(samples, None, TorchReplicas(rank, world))
    _report(rank, encoder.save)


def _lightgbm_worker(config: dict[str, Any]) -> None:
    """A LightGBMTrainer worker: LightGBM on this worker's share of the requests, joined to the
    others through LightGBM's network (data-parallel tree learner)."""
    import ray
    import torch
    from ray.train.lightgbm import get_network_params

    from shopsearch.replicas import shard_rows

    ranker, batch, labels = ray.get(config["data"])
    rank, world = _worker_context()
    params: dict[str, Any] = dict(get_network_params())
    if world > 1:
        params |= {"tree_learner": "data_parallel", "pre_partition": True}
        rows = shard_rows(batch.group.numpy(), rank, world)
        batch = batch.index(torch.from_numpy(rows))
        labels = None if labels is None else labels[rows]
    ranker.fit(batch, labels, params)
    _report(rank, ranker.save)


__all__ = ["RayTraining"]
