"""A trained ranker: feature encoder + model (torch or LightGBM) + position-bias mode.

:func:`train_ranker` fits any registered model on training samples (encoder fitted on them;
validation split by request; IPW propensities estimated by EM on the training logs when asked).
:meth:`Ranker.save` writes ``config.json``, ``encoder.json`` and ``model.safetensors`` (or
LightGBM's ``lightgbm.txt``) — no pickles — and, for a torch model, ``model.onnx`` and its
shared-sequence graph ``model.shared.onnx`` (:mod:`~shopsearch.ranking.onnx_scorer`; left out
with a warning when the export fails or disagrees with torch); :meth:`Ranker.load` reads them
back, scoring with ONNX Runtime when asked (``runtime="onnx"``; a ranker saved without
``model.onnx`` is exported as it loads).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson
import torch
from safetensors.torch import load_file, save_file

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.ranking.base import RankingBatch, RankingModel
from shopsearch.ranking.feature_names import DENSE_SIM
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.lightgbm_ranker import LightGBMRanker
from shopsearch.ranking.onnx_scorer import OnnxExportError, OnnxScorer, export_onnx
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
_ONNX = "model.onnx"
#: How a torch model scores at serving: ONNX Runtime (its exported graph) or torch.
RUNTIMES: tuple[str, ...] = ("onnx", "torch")
log = logging.getLogger(__name__)


class Ranker:
    """A fitted encoder and model. Build with :func:`train_ranker` or :meth:`load`.

    Args:
        name: the registry name of the model.
        encoder: the fitted feature encoder.
        model: a :class:`PositionBiasModel` or a :class:`LightGBMRanker`.
        info: what the ranker was trained with (saved in ``config.json``).
        onnx: the model's ONNX Runtime session, when it scores with it.
    """

    def __init__(
        self,
        name: str,
        encoder: FeatureEncoder,
        model: PositionBiasModel | LightGBMRanker,
        info: dict[str, Any],
        onnx: OnnxScorer | None = None,
    ) -> None:
        self.name = name
        self.encoder = encoder
        self.model = model
        self.info = info
        self.onnx = onnx

    @property
    def runtime(self) -> str:
        """What scores at serving: ``onnx``, ``torch`` or ``lightgbm``."""
        if isinstance(self.model, LightGBMRanker):
            return "lightgbm"
        return "torch" if self.onnx is None else "onnx"

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
        if self.onnx is not None:
            return self.onnx.score(batch)
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
            try:
                export_onnx(self.model, self.encoder.spec_, path / _ONNX)
            except OnnxExportError as exc:
                log.warning("%s; the ranker scores with torch", exc)
        write_json(path / _CONFIG, {"model": self.name, **self.info})
        return path

    @classmethod
    def load(cls, folder: str | Path, runtime: str = "torch", threads: int = 1) -> Ranker:
        """A ranker saved by :meth:`save`.

        Args:
            folder: the saved ranker.
            runtime: ``onnx`` to score a torch model with ONNX Runtime (its saved
                ``model.onnx``, else exported now; torch, with a warning, when the export
                fails), ``torch`` to score with torch.
            threads: ONNX Runtime's intra-op threads.
        """
        if runtime not in RUNTIMES:
            raise InvalidInputError(f"unknown ranking runtime {runtime!r}; use one of {RUNTIMES}")
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
        onnx = _onnx_session(path / _ONNX, model, encoder, threads) if runtime == "onnx" else None
        return cls(name, encoder, model, info, onnx)


def _onnx_session(
    saved: Path, model: PositionBiasModel, encoder: FeatureEncoder, threads: int
) -> OnnxScorer | None:
    """An ONNX Runtime session of the saved graph, else of one exported now (``None``, with a
    warning, when the export fails: the ranker scores with torch)."""
    if saved.is_file():
        return OnnxScorer(saved, threads)
    with tempfile.TemporaryDirectory(prefix="shopsearch-onnx-") as tmp:
        try:
            return OnnxScorer(export_onnx(model, encoder.spec_, Path(tmp) / _ONNX), threads)
        except OnnxExportError as exc:
            log.warning("%s; the ranker scores with torch", exc)
            return None


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


__all__ = ["RUNTIMES", "Backend", "Ranker", "Scores", "propensities_of", "train_ranker"]
