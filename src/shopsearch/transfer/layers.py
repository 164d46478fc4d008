"""Building blocks of the transfer models: per-domain layers, sliced Wasserstein.

* :class:`DomainLinear` — one ``Linear`` per domain, applied row-wise by ``batch.domain`` (a
  loop over the domains present in the batch, so it costs one matmul per domain).
* :func:`sliced_wasserstein` — the sliced 2-Wasserstein distance between two point clouds of
  possibly different sizes (random directions, 1-D optimal transport by sorting, quantiles
  matched by linear index interpolation), differentiable in both clouds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor, nn

from shopsearch.ranking.base import RankingBatch

#: ``fn(rows, domain_id) -> outputs`` applied to one domain's rows.
DomainFn = Callable[[Tensor, int], Tensor]


class DomainLinear(nn.Module):
    """``y = x W[d] + b[d]`` with a weight matrix per domain ``d``.

    Args:
        n_domains: number of domain ids (``FeatureSpec.n_domains``; id 0 = unknown).
        fan_in: input width.
        fan_out: output width.
    """

    def __init__(self, n_domains: int, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max(1, n_domains), fan_in, fan_out) / fan_in**0.5)
        self.bias = nn.Parameter(torch.zeros(max(1, n_domains), fan_out))

    def forward(self, x: Tensor, domain: Tensor) -> Tensor:
        """``[B, fan_out]`` each row through its own domain's layer."""
        return per_domain(x, domain, lambda part, d: part @ self.weight[d] + self.bias[d])


def per_domain(x: Tensor, domain: Tensor, fn: DomainFn) -> Tensor:
    """Rows of ``x`` grouped by ``domain``, each group through ``fn(rows, d)``, re-assembled."""
    if len(domain) == 0:
        return x.new_zeros((0, 0))
    # Rows sorted by domain (stable: each group keeps the batch's order), one slice per domain.
    rows = torch.argsort(domain, stable=True)
    grouped = x.index_select(0, rows)
    pieces: list[Tensor] = []
    start = 0
    for d, n in enumerate(torch.bincount(domain).tolist()):
        if n:
            pieces.append(fn(grouped[start : start + n], d))
            start += n
    stacked = torch.cat(pieces)
    order = torch.empty_like(rows)
    order[rows] = torch.arange(len(rows), device=rows.device)
    return stacked.index_select(0, order)


def hide_domain(batch: RankingBatch) -> RankingBatch:
    """``batch`` with every domain id (and the sparse ``domain`` field) set to 0 (unknown)."""
    sparse = batch.sparse.clone()
    if sparse.shape[1]:
        sparse[:, 0] = 0
    return replace(batch, domain=torch.zeros_like(batch.domain), sparse=sparse)


def sliced_wasserstein(
    a: Tensor, b: Tensor, n_projections: int = 32, generator: torch.Generator | None = None
) -> Tensor:
    """Sliced 2-Wasserstein distance (squared, averaged over directions) of clouds ``a``, ``b``.

    ``a`` is ``[n, k]`` and ``b`` ``[m, k]``; the 1-D distributions along each random unit
    direction are compared at ``min(n, m)`` matched quantiles.
    """
    k = a.shape[1]
    theta = torch.randn(k, n_projections, generator=generator, dtype=a.dtype)
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa = torch.sort(a @ theta, dim=0).values
    pb = torch.sort(b @ theta, dim=0).values
    size = min(len(pa), len(pb))
    if size == 0:
        return a.new_zeros(())
    levels = torch.linspace(0.0, 1.0, size, dtype=a.dtype)
    qa = _quantiles(pa, levels)
    qb = _quantiles(pb, levels)
    return ((qa - qb) ** 2).mean()


def _quantiles(sorted_values: Tensor, levels: Tensor) -> Tensor:
    """Linearly interpolated quantiles (rows of ``sorted_values`` are sorted per column)."""
    n = len(sorted_values)
    position = levels * (n - 1)
    low = position.floor().long().clamp(0, n - 1)
    high = (low + 1).clamp(max=n - 1)
    frac = (position - low.to(position.dtype)).unsqueeze(1)
    return sorted_values[low] * (1 - frac) + sorted_values[high] * frac


__all__ = ["DomainLinear", "hide_domain", "per_domain", "sliced_wasserstein"]
