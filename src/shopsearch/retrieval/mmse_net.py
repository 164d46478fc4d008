"""The MMSE two-tower network: per-grain hashed heads, a MiniLM head, and their post-fusion.

Each tower (query, item) has one head per feature grain of :mod:`shopsearch.text.hashed`
(``bag + Linear(bag)`` over a first-layer ``EmbeddingBag`` table shared by both towers,
L2-normalised) and, with the MiniLM backbone, a residual head over the frozen sentence vector.
Its ``fused`` weights the heads by ``√w_k`` with ``w = softmax(fusion logits)``, so the served
vectors have unit norm and their inner product is the fused similarity ``Σ_k w_k cos(q_k, i_k)``
(:mod:`shopsearch.retrieval.mmse`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from shopsearch.text.encoders import FloatMatrix
from shopsearch.text.hashed import GRAINS, Bags

if TYPE_CHECKING:
    import torch


def two_tower_net(
    buckets: int, dim: int, hashed: bool = True, dense_dim: int = 0
) -> torch.nn.Module:
    """The two towers: a shared hashed table with per-tower per-grain heads (``hashed``), a
    per-tower residual head over frozen sentence vectors (``dense_dim > 0``), fusion logits."""
    import torch
    from torch import nn

    class TwoTowerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            heads = 0
            if hashed:
                self.table = nn.EmbeddingBag(buckets, dim, mode="mean", sparse=True)
                nn.init.normal_(self.table.weight, std=0.1)
                self.query_heads = nn.ModuleList(nn.Linear(dim, dim) for _ in GRAINS)
                self.item_heads = nn.ModuleList(nn.Linear(dim, dim) for _ in GRAINS)
                heads += len(GRAINS)
            if dense_dim:
                self.query_dense = nn.Linear(dense_dim, dense_dim)
                self.item_dense = nn.Linear(dense_dim, dense_dim)
                heads += 1
            for head in self.modules():
                if isinstance(head, nn.Linear):  # residual heads start as the identity
                    nn.init.zeros_(head.weight)
                    nn.init.zeros_(head.bias)
            self.fusion_logits = nn.Parameter(torch.zeros(heads))

        def tower(
            self, bags: Sequence[Bags], dense: FloatMatrix | None, side: str
        ) -> list[torch.Tensor]:
            """Per-head unit vectors, each ``[texts, head dim]``."""
            outs = []
            if hashed:
                heads = self.query_heads if side == "query" else self.item_heads
                for grain, head in zip(bags, heads, strict=True):
                    bag = self.table(torch.from_numpy(grain.ids), torch.from_numpy(grain.offsets))
                    outs.append(nn.functional.normalize(bag + head(bag), dim=-1))
            if dense_dim:
                assert dense is not None
                vectors = torch.from_numpy(np.ascontiguousarray(dense, np.float32))
                head = self.query_dense if side == "query" else self.item_dense
                outs.append(nn.functional.normalize(vectors + head(vectors), dim=-1))
            return outs

        def fused(self, heads: list[torch.Tensor]) -> torch.Tensor:
            """``concat_k(√w_k · head_k)``: unit vectors whose dot product is the similarity."""
            weights = torch.softmax(self.fusion_logits, dim=0).sqrt()
            return torch.cat([h * weights[k] for k, h in enumerate(heads)], dim=1)

    return TwoTowerNet()
