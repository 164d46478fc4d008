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

from dataclasses import dataclass
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
from shopsearch.ranking.models.layers import (
    EmbeddedInputs,
    FeatureEmbedder,
    InputFold,
    ParameterCache,
    expert_block,
    gate_softmax,
    mlp,
    stack_linears,
    task_towers,
)
from shopsearch.ranking.registry import RANKING_MODELS


def _heads_to_outputs(logits: list[Tensor], chain: bool) -> TaskOutputs:
    probs = [torch.sigmoid(logit.squeeze(-1)) for logit in logits]
    if chain:
        return funnel_from_conditionals(*probs)
    return TaskOutputs(p_click=probs[0], p_cart=probs[1], p_purchase=probs[2])


@RANKING_MODELS.register()
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
        self.inputs = EmbeddedInputs(spec, embed_dim)
        self.bottom = mlp([self.inputs.output_dim, *self.hidden], last_activation=True)
        self.heads = nn.ModuleList(nn.Linear(self.hidden[-1], 1) for _ in TASKS)

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities of each impression."""
        shared = self.bottom(self.inputs(batch))
        return _heads_to_outputs([head(shared) for head in self.heads], self.chain)


@RANKING_MODELS.register()
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
        self.inputs = EmbeddedInputs(spec, embed_dim)
        self.towers = nn.ModuleList(mlp([self.inputs.output_dim, *self.hidden, 1]) for _ in TASKS)

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """``p(click)``, ``p(click) p(cart|click)``, ``... p(buy|cart)``."""
        x = self.inputs(batch)
        return _heads_to_outputs([tower(x) for tower in self.towers], chain=True)


def _gate_mix(experts: Tensor, gate: nn.Module, x: Tensor) -> Tensor:
    """``experts [B, E, d]`` mixed by ``softmax(gate(x)) [B, E]``."""
    weights = torch.softmax(gate(x), dim=-1).unsqueeze(-1)
    return (experts * weights).sum(dim=1)


@RANKING_MODELS.register()
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
        self.inputs = EmbeddedInputs(spec, embed_dim)
        width = self.inputs.output_dim
        self.experts = nn.ModuleList(expert_block(width, expert_dim) for _ in range(n_experts))
        self.gates = nn.ModuleList(nn.Linear(width, n_experts) for _ in TASKS)
        self.towers = task_towers(expert_dim, tower_dim)
        self._fold = InputFold()
        self._stacks = ParameterCache()

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities of each impression."""
        if InputFold.usable(self):
            return self._fast_forward(batch)
        x = self.inputs(batch)
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)
        logits = [
            tower(_gate_mix(experts, gate, x))
            for gate, tower in zip(self.gates, self.towers, strict=True)
        ]
        return _heads_to_outputs(logits, self.chain)

    def _fast_forward(self, batch: RankingBatch) -> TaskOutputs:
        """:meth:`forward` at inference: every expert's first layer and every gate in one
        :class:`InputFold`, the experts' second layers as one batched matmul."""
        stacks, towers = self._stacks.get(self, self._inference_stacks)
        embedder = self.inputs.embedder
        out = self._fold(
            embedder,
            stacks.fold_params,
            lambda: stacks.fold_layers,
            batch,
            extra=embedder.sequence_mean(batch),
        )
        size, n_experts, width = batch.size, self.n_experts, 2 * self.expert_dim
        hidden = torch.relu(out[:, : n_experts * width].view(size, n_experts, width))
        experts = torch.relu(torch.baddbmm(stacks.b2, hidden.transpose(0, 1), stacks.w2))
        gates = gate_softmax(out[:, n_experts * width :].view(size, len(TASKS), n_experts))
        mixed = torch.bmm(gates, experts.transpose(0, 1))  # [B, tasks, d]
        return _heads_to_outputs(towers.logits(mixed.transpose(0, 1)), self.chain)

    def _inference_stacks(self) -> tuple[_FoldStacks, _TowerStacks]:
        first: list[nn.Linear] = [expert[0] for expert in self.experts]  # type: ignore[index]
        second: list[nn.Module] = [expert[2] for expert in self.experts]  # type: ignore[index]
        gates: list[nn.Linear] = list(self.gates)  # type: ignore[arg-type]
        return _FoldStacks.of(first + gates, second), _TowerStacks.of(self.towers)


@dataclass(frozen=True)
class _TowerStacks:
    """:func:`task_towers` parameters stacked for inference: the hidden layers as one batched
    matmul, the ``hidden -> 1`` output layers as one multiply-and-sum (the towers' sums)."""

    w1: Tensor  # [T, in, h]
    b1: Tensor  # [T, 1, h]
    w2: Tensor  # [T, 1, h]
    b2: Tensor  # [T, 1]

    @classmethod
    def of(cls, towers: nn.ModuleList) -> _TowerStacks:
        w1, b1 = stack_linears([tower[0] for tower in towers])  # type: ignore[index]
        last: list[nn.Linear] = [tower[2] for tower in towers]  # type: ignore[index]
        w2 = torch.stack([layer.weight for layer in last])
        return cls(w1, b1, w2, torch.stack([layer.bias for layer in last]))

    def logits(self, inputs: Tensor) -> list[Tensor]:
        """``[B, 1]`` logits of each tower on its own input (``inputs[t]``, ``[T, B, in]``)."""
        hidden = torch.relu(torch.baddbmm(self.b1, inputs, self.w1))  # [T, B, h]
        logits = (hidden * self.w2).sum(-1) + self.b2  # [T, B]
        return list(logits.unsqueeze(-1).unbind(0))


@dataclass(frozen=True)
class _FoldStacks:
    """Inference parameters of experts whose first layers (and gates) go through an
    :class:`InputFold`: the fold's layers and the experts' second layers stacked."""

    fold_params: list[Tensor]
    fold_layers: list[tuple[Tensor, Tensor]]
    w2: Tensor  # [E, 2d, d]
    b2: Tensor  # [E, 1, d]

    @classmethod
    def of(cls, folded: list[nn.Linear], second: list[nn.Module]) -> _FoldStacks:
        w2, b2 = stack_linears(second)
        params = [t for layer in folded for t in (layer.weight, layer.bias)]
        return cls(params, [(layer.weight, layer.bias) for layer in folded], w2, b2)


@dataclass(frozen=True)
class _LevelStacks:
    """A CGC level's parameters for inference: its folded first layers and stacked second
    layers (``fold``), every expert's first layer stacked (``w1 [E, in, 2d]``, ``b1``) for
    levels above the first, and the task gates stacked (``gate_w [T, in, g]``, ``gate_b``)."""

    fold: _FoldStacks
    w1: Tensor
    b1: Tensor
    gate_w: Tensor
    gate_b: Tensor


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
        # each task's experts' columns among all of the level's (its own, then the shared)
        columns = [
            [t * n_specific + i for i in range(n_specific)]
            + [n_tasks * n_specific + j for j in range(n_shared)]
            for t in range(n_tasks)
        ]
        self._gate_columns = torch.tensor(columns, dtype=torch.long)

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

    def inference_stacks(self) -> _LevelStacks:
        """The level's parameters stacked for :meth:`batched_forward` / :meth:`fast_forward`."""
        experts: list[nn.Sequential] = [e for group in self.specific for e in group]  # type: ignore[attr-defined]
        experts += list(self.shared)  # type: ignore[arg-type]
        first: list[nn.Linear] = [expert[0] for expert in experts]  # type: ignore[misc]
        gates: list[nn.Linear] = list(self.task_gates)  # type: ignore[arg-type]
        if self.shared_gate is not None:
            gates.append(self.shared_gate)
        w1, b1 = stack_linears(first)
        gate_w, gate_b = stack_linears(list(self.task_gates))
        folded = _FoldStacks.of(first + gates, [expert[2] for expert in experts])
        return _LevelStacks(folded, w1, b1, gate_w, gate_b)

    def batched_forward(
        self, task_inputs: list[Tensor], shared_input: Tensor, stacks: _LevelStacks
    ) -> tuple[list[Tensor], Tensor]:
        """:meth:`forward` at inference, every expert of the level in one batched matmul per
        layer and the task gates in one more."""
        inputs = [x for x in task_inputs for _ in range(self.n_specific)]
        stacked = torch.stack(inputs + [shared_input] * self.n_shared)  # [E, B, in]
        hidden = torch.relu(torch.baddbmm(stacks.b1, stacked, stacks.w1))
        fold = stacks.fold
        every = torch.relu(torch.baddbmm(fold.b2, hidden, fold.w2)).transpose(0, 1)
        tasks = stacked[: self.n_tasks] if self.n_specific == 1 else torch.stack(task_inputs)
        logits = torch.baddbmm(stacks.gate_b, tasks, stacks.gate_w).transpose(0, 1)
        outputs = self._mix_tasks(every, gate_softmax(logits))
        if self.shared_gate is None:
            return outputs, shared_input
        weights = gate_softmax(self.shared_gate(shared_input))
        return outputs, (every * weights.unsqueeze(-1)).sum(dim=1)

    def fast_forward(
        self,
        fold: InputFold,
        embedder: FeatureEmbedder,
        batch: RankingBatch,
        extra: Tensor,
        stacks: _LevelStacks,
    ) -> tuple[list[Tensor], Tensor | None]:
        """:meth:`forward` at inference for a first level (every input the embedded batch,
        ``x = cat([embedder(batch), extra])``): every expert's first layer and every gate in
        one :class:`InputFold`, the experts' second layers as one batched matmul. The shared
        output is ``None`` where :meth:`forward` would pass ``x`` through (no shared gate)."""
        folded = stacks.fold
        out = fold(embedder, folded.fold_params, lambda: folded.fold_layers, batch, extra=extra)
        size, n_all, width = batch.size, stacks.w1.shape[0], stacks.w1.shape[2]
        hidden = torch.relu(out[:, : n_all * width].view(size, n_all, width))
        every = torch.relu(torch.baddbmm(folded.b2, hidden.transpose(0, 1), folded.w2))
        every = every.transpose(0, 1)
        col, n_gate = n_all * width, self.n_specific + self.n_shared
        logits = out[:, col : col + self.n_tasks * n_gate].view(size, self.n_tasks, n_gate)
        outputs = self._mix_tasks(every, gate_softmax(logits))
        if self.shared_gate is None:
            return outputs, None
        weights = gate_softmax(out[:, col + self.n_tasks * n_gate :])
        return outputs, (every * weights.unsqueeze(-1)).sum(dim=1)

    def _mix_tasks(self, every: Tensor, weights: Tensor) -> list[Tensor]:
        """Each task's gate mix of its own and the shared experts, as one batched matmul.

        ``every`` is ``[B, E, d]`` (task-specific experts task by task, then the shared ones),
        ``weights`` ``[B, tasks, n_specific + n_shared]`` each task's softmaxed gate; a task's
        weights are placed at its experts' columns of a ``[B, tasks, E]`` matrix, zero at the
        other tasks' experts (exact zeros: the same sums as mixing each task's experts alone).
        """
        size, n_all = every.shape[0], every.shape[1]
        columns = self._gate_columns.expand(size, -1, -1)
        full = every.new_zeros((size, self.n_tasks, n_all)).scatter_(2, columns, weights)
        return list(torch.bmm(full, every).unbind(1))


@RANKING_MODELS.register()
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
        self.inputs = EmbeddedInputs(spec, embed_dim)
        widths = [self.inputs.output_dim] + [expert_dim] * (levels - 1)
        self.extraction = nn.ModuleList(
            _CGCLevel(width, len(TASKS), n_specific, n_shared, expert_dim, level < levels - 1)
            for level, width in enumerate(widths)
        )
        self.towers = task_towers(expert_dim, tower_dim)
        self._fold = InputFold()
        self._stacks = ParameterCache()

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities of each impression."""
        if InputFold.usable(self):
            return self._fast_forward(batch)
        x = self.inputs(batch)
        task_inputs, shared = [x] * len(TASKS), x
        for level in self.extraction:
            task_inputs, shared = level(task_inputs, shared)
        logits = [tower(h) for tower, h in zip(self.towers, task_inputs, strict=True)]
        return _heads_to_outputs(logits, self.chain)

    def _fast_forward(self, batch: RankingBatch) -> TaskOutputs:
        """:meth:`forward` at inference: the first level through an :class:`InputFold`, every
        level's experts, gates and the towers as batched matmuls of cached stacked weights."""
        level_stacks, towers = self._stacks.get(self, self._inference_stacks)
        levels: list[_CGCLevel] = list(self.extraction)  # type: ignore[arg-type]
        embedder = self.inputs.embedder
        extra = embedder.sequence_mean(batch)
        task_inputs, maybe_shared = levels[0].fast_forward(
            self._fold, embedder, batch, extra, level_stacks[0]
        )
        # no shared output only at the last level, after which it is not read
        shared = extra if maybe_shared is None else maybe_shared
        for level, stacks in zip(levels[1:], level_stacks[1:], strict=True):
            task_inputs, shared = level.batched_forward(task_inputs, shared, stacks)
        return _heads_to_outputs(towers.logits(torch.stack(task_inputs)), self.chain)

    def _inference_stacks(self) -> tuple[list[_LevelStacks], _TowerStacks]:
        levels: list[_CGCLevel] = list(self.extraction)  # type: ignore[arg-type]
        return [level.inference_stacks() for level in levels], _TowerStacks.of(self.towers)


__all__ = ["DNN", "ESMM", "PLE", "MMoE"]
