"""PGTL: prior-guided transfer learning of item representations across domains.

Paper: Heng-Yi Li, Yabo Ni, Anxiang Zeng, Han Yu, Chunyan Miao, "Prior-Guided Transfer Learning
for Enhancing Item Representation in E-Commerce", AAAI 2022 (deployed on Taobao's Taiwanese
portal). Its idea: instances (items, users) of different domains are related; that instance
relationship gives *prior knowledge* for the target domain, and the prior guides a
*fine-grained* (per instance) transfer of item representations rather than transferring the
source domain wholesale — which matters most when the domains' distributions differ.

What is built here (from the paper's description; no code was copied):

* **Instance relationship** — the same product id in another domain (the simulator's markets
  and trivago's platforms share product ids; the workspace keys products by ``(domain,
  product_id)``). Where shops have their own ids, the caller maps a product to the id of its
  match in the other shop before the model sees it: the relevance protocol links by id, then by
  normalised title, then by MiniLM title nearest neighbour
  (:func:`~shopsearch.transfer.relevance_data.link_products`), so the priors below are read
  through those links.
* **Prior statistics** — for a row of item ``i`` in domain ``d``, the item's logged
  impressions, clicks and carts in every *other* domain (never its own, so a row's label never
  feeds its own prior): ``log1p(impressions)``, click and cart rates smoothed towards the
  global rates, and a confidence ``n / (n + prior_strength)``. Counts are set from the training
  rows by :meth:`PGTL.fit_priors` (the transfer protocol calls it), or, when a trainer does not
  (``shopsearch train --stage ranking --model pgtl``), accumulated from the training
  mini-batches like BatchNorm's running statistics (counts then grow with the epochs, which only
  weakens the smoothing). They are buffers, saved with the weights.
* **Prior embedding** ``pi = MLP([e_i, stats])`` from the domain-shared item embedding ``e_i``
  (learned on every domain, so dominated by the data-rich source) and the prior statistics.
* **Target (domain-private) item representation** ``t_{i,d}``: an embedding of the
  ``(item, domain)`` pair (hashed into ``buckets`` rows).
* **Fine-grained, prior-guided fusion** — a per-instance, per-dimension gate
  ``g = sigmoid(W [t, pi, stats, domain])`` and the item representation
  ``g * pi + (1 - g) * t``; plus a prior-guidance loss
  ``prior_weight * mean(confidence * ||t - stopgrad(pi)||^2)`` that pulls a target item's private
  representation towards its prior in proportion to how much the other domains saw of it.
* The fused representation and the prior statistics join the DNN input; three task heads.

Deviations: the paper's network details (its prior extraction network and transfer loss) are
not reproduced from its text; products are matched by the caller (see above), not learned.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from shopsearch.ranking.base import TASKS, FeatureSpec, RankingBatch, RankingModel, TaskOutputs
from shopsearch.ranking.models.layers import EmbeddedInputs, mlp
from shopsearch.ranking.registry import RANKING_MODELS
from shopsearch.transfer.baselines import outputs_of

N_STATS = 4


@RANKING_MODELS.register()
class PGTL(RankingModel):
    """Prior-guided transfer of item representations (see the module docstring).

    Args:
        spec: the feature spec.
        embed_dim: embedding width (shared, private and prior item representations).
        hidden: widths of the MLP over the inputs.
        buckets: most rows of the hashed ``(item, domain)`` embedding table.
        prior_weight: weight of the prior-guidance loss.
        prior_strength: impressions at which the prior's confidence is 1/2, and the
            pseudo-count of the rate smoothing.
    """

    name: ClassVar[str] = "pgtl"
    config_keys: ClassVar[tuple[str, ...]] = (
        "embed_dim",
        "hidden",
        "buckets",
        "prior_weight",
        "prior_strength",
    )

    counts: Tensor
    fitted: Tensor

    def __init__(
        self,
        spec: FeatureSpec,
        embed_dim: int = 16,
        hidden: tuple[int, ...] = (128, 64),
        buckets: int = 1 << 17,
        prior_weight: float = 0.1,
        prior_strength: float = 20.0,
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.hidden, self.buckets = embed_dim, tuple(hidden), buckets
        self.prior_weight, self.prior_strength = prior_weight, prior_strength
        self.n_domains = max(1, spec.n_domains)
        self.n_items = max(1, spec.n_items)
        self.inputs = EmbeddedInputs(spec, embed_dim)
        self.table_rows = min(self.n_items * self.n_domains, buckets)
        self.private_item = nn.Embedding(self.table_rows, embed_dim)
        nn.init.normal_(self.private_item.weight, std=0.01)
        self.prior_net = mlp([embed_dim + N_STATS, embed_dim, embed_dim])
        self.gate = nn.Linear(3 * embed_dim + N_STATS, embed_dim)
        self.domain = nn.Embedding(self.n_domains, embed_dim)
        # (impressions, clicks, carts) of each item in each domain.
        self.register_buffer("counts", torch.zeros(self.n_items, self.n_domains, 3))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        width = self.inputs.output_dim + embed_dim + N_STATS
        self.bottom = mlp([width, *self.hidden], last_activation=True)
        self.heads = nn.Linear(self.hidden[-1], len(TASKS))

    # -- priors --------------------------------------------------------------------------------
    def fit_priors(self, batch: RankingBatch) -> PGTL:
        """Set the per-(item, domain) counts from training impressions; returns ``self``."""
        with torch.no_grad():
            self.counts.zero_()
            self._accumulate(batch)
            self.fitted.fill_(True)
        return self

    def _accumulate(self, batch: RankingBatch) -> None:
        flat = self.counts.view(-1, 3)
        index = batch.item.clamp(0, self.n_items - 1) * self.n_domains + batch.domain
        values = torch.stack([torch.ones_like(batch.click), batch.click, batch.cart], dim=-1).to(
            flat.dtype
        )
        flat.index_add_(0, index, values)

    def prior_stats(self, batch: RankingBatch) -> Tensor:
        """``[B, 4]`` the item's statistics in the *other* domains (see the module docstring)."""
        item = batch.item.clamp(0, self.n_items - 1)
        per_item = self.counts[item]  # [B, D, 3]
        own = per_item.gather(1, batch.domain.view(-1, 1, 1).expand(-1, 1, 3)).squeeze(1)
        other = per_item.sum(1) - own
        total = self.counts.sum((0, 1))
        ctr0 = (total[1] + 1.0) / (total[0] + 25.0)
        cart0 = (total[2] + 1.0) / (total[1] + 10.0)
        a = self.prior_strength
        imps, clicks, carts = other[:, 0], other[:, 1], other[:, 2]
        known = (item > 0).to(imps.dtype)
        ctr = (clicks + a * ctr0) / (imps + a)
        cart = (carts + a * cart0 * ctr0) / (imps + a)
        confidence = known * imps / (imps + a)
        return torch.stack(
            [torch.log1p(imps) * known, torch.logit(ctr), torch.logit(cart), confidence], dim=-1
        )

    # -- model ---------------------------------------------------------------------------------
    def item_representation(self, batch: RankingBatch, stats: Tensor) -> tuple[Tensor, Tensor]:
        """``(fused [B, k], guidance loss per row [B])``."""
        shared = self.inputs.embedder.item(batch.item)
        prior = self.prior_net(torch.cat([shared, stats], dim=-1))
        slot = (batch.item * self.n_domains + batch.domain) % self.table_rows
        private = self.private_item(slot)
        gate = torch.sigmoid(
            self.gate(torch.cat([private, prior, stats, self.domain(batch.domain)], dim=-1))
        )
        fused = gate * prior + (1 - gate) * private
        guidance = stats[:, 3] * ((private - prior.detach()) ** 2).sum(-1)
        return fused, guidance

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities; ``extras["guidance"]`` is the per-row prior-guidance loss."""
        if self.training and not bool(self.fitted):
            with torch.no_grad():
                self._accumulate(batch)
        stats = self.prior_stats(batch)
        fused, guidance = self.item_representation(batch, stats)
        h = self.bottom(torch.cat([self.inputs(batch), fused, stats], dim=-1))
        out = outputs_of(self.heads(h))
        out.extras = {"guidance": guidance}
        return out

    def extra_loss(self, batch: RankingBatch, outputs: TaskOutputs) -> Tensor:
        """``prior_weight`` times the mean prior-guidance loss."""
        return self.prior_weight * outputs.extras["guidance"].mean()


__all__ = ["PGTL"]
