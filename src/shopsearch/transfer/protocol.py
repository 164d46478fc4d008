"""The transfer protocol's API: subsample the target domains, train a method, score samples.

Contract (helper suites call exactly this)::

    from shopsearch.ranking.samples import Samples            # rows need: request_id, domain,
                                                              # product_id, labels, features
    from shopsearch.ranking.train import TrainConfig
    from shopsearch.transfer.protocol import subsample_target, train_transfer
    from shopsearch.transfer.registry import METHODS, report_name

    train_f = subsample_target(train, target_domains=["gb", "au"], fraction=0.05, seed=0)
    scorer = train_transfer(
        "cdan-w",                       # any of METHODS
        train_f,
        source_domains=["us"],
        target_domains=["gb", "au"],
        cfg=TrainConfig(epochs=2, seed=0),
    )
    p_click = scorer.score(test)        # np.ndarray [len(test)], P(click) per row
    funnel = scorer.scores(test)        # {"click", "cart", "purchase"} -> np.ndarray
    name = report_name("cdan-w", 0.05)  # "shopsearch/cdan-w@0.05"

* :func:`subsample_target` keeps a seeded ``fraction`` of each target domain's *requests*
  (every impression of a kept request; each target keeps at least one request) and every row
  of the other domains. ``fraction=1`` returns the samples unchanged.
* :func:`train_transfer` fits one :class:`~shopsearch.ranking.features.FeatureEncoder` on
  ``train`` (or reuses ``encoded``) and then, by method:

  - ``cdan-w``, ``pgtl``, ``shared-bottom``, ``star``, ``mmoe-domain``, ``seq-md``: one model
    of :data:`~shopsearch.transfer.registry.JOINT_MODELS` jointly on the rows of the source *and*
    target domains (rows of other domains are dropped); ``seq-md-nomask`` likewise, without the
    market mask (:data:`~shopsearch.transfer.registry.ABLATIONS`);
  - ``pooled``: one domain-blind DNN (:class:`~shopsearch.transfer.baselines.PooledDNN`) on the
    source and target rows;
  - ``zero-shot``: the domain-blind DNN on the source rows only;
  - ``target-only``: one ``dnn`` per target domain on that domain's rows only (rows of other
    domains score NaN);
  - ``fine-tune``: the zero-shot DNN, then trained further on the target rows only, at
    ``fine_tune_lr`` times the learning rate (the practitioner's warm start);
  - ``lightgbm-pooled``: LightGBM LambdaMART (:class:`~shopsearch.ranking.lightgbm_ranker.
    LightGBMRanker`) on the source and target rows, the domain among its categorical features;
    its label is the funnel grade, or for soft labels (judged grades normalised to ``[0, 1]``)
    the click label in five levels. It scores raw LambdaMART values, not probabilities.

  Every model is wrapped in the ranking stage's position-bias handling (``position_bias``,
  default ``feature``), trained by :func:`shopsearch.ranking.train.fit` with a validation split
  by request (``valid_fraction``) and early stopping — with about ``min_steps`` optimiser steps
  at least (smaller batches and more epochs for a small training set, so that target-only is
  not compared undertrained) —
  and scored as at serving (position 0) by
  :func:`shopsearch.ranking.train.predict`.
* The returned :class:`TransferScorer` scores any :class:`Samples` whose domains the encoder
  knows (unknown ids map to 0, as in the ranking stage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import RankingBatch, RankingModel
from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.lightgbm_ranker import LightGBMRanker, funnel_grade
from shopsearch.ranking.models.baselines import DNN
from shopsearch.ranking.position_bias import PositionBiasModel
from shopsearch.ranking.ranker import Backend
from shopsearch.ranking.registry import torch_model_class
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import Progress, TrainConfig, fit, predict, split_by_group
from shopsearch.transfer.baselines import PooledDNN
from shopsearch.transfer.pgtl import PGTL
from shopsearch.transfer.registry import ABLATIONS, JOINT_MODELS, check_method

F64 = npt.NDArray[np.float64]


def subsample_target(
    samples: Samples, target_domains: Sequence[str], fraction: float, seed: int = 0
) -> Samples:
    """Keep a seeded ``fraction`` of each target domain's requests and all other rows.

    Raises:
        InvalidInputError: for a fraction outside (0, 1] or a target domain without rows.
    """
    if not 0.0 < fraction <= 1.0:
        raise InvalidInputError(f"fraction={fraction} is not allowed; use 0 < fraction <= 1")
    rows = samples.rows
    domains = rows["domain"].to_numpy(object)
    missing = [d for d in target_domains if not (domains == d).any()]
    if missing:
        raise InvalidInputError(
            f"target domains {missing} have no rows; domains are {sorted(set(domains))}"
        )
    if fraction >= 1.0:
        return samples
    keep = ~np.isin(domains, list(target_domains))
    rng = np.random.default_rng(seed)
    request = rows["request_id"].to_numpy(object)
    for domain in target_domains:
        ids = np.unique(request[domains == domain])
        n = max(1, round(len(ids) * fraction))
        chosen = rng.choice(ids, size=n, replace=False)
        keep |= np.isin(request, chosen)
    return samples.subset(keep)


@dataclass
class TransferScorer:
    """A trained transfer method: encoder plus one model (or one model per domain).

    Attributes:
        method: the method name.
        encoder: the fitted feature encoder.
        model: the model that scores every domain (``None`` for ``target-only`` and
            ``lightgbm-pooled``).
        per_domain: ``target-only``'s model of each target domain.
        info: training history per model.
        booster: ``lightgbm-pooled``'s ranker.
    """

    method: str
    encoder: FeatureEncoder
    model: RankingModel | None = None
    per_domain: dict[str, RankingModel] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    booster: LightGBMRanker | None = None

    def scores_batch(self, batch: RankingBatch, domains: npt.NDArray[Any]) -> dict[str, F64]:
        """Funnel probabilities of encoded rows (``domains``: each row's domain name);
        ``lightgbm-pooled`` gives its one ranking score for every task."""
        if self.booster is not None:
            score = self.booster.predict(batch)
            return {task: score for task in ("click", "cart", "purchase")}
        if self.model is not None:
            return predict(self.model, batch)
        out = {t: np.full(len(batch), np.nan) for t in ("click", "cart", "purchase")}
        for domain, model in self.per_domain.items():
            rows = np.flatnonzero(domains == domain)
            if rows.size == 0:
                continue
            part = predict(model, batch.index(torch.from_numpy(rows)))
            for task, values in part.items():
                out[task][rows] = values
        return out

    def scores(self, samples: Samples) -> dict[str, F64]:
        """``{"click", "cart", "purchase"}`` probabilities per row of ``samples``."""
        batch = self.encoder.transform(samples)
        return self.scores_batch(batch, samples.rows["domain"].to_numpy(object))

    def score(self, samples: Samples) -> F64:
        """P(click) per row of ``samples`` (NaN for a domain the method has no model for)."""
        return self.scores(samples)["click"]


def _rows_of(batch: RankingBatch, domain_ids: list[int]) -> RankingBatch:
    mask = torch.isin(batch.domain, torch.tensor(domain_ids, dtype=batch.domain.dtype))
    return batch.index(torch.nonzero(mask).squeeze(1))


def _domain_ids(encoder: FeatureEncoder, names: Sequence[str]) -> list[int]:
    vocab = encoder.sparse_vocab_["domain"]
    unknown = [n for n in names if n not in vocab]
    if unknown:
        raise InvalidInputError(f"domains {unknown} are not in the training rows {vocab}")
    return [vocab.index(n) + 1 for n in names]


def _enough_steps(cfg: TrainConfig, n_rows: int, min_steps: int) -> TrainConfig:
    """``cfg`` adapted to a small training set so that it gets about ``min_steps`` steps.

    Fewer than 20 steps per epoch: the batch shrinks to ``max(64, n_rows // 20)``; then the
    epochs grow (at most 50) until ``min_steps`` steps, with early-stopping patience >= 2.
    """
    batch_size = cfg.batch_size
    if min_steps > 0 and math.ceil(n_rows / batch_size) < 20:
        batch_size = min(batch_size, max(64, n_rows // 20))
    per_epoch = max(1, math.ceil(n_rows / batch_size))
    epochs = min(50, max(cfg.epochs, math.ceil(min_steps / per_epoch)))
    if epochs == cfg.epochs and batch_size == cfg.batch_size:
        return cfg
    return replace(cfg, epochs=epochs, batch_size=batch_size, patience=max(cfg.patience, 2))


def _train_one(
    inner: RankingModel,
    batch: RankingBatch,
    cfg: TrainConfig,
    position_bias: str,
    valid_fraction: float,
    min_steps: int,
    progress: Progress | None,
    backend: Backend | None = None,
) -> tuple[RankingModel, dict[str, Any]]:
    if isinstance(inner, PGTL) and len(batch):
        inner.fit_priors(batch)
    model = PositionBiasModel(inner, position_bias)
    return model, _fit_more(model, batch, cfg, valid_fraction, min_steps, progress, backend)


def _fit_more(
    model: RankingModel,
    batch: RankingBatch,
    cfg: TrainConfig,
    valid_fraction: float,
    min_steps: int,
    progress: Progress | None,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """Train ``model`` (new or already trained) on ``batch`` (here, or on ``backend``), early
    stopping on a by-request validation part when there are 20 requests or more."""
    if len(batch) == 0:
        raise InvalidInputError("no training impressions for this method; check the domains")
    train = fit if backend is None else backend.fit
    n_groups = int(torch.unique(batch.group).numel())
    if n_groups >= 20:
        fit_part, valid_part = split_by_group(batch, valid_fraction, cfg.seed)
        cfg = _enough_steps(cfg, len(fit_part), min_steps)
        result = train(model, fit_part, valid_part, cfg, progress)
    else:  # too few requests to hold some out: train every epoch, keep the last
        cfg = _enough_steps(cfg, len(batch), min_steps)
        result = train(model, batch, None, cfg, progress)
    return {
        "history": result.history,
        "best_epoch": result.best_epoch,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
    }


def graded_labels(batch: RankingBatch) -> npt.NDArray[np.int32]:
    """LambdaMART labels: the funnel grade (purchase 3, cart 2, click 1), or for soft click
    labels (normalised judged grades) the click label in five levels 0-4."""
    click = batch.click.numpy()
    if np.isin(click, (0.0, 1.0)).all():
        return funnel_grade(batch)
    levels: npt.NDArray[np.int32] = np.rint(4 * np.clip(click, 0.0, 1.0)).astype(np.int32)
    return levels


def train_transfer(
    method: str,
    train: Samples,
    source_domains: Sequence[str],
    target_domains: Sequence[str],
    cfg: TrainConfig | None = None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    position_bias: str = "feature",
    valid_fraction: float = 0.1,
    min_steps: int = 200,
    encoded: tuple[FeatureEncoder, RankingBatch] | None = None,
    fine_tune_lr: float = 0.1,
    warm_start: bool = False,
    progress: Progress | None = None,
    backend: Backend | None = None,
) -> TransferScorer:
    """Train transfer ``method`` on ``train`` (see the module docstring for each method).

    Args:
        method: one of :data:`~shopsearch.transfer.registry.METHODS`.
        train: training samples of the source and target domains (already subsampled).
        source_domains: the data-rich domains.
        target_domains: the domains evaluated.
        cfg: the training loop's hyper-parameters.
        model_kwargs: constructor arguments of the model (the DNN's for the regimes).
        position_bias: ``none``, ``feature`` or ``ipw``-free modes of the ranking stage
            (``ipw`` is not supported here).
        valid_fraction: share of training requests held out for early stopping.
        min_steps: fewest optimiser steps a model gets: a small training set (target-only at
            1%) trains with smaller batches and more epochs (at most 50, early stopping with
            patience >= 2) so that it is not compared undertrained; 0 turns this off.
        encoded: an encoder fitted on ``train`` and its transform of ``train`` (reused across
            methods; left unchanged).
        fine_tune_lr: ``fine-tune``'s learning rate on the target rows, times ``cfg.lr``.
        warm_start: a joint model (``cdan-w``, ``pgtl`` ...) is first trained on the source
            rows alone, then on the source and target rows (the target domain's own parts start
            from their initial values, e.g. CDAN-W's zero private encoder).
        progress: per-epoch callback.
        backend: where each model is fitted (default: here; ``shopsearch.training.
            distributed_train.RayTraining``: data-parallel on a Ray cluster).

    Raises:
        InvalidInputError: for an unknown method, unknown domains or no training rows.
    """
    check_method(method)
    if position_bias == "ipw":
        raise InvalidInputError("position_bias='ipw' is not supported by train_transfer")
    if not source_domains or not target_domains:
        raise InvalidInputError("give at least one source and one target domain")
    cfg = cfg or TrainConfig()
    kwargs = model_kwargs or {}
    if encoded is None:
        encoder = FeatureEncoder(train.seq_kinds.shape[1]).fit(train)
        batch = encoder.transform(train)
    else:
        encoder, batch = encoded
    spec = encoder.spec_
    source_ids = _domain_ids(encoder, source_domains)
    target_ids = _domain_ids(encoder, target_domains)
    torch.manual_seed(cfg.seed)
    scorer = TransferScorer(method, encoder)
    if method == "target-only":
        for name, domain_id in zip(target_domains, target_ids, strict=True):
            torch.manual_seed(cfg.seed)
            model, info = _train_one(
                DNN(spec, **kwargs),
                _rows_of(batch, [domain_id]),
                cfg,
                position_bias,
                valid_fraction,
                min_steps,
                progress,
                backend,
            )
            scorer.per_domain[name] = model
            scorer.info[name] = info
        return scorer
    if method == "lightgbm-pooled":
        rows = _rows_of(batch, source_ids + target_ids)
        if len(rows) == 0:
            raise InvalidInputError("no training impressions for lightgbm-pooled")
        booster = LightGBMRanker(seed=cfg.seed, threads=cfg.threads)
        labels = graded_labels(rows)
        if backend is None:
            scorer.booster = booster.fit(rows, labels)
        else:
            scorer.booster = backend.fit_lightgbm(booster, rows, labels)
        return scorer
    if method in ("zero-shot", "fine-tune"):
        inner: RankingModel = PooledDNN(spec, **kwargs)
        rows = _rows_of(batch, source_ids)
    else:
        joint, preset = ABLATIONS.get(method, (method, {}))
        model_class = PooledDNN if method == "pooled" else torch_model_class(joint)
        inner = model_class(spec, **{**preset, **kwargs})
        rows = _rows_of(batch, source_ids + target_ids)
    if warm_start and (method in JOINT_MODELS or method in ABLATIONS):
        source_rows = _rows_of(batch, source_ids)
        scorer.model, scorer.info["source"] = _train_one(
            inner, source_rows, cfg, position_bias, valid_fraction, min_steps, progress, backend
        )
        if isinstance(inner, PGTL):
            inner.fit_priors(rows)
        scorer.info["all"] = _fit_more(
            scorer.model, rows, cfg, valid_fraction, min_steps, progress, backend
        )
        return scorer
    scorer.model, info = _train_one(
        inner, rows, cfg, position_bias, valid_fraction, min_steps, progress, backend
    )
    scorer.info["all"] = info
    if method == "fine-tune":
        tuned = replace(cfg, lr=cfg.lr * fine_tune_lr)
        target = _rows_of(batch, target_ids)
        scorer.info["target"] = _fit_more(
            scorer.model, target, tuned, valid_fraction, min_steps, progress, backend
        )
    return scorer


__all__ = ["TransferScorer", "graded_labels", "subsample_target", "train_transfer"]
