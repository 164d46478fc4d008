"""Adversarial mixture of experts gated by the query's categories, with hierarchy constraints.

Paper: Zhuojian Xiao, Yunjiang Jiang, Guoyu Tang, Lin Liu, Sulong Xu, Yun Xiao, Weipeng Yan,
"Adversarial Mixture Of Experts with Category Hierarchy Soft Constraint" (JD.com, arXiv
2007.12349, ICDE 2021).

What is implemented (:class:`CategoryMoE`, registry name ``category-moe``):

* **Top-k MoE gated by the query category only.** The gate network reads nothing but the
  embedding of the query's (deepest known) category id and outputs expert logits; the top
  ``top_k`` experts are kept and their softmax weights renormalised. Experts read all impression
  features; each outputs three task logits (click, cart|click, purchase|cart), mixed by the gate
  and chained with :func:`~shopsearch.ranking.base.funnel_from_conditionals`.
* **Adversarial regulariser** (:func:`adversarial_disagreement`): for every impression one
  expert the gate did *not* activate is drawn at random and pushed to disagree with the
  activated ones — the loss subtracts ``adversarial_weight`` times the mean squared difference
  between its task probabilities and each activated expert's. Probabilities are bounded, so
  maximising the disagreement cannot diverge.
* **Hierarchy soft constraint** (HSC, :func:`hierarchy_soft_constraint`): an additional gate
  reads the query's *top-level* category (``hsc_level``, root by default) and the squared L2
  distance between its output and the main gate's weights is penalised (``hierarchy_weight``).
  All leaves under one parent are pulled toward the same target, so sibling categories choose
  similar experts and small categories borrow data from their siblings.

Simplifications, stated honestly: the main gate's *dense* softmax (before top-k) is aligned with
the additional gate, so every expert logit receives the constraint's gradient; the paper's
gate may also read category features beyond the id, here the id embedding is its only input.
"""

from __future__ import annotations

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
    batched_expert_parameters,
    batched_experts,
    mlp,
)
from shopsearch.ranking.registry import RANKING_MODELS


def deepest_known(path: Tensor) -> Tensor:
    """``[B]`` the last non-zero id of each category path ``[B, depth]`` (0 if none is known)."""
    depth = path.shape[1]
    levels = torch.arange(1, depth + 1, device=path.device).expand_as(path)
    last = (levels * (path > 0)).argmax(dim=1)
    return path.gather(1, last.unsqueeze(1)).squeeze(1)


def hierarchy_soft_constraint(gate: Tensor, parent_gate: Tensor, known: Tensor) -> Tensor:
    """Mean squared L2 distance between each impression's gate and its parent-level gate.

    Args:
        gate: ``[B, n_experts]`` the main gate's distribution (from the query category).
        parent_gate: ``[B, n_experts]`` the additional gate's (from the top-level category).
        known: bool ``[B]`` impressions whose query category and top-level category are known.
    """
    distance = (gate - parent_gate).square().sum(-1) * known.to(gate.dtype)
    return distance.sum() / known.sum().clamp_min(1).to(gate.dtype)


def adversarial_disagreement(
    expert_probabilities: Tensor, selected: Tensor, adversary: Tensor
) -> Tensor:
    """Mean squared difference between the activated experts and the adversary experts.

    Args:
        expert_probabilities: ``[B, n_experts, n_tasks]`` each expert's task probabilities.
        selected: bool ``[B, n_experts]`` experts the gate activated.
        adversary: bool ``[B, n_experts]`` unselected experts that must disagree with them.
    """
    difference = expert_probabilities.unsqueeze(2) - expert_probabilities.unsqueeze(1)
    squared = difference.square().mean(-1)  # [B, n_experts, n_experts]
    pairs = (selected.unsqueeze(2) & adversary.unsqueeze(1)).to(squared.dtype)
    return (squared * pairs).sum() / pairs.sum().clamp_min(1.0)


def sample_adversary(selected: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """bool ``[B, n_experts]``: one expert drawn uniformly among each row's unselected ones."""
    unselected = (~selected).to(torch.float32)
    rows_with_choice = unselected.sum(-1) > 0
    draw = torch.multinomial(unselected.clamp_min(1e-12), 1, generator=generator)
    adversary = torch.zeros_like(selected).scatter(1, draw, True)
    return adversary & ~selected & rows_with_choice.unsqueeze(1)


@RANKING_MODELS.register()
class CategoryMoE(RankingModel):
    """MoE gated by the query's category, adversarial experts, category-hierarchy soft constraint.

    Args:
        spec: feature shapes and vocabularies.
        embed_dim: embedding width (features and gate embeddings).
        hidden: width of each expert.
        n_experts: number of experts.
        top_k: experts kept per impression by the gate.
        adversarial_weight: weight of the (subtracted) expert disagreement.
        hierarchy_weight: weight of the hierarchy soft constraint.
        hsc_level: the category level the additional (HSC) gate reads (0 = top level).
        use_position: embed the logged position as an input (off by default: position bias
            is handled by :mod:`shopsearch.ranking.position_bias`).
    """

    name: ClassVar[str] = "category-moe"
    config_keys: ClassVar[tuple[str, ...]] = (
        "embed_dim",
        "hidden",
        "n_experts",
        "top_k",
        "adversarial_weight",
        "hierarchy_weight",
        "hsc_level",
        "use_position",
    )

    def __init__(
        self,
        spec: FeatureSpec,
        *,
        embed_dim: int = 16,
        hidden: int = 64,
        n_experts: int = 4,
        top_k: int = 2,
        adversarial_weight: float = 0.05,
        hierarchy_weight: float = 0.1,
        hsc_level: int = 0,
        use_position: bool = False,
    ) -> None:
        super().__init__(spec)
        if not 1 <= top_k <= n_experts:
            raise InvalidInputError(
                f"top_k={top_k} is outside 1..n_experts={n_experts}; use 1 <= top_k <= n_experts"
            )
        if not 0 <= hsc_level < spec.category_depth:
            raise InvalidInputError(
                f"hsc_level={hsc_level} is outside the category path of depth "
                f"{spec.category_depth}; use 0 <= hsc_level < {spec.category_depth}"
            )
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.n_experts = n_experts
        self.top_k = top_k
        self.adversarial_weight = adversarial_weight
        self.hierarchy_weight = hierarchy_weight
        self.hsc_level = hsc_level
        self.use_position = use_position
        self.embedder = FeatureEmbedder(spec, embed_dim, use_position=use_position)
        self.gate_embedding = nn.Embedding(max(1, spec.n_categories), embed_dim)
        self.gate_net = mlp([embed_dim, hidden // 2, n_experts])
        self.parent_gate_embedding = nn.Embedding(max(1, spec.n_categories), embed_dim)
        self.parent_gate_net = mlp([embed_dim, hidden // 2, n_experts])
        fan_in = self.embedder.output_dim
        n_tasks = len(TASKS)
        self.expert_w1, self.expert_b1, self.expert_w2, self.expert_b2 = batched_expert_parameters(
            n_experts, fan_in, hidden, n_tasks
        )

    def category_gate_logits(self, categories: Tensor) -> Tensor:
        """``[..., n_experts]`` gate logits of category ids of any shape."""
        logits: Tensor = self.gate_net(self.gate_embedding(categories))
        return logits

    def gate_logits(self, batch: RankingBatch) -> Tensor:
        """``[B, n_experts]`` the main gate's logits, from the query category alone."""
        return self.category_gate_logits(deepest_known(batch.query_category))

    def gate(self, batch: RankingBatch) -> tuple[Tensor, Tensor]:
        """``([B, n_experts] sparse gate weights, bool [B, n_experts] selected experts)``."""
        logits = self.gate_logits(batch)
        top = logits.topk(self.top_k, dim=-1).indices
        selected = torch.zeros_like(logits, dtype=torch.bool).scatter(1, top, True)
        weights = torch.softmax(logits.masked_fill(~selected, -1e9), dim=-1)
        return weights, selected

    def expert_logits(self, features: Tensor) -> Tensor:
        """``[B, n_experts, n_tasks]`` every expert's task logits."""
        logits = batched_experts(
            features, self.expert_w1, self.expert_b1, self.expert_w2, self.expert_b2
        )
        return logits.transpose(0, 1)

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities from the category-gated mixture of experts."""
        experts = self.expert_logits(self.embedder(batch))
        weights, selected = self.gate(batch)
        mixed = torch.sigmoid((weights.unsqueeze(-1) * experts).sum(1))
        outputs = funnel_from_conditionals(mixed[:, 0], mixed[:, 1], mixed[:, 2])
        outputs.extras["gate"] = weights
        if self.training:
            outputs.extras["expert_probabilities"] = torch.sigmoid(experts)
            outputs.extras["selected"] = selected
            outputs.extras["adversary"] = sample_adversary(selected)
        return outputs

    def parent_gate(self, batch: RankingBatch) -> Tensor:
        """``[B, n_experts]`` the additional gate's distribution, from the top-level category."""
        parent = batch.query_category[:, self.hsc_level]
        logits: Tensor = self.parent_gate_net(self.parent_gate_embedding(parent))
        return torch.softmax(logits, dim=-1)

    def hierarchy_penalty(self, batch: RankingBatch) -> Tensor:
        """The hierarchy soft constraint: main gate vs the top-level category's gate."""
        path = batch.query_category
        known = (path[:, self.hsc_level] > 0) & (deepest_known(path) > 0)
        gate = torch.softmax(self.gate_logits(batch), dim=-1)
        return hierarchy_soft_constraint(gate, self.parent_gate(batch), known)

    def extra_loss(self, batch: RankingBatch, outputs: TaskOutputs) -> Tensor:
        """``hierarchy_weight * constraint - adversarial_weight * disagreement``."""
        total = self.hierarchy_weight * self.hierarchy_penalty(batch)
        if "expert_probabilities" in outputs.extras:
            disagreement = adversarial_disagreement(
                outputs.extras["expert_probabilities"],
                outputs.extras["selected"],
                outputs.extras["adversary"],
            )
            total = total - self.adversarial_weight * disagreement
        return total


__all__ = [
    "CategoryMoE",
    "adversarial_disagreement",
    "deepest_known",
    "hierarchy_soft_constraint",
    "sample_adversary",
]
