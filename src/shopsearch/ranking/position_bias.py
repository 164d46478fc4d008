"""Position bias: a training-only bias tower, and inverse-propensity weights estimated by EM.

Three modes (``none | feature | ipw``), all served the same way (no position at serving):

* ``none`` — the model never sees the position.
* ``feature`` — a PAL-style position tower (Guo et al., "PAL: a position-bias aware learning
  framework for CTR prediction in live recommender systems", RecSys 2019), here as an additive
  click logit ``b[position]``: during training ``P(click) = sigmoid(logit p_click + b[pos])``
  and the later funnel stages are scaled by the same factor (position changes whether an item
  is examined, not what a click leads to). At serving the position is 0 and ``b[0] = 0``, so the
  tower is dropped.
* ``ipw`` — inverse-propensity weighting of clicked impressions by ``1 / theta[pos]`` with the
  examination propensities ``theta`` estimated from the logs under the position-based model
  ``P(click | d, k) = theta_k * gamma_d`` by expectation-maximisation over (item, position)
  click counts (Chuklin et al., "Click Models for Web Search", 2015; Wang et al., "Position
  bias estimation for unbiased learning to rank in personal search", WSDM 2018). Only items
  shown at two or more positions take part — the interventions that Agarwal et al.'s
  intervention harvesting (WSDM 2019) uses. The item is (domain, product) by default: on the
  simulator's logs (query, product) pairs gave propensities flattened by the logging policy's
  relevance order ([1, .68, .45, .36, ...] against the true [1, .35, .25, .20, ...]), while
  (domain, product) recovered [1, .35, .25, .19, ...].

The inner model of :class:`PositionBiasModel` always sees position 1, so models that embed the
position as an input get a trained, constant embedding at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import RankingBatch, RankingModel, TaskOutputs

PositionBiasMode = Literal["none", "feature", "ipw"]
MODES: tuple[str, ...] = ("none", "feature", "ipw")
MAX_POSITION = 64


def check_mode(mode: str) -> PositionBiasMode:
    """``mode`` if it is a known position-bias mode, else a clear error."""
    if mode == "none":
        return "none"
    if mode == "feature":
        return "feature"
    if mode == "ipw":
        return "ipw"
    raise InvalidInputError(f"position bias {mode!r} is not known; use one of {', '.join(MODES)}")


@dataclass(frozen=True)
class Propensities:
    """Examination propensities per position, relative to position 1.

    Attributes:
        theta: ``theta[k-1]`` = P(examined at position k) / P(examined at position 1).
        gamma_mean: mean estimated relevance of the (query, product) pairs.
        iterations: EM iterations run.
    """

    theta: npt.NDArray[np.float64]
    gamma_mean: float
    iterations: int

    def weights(
        self, position: npt.ArrayLike, click: npt.ArrayLike, clip: float = 20.0
    ) -> npt.NDArray[np.float32]:
        """IPW loss weights: ``1 / theta[pos]`` (clipped) on clicks, 1 elsewhere; mean 1."""
        pos = np.clip(np.asarray(position, np.int64), 1, len(self.theta)) - 1
        clicked = np.asarray(click, np.float64) > 0
        w = np.where(clicked, np.minimum(1.0 / np.maximum(self.theta[pos], 1e-6), clip), 1.0)
        out: npt.NDArray[np.float32] = (w / w.mean()).astype(np.float32)
        return out


def estimate_propensities(
    pair: npt.ArrayLike,
    position: npt.ArrayLike,
    click: npt.ArrayLike,
    *,
    max_iter: int = 200,
    tol: float = 1e-6,
    min_positions: int = 2,
) -> Propensities:
    """EM for the position-based click model over impressions.

    Args:
        pair: an id per impression of its (query, product) pair (any hashable values).
        position: 1-based position per impression.
        click: 0/1 per impression.
        max_iter: most EM iterations.
        tol: stop when no propensity moves more than this.
        min_positions: only pairs shown at this many distinct positions take part (the
            harvested interventions; a pair seen at one position says nothing about position).

    Returns:
        Propensities normalised to ``theta[0] = 1``.

    Raises:
        InvalidInputError: for empty input, positions < 1 or no click at all.
    """
    pos = np.asarray(position, np.int64)
    c = np.asarray(click, np.float64)
    if pos.size == 0 or pos.size != c.size:
        raise InvalidInputError("give one position and one click per impression (non-empty)")
    if pos.min() < 1:
        raise InvalidInputError(f"position {pos.min()} is not allowed; positions start at 1")
    pair_codes = np.unique(np.asarray(pair), return_inverse=True)[1].ravel()
    distinct = np.unique(np.stack([pair_codes, pos]), axis=1)[0]
    keep = np.bincount(distinct, minlength=int(pair_codes.max()) + 1)[pair_codes] >= min_positions
    pos, c = pos[keep], c[keep]
    pair_codes = np.unique(pair_codes[keep], return_inverse=True)[1].ravel()
    if c.sum() == 0:
        raise InvalidInputError(
            f"no clicks on pairs shown at >= {min_positions} positions: examination propensities "
            "are unknowable from these logs"
        )
    k = pos - 1
    n_pos, n_pairs = int(k.max()) + 1, int(pair_codes.max()) + 1
    per_pos = np.maximum(np.bincount(k, minlength=n_pos), 1)
    per_pair = np.bincount(pair_codes, minlength=n_pairs)
    theta = np.full(n_pos, 0.5)
    gamma = np.full(n_pairs, max(c.mean(), 1e-3) * 2)
    gamma = np.minimum(gamma, 0.9)
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        t, g = theta[k], gamma[pair_codes]
        denom = np.maximum(1.0 - t * g, 1e-12)
        examined = c + (1 - c) * t * (1 - g) / denom
        relevant = c + (1 - c) * (1 - t) * g / denom
        new_theta = np.clip(np.bincount(k, examined, n_pos) / per_pos, 1e-6, 1.0)
        gamma = np.clip(np.bincount(pair_codes, relevant, n_pairs) / per_pair, 1e-6, 1 - 1e-6)
        moved = float(np.abs(new_theta - theta).max())
        theta = new_theta
        if moved < tol:
            break
    return Propensities(theta / theta[0], float(gamma.mean()), iterations)


class PositionBiasModel(RankingModel):
    """Wraps a ranking model with a position-bias mode (see the module docstring).

    Args:
        inner: the ranking model.
        mode: ``none``, ``feature`` or ``ipw`` (only ``feature`` adds parameters).
    """

    name: ClassVar[str] = "position-bias"

    def __init__(self, inner: RankingModel, mode: str) -> None:
        super().__init__(inner.spec)
        self.inner = inner
        self.mode = check_mode(mode)
        self.bias = nn.Embedding(MAX_POSITION + 1, 1, padding_idx=0)
        nn.init.zeros_(self.bias.weight)

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Inner outputs (inner sees position 1); ``feature`` adds the position's click bias."""
        position = batch.position
        batch.position = torch.ones_like(position)
        try:
            out: TaskOutputs = self.inner(batch)
        finally:
            batch.position = position
        if self.mode != "feature":
            return out
        shift = self.bias(position.clamp(0, MAX_POSITION)).squeeze(-1)
        p = out.p_click.clamp(1e-7, 1 - 1e-7)
        observed = torch.sigmoid(torch.logit(p) + shift)
        ratio = observed / p
        return TaskOutputs(
            p_click=observed,
            p_cart=(out.p_cart * ratio).clamp(max=1.0),
            p_purchase=(out.p_purchase * ratio).clamp(max=1.0),
            extras=out.extras,
        )

    def extra_loss(self, batch: RankingBatch, outputs: TaskOutputs) -> Tensor:
        """The inner model's regularisers."""
        return self.inner.extra_loss(batch, outputs)


__all__ = [
    "MODES",
    "PositionBiasMode",
    "PositionBiasModel",
    "Propensities",
    "check_mode",
    "estimate_propensities",
]
