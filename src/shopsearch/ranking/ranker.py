"""A trained ranker: feature encoder + model (torch or LightGBM) + position-bias mode.

:func:`train_ranker` fits any registered model on training samples (encoder fitted on them;
validation split by request; IPW propensities estimated by EM on the training logs when asked).
:meth:`Ranker.save` writes ``config.json``, ``encoder.json`` and ``model.safetensors`` (or
LightGBM's ``lightgbm.txt``) — no pickles; :meth:`Ranker.load` reads them back.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson
import torch
from safetensors.torch import load_file, save_file

from shopsearch.errors import WorkspaceError
from shopsearch.ranking.base import RankingBatch, RankingModel
from shopsearch.ranking.feature_names import DENSE_SIM
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.lightgbm_ranker import LightGBMRanker
from shopsearch.ranking.position_bias import (
    PositionBiasModel,
    Propensities,
    check_mode,
    estimate_propensities,
)
from shopsearch.ranking.registry import LIGHTGBM, check_model_name, torch_model_class
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import (
    Progress,
    TrainConfig,
    TrainResult,
    fit,
    predict,
    split_by_group,
)
from shopsearch.store.atomic import write_json

Scores = dict[str, npt.NDArray[np.float64]]
_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"


class Ranker:
    """A fitted encoder and model. Build with :func:`train_ranker` or :meth:`load`.

    Args:
        name: the registry name of the model.
        encoder: the fitted feature encoder.
        model: a :class:`PositionBiasModel` or a :class:`LightGBMRanker`.
        info: what the ranker was trained with (saved in ``config.json``).
    """

    def __init__(
        self,
        name: str,
        encoder: FeatureEncoder,
        model: PositionBiasModel | LightGBMRanker,
        info: dict[str, Any],
    ) -> None:
        self.name = name
        self.encoder = encoder
        self.model = model
        self.info = info

    @property
    def dense_space(self) -> str | None:
        """The vector space of the ``dense_sim`` feature the model reads: ``None`` when it does
        not read it, ``""`` for a model saved before spaces were recorded."""
        if DENSE_SIM not in self.encoder.dense_names_:
            return None
        return str(self.info.get("dense_space", ""))

    def score_batch(self, batch: RankingBatch) -> Scores:
        """Serving-time ``{"click", "cart", "purchase"}`` per row; LightGBM gives its one
        ranking score under every key."""
        if isinstance(self.model, LightGBMRanker):
            score = self.model.predict(batch)
            return {"click": score, "cart": score, "purchase": score}
        return predict(self.model, batch)

    def score(self, samples: Samples) -> Scores:
        """:meth:`score_batch` of encoded samples."""
        return self.score_batch(self.encoder.transform(samples))

    def save(self, folder: str | Path) -> Path:
        """Write the ranker into ``folder`` (created)."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save(path)
        if isinstance(self.model, LightGBMRanker):
            self.model.save(path)
        else:
            state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, str(path / _WEIGHTS))
        write_json(path / _CONFIG, {"model": self.name, **self.info})
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Ranker:
        """A ranker saved by :meth:`save`."""
        path = Path(folder)
        try:
            info: dict[str, Any] = orjson.loads((path / _CONFIG).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError) as exc:
            raise WorkspaceError(f"{path} is not a saved ranker: {exc}") from exc
        name = check_model_name(str(info.pop("model")))
        encoder = FeatureEncoder.load(path)
        if name == LIGHTGBM:
            return cls(name, encoder, LightGBMRanker.load(path), info)
        inner = torch_model_class(name)(encoder.spec_, **info["model_config"])
        model = PositionBiasModel(inner, info["position_bias"])
        model.load_state_dict(load_file(str(path / _WEIGHTS)))
        model.eval()
        return cls(name, encoder, model, info)


class Backend(Protocol):
    """Where :func:`train_ranker` fits its model: on a cluster
    (``shopsearch.training.distributed_train.RayTraining``) instead of in this process."""

    def fit(
        self,
        model: RankingModel,
        train: RankingBatch,
        valid: RankingBatch | None = None,
        config: TrainConfig | None = None,
        progress: Progress | None = None,
    ) -> TrainResult:
        """Train a torch model as :func:`~shopsearch.ranking.train.fit` does."""
        ...

    def fit_lightgbm(
        self, ranker: LightGBMRanker, batch: RankingBatch, labels: npt.NDArray[np.int32] | None
    ) -> LightGBMRanker:
        """Fit ``ranker`` on ``batch`` as :meth:`LightGBMRanker.fit` does."""
        ...


def train_ranker(
    train: Samples,
    name: str,
    position_bias: str = "feature",
    config: TrainConfig | None = None,
    model_kwargs: dict[str, Any] | None = None,
    valid_fraction: float = 0.1,
    progress: Progress | None = None,
    encoded: tuple[FeatureEncoder, RankingBatch] | None = None,
    backend: Backend | None = None,
) -> Ranker:
    """Fit the encoder and the model ``name`` on ``train`` samples.

    Args:
        train: training samples (the encoder is fitted on them only).
        name: a registered model name.
        position_bias: ``none``, ``feature`` or ``ipw`` (ignored by LightGBM, which never sees
            the position).
        config: the training loop's hyper-parameters.
        model_kwargs: hyper-parameters of the model's constructor.
        valid_fraction: share of training requests held out for early stopping.
        progress: per-epoch callback.
        encoded: an encoder already fitted on ``train`` and its transform of ``train``
            (reused across models; left unchanged).
        backend: where the model is fitted (default: here, by the local loop).
    """
    check_model_name(name)
    cfg = config or TrainConfig()
    if encoded is None:
        encoder = FeatureEncoder(train.seq_kinds.shape[1]).fit(train)
        batch = encoder.transform(train)
    else:
        encoder, batch = encoded
    info: dict[str, Any] = {"position_bias": check_mode(position_bias), "train": asdict(cfg)}
    if name == LIGHTGBM:
        ranker = LightGBMRanker(seed=cfg.seed, threads=cfg.threads, **(model_kwargs or {}))
        info["position_bias"] = "none"
        fitted = ranker.fit(batch) if backend is None else backend.fit_lightgbm(ranker, batch, None)
        return Ranker(name, encoder, fitted, info)
    if position_bias == "ipw":
        props = propensities_of(train)
        weight = props.weights(train.rows["position"].to_numpy(), train.rows["click"].to_numpy())
        batch = replace(batch, weight=torch.from_numpy(weight))
        info["propensities"] = props.theta.tolist()
    torch.manual_seed(cfg.seed)
    inner: RankingModel = torch_model_class(name)(encoder.spec_, **(model_kwargs or {}))
    model = PositionBiasModel(inner, position_bias)
    fit_part, valid_part = split_by_group(batch, valid_fraction, cfg.seed)
    result = (fit if backend is None else backend.fit)(model, fit_part, valid_part, cfg, progress)
    info["model_config"] = inner.get_config()
    info["history"] = result.history
    info["best_epoch"] = result.best_epoch
    return Ranker(name, encoder, model, info)


def propensities_of(samples: Samples) -> Propensities:
    """EM examination propensities from the samples' (domain, product, position) clicks."""
    rows = samples.rows
    pair = (rows["domain"] + "\x1f" + rows["product_id"]).to_numpy()
    return estimate_propensities(pair, rows["position"].to_numpy(), rows["click"].to_numpy())


__all__ = ["Backend", "Ranker", "Scores", "propensities_of", "train_ranker"]
