"""The ranking stage's contract: a batch of impressions as tensors, a multi-task model, its loss.

Every ranking model (DNN, ESMM, MMoE, PLE, SEQ+MD, AW-MoE, category-MoE, KFAtt ...) takes a
:class:`RankingBatch` and returns :class:`TaskOutputs`: the *unconditional* probabilities of the
funnel over impressions, ``p_click = P(click)``, ``p_cart = P(click, cart)``,
``p_purchase = P(click, cart, purchase)``, so ``p_purchase <= p_cart <= p_click`` is the funnel
order (models that do not enforce it are still scored on it). The default loss is the
impression-weighted binary cross-entropy of each task over the entire impression space (as in
ESMM); a model adds its own regularisers in :meth:`RankingModel.extra_loss`.

A :class:`FeatureSpec` describes the tensors' shapes and vocabularies; the sample builder
(:mod:`shopsearch.ranking.samples`) produces both from the workspace logs.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch
from torch import Tensor, nn

TASKS = ("click", "cart", "purchase")


@dataclass(frozen=True)
class FeatureSpec:
    """Shapes and vocabularies of a :class:`RankingBatch`.

    Attributes:
        dense_names: names of the numeric features, in column order of ``RankingBatch.dense``.
        sparse_names: names of the categorical features, in column order of ``.sparse``.
        sparse_cardinalities: vocabulary size of each categorical feature (id 0 = unknown).
        n_items: vocabulary size of item ids (target and behaviour sequence; 0 = padding).
        n_categories: vocabulary size of category ids at any level (0 = unknown).
        category_depth: levels in a category path (root first).
        n_domains: number of domains (markets).
        seq_len: length of the behaviour sequence (most recent first).
        n_kinds: behaviour kinds + 1 (0 = padding; 1 click, 2 add_to_cart, 3 purchase).
        market_driven: names of dense features that the SEQ+MD market mask treats as
            market-driven (price level, popularity, priors ...); the rest are market-invariant.
    """

    dense_names: tuple[str, ...]
    sparse_names: tuple[str, ...]
    sparse_cardinalities: tuple[int, ...]
    n_items: int
    n_categories: int
    category_depth: int
    n_domains: int
    seq_len: int
    n_kinds: int = 4
    market_driven: tuple[str, ...] = ()


@dataclass
class RankingBatch:
    """Impressions as tensors; row ``i`` of every tensor is the same impression.

    Attributes:
        dense: float ``[B, n_dense]`` standardised numeric features.
        sparse: long ``[B, n_sparse]`` categorical ids.
        item: long ``[B]`` target item id.
        item_category: long ``[B, depth]`` the target item's category path ids.
        query_category: long ``[B, depth]`` the query's category path ids (inferred from logs).
        domain: long ``[B]`` domain id.
        position: long ``[B]`` 1-based logged position (0 when unknown or at serving).
        seq_items: long ``[B, L]`` the user's last behaviours' item ids (0 = padding).
        seq_categories: long ``[B, L]`` their leaf category ids.
        seq_kinds: long ``[B, L]`` their kinds (0 = padding).
        seq_age: float ``[B, L]`` log1p(hours) between each behaviour and the request.
        group: long ``[B]`` request index (impressions of one request share it).
        click, cart, purchase: float ``[B]`` labels (cart and purchase imply click).
        weight: float ``[B]`` per-impression loss weight (inverse propensity, default 1).
    """

    dense: Tensor
    sparse: Tensor
    item: Tensor
    item_category: Tensor
    query_category: Tensor
    domain: Tensor
    position: Tensor
    seq_items: Tensor
    seq_categories: Tensor
    seq_kinds: Tensor
    seq_age: Tensor
    group: Tensor
    click: Tensor
    cart: Tensor
    purchase: Tensor
    weight: Tensor

    def __len__(self) -> int:
        return int(self.item.shape[0])

    @property
    def size(self) -> int:
        """The number of rows, symbolic under ``torch.export`` (``len()`` would fix it to the
        example's: models use this in ``forward``)."""
        size: int = self.item.shape[0]
        return size

    @property
    def seq_mask(self) -> Tensor:
        """bool ``[B, L]``: which sequence slots hold a behaviour."""
        return self.seq_kinds > 0

    def labels(self, task: str) -> Tensor:
        """The label tensor of ``task``."""
        tensor: Tensor = getattr(self, task)
        return tensor

    def index(self, rows: Tensor) -> RankingBatch:
        """The sub-batch of ``rows``."""
        return RankingBatch(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @classmethod
    def concat(cls, batches: Sequence[RankingBatch]) -> RankingBatch:
        """The rows of ``batches`` one after the other (one or more batches)."""
        if len(batches) == 1:
            return batches[0]
        return cls(
            **{f.name: torch.cat([getattr(b, f.name) for b in batches]) for f in fields(cls)}
        )


@dataclass
class TaskOutputs:
    """Unconditional funnel probabilities per impression (each ``[B]``), plus model extras."""

    p_click: Tensor
    p_cart: Tensor
    p_purchase: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    def of(self, task: str) -> Tensor:
        """The probability of ``task``."""
        tensor: Tensor = getattr(self, f"p_{task}")
        return tensor


class RankingModel(nn.Module, metaclass=ABCMeta):
    """Base of every torch ranking model.

    Subclasses set ``name``, list their hyper-parameters in ``config_keys`` (saved with the
    weights), implement :meth:`forward` and may add regularisers in :meth:`extra_loss`.
    """

    name: ClassVar[str]
    config_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.spec = spec

    @abstractmethod
    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities for each impression of ``batch``."""

    def extra_loss(self, batch: RankingBatch, outputs: TaskOutputs) -> Tensor:
        """Model-specific regularisers added to the task losses (default: none)."""
        return outputs.p_click.new_zeros(())

    def loss(
        self,
        batch: RankingBatch,
        outputs: TaskOutputs,
        task_weights: dict[str, float],
        regularise: bool = True,
    ) -> Tensor:
        """Weighted BCE of each task over all impressions, plus :meth:`extra_loss` (left out
        with ``regularise=False``: the task loss that validation compares)."""
        total = outputs.p_click.new_zeros(())
        for task in TASKS:
            probability = outputs.of(task).clamp(1e-7, 1 - 1e-7)
            bce = nn.functional.binary_cross_entropy(
                probability, batch.labels(task), weight=batch.weight, reduction="mean"
            )
            total = total + task_weights.get(task, 1.0) * bce
        return total + self.extra_loss(batch, outputs) if regularise else total

    def get_config(self) -> dict[str, object]:
        """The hyper-parameters named in ``config_keys``."""
        return {key: getattr(self, key) for key in self.config_keys}


def funnel_from_conditionals(
    click: Tensor, cart_given_click: Tensor, buy_given_cart: Tensor
) -> TaskOutputs:
    """Unconditional funnel probabilities from conditional ones (ESMM's entire-space chain)."""
    p_cart = click * cart_given_click
    return TaskOutputs(p_click=click, p_cart=p_cart, p_purchase=p_cart * buy_given_cart)


__all__ = [
    "TASKS",
    "FeatureSpec",
    "RankingBatch",
    "RankingModel",
    "TaskOutputs",
    "funnel_from_conditionals",
]
