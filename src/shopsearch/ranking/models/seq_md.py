"""SEQ+MD: the funnel tasks learned as a sequence through a GRU, with a market mask.

Paper: Siqi Wang, Audrey Zhijiao Chen, Austin Clapp, Sheng-Min Shih, Xiaoting Zhao,
"SEQ+MD: Learning Multi-Task as a SEQuence with Multi-Distribution Data" (Etsy, arXiv
2408.13357, 2024).

What is implemented (:class:`SeqMD`, registry name ``seq-md``):

* **MD**: the dense features pass through :class:`~.market_mask.MarketMask` (market-driven
  columns masked per market, market-invariant columns unchanged) before anything else.
* A shared bottom MLP turns the masked dense features, the id/category/domain embeddings and a
  mean-pooled behaviour sequence into a shared representation ``h``.
* **SEQ**: the tasks click → add-to-cart → purchase are the three steps of a GRU. The input at
  step ``i`` is ``[h, task_embedding_i]``; task ``i``'s representation is the GRU hidden state
  after step ``i`` (so what was learned for click flows into cart and purchase), and a
  per-task tower maps it to the *unconditional* probability of that task over impressions.
* **Descending probability regulariser** (:func:`descending_probability_penalty`): the mean
  over impressions of ``ReLU(p_cart - p_click) + ReLU(p_purchase - p_cart)``, scaled by
  ``dpr_weight``. It is zero when the funnel order holds and grows with each violation; the
  architecture itself does not force the order, the regulariser teaches it (as in the paper).

Simplifications, stated honestly: this follows the paper's abstract and public summaries (tasks
as a GRU sequence sharing information, a descending probability regulariser for non-increasing
outputs, country-driven vs country-invariant features with a country-conditioned mask); the
method section's exact equations were not available to us. The feature set, tower depths and
any weighting inside the regulariser are therefore ours: towers have one hidden layer and the
regulariser is an unweighted hinge on adjacent tasks. The sequence pooling is a plain masked
mean (SEQ+MD does not prescribe a behaviour-sequence model).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from shopsearch.ranking.base import TASKS, FeatureSpec, RankingBatch, RankingModel, TaskOutputs
from shopsearch.ranking.models.layers import (
    FeatureEmbedder,
    InputFold,
    expert_block,
    fast_tanh,
    task_towers,
)
from shopsearch.ranking.models.market_mask import MarketMask
from shopsearch.ranking.registry import RANKING_MODELS


def descending_probability_penalty(p_click: Tensor, p_cart: Tensor, p_purchase: Tensor) -> Tensor:
    """Mean of ``ReLU(p_cart - p_click) + ReLU(p_purchase - p_cart)``: 0 iff the order holds."""
    violation = torch.relu(p_cart - p_click) + torch.relu(p_purchase - p_cart)
    return violation.mean()


def masked_mean(sequence: Tensor, mask: Tensor) -> Tensor:
    """``[B, d]`` mean of the valid behaviours of ``sequence`` (zeros when there are none)."""
    weights = mask.to(sequence.dtype).unsqueeze(-1)
    return (sequence * weights).sum(1) / weights.sum(1).clamp_min(1.0)


@RANKING_MODELS.register()
class SeqMD(RankingModel):
    """SEQ+MD: GRU over the task sequence, descending-probability regulariser, market mask.

    Args:
        spec: feature shapes and vocabularies.
        embed_dim: width of the embeddings and task embeddings.
        hidden: width of the shared bottom and of the GRU state.
        dpr_weight: weight of the descending probability regulariser.
        use_market_mask: apply the MD module to the dense features.
        use_position: embed the logged position as an input (off by default: position bias
            is handled by :mod:`shopsearch.ranking.position_bias`).
    """

    name: ClassVar[str] = "seq-md"
    config_keys: ClassVar[tuple[str, ...]] = (
        "embed_dim",
        "hidden",
        "dpr_weight",
        "use_market_mask",
        "use_position",
    )

    def __init__(
        self,
        spec: FeatureSpec,
        *,
        embed_dim: int = 16,
        hidden: int = 64,
        dpr_weight: float = 1.0,
        use_market_mask: bool = True,
        use_position: bool = False,
    ) -> None:
        super().__init__(spec)
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.dpr_weight = dpr_weight
        self.use_market_mask = use_market_mask
        self.use_position = use_position
        self.market_mask = MarketMask(spec) if use_market_mask else None
        self.embedder = FeatureEmbedder(spec, embed_dim, use_position=use_position)
        self.bottom = expert_block(self.embedder.output_dim + embed_dim, hidden)
        self.task_embeddings = nn.Parameter(torch.randn(len(TASKS), embed_dim) * 0.1)
        self.gru = nn.GRU(hidden + embed_dim, hidden, batch_first=True)
        self.towers = task_towers(hidden, hidden // 2)
        self._fold = InputFold()

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Unconditional funnel probabilities, one GRU step per task."""
        dense = batch.dense
        if self.market_mask is not None:
            dense = self.market_mask(dense, batch.domain)
        user = self.embedder.sequence_mean(batch)  # = masked_mean(sequence, seq_mask)
        if InputFold.usable(self):  # the bottom's first layer as one fold
            first: nn.Linear = self.bottom[0]  # type: ignore[assignment]
            layer = first.weight, first.bias
            folded = self._fold(self.embedder, layer, lambda: [layer], batch, dense, extra=user)
            shared = self.bottom[1:](folded)
        else:
            shared = self.bottom(torch.cat([self.embedder(batch, dense), user], dim=-1))
        states = self.task_states(shared)
        probabilities = [
            torch.sigmoid(tower(states[index]).squeeze(-1))
            for index, tower in enumerate(self.towers)
        ]
        return TaskOutputs(
            p_click=probabilities[0], p_cart=probabilities[1], p_purchase=probabilities[2]
        )

    def task_states(self, shared: Tensor) -> list[Tensor]:
        """``[B, hidden]`` GRU state after each task step (input ``[shared, task_embedding_i]``).

        The same function as ``self.gru`` on the ``[B, n_tasks, hidden + embed_dim]`` step
        inputs, computed from its weights with the shared input's projection done once for all
        steps (it is the same at every step; only the task embedding's term changes) and the
        first step's recurrent term reduced to its bias (the initial state is zero); ``tanh`` is
        :func:`~.layers.fast_tanh`.
        """
        w_ih, w_hh, b_ih, b_hh = self.gru.all_weights[0]  # layer 0's (ih, hh) weights, biases
        w_shared, w_task = w_ih[:, : self.hidden], w_ih[:, self.hidden :]
        projected = shared @ w_shared.T  # [B, 3 * hidden], the same for every step
        per_task = self.task_embeddings @ w_task.T + b_ih  # [n_tasks, 3 * hidden]
        states: list[Tensor] = []
        state: Tensor | None = None
        for index in range(len(TASKS)):
            gi_r, gi_z, gi_n = (projected + per_task[index]).chunk(3, dim=-1)
            if state is None:
                gh_r, gh_z, gh_n = b_hh.chunk(3)
            else:
                gh_r, gh_z, gh_n = torch.addmm(b_hh, state, w_hh.T).chunk(3, dim=-1)
            reset = torch.sigmoid(gi_r + gh_r)
            update = torch.sigmoid(gi_z + gh_z)
            candidate = fast_tanh(torch.addcmul(gi_n, reset, gh_n))
            state = (
                candidate - update * candidate
                if state is None
                else candidate + update * (state - candidate)
            )
            states.append(state)
        return states

    def extra_loss(self, batch: RankingBatch, outputs: TaskOutputs) -> Tensor:
        """``dpr_weight`` times the descending probability penalty."""
        penalty = descending_probability_penalty(
            outputs.p_click, outputs.p_cart, outputs.p_purchase
        )
        return self.dpr_weight * penalty


__all__ = ["SeqMD", "descending_probability_penalty", "masked_mean"]
