"""AW-MoE: attention-weighted mixture of experts with contrastive learning for long-tail users.

Paper: Juan Gong, Zhenlin Chen, Chaoyi Ma, Zhuojian Xiao, Haonan Wang, Guoyu Tang, Lin Liu,
Sulong Xu, Bo Long, Yunjiang Jiang, "Attention Weighted Mixture of Experts with Contrastive
Learning for Personalized Ranking in E-commerce" (JD.com, arXiv 2306.05011, ICDE 2023).

What is implemented (:class:`AWMoE`, registry name ``aw-moe``):

* **Experts and gate both read the behaviour sequence.** Each expert is an MLP over the
  impression's features plus the user-interest vector (target attention over the sequence).
* **Gate = gate unit + activation unit.** The *gate unit* maps each behaviour embedding
  ``e_j`` to a vector of expert logits ``u_j`` (one per expert); the *activation unit* is
  DIN's target attention, scoring ``[e_j, t, e_j - t, e_j * t]`` for the target item ``t``;
  the gate output is the attention-weighted sum ``g = sum_j a_j u_j`` plus a learned bias
  (which is what a user with no behaviour falls back to), softmaxed over the experts.
* **Random masking** (:func:`random_sequence_mask`): during training every behaviour is
  dropped with probability ``mask_prob``, simulating a long-tail user with a short history.
* **Contrastive loss** (:func:`info_nce`): InfoNCE between the gate outputs of the full and
  the masked view of the same impression (positives) against the other impressions of the
  batch (negatives), symmetrised, temperature ``temperature``, weight ``contrastive_weight``.
  The prediction itself uses the full sequence.

Simplifications, stated honestly: the paper is a single-task CTR model; here the mixed expert
output feeds three conditional towers (click, cart|click, purchase|cart) combined by
:func:`~shopsearch.ranking.base.funnel_from_conditionals`. The gate bias and the use of the
pre-softmax gate logits (L2-normalised) as the contrastive representation are our choices:
this implementation follows the paper's abstract and public summaries; the exact widths, mask
ratio and contrastive temperature of the paper were not available to us and are
hyper-parameters here. In-batch negatives include other candidates of the same request, whose
behaviour sequence is the same (they differ only through the target attention).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from shopsearch.ranking.base import (
    FeatureSpec,
    RankingBatch,
    RankingModel,
    TaskOutputs,
    funnel_from_conditionals,
)
from shopsearch.ranking.models.layers import (
    ActivationUnit,
    FeatureEmbedder,
    InputFold,
    batched_expert_parameters,
    batched_experts,
    masked_softmax,
    mlp,
    shared_rows,
    task_towers,
)
from shopsearch.ranking.registry import RANKING_MODELS


def random_sequence_mask(
    mask: Tensor, prob: float, generator: torch.Generator | None = None
) -> Tensor:
    """``mask`` with each valid behaviour independently dropped with probability ``prob``."""
    keep = torch.rand(mask.shape, generator=generator, device=mask.device) >= prob
    return mask & keep


def info_nce(first: Tensor, second: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE: rows ``i`` of ``first`` and ``second`` are positives, others negatives."""
    a = nn.functional.normalize(first, dim=-1)
    b = nn.functional.normalize(second, dim=-1)
    logits = a @ b.T / temperature
    targets = torch.arange(a.shape[0], device=a.device)
    forward = nn.functional.cross_entropy(logits, targets)
    backward = nn.functional.cross_entropy(logits.T, targets)
    return 0.5 * (forward + backward)


@RANKING_MODELS.register()
class AWMoE(RankingModel):
    """Attention-weighted MoE whose gate reads the behaviour sequence, plus a contrastive loss.

    Args:
        spec: feature shapes and vocabularies.
        embed_dim: embedding width.
        hidden: width of the experts, the activation unit and the towers.
        n_experts: number of experts.
        mask_prob: probability of dropping each behaviour in the masked (long-tail) view.
        contrastive_weight: weight of the InfoNCE loss on the gate outputs.
        temperature: InfoNCE temperature.
        use_position: embed the logged position as an input (off by default: position bias
            is handled by :mod:`shopsearch.ranking.position_bias`).
    """

    name: ClassVar[str] = "aw-moe"
    config_keys: ClassVar[tuple[str, ...]] = (
        "embed_dim",
        "hidden",
        "n_experts",
        "mask_prob",
        "contrastive_weight",
        "temperature",
        "use_position",
    )

    def __init__(
        self,
        spec: FeatureSpec,
        *,
        embed_dim: int = 16,
        hidden: int = 64,
        n_experts: int = 4,
        mask_prob: float = 0.5,
        contrastive_weight: float = 0.1,
        temperature: float = 0.2,
        use_position: bool = False,
    ) -> None:
        super().__init__(spec)
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.n_experts = n_experts
        self.mask_prob = mask_prob
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self.use_position = use_position
        self.embedder = FeatureEmbedder(spec, embed_dim, use_position=use_position)
        self.activation_unit = ActivationUnit(embed_dim, hidden // 2)
        self.gate_unit = mlp([embed_dim, hidden // 2, n_experts])
        self.gate_bias = nn.Parameter(torch.zeros(n_experts))
        expert_in = self.embedder.output_dim + embed_dim
        # All experts as batched weights: [n_experts, in, hidden], [n_experts, hidden, hidden].
        self.expert_w1, self.expert_b1, self.expert_w2, self.expert_b2 = batched_expert_parameters(
            n_experts, expert_in, hidden, hidden
        )
        self.towers = task_towers(hidden, hidden // 2)
        self._fold = InputFold()

    def gate_logits(self, sequence: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``([B, n_experts] gate logits, [B, L] attention)`` for the behaviours in ``mask``."""
        attention = masked_softmax(self.activation_unit(sequence, target), mask)
        if shared_rows(sequence):  # a served request: one sequence for every candidate
            units = self.gate_unit(sequence[:1]).expand(sequence.shape[0], -1, -1)
        else:
            units = self.gate_unit(sequence)
        logits = (attention.unsqueeze(-1) * units).sum(1) + self.gate_bias
        return logits, attention

    def experts(self, features: Tensor) -> Tensor:
        """``[n_experts, B, hidden]`` every expert's output."""
        return torch.relu(
            batched_experts(
                features, self.expert_w1, self.expert_b1, self.expert_w2, self.expert_b2
            )
        )

    def _fast_experts(self, batch: RankingBatch, interest: Tensor) -> Tensor:
        """:meth:`experts` of ``cat([embedder(batch), interest])`` at inference, the first
        layer of every expert as one :class:`InputFold`."""
        w1, b1 = self.expert_w1, self.expert_b1
        hidden = self._fold(
            self.embedder,
            [w1, b1],
            lambda: [(w.T, b[0]) for w, b in zip(w1, b1, strict=True)],
            batch,
            extra=interest,
        )
        size, n_experts = batch.size, self.n_experts
        hidden = torch.relu(hidden.view(size, n_experts, -1)).transpose(0, 1)
        return torch.relu(torch.baddbmm(self.expert_b2, hidden, self.expert_w2))

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities; in training also the full and masked views' gate logits."""
        sequence = self.embedder.sequence(batch)
        target = self.embedder.target(batch)
        logits, attention = self.gate_logits(sequence, target, batch.seq_mask)
        interest = (attention.unsqueeze(-1) * sequence).sum(1)
        if InputFold.usable(self):
            experts = self._fast_experts(batch, interest)
        else:
            experts = self.experts(torch.cat([self.embedder(batch), interest], dim=-1))
        gate = torch.softmax(logits, dim=-1)
        mixed = (experts * gate.T.unsqueeze(-1)).sum(0)  # sum_e gate[b, e] experts[e, b]
        heads = [torch.sigmoid(tower(mixed).squeeze(-1)) for tower in self.towers]
        outputs = funnel_from_conditionals(heads[0], heads[1], heads[2])
        outputs.extras["gate"] = gate
        if self.training and self.contrastive_weight > 0:
            masked = random_sequence_mask(batch.seq_mask, self.mask_prob)
            masked_logits, _ = self.gate_logits(sequence, target, masked)
            outputs.extras["gate_logits"] = logits
            outputs.extras["masked_gate_logits"] = masked_logits
        return outputs

    def extra_loss(self, batch: RankingBatch, outputs: TaskOutputs) -> Tensor:
        """``contrastive_weight`` times InfoNCE between the full and masked gate outputs."""
        if "masked_gate_logits" not in outputs.extras or batch.size < 2:
            return outputs.p_click.new_zeros(())
        contrast = info_nce(
            outputs.extras["gate_logits"], outputs.extras["masked_gate_logits"], self.temperature
        )
        return self.contrastive_weight * contrast

    def masked_view(
        self, batch: RankingBatch, generator: torch.Generator | None = None
    ) -> RankingBatch:
        """``batch`` with behaviours randomly dropped as in training (kinds set to padding)."""
        keep = random_sequence_mask(batch.seq_mask, self.mask_prob, generator)
        return replace(
            batch,
            seq_items=batch.seq_items * keep,
            seq_categories=batch.seq_categories * keep,
            seq_kinds=batch.seq_kinds * keep,
        )


__all__ = ["AWMoE", "info_nce", "random_sequence_mask"]
