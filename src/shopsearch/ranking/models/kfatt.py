"""KFAtt: Kalman filtering attention over the behaviour sequence, with frequency capping.

Paper: Hu Liu, Jing Lu, Xiwei Zhao, Sulong Xu, Hao Peng, Yutong Liu, Zehua Zhang, Jian Li,
Junsheng Jin, Yongjun Bao, Weipeng Yan, "Kalman Filtering Attention for User Behavior Modeling
in CTR Prediction" (JD.com, NeurIPS 2020, arXiv 2010.00985).

The paper reads the weighted pooling of attention as a maximum-a-posteriori estimate of the
user's interest ``v_q`` under the current query ``q``. A Gaussian *global prior*
``N(mu_q, sigma_q^2 I)`` — what all users want under ``q`` — is combined with the behaviours,
each a *sensor* ``k_t`` (the query under which the behaviour happened) observing ``v_q`` through
its value ``v_t ~ N(v_q, sigma_t^2 I)``. The closed form (**KFAtt-base**) is

    v_hat = (mu_q / sigma_q^2 + sum_t v_t / sigma_t^2) / (1 / sigma_q^2 + sum_t 1 / sigma_t^2),

with ``1 / sigma_t^2 = exp(q^T W_Q W_K^T k_t)`` (an attention score) and ``mu_q``,
``1 / sigma_q^2`` from ``q`` through two-layer MLPs. With no relevant behaviour every
``sigma_t`` is large and the estimate falls back to the prior: the user is hunting a *new
demand*. **KFAtt-freq** (frequency capping) treats only the *distinct* sensors ``k_m`` as
sensors and the ``n_m`` behaviours under one sensor as repeated measurements: a systematic error
``sigma_m^2`` (distance of ``k_m`` from ``q``, the attention score as above) plus a random
error ``sigma'_m^2`` (a two-layer MLP of ``k_m``) that repetition averages away:

    v_hat = (mu_q / sigma_q^2 + sum_m w_m vbar_m) / (1 / sigma_q^2 + sum_m w_m),
    w_m   = 1 / (sigma_m^2 + sigma'_m^2 / n_m),   vbar_m = mean of the n_m values,

so a sensor's weight grows with its frequency but is capped at ``1 / sigma_m^2``.

What is implemented (:class:`KalmanFilteringAttention`, :class:`KFAtt`, registry name
``kfatt``): exactly the two estimators above, computed in log space as a softmax over
``[prior, sensors]`` (the same quantity, numerically stable; ``log w_m`` via ``logaddexp``).
Duplicate sensors are merged with a ``[B, L, L]`` equality matrix (no Python loop). Mapping to
this codebase's batch: the query ``q`` is the query's category path plus the candidate item's
leaf category; a behaviour's sensor ``k_t`` is its leaf category (the logs keep no query text
per behaviour — this is the paper's own Amazon-benchmark mapping, where ``q`` and ``k`` are
categories and ``v`` the reviewed item); ``v_t`` is the behaviour embedding (item, category,
kind, age). ``freq_key="item"`` caps repeats of the same item instead of the same category.

Simplifications, stated honestly: the production variant KFAtt-trans (a transformer encoder
over sessions before a multi-head KFAtt decoder) is not implemented — one head, no encoder. The
attention score is scaled by ``1 / sqrt(d)`` as in dot-product attention.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import (
    TASKS,
    FeatureSpec,
    RankingBatch,
    RankingModel,
    TaskOutputs,
    funnel_from_conditionals,
)
from shopsearch.ranking.models.layers import (
    FeatureEmbedder,
    InputFold,
    expert_block,
    mlp,
    shared_rows,
)
from shopsearch.ranking.registry import RANKING_MODELS

#: What KFAtt-freq merges: behaviours of the same leaf category or of the same item.
FREQ_KEYS = ("category", "item")


def merge_duplicates(keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Group the behaviours of each row by sensor id.

    Args:
        keys: long ``[B, L]`` sensor id of each behaviour (category or item id).
        mask: bool ``[B, L]`` valid behaviours.

    Returns:
        ``(average [B, L, L], counts [B, L], first [B, L])``: ``average @ x`` gives, at each
        behaviour, the mean of ``x`` over the behaviours of the same sensor; ``counts`` how
        many behaviours that sensor has; ``first`` marks the first behaviour of each distinct
        sensor (where the merged sensor is read).
    """
    same = (keys.unsqueeze(2) == keys.unsqueeze(1)) & mask.unsqueeze(2) & mask.unsqueeze(1)
    counts = same.sum(-1)
    earlier = torch.ones(keys.shape[1], keys.shape[1], dtype=torch.bool, device=keys.device)
    first = mask & ~(same & earlier.tril(-1)).any(-1)
    average = same.to(torch.float32) / counts.clamp_min(1).unsqueeze(-1).to(torch.float32)
    return average, counts, first


def _neg_logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """``-logaddexp(a, b)`` as ``-max(a, b) - log1p(exp(-|a - b|))`` (faster on CPU for the
    small broadcast shapes here; the same function)."""
    return -torch.maximum(a, b) - torch.log1p(torch.exp(-(a - b).abs()))


class KalmanFilteringAttention(nn.Module):
    """MAP estimate of the user's interest from a global prior and behaviour sensors.

    Args:
        query_dim: width of the query input.
        key_dim: width of the sensor (key) input.
        value_dim: width of the behaviour (value) input.
        embed_dim: width of the attention space and of the estimate.
        hidden: width of the two-layer MLPs (prior mean, prior precision, random error).
        freq_cap: KFAtt-freq (merge behaviours of one sensor) instead of KFAtt-base.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        embed_dim: int,
        hidden: int,
        *,
        freq_cap: bool,
    ) -> None:
        super().__init__()
        self.freq_cap = freq_cap
        self.embed_dim = embed_dim
        self.query = nn.Linear(query_dim, embed_dim, bias=False)
        self.key = nn.Linear(key_dim, embed_dim, bias=False)
        self.value = nn.Linear(value_dim, embed_dim)
        self.prior_mean = mlp([query_dim, hidden, embed_dim])
        self.prior_log_precision = mlp([query_dim, hidden, 1])
        self.random_log_var = mlp([key_dim, hidden, 1])

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, sensor_ids: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``([B, embed_dim] estimate, [B, embed_dim] prior mean)``.

        Args:
            query: ``[B, query_dim]`` the current query.
            keys: ``[B, L, key_dim]`` each behaviour's sensor; equal for equal ``sensor_ids``.
            values: ``[B, L, value_dim]`` each behaviour.
            sensor_ids: long ``[B, L]`` sensor id of each behaviour (merged when capping).
            mask: bool ``[B, L]`` valid behaviours.

        ``keys``, ``values``, ``sensor_ids`` and ``mask`` may instead have one row (``[1, L,
        ...]``): one behaviour sequence shared by every row of ``query`` (a served request),
        whose per-behaviour terms are then computed once.
        """
        q = self.query(query)
        # A served request: one behaviour sequence for every row (``[1, L, ...]`` parts
        # broadcast over the batch). Everything per behaviour is then computed once.
        one = keys.shape[0] == 1 and query.shape[0] > 1
        v = self.value(values)
        if self.freq_cap:
            average, counts, sensors = merge_duplicates(sensor_ids, mask)
            v = average @ v  # keys are equal within a sensor: no need to average them
        else:
            sensors = mask
        sensor_keys = self.key(keys)
        # log(1 / sigma_m^2): the attention score of the sensor for the query.
        if one:
            log_system_precision = q @ sensor_keys[0].T
        else:
            log_system_precision = (sensor_keys @ q.unsqueeze(-1)).squeeze(-1)
        log_system_precision = log_system_precision / math.sqrt(self.embed_dim)
        if self.freq_cap:
            # log w_m = -log(sigma_m^2 + sigma'_m^2 / n_m)
            log_random_var = self.random_log_var(keys).squeeze(-1)
            log_repeats = counts.clamp_min(1).to(q.dtype).log()
            log_weight = _neg_logaddexp(-log_system_precision, log_random_var - log_repeats)
        else:
            log_weight = log_system_precision
        sensor_logits = log_weight.masked_fill(~sensors, -1e9)
        prior_logit = self.prior_log_precision(query)
        weights = torch.softmax(torch.cat([prior_logit, sensor_logits], dim=-1), dim=-1)
        mean = self.prior_mean(query)
        if one:
            estimate = weights[:, :1] * mean + weights[:, 1:] @ v[0]
        else:
            estimate = weights[:, :1] * mean + (weights[:, 1:].unsqueeze(-1) * v).sum(1)
        return estimate, mean


@RANKING_MODELS.register()
class KFAtt(RankingModel):
    """Ranking model whose user interest is the Kalman filtering attention estimate.

    Args:
        spec: feature shapes and vocabularies.
        embed_dim: embedding width.
        hidden: width of the MLPs.
        freq_cap: use KFAtt-freq (frequency capping) rather than KFAtt-base.
        freq_key: what makes behaviours "the same sensor": ``"category"`` (as in the paper's
            category-keyed benchmark) or ``"item"``.
        use_position: embed the logged position as an input (off by default: position bias
            is handled by :mod:`shopsearch.ranking.position_bias`).
    """

    name: ClassVar[str] = "kfatt"
    config_keys: ClassVar[tuple[str, ...]] = (
        "embed_dim",
        "hidden",
        "freq_cap",
        "freq_key",
        "use_position",
    )

    def __init__(
        self,
        spec: FeatureSpec,
        *,
        embed_dim: int = 16,
        hidden: int = 64,
        freq_cap: bool = True,
        freq_key: str = "category",
        use_position: bool = False,
    ) -> None:
        super().__init__(spec)
        if freq_key not in FREQ_KEYS:
            raise InvalidInputError(
                f"freq_key={freq_key!r} is not one of {FREQ_KEYS}; use 'category' or 'item'"
            )
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.freq_cap = freq_cap
        self.freq_key = freq_key
        self.use_position = use_position
        self.embedder = FeatureEmbedder(spec, embed_dim, use_position=use_position)
        query_dim = (spec.category_depth + 1) * embed_dim
        self.attention = KalmanFilteringAttention(
            query_dim, embed_dim, embed_dim, embed_dim, hidden // 2, freq_cap=freq_cap
        )
        self.bottom = expert_block(self.embedder.output_dim + embed_dim, hidden)
        self.heads = nn.Linear(hidden, len(TASKS))
        self._fold = InputFold()

    def query_vector(self, batch: RankingBatch) -> Tensor:
        """``[B, (depth + 1) * d]`` the query's category path and the candidate's leaf category."""
        categories = self.embedder.category(batch.query_category).reshape(batch.size, -1)
        candidate = self.embedder.category(batch.item_category[:, -1])
        return torch.cat([categories, candidate], dim=-1)

    def interest(self, batch: RankingBatch) -> tuple[Tensor, Tensor]:
        """``([B, d] KF estimate, [B, d] global prior mean)`` of the user's interest."""
        query = self.query_vector(batch)
        parts: tuple[Tensor, ...] = (
            batch.seq_items,
            batch.seq_categories,
            batch.seq_kinds,
            batch.seq_age,
        )
        if shared_rows(*parts):  # one sequence shared by every row: its terms once
            parts = tuple(t[:1] for t in parts)
        items, categories, kinds, age = parts
        if self.freq_key == "item":
            sensor_ids = items
            keys = self.embedder.item(items) + self.embedder.category(categories)
        else:
            sensor_ids = categories
            keys = self.embedder.category(categories)
        result: tuple[Tensor, Tensor] = self.attention(
            query,
            keys,
            self.embedder.embed_sequence(items, categories, kinds, age),
            sensor_ids,
            kinds > 0,
        )
        return result

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities from the features and the KF interest estimate."""
        estimate, _ = self.interest(batch)
        if InputFold.usable(self):  # the bottom's first layer as one fold
            first: nn.Linear = self.bottom[0]  # type: ignore[assignment]
            layer = first.weight, first.bias
            folded = self._fold(self.embedder, layer, lambda: [layer], batch, extra=estimate)
            hidden = self.bottom[1:](folded)
        else:
            hidden = self.bottom(torch.cat([self.embedder(batch), estimate], dim=-1))
        heads = torch.sigmoid(self.heads(hidden))
        return funnel_from_conditionals(heads[:, 0], heads[:, 1], heads[:, 2])


__all__ = ["FREQ_KEYS", "KFAtt", "KalmanFilteringAttention", "merge_duplicates"]
