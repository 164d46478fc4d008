"""Multi-task baselines over one shared feature embedding.

=================  ===========  =================================================================
class              ``name``     method
=================  ===========  =================================================================
:class:`DNN`       ``dnn``      shared-bottom MLP with three task heads (Caruana, "Multitask
                                learning", 1997); each head is an unconditional probability
:class:`ESMM`      ``esmm``     Entire Space Multi-task Model (Ma et al., SIGIR 2018): CTR, CVR
                                (and here cart) towers chained over the entire impression space
                                ``p(click) * p(cart | click) * p(buy | cart)``
:class:`MMoE`      ``mmoe``     Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): shared
                                experts, one softmax gate per task
:class:`PLE`       ``ple``      Progressive Layered Extraction (Tang et al., RecSys 2020):
                                customised gate control with shared and task-specific experts,
                                stacked in ``levels`` levels
=================  ===========  =================================================================

Inputs are embedded by :class:`~shopsearch.ranking.models.layers.FeatureEmbedder` (dense
features, categorical ids, item, category paths, domain) plus a mean-pooled behaviour sequence.
Widths are small so 200 candidates score in well under 2 ms on one core.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from shopsearch.ranking.base import (
    TASKS,
    FeatureSpec,
    RankingBatch,
    RankingModel,
    TaskOutputs,
    funnel_from_conditionals,
)
from shopsearch.ranking.models.layers import FeatureEmbedder, expert_block, mlp, task_towers


class _Inputs(nn.Module):
    """Embedded fields plus the masked mean of the behaviour sequence."""

    def __init__(self, spec: FeatureSpec, embed_dim: int) -> None:
        super().__init__()
        self.embedder = FeatureEmbedder(spec, embed_dim, use_position=False)
        self.output_dim = self.embedder.output_dim + embed_dim

    def forward(self, batch: RankingBatch) -> Tensor:
        return torch.cat([self.embedder(batch), self.embedder.sequence_mean(batch)], dim=-1)


def _heads_to_outputs(logits: list[Tensor], chain: bool) -> TaskOutputs:
    probs = [torch.sigmoid(logit.squeeze(-1)) for logit in logits]
    if chain:
        return funnel_from_conditionals(*probs)
    return TaskOutputs(p_click=probs[0], p_cart=probs[1], p_purchase=probs[2])


class DNN(RankingModel):
    """Shared-bottom MLP with one head per task (unconditional probabilities by default).

    Args:
        spec: the feature spec.
        embed_dim: embedding width.
        hidden: widths of the shared MLP.
        chain: read the heads as conditionals chained through the funnel instead.
    """

    name: ClassVar[str] = "dnn"
    config_keys: ClassVar[tuple[str, ...]] = ("embed_dim", "hidden", "chain")

    def __init__(
        self,
        spec: FeatureSpec,
        embed_dim: int = 16,
        hidden: tuple[int, ...] = (128, 64),
        chain: bool = False,
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.hidden, self.chain = embed_dim, tuple(hidden), chain
        self.inputs = _Inputs(spec, embed_dim)
        self.bottom = mlp([self.inputs.output_dim, *self.hidden], last_activation=True)
        self.heads = nn.ModuleList(nn.Linear(self.hidden[-1], 1) for _ in TASKS)

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities of each impression."""
        shared = self.bottom(self.inputs(batch))
        return _heads_to_outputs([head(shared) for head in self.heads], self.chain)


class ESMM(RankingModel):
    """ESMM: one tower per funnel step over shared embeddings, chained in the entire space.

    Args:
        spec: the feature spec.
        embed_dim: embedding width (shared by the towers, as in the paper).
        hidden: widths of each tower.
    """

    name: ClassVar[str] = "esmm"
    config_keys: ClassVar[tuple[str, ...]] = ("embed_dim", "hidden")

    def __init__(
        self, spec: FeatureSpec, embed_dim: int = 16, hidden: tuple[int, ...] = (128, 64)
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.hidden = embed_dim, tuple(hidden)
        self.inputs = _Inputs(spec, embed_dim)
        self.towers = nn.ModuleList(mlp([self.inputs.output_dim, *self.hidden, 1]) for _ in TASKS)

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """``p(click)``, ``p(click) p(cart|click)``, ``... p(buy|cart)``."""
        x = self.inputs(batch)
        return _heads_to_outputs([tower(x) for tower in self.towers], chain=True)


def _gate_mix(experts: Tensor, gate: nn.Module, x: Tensor) -> Tensor:
    """``experts [B, E, d]`` mixed by ``softmax(gate(x)) [B, E]``."""
    weights = torch.softmax(gate(x), dim=-1).unsqueeze(-1)
    return (experts * weights).sum(dim=1)


class MMoE(RankingModel):
    """MMoE: shared experts, a softmax gate and a tower per task.

    Args:
        spec: the feature spec.
        embed_dim: embedding width.
        n_experts: number of shared experts.
        expert_dim: output width of each expert (one hidden layer of twice that width).
        tower_dim: hidden width of each task tower.
        chain: read the towers as conditionals chained through the funnel.
    """

    name: ClassVar[str] = "mmoe"
    config_keys: ClassVar[tuple[str, ...]] = (
        "embed_dim",
        "n_experts",
        "expert_dim",
        "tower_dim",
        "chain",
    )

    def __init__(
        self,
        spec: FeatureSpec,
        embed_dim: int = 16,
        n_experts: int = 4,
        expert_dim: int = 64,
        tower_dim: int = 32,
        chain: bool = False,
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.n_experts = embed_dim, n_experts
        self.expert_dim, self.tower_dim, self.chain = expert_dim, tower_dim, chain
        self.inputs = _Inputs(spec, embed_dim)
        width = self.inputs.output_dim
        self.experts = nn.ModuleList(expert_block(width, expert_dim) for _ in range(n_experts))
        self.gates = nn.ModuleList(nn.Linear(width, n_experts) for _ in TASKS)
        self.towers = task_towers(expert_dim, tower_dim)

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities of each impression."""
        x = self.inputs(batch)
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)
        logits = [
            tower(_gate_mix(experts, gate, x))
            for gate, tower in zip(self.gates, self.towers, strict=True)
        ]
        return _heads_to_outputs(logits, self.chain)


class _CGCLevel(nn.Module):
    """One customised gate control level: task-specific + shared experts and their gates."""

    def __init__(
        self, width: int, n_tasks: int, n_specific: int, n_shared: int, dim: int, gate_shared: bool
    ) -> None:
        super().__init__()
        self.n_tasks, self.n_specific, self.n_shared = n_tasks, n_specific, n_shared

        def expert() -> nn.Module:
            return expert_block(width, dim)

        self.specific = nn.ModuleList(
            nn.ModuleList(expert() for _ in range(n_specific)) for _ in range(n_tasks)
        )
        self.shared = nn.ModuleList(expert() for _ in range(n_shared))
        self.task_gates = nn.ModuleList(
            nn.Linear(width, n_specific + n_shared) for _ in range(n_tasks)
        )
        self.shared_gate = (
            nn.Linear(width, n_tasks * n_specific + n_shared) if gate_shared else None
        )

    def forward(
        self, task_inputs: list[Tensor], shared_input: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        shared = [expert(shared_input) for expert in self.shared]
        outputs, every_specific = [], []
        for t in range(self.n_tasks):
            experts: nn.ModuleList = self.specific[t]  # type: ignore[assignment]
            own = [expert(task_inputs[t]) for expert in experts]
            every_specific.extend(own)
            stacked = torch.stack(own + shared, dim=1)
            outputs.append(_gate_mix(stacked, self.task_gates[t], task_inputs[t]))
        if self.shared_gate is None:
            return outputs, shared_input
        stacked = torch.stack(every_specific + shared, dim=1)
        return outputs, _gate_mix(stacked, self.shared_gate, shared_input)


class PLE(RankingModel):
    """PLE: ``levels`` stacked CGC levels, then a tower per task.

    Args:
        spec: the feature spec.
        embed_dim: embedding width.
        levels: number of extraction levels (1 = CGC).
        n_specific: task-specific experts per task and level.
        n_shared: shared experts per level.
        expert_dim: output width of each expert.
        tower_dim: hidden width of each task tower.
        chain: read the towers as conditionals chained through the funnel.
    """

    name: ClassVar[str] = "ple"
    config_keys: ClassVar[tuple[str, ...]] = (
        "embed_dim",
        "levels",
        "n_specific",
        "n_shared",
        "expert_dim",
        "tower_dim",
        "chain",
    )

    def __init__(
        self,
        spec: FeatureSpec,
        embed_dim: int = 16,
        levels: int = 2,
        n_specific: int = 1,
        n_shared: int = 2,
        expert_dim: int = 32,
        tower_dim: int = 32,
        chain: bool = False,
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.levels = embed_dim, levels
        self.n_specific, self.n_shared = n_specific, n_shared
        self.expert_dim, self.tower_dim, self.chain = expert_dim, tower_dim, chain
        self.inputs = _Inputs(spec, embed_dim)
        widths = [self.inputs.output_dim] + [expert_dim] * (levels - 1)
        self.extraction = nn.ModuleList(
            _CGCLevel(width, len(TASKS), n_specific, n_shared, expert_dim, level < levels - 1)
            for level, width in enumerate(widths)
        )
        self.towers = task_towers(expert_dim, tower_dim)

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities of each impression."""
        x = self.inputs(batch)
        task_inputs, shared = [x] * len(TASKS), x
        for level in self.extraction:
            task_inputs, shared = level(task_inputs, shared)
        logits = [tower(h) for tower, h in zip(self.towers, task_inputs, strict=True)]
        return _heads_to_outputs(logits, self.chain)


BASELINE_MODELS: dict[str, type[RankingModel]] = {m.name: m for m in (DNN, ESMM, MMoE, PLE)}

__all__ = ["BASELINE_MODELS", "DNN", "ESMM", "PLE", "MMoE"]
