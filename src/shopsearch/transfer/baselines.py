"""Multi-domain baselines of the transfer protocol (each a :class:`RankingModel`).

=====================  =================  ==========================================================
class                  ``name``           method
=====================  =================  ==========================================================
:class:`PooledDNN`     ``pooled-dnn``     the ``dnn`` baseline with the domain hidden (every domain
                                          id and the sparse ``domain`` field read as unknown): the
                                          *pooled* and *zero-shot* regimes
:class:`SharedBottom`  ``shared-bottom``  a shared MLP bottom and one tower per (domain, task)
:class:`Star`          ``star``           STAR (Sheng et al., "One model to serve all: star
                                          topology adaptive recommender for multi-domain CTR
                                          prediction", CIKM 2021): every FC layer's weight is the
                                          element-wise product of a shared and a per-domain matrix
                                          (biases add), partitioned normalisation (per-domain
                                          statistics, shared and per-domain scale / shift), and an
                                          auxiliary network on the domain indicator whose logit is
                                          added to the main one
:class:`MMoEDomain`    ``mmoe-domain``    MMoE (Ma et al., KDD 2018) whose softmax gates are per
                                          domain: gate ``(domain, task)`` mixes the shared experts
=====================  =================  ==========================================================

STAR's partitioned normalisation keeps each domain's own statistics, as in the paper: batch
statistics of the domain's rows in training, the domain's moving averages at inference.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
from torch import Tensor, nn

from shopsearch.ranking.base import TASKS, FeatureSpec, RankingBatch, RankingModel, TaskOutputs
from shopsearch.ranking.models.baselines import DNN
from shopsearch.ranking.models.layers import (
    EmbeddedInputs,
    InputFold,
    expert_block,
    gate_softmax,
    mlp,
    stack_linears,
    task_towers,
)
from shopsearch.ranking.registry import RANKING_MODELS
from shopsearch.transfer.layers import DomainLinear, hide_domain, per_domain


def outputs_of(logits: Tensor) -> TaskOutputs:
    """``[B, 3]`` task logits → unconditional funnel probabilities."""
    probs = torch.sigmoid(logits)
    return TaskOutputs(p_click=probs[:, 0], p_cart=probs[:, 1], p_purchase=probs[:, 2])


class PooledDNN(DNN):
    """The ``dnn`` baseline that cannot see which domain a row comes from."""

    name: ClassVar[str] = "pooled-dnn"

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities with the domain hidden."""
        return super().forward(hide_domain(batch))


@RANKING_MODELS.register()
class SharedBottom(RankingModel):
    """Shared bottom MLP; a ``bottom[-1] -> tower_dim -> 1`` tower per domain and task.

    Args:
        spec: the feature spec.
        embed_dim: embedding width.
        hidden: widths of the shared bottom.
        tower_dim: hidden width of each tower.
    """

    name: ClassVar[str] = "shared-bottom"
    config_keys: ClassVar[tuple[str, ...]] = ("embed_dim", "hidden", "tower_dim")

    def __init__(
        self,
        spec: FeatureSpec,
        embed_dim: int = 16,
        hidden: tuple[int, ...] = (128, 64),
        tower_dim: int = 32,
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.hidden, self.tower_dim = embed_dim, tuple(hidden), tower_dim
        self.inputs = EmbeddedInputs(spec, embed_dim)
        self.bottom = mlp([self.inputs.output_dim, *self.hidden], last_activation=True)
        n_tasks = len(TASKS)
        self.tower_hidden = DomainLinear(spec.n_domains, self.hidden[-1], n_tasks * tower_dim)
        self.tower_out = nn.Parameter(torch.randn(max(1, spec.n_domains), n_tasks, tower_dim) * 0.1)
        self.tower_bias = nn.Parameter(torch.zeros(max(1, spec.n_domains), n_tasks))

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities of each impression."""
        shared = self.bottom(self.inputs(batch))
        hidden = torch.relu(self.tower_hidden(shared, batch.domain))
        hidden = hidden.view(len(batch), len(TASKS), self.tower_dim)
        logits = (hidden * self.tower_out[batch.domain]).sum(-1) + self.tower_bias[batch.domain]
        return outputs_of(logits)


class StarLinear(nn.Module):
    """STAR's FC layer: ``x (W ⊙ W_d) + b + b_d``; ``W_d`` starts at 1 and ``b_d`` at 0."""

    def __init__(self, n_domains: int, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.shared = nn.Linear(fan_in, fan_out)
        self.domain_weight = nn.Parameter(torch.ones(max(1, n_domains), fan_out, fan_in))
        self.domain_bias = nn.Parameter(torch.zeros(max(1, n_domains), fan_out))

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        """``[B, fan_out]``."""

        def layer(part: Tensor, d: int) -> Tensor:
            weight = self.shared.weight * self.domain_weight[d]
            return nn.functional.linear(part, weight, self.shared.bias + self.domain_bias[d])

        return per_domain(x, domain, layer)


class PartitionedNorm(nn.Module):
    """STAR's partitioned normalisation: ``(gamma * gamma_d) (x - mu_d) / sqrt(var_d + eps) +
    (beta + beta_d)`` with each domain's own statistics.

    Training: ``mu_d``, ``var_d`` are the mean and (biased) variance of the batch's rows of
    domain ``d`` (the paper trains on single-domain batches; here a mixed batch is normalised
    per domain, the same thing), and each domain's moving averages are updated from them.
    Inference, or a domain with fewer than 2 rows in a training batch: the domain's moving
    averages.
    """

    running_mean: Tensor
    running_var: Tensor

    def __init__(
        self, n_domains: int, width: int, momentum: float = 0.1, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.n_domains, self.momentum, self.eps = max(1, n_domains), momentum, eps
        self.gamma = nn.Parameter(torch.ones(width))
        self.beta = nn.Parameter(torch.zeros(width))
        self.domain_gamma = nn.Parameter(torch.ones(self.n_domains, width))
        self.domain_beta = nn.Parameter(torch.zeros(self.n_domains, width))
        self.register_buffer("running_mean", torch.zeros(self.n_domains, width))
        self.register_buffer("running_var", torch.ones(self.n_domains, width))

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        """Normalised ``x``: each row with its domain's statistics and affine."""
        mean, var = self.running_mean, self.running_var
        if self.training:
            mean, var = self._batch_statistics(x, domain)
        inv_std = torch.rsqrt(var + self.eps)
        # per-domain scale and shift computed for the (few) domains, then gathered per row
        scale = (self.gamma * self.domain_gamma * inv_std).index_select(0, domain)
        shift = (self.beta + self.domain_beta).index_select(0, domain)
        return torch.addcmul(shift, scale, x - mean.index_select(0, domain))

    def _batch_statistics(self, x: Tensor, domain: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, var)`` per domain: the batch's where a domain has 2+ rows, else the moving
        averages; the moving averages move towards the batch's (unbiased variance)."""
        counts = torch.bincount(domain, minlength=self.n_domains).to(x.dtype).unsqueeze(1)
        rows = counts.clamp(min=1.0)
        mean = x.new_zeros(self.running_mean.shape).index_add_(0, domain, x) / rows
        centred = x - mean.index_select(0, domain)
        var = x.new_zeros(self.running_var.shape).index_add_(0, domain, centred**2) / rows
        seen = counts >= 2
        with torch.no_grad():
            m = self.momentum
            unbiased = var * rows / (rows - 1.0).clamp(min=1.0)
            self.running_mean.copy_(
                torch.where(seen, (1 - m) * self.running_mean + m * mean, self.running_mean)
            )
            self.running_var.copy_(
                torch.where(seen, (1 - m) * self.running_var + m * unbiased, self.running_var)
            )
        return torch.where(seen, mean, self.running_mean), torch.where(seen, var, self.running_var)


@RANKING_MODELS.register()
class Star(RankingModel):
    """STAR: PN, star-topology FC layers, task heads, plus an auxiliary domain network.

    Args:
        spec: the feature spec.
        embed_dim: embedding width.
        hidden: widths of the star FC layers.
        aux_dim: hidden width of the auxiliary network.
    """

    name: ClassVar[str] = "star"
    config_keys: ClassVar[tuple[str, ...]] = ("embed_dim", "hidden", "aux_dim")

    def __init__(
        self,
        spec: FeatureSpec,
        embed_dim: int = 16,
        hidden: tuple[int, ...] = (128, 64),
        aux_dim: int = 16,
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.hidden, self.aux_dim = embed_dim, tuple(hidden), aux_dim
        self.inputs = EmbeddedInputs(spec, embed_dim)
        self.norm = PartitionedNorm(spec.n_domains, self.inputs.output_dim)
        widths = [self.inputs.output_dim, *self.hidden]
        self.layers = nn.ModuleList(
            StarLinear(spec.n_domains, a, b) for a, b in itertools.pairwise(widths)
        )
        self.heads = nn.Linear(self.hidden[-1], len(TASKS))
        self.aux_domain = nn.Embedding(max(1, spec.n_domains), embed_dim)
        self.aux = mlp([embed_dim + len(spec.dense_names), aux_dim, len(TASKS)])

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities: ``sigmoid(main logit + auxiliary logit)`` per task."""
        x = self.norm(self.inputs(batch), batch.domain)
        for layer in self.layers:
            x = torch.relu(layer(x, batch.domain))
        aux = self.aux(torch.cat([self.aux_domain(batch.domain), batch.dense], dim=-1))
        return outputs_of(self.heads(x) + aux)


@RANKING_MODELS.register()
class MMoEDomain(RankingModel):
    """MMoE with one softmax gate per (domain, task) over shared experts.

    Args:
        spec: the feature spec.
        embed_dim: embedding width.
        n_experts: number of shared experts.
        expert_dim: output width of each expert.
        tower_dim: hidden width of each task tower.
    """

    name: ClassVar[str] = "mmoe-domain"
    config_keys: ClassVar[tuple[str, ...]] = ("embed_dim", "n_experts", "expert_dim", "tower_dim")

    def __init__(
        self,
        spec: FeatureSpec,
        embed_dim: int = 16,
        n_experts: int = 4,
        expert_dim: int = 64,
        tower_dim: int = 32,
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.n_experts = embed_dim, n_experts
        self.expert_dim, self.tower_dim = expert_dim, tower_dim
        self.inputs = EmbeddedInputs(spec, embed_dim)
        width = self.inputs.output_dim
        self.experts = nn.ModuleList(expert_block(width, expert_dim) for _ in range(n_experts))
        self.gates = DomainLinear(spec.n_domains, width, len(TASKS) * n_experts)
        self.towers = task_towers(expert_dim, tower_dim)
        self._fold = InputFold()

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities of each impression."""
        if InputFold.usable(self):
            experts, gate_logits = self._fast_experts(batch)
        else:
            x = self.inputs(batch)
            experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # [B, E, d]
            gate_logits = self.gates(x, batch.domain)
        gates = gate_softmax(gate_logits.view(len(batch), len(TASKS), self.n_experts))
        mixed = torch.bmm(gates, experts)  # [B, tasks, d]: sum_e gates[b, t, e] experts[b, e]
        logits = torch.cat([tower(mixed[:, t]) for t, tower in enumerate(self.towers)], dim=-1)
        return outputs_of(logits)

    def _fast_experts(self, batch: RankingBatch) -> tuple[Tensor, Tensor]:
        """``([B, E, d] experts, [B, tasks * E] gate logits)`` at inference: every expert's
        first layer and every domain's gate in one :class:`InputFold` (the row's domain's gate
        columns picked after), the experts' second layers as one batched matmul."""
        first: list[nn.Linear] = [expert[0] for expert in self.experts]  # type: ignore[index]
        n_domains, _, gate_width = self.gates.weight.shape
        embedder = self.inputs.embedder
        out = self._fold(
            embedder,
            [t for layer in first for t in (layer.weight, layer.bias)]
            + [self.gates.weight, self.gates.bias],
            lambda: (
                [(layer.weight, layer.bias) for layer in first]
                + [(self.gates.weight.transpose(1, 2).flatten(0, 1), self.gates.bias.flatten())]
            ),
            batch,
            extra=embedder.sequence_mean(batch),
        )
        size, n_experts, width = len(batch), self.n_experts, 2 * self.expert_dim
        hidden = torch.relu(out[:, : n_experts * width].view(size, n_experts, width))
        w2, b2 = stack_linears([expert[2] for expert in self.experts])  # type: ignore[index]
        experts = torch.relu(torch.baddbmm(b2, hidden.transpose(0, 1), w2)).transpose(0, 1)
        every_gate = out[:, n_experts * width :].view(size, n_domains, gate_width)
        index = batch.domain.view(size, 1, 1).expand(size, 1, gate_width)
        return experts, every_gate.gather(1, index).squeeze(1)


__all__ = ["MMoEDomain", "PartitionedNorm", "PooledDNN", "SharedBottom", "Star", "StarLinear"]
