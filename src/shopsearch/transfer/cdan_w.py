"""CDAN-W: the cross-domain attention network with Wasserstein regularisers.

Paper: Minghui Qiu, Bo Wang, Cen Chen, Xiaoyi Zeng, Jun Huang, Deng Cai, Jingren Zhou,
Forrest Sheng Bao, "Cross-domain Attention Network with Wasserstein Regularizers for
E-commerce Search", CIKM 2019 (Alibaba: Taobao, Tmall, Qintao). Each platform is a domain; a
data-deficient domain learns from data-abundant ones. The paper's parts and how they are built
here (from its abstract and description; no code was copied):

* **Feature fields and a domain-specific attention.** The inputs of a
  :class:`~shopsearch.ranking.base.RankingBatch` are cut into feature *groups*
  (:data:`DENSE_GROUPS`: text match, category match, price, user, popularity, rate priors,
  query-product history, and the embedded brand, item, item category, query category and
  behaviour sequence); each group is projected to a ``field_dim`` vector ``h_g``. The attention
  weight of group ``g`` in domain ``d`` is
  ``a_g = softmax_g(v_d . tanh(W h_g) + u_{d,g})`` — domain-specific query ``v_d`` and bias
  ``u_{d,g}`` over a shared projection ``W`` — and the network reads ``[G a_g h_g]_g``. The
  running mean of ``a`` per domain over the training rows is kept in buffers
  (:meth:`CDANW.domain_importances`): these are the per-domain feature importances that
  ``shopsearch explain domains`` prints.
* **Shared and private encoders.** A shared, domain-invariant MLP ``s = E_s(x)`` and a private
  MLP per domain ``p = E_d(x)`` (:class:`~shopsearch.transfer.layers.DomainLinear` layers, the
  last one linear and zero-initialised, so a data-poor domain starts from the shared model);
  the task heads (click, cart, purchase) read ``[s, p]``.
* **Wasserstein regulariser** pulling the domains' shared representations together. Choice:
  the *sliced* 2-Wasserstein distance (random directions, 1-D transport by sorting;
  :func:`~shopsearch.transfer.layers.sliced_wasserstein`) between the shared representations of
  each domain in the mini-batch and those of the batch's largest domain (the data-rich source),
  with ``n_projections`` fresh directions per step. It needs no critic (a WGAN-GP critic would
  add a min-max inner loop on a 2-core machine) and is an unbiased estimate of a proper
  distance between the distributions. Weight ``wasserstein_weight``.
* **Difference (orthogonality) loss** keeping private representations distinct from the shared
  ones: ``sum_d ||S_d^T P_d||_F^2 / n_d^2`` over each domain's rows (as in domain separation
  networks, Bousmalis et al. 2016), weight ``difference_weight``.
* Trained jointly on all domains with the three task losses.

Deviations: the paper's exact attention parameterisation and encoder widths are not reproduced
from its text; the attention is over feature *groups* (not single features) so that the
importances are readable; a domain with fewer than ``min_rows`` rows in a mini-batch does not
enter the Wasserstein term of that step.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
from torch import Tensor, nn

from shopsearch.ranking.base import TASKS, FeatureSpec, RankingBatch, RankingModel, TaskOutputs
from shopsearch.ranking.models.layers import FeatureEmbedder, InputFold, fast_tanh, mlp
from shopsearch.ranking.registry import RANKING_MODELS
from shopsearch.transfer.baselines import outputs_of
from shopsearch.transfer.layers import DomainLinear, sliced_wasserstein

#: Dense feature groups (by feature name); unlisted dense features form the group ``other``.
DENSE_GROUPS: dict[str, tuple[str, ...]] = {
    "text_match": ("bm25", "matched_share", "query_terms", "brand_in_query", "category_in_query"),
    "category_match": ("has_query_leaf", "leaf_match", "top_match"),
    "price": ("log_price", "price_rel_category", "price_rel_user", "has_user_prices"),
    "user": ("user_history",),
    "popularity": ("log_impressions", "log_clicks", "log_purchases"),
    "rate_priors": ("ctr_prior", "cart_prior", "cvr_prior"),
    "query_product": ("qp_log_impressions", "qp_log_clicks", "qp_ctr_prior"),
}

#: Embedded groups, after the dense ones.
EMBEDDED_GROUPS: tuple[str, ...] = ("brand", "item", "item_category", "query_category", "behaviour")


def dense_groups(spec: FeatureSpec) -> list[tuple[str, list[int]]]:
    """``(group, dense column indices)`` of the spec's dense features (empty groups dropped)."""
    out: list[tuple[str, list[int]]] = []
    seen: set[str] = set()
    for group, names in DENSE_GROUPS.items():
        cols = [spec.dense_names.index(n) for n in names if n in spec.dense_names]
        seen.update(names)
        if cols:
            out.append((group, cols))
    rest = [i for i, n in enumerate(spec.dense_names) if n not in seen]
    if rest:
        out.append(("other", rest))
    return out


@RANKING_MODELS.register()
class CDANW(RankingModel):
    """Cross-domain attention network with Wasserstein regularisers (see the module docstring).

    Args:
        spec: the feature spec.
        embed_dim: width of the id embeddings.
        field_dim: width of each feature group's vector.
        attention_dim: width of the attention projection.
        shared_hidden: widths of the shared encoder (the last is the shared representation).
        private_hidden: widths of each domain's private encoder.
        tower_dim: hidden width of each task head.
        wasserstein_weight: weight of the sliced-Wasserstein term.
        difference_weight: weight of the shared/private orthogonality term.
        n_projections: random directions of the sliced-Wasserstein estimate per step.
        min_rows: rows a domain needs in a mini-batch to enter the Wasserstein term.
        private_zero_init: start every private encoder's last layer at zero, so a domain's
            private representation starts at 0 and a data-poor domain starts from the shared
            model (its private part grows only as far as its own rows push it).
        shared_attention: a domain's attention query is a shared query plus the domain's own
            residual, which starts at zero: a data-poor domain reads the feature groups as the
            data-rich ones taught the shared query until its own rows say otherwise. ``False``:
            an independent random query per domain (the first version; on Home Depot →
            CrowdFlower the target's query then barely trained and down-weighted the text-match
            groups the source relied on).
    """

    name: ClassVar[str] = "cdan-w"
    config_keys: ClassVar[tuple[str, ...]] = (
        "embed_dim",
        "field_dim",
        "attention_dim",
        "shared_hidden",
        "private_hidden",
        "tower_dim",
        "wasserstein_weight",
        "difference_weight",
        "n_projections",
        "min_rows",
        "private_zero_init",
        "shared_attention",
    )

    attention_sum: Tensor
    attention_count: Tensor

    def __init__(
        self,
        spec: FeatureSpec,
        embed_dim: int = 16,
        field_dim: int = 16,
        attention_dim: int = 16,
        shared_hidden: tuple[int, ...] = (128, 64),
        private_hidden: tuple[int, ...] = (64, 32),
        tower_dim: int = 32,
        wasserstein_weight: float = 0.1,
        difference_weight: float = 0.05,
        n_projections: int = 32,
        min_rows: int = 16,
        private_zero_init: bool = True,
        shared_attention: bool = True,
    ) -> None:
        super().__init__(spec)
        self.embed_dim, self.field_dim, self.attention_dim = embed_dim, field_dim, attention_dim
        self.shared_hidden, self.private_hidden = tuple(shared_hidden), tuple(private_hidden)
        self.tower_dim = tower_dim
        self.wasserstein_weight, self.difference_weight = wasserstein_weight, difference_weight
        self.n_projections, self.min_rows = n_projections, min_rows
        self.private_zero_init = private_zero_init
        self.shared_attention = shared_attention
        self.embedder = FeatureEmbedder(spec, embed_dim, use_position=False)
        self.dense_groups = dense_groups(spec)
        self.group_names: tuple[str, ...] = (
            *(g for g, _ in self.dense_groups),
            *EMBEDDED_GROUPS,
        )
        self.dense_proj = nn.ModuleList(nn.Linear(len(c), field_dim) for _, c in self.dense_groups)
        self._sparse_col = {n: i for i, n in enumerate(spec.sparse_names)}
        depth = spec.category_depth
        widths = {
            "brand": embed_dim,
            "item": embed_dim,
            "item_category": depth * embed_dim + (embed_dim if "leaf" in self._sparse_col else 0),
            "query_category": depth * embed_dim
            + (embed_dim if "query_leaf" in self._sparse_col else 0),
            "behaviour": embed_dim,
        }
        self.embedded_proj = nn.ModuleList(nn.Linear(widths[g], field_dim) for g in EMBEDDED_GROUPS)
        n_groups = len(self.group_names)
        n_domains = max(1, spec.n_domains)
        self.attention_proj = nn.Linear(field_dim, attention_dim)
        # with shared_attention the per-domain query is a residual over attention_shared
        self.attention_shared = nn.Parameter(
            torch.randn(attention_dim) * 0.1 if shared_attention else torch.zeros(attention_dim),
            requires_grad=shared_attention,
        )
        self.attention_query = nn.Parameter(
            torch.zeros(n_domains, attention_dim)
            if shared_attention
            else torch.randn(n_domains, attention_dim) * 0.1
        )
        self.attention_bias = nn.Parameter(torch.zeros(n_domains, n_groups))
        self._register_load_state_dict_pre_hook(_without_shared_attention)  # type: ignore[no-untyped-call]
        self.register_buffer("attention_sum", torch.zeros(n_domains, n_groups))
        self.register_buffer("attention_count", torch.zeros(n_domains))
        width = n_groups * field_dim
        self.shared = mlp([width, *self.shared_hidden], last_activation=True)
        private_widths = [width, *self.private_hidden]
        self.private = nn.ModuleList(
            DomainLinear(spec.n_domains, a, b) for a, b in itertools.pairwise(private_widths)
        )
        if private_zero_init:
            last = self.private[-1]
            assert isinstance(last, DomainLinear)
            nn.init.zeros_(last.weight)
        self.towers = nn.ModuleList(
            mlp([self.shared_hidden[-1] + self.private_hidden[-1], tower_dim, 1]) for _ in TASKS
        )
        self._fold = InputFold()

    # -- representation ------------------------------------------------------------------------
    def fields(self, batch: RankingBatch) -> Tensor:
        """``[B, G, field_dim]`` the feature groups' vectors."""
        if InputFold.usable(self):
            return self._folded_fields(batch)
        emb = self.embedder
        size = len(batch)
        dense_fields = self.dense_fields(batch.dense)
        sparse: Tensor | None = (
            emb.sparse(batch.sparse + emb.sparse_offsets) if batch.sparse.shape[1] else None
        )

        def field(name: str) -> Tensor:
            col = self._sparse_col.get(name)
            if sparse is None or col is None:
                return batch.dense.new_zeros((size, self.embed_dim))
            return sparse[:, col]

        item_cat = [emb.category(batch.item_category).reshape(size, -1)]
        query_cat = [emb.category(batch.query_category).reshape(size, -1)]
        if "leaf" in self._sparse_col:
            item_cat.append(field("leaf"))
        if "query_leaf" in self._sparse_col:
            query_cat.append(field("query_leaf"))
        raw = {
            "brand": field("brand"),
            "item": emb.item(batch.item),
            "item_category": torch.cat(item_cat, dim=-1),
            "query_category": torch.cat(query_cat, dim=-1),
            "behaviour": emb.sequence_mean(batch),
        }
        parts = [proj(raw[g]) for proj, g in zip(self.embedded_proj, EMBEDDED_GROUPS, strict=True)]
        return torch.cat([dense_fields, torch.stack(parts, dim=1)], dim=1)

    def _folded_fields(self, batch: RankingBatch) -> Tensor:
        """:meth:`fields` at inference: every group's projection (dense and embedded) is a
        linear map of ``cat([embedder(batch), sequence_mean])``, so all of them are one
        :class:`InputFold` (each projection's weight placed at its inputs' columns of one
        ``[G * field_dim, width]`` matrix, zero elsewhere; the embedding-table products are
        precomputed and rebuilt when a weight changes)."""
        linears = [*self.dense_proj, *self.embedded_proj]
        params = [t for layer in linears for t in (layer.weight, layer.bias)]
        out = self._fold(
            self.embedder,
            params,
            lambda: [(self._fold_weight(), torch.cat([layer.bias for layer in linears]))],
            batch,
            extra=self.embedder.sequence_mean(batch),
        )
        return out.view(len(batch), len(self.group_names), self.field_dim)

    def _fold_weight(self) -> Tensor:
        """``[G * field_dim, embedder.output_dim + embed_dim]`` every group's projection as a
        map of ``cat([embedder(batch), sequence_mean])`` (see :meth:`_folded_fields`)."""
        spec, d, f = self.spec, self.embed_dim, self.field_dim
        n_dense, n_sparse = len(spec.dense_names), len(spec.sparse_names)
        depth = spec.category_depth
        sparse_at = n_dense
        item_at = sparse_at + n_sparse * d
        item_cat_at = item_at + 2 * d  # after the item and the domain embeddings
        query_cat_at = item_cat_at + depth * d
        width = self.embedder.output_dim + d
        weight = self.attention_proj.weight.new_zeros((len(self.group_names) * f, width))
        row = 0
        for proj, (_, cols) in zip(self.dense_proj, self.dense_groups, strict=True):
            assert isinstance(proj, nn.Linear)
            weight[row : row + f, cols] = proj.weight
            row += f

        def sparse_cols(name: str) -> slice | None:
            col = self._sparse_col.get(name)
            return None if col is None else slice(sparse_at + col * d, sparse_at + (col + 1) * d)

        for proj, group in zip(self.embedded_proj, EMBEDDED_GROUPS, strict=True):
            assert isinstance(proj, nn.Linear)
            w, rows = proj.weight, slice(row, row + f)
            if group == "brand":
                brand = sparse_cols("brand")
                if brand is not None:
                    weight[rows, brand] = w
            elif group == "item":
                weight[rows, item_at : item_at + d] = w
            elif group in ("item_category", "query_category"):
                at = item_cat_at if group == "item_category" else query_cat_at
                weight[rows, at : at + depth * d] = w[:, : depth * d]
                leaf = sparse_cols("leaf" if group == "item_category" else "query_leaf")
                if leaf is not None:
                    weight[rows, leaf] = w[:, depth * d :]
            else:  # behaviour: the extra input
                weight[rows, width - d :] = w
            row += f
        return weight

    def dense_fields(self, dense: Tensor) -> Tensor:
        """``[B, G_dense, field_dim]`` each dense group's projection of its own columns, as one
        matmul: every group's weight placed at its columns of a ``[n_dense, G_dense *
        field_dim]`` matrix, zero elsewhere (the same products as one small matmul per group)."""
        if not self.dense_groups:
            return dense.new_zeros((len(dense), 0, self.field_dim))
        blocks: list[Tensor] = []
        biases: list[Tensor] = []
        for proj, (_, cols) in zip(self.dense_proj, self.dense_groups, strict=True):
            assert isinstance(proj, nn.Linear)
            index = torch.tensor(cols, dtype=torch.long)
            block = proj.weight.new_zeros((dense.shape[1], self.field_dim))
            blocks.append(block.index_copy(0, index, proj.weight.T))
            biases.append(proj.bias)
        out = torch.addmm(torch.cat(biases), dense, torch.cat(blocks, dim=1))
        return out.view(len(dense), len(blocks), self.field_dim)

    def attention(self, fields: Tensor, domain: Tensor) -> Tensor:
        """``[B, G]`` the domain-specific attention over feature groups."""
        keys = fast_tanh(self.attention_proj(fields))  # [B, G, a]
        query = self.attention_shared + self.attention_query[domain]
        scores = (keys * query.unsqueeze(1)).sum(-1)
        return torch.softmax(scores + self.attention_bias[domain], dim=-1)

    def encode(self, batch: RankingBatch) -> tuple[Tensor, Tensor, Tensor]:
        """``(shared [B, s], private [B, p], attention [B, G])`` representations."""
        fields = self.fields(batch)
        weights = self.attention(fields, batch.domain)
        n_groups = fields.shape[1]
        x = (fields * (n_groups * weights).unsqueeze(-1)).reshape(len(batch), -1)
        shared = self.shared(x)
        private = x
        for index, layer in enumerate(self.private):
            private = layer(private, batch.domain)
            if index < len(self.private) - 1:  # the last private layer is linear
                private = torch.relu(private)
        return shared, private, weights

    def forward(self, batch: RankingBatch) -> TaskOutputs:
        """Funnel probabilities; ``extras`` carry the representations for the regularisers."""
        shared, private, weights = self.encode(batch)
        if self.training:
            with torch.no_grad():
                self.attention_sum.index_add_(0, batch.domain, weights.detach())
                self.attention_count.index_add_(
                    0, batch.domain, torch.ones_like(batch.domain, dtype=weights.dtype)
                )
        h = torch.cat([shared, private], dim=-1)
        if self.training or torch.is_grad_enabled():
            logits = torch.cat([tower(h) for tower in self.towers], dim=-1)
        else:
            logits = self._fused_towers(h)
        out = outputs_of(logits)
        out.extras = {"shared": shared, "private": private}
        return out

    def _fused_towers(self, h: Tensor) -> Tensor:
        """``[B, tasks]`` the towers' logits at inference: every tower's hidden layer in one
        matmul, the ``tower_dim -> 1`` output layers as one multiply-and-sum."""
        towers: list[nn.Sequential] = list(self.towers)  # type: ignore[arg-type]
        first: list[nn.Linear] = [tower[0] for tower in towers]  # type: ignore[misc]
        last: list[nn.Linear] = [tower[2] for tower in towers]  # type: ignore[misc]
        w1 = torch.cat([layer.weight for layer in first])
        hidden = torch.relu(torch.addmm(torch.cat([layer.bias for layer in first]), h, w1.T))
        w2 = torch.cat([layer.weight for layer in last])  # [tasks, tower_dim]
        products = hidden.view(len(h), len(towers), self.tower_dim) * w2
        return products.sum(-1) + torch.cat([layer.bias for layer in last])

    # -- regularisers --------------------------------------------------------------------------
    def wasserstein(self, shared: Tensor, domain: Tensor) -> Tensor:
        """Mean sliced-Wasserstein distance of each domain's shared rows to the largest one's."""
        ids, counts = torch.unique(domain, return_counts=True)
        if len(ids) < 2:
            return shared.new_zeros(())
        anchor = ids[counts.argmax()]
        reference = shared[domain == anchor]
        terms = [
            sliced_wasserstein(shared[domain == d], reference, self.n_projections)
            for d, n in zip(ids.tolist(), counts.tolist(), strict=True)
            if d != int(anchor) and n >= self.min_rows
        ]
        return torch.stack(terms).mean() if terms else shared.new_zeros(())

    def difference(self, shared: Tensor, private: Tensor, domain: Tensor) -> Tensor:
        """``sum_d ||S_d^T P_d||_F^2 / n_d^2`` (shared and private rows L2-normalised)."""
        s = nn.functional.normalize(shared, dim=-1)
        p = nn.functional.normalize(private, dim=-1)
        total = shared.new_zeros(())
        for d in torch.unique(domain).tolist():
            rows = domain == d
            n = int(rows.sum())
            total = total + ((s[rows].T @ p[rows]) ** 2).sum() / (n * n)
        return total

    def extra_loss(self, batch: RankingBatch, outputs: TaskOutputs) -> Tensor:
        """Wasserstein and difference regularisers (weights from the constructor)."""
        shared, private = outputs.extras["shared"], outputs.extras["private"]
        loss = shared.new_zeros(())
        if self.wasserstein_weight:
            loss = loss + self.wasserstein_weight * self.wasserstein(shared, batch.domain)
        if self.difference_weight:
            loss = loss + self.difference_weight * self.difference(shared, private, batch.domain)
        return loss

    # -- explanation ---------------------------------------------------------------------------
    def domain_importances(self) -> dict[int, dict[str, float]]:
        """Mean attention weight of each feature group per domain id, over the training rows.

        Domains never seen in training are left out; weights of a domain sum to 1.
        """
        out: dict[int, dict[str, float]] = {}
        for d in range(len(self.attention_count)):
            count = float(self.attention_count[d])
            if count <= 0:
                continue
            mean = (self.attention_sum[d] / count).tolist()
            out[d] = dict(zip(self.group_names, (float(v) for v in mean), strict=True))
        return out


def _without_shared_attention(state: dict[str, Tensor], prefix: str, *_: object) -> None:
    """Load a model saved before ``attention_shared`` existed: its per-domain queries are whole
    queries, so the shared part is zero (the outputs are unchanged)."""
    key = prefix + "attention_shared"
    queries = state.get(prefix + "attention_query")
    if key not in state and queries is not None:
        state[key] = queries.new_zeros(queries.shape[1])


__all__ = ["CDANW", "DENSE_GROUPS", "EMBEDDED_GROUPS", "dense_groups"]
