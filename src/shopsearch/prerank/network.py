"""The torch side of the light pre-ranker: its network and the three objectives' losses
(training only; serving is numpy, :mod:`.hccp`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as fn
from torch import nn

from shopsearch.prerank.base import STATS, Catalog, PrerankConfig
from shopsearch.prerank.samples import SHOWN, StreamList
from shopsearch.text.hashed import HashedFeaturizer

F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]


class PrerankNetwork(nn.Module):
    """The light model's modules (see :mod:`.hccp`)."""

    def __init__(self, cfg: PrerankConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.table = nn.EmbeddingBag(cfg.buckets, cfg.dim, mode="mean", padding_idx=0, sparse=True)
        nn.init.normal_(self.table.weight, std=0.1)
        self.query = nn.Linear(cfg.dim, cfg.dim)
        self.product = nn.Linear(cfg.dim + len(STATS), cfg.dim)
        self.prior = nn.Linear(cfg.dim + len(STATS), 1)
        self.upstream = nn.Linear(2, 1, bias=False)

    def bags(self, bags: Sequence[list[int]]) -> torch.Tensor:
        """``[len(bags), dim]`` mean embeddings of hashed feature bags."""
        flat = np.fromiter((i for bag in bags for i in bag), np.int64)
        offsets = np.cumsum([0] + [len(b) for b in bags[:-1]]).astype(np.int64)
        return self.embed(flat, offsets)

    def embed(self, ids: I64, offsets: I64) -> torch.Tensor:
        """Mean embeddings of bags in ``EmbeddingBag`` layout."""
        out: torch.Tensor = self.table(torch.from_numpy(ids), torch.from_numpy(offsets))
        return out

    def arrays(self) -> dict[str, F32]:
        """The weights as numpy arrays, named as :class:`~.hccp.LightPreranker` keeps them."""
        with torch.no_grad():
            return {
                "table": self.table.weight.numpy().copy(),
                "query_weight": self.query.weight.numpy().copy(),
                "query_bias": self.query.bias.numpy().copy(),
                "product_weight": self.product.weight.numpy().copy(),
                "product_bias": self.product.bias.numpy().copy(),
                "prior_weight": self.prior.weight.numpy().copy(),
                "prior_bias": self.prior.bias.numpy().copy(),
                "upstream": self.upstream.weight.numpy()[0].copy(),
            }


Picked = tuple[I64, I8, F32, F32]


def list_rows(s: StreamList, catalog: Catalog) -> I64:
    """The catalog row of each candidate of a list (``-1``: not in the catalog)."""
    return np.fromiter(
        (catalog.index.get((s.domain, p), -1) for p in s.product_ids), np.int64, len(s.levels)
    )


def pick(
    cfg: PrerankConfig, s: StreamList, rows: I64, catalog: Catalog, rng: np.random.Generator
) -> Picked:
    """The candidates of one request a step learns from: catalog rows, levels (``-1``: a
    random negative), upstream features and the ranker's values (``rows``: its
    :func:`list_rows`)."""
    known = rows >= 0
    if cfg.objective == "exposed":
        keep = known & (s.levels >= SHOWN)
    elif cfg.objective == "distill":
        keep = known & np.isfinite(s.ranker)
    else:
        keep = known & (s.levels >= 2)
        for level, most in ((0, cfg.level0_sample), (1, cfg.level1_sample)):
            at = np.flatnonzero(known & (s.levels == level))
            if at.size > most:
                at = rng.choice(at, most, replace=False)
            keep[at] = True
    chosen = np.flatnonzero(keep)
    out_rows, levels = rows[chosen], s.levels[chosen]
    upstream, ranker = s.upstream[chosen], s.ranker[chosen]
    pool = catalog.domain_rows.get(s.domain)
    if cfg.objective == "hccp" and cfg.random_negatives and pool is not None and pool.size:
        extra = rng.choice(pool, min(cfg.random_negatives, pool.size), replace=False)
        extra = extra[~np.isin(extra, out_rows)]
        out_rows = np.concatenate([out_rows, extra])
        levels = np.concatenate([levels, np.full(extra.size, -1, np.int8)])
        # not retrieved: no retrieval score, below the deepest position
        far = np.tile(np.array([[0.0, 1.0]], np.float32), (extra.size, 1))
        upstream = np.concatenate([upstream, far])
        ranker = np.concatenate([ranker, np.full(extra.size, np.nan, np.float32)])
    return out_rows, levels, upstream.astype(np.float32), ranker.astype(np.float32)


def margin_infonce(
    scores: torch.Tensor, levels: I8, margin: float, temperature: float
) -> torch.Tensor:
    """The Margin InfoNCE loss of one request: every candidate of level ``l >= 1`` against
    every candidate of a lower level, averaged per level and summed over levels."""
    lv = torch.from_numpy(levels.astype(np.int64))
    s = scores / temperature
    total = scores.sum() * 0.0
    for level in sorted(set(levels[levels >= 1].tolist())):
        lower = lv < level
        if not bool(lower.any()):
            continue
        pos = torch.from_numpy(np.flatnonzero(levels == level))
        shifted = s[pos] - margin / temperature
        negatives = torch.logsumexp(torch.where(lower, s, torch.full_like(s, -torch.inf)), 0)
        total = total + (torch.logaddexp(shifted, negatives) - shifted).mean()
    return total


def listnet(scores: torch.Tensor, ranker: F32, temperature: float) -> torch.Tensor:
    """Cross-entropy from the ranker's softmax over the candidates it scored to the model's.

    The ranker's values are standardised per request first (a ranking model's scale is its
    own: a probability, a LambdaMART score), then divided by ``temperature``.
    """
    ranked = np.flatnonzero(np.isfinite(ranker))
    if ranked.size < 2:
        return scores.sum() * 0.0
    values = ranker[ranked].astype(np.float64)
    values = (values - values.mean()) / max(float(values.std()), 1e-6)
    target = torch.softmax(torch.from_numpy(values.astype(np.float32)) / temperature, 0)
    return -(target * torch.log_softmax(scores[torch.from_numpy(ranked)], 0)).sum()


def request_loss(cfg: PrerankConfig, scores: torch.Tensor, levels: I8, ranker: F32) -> torch.Tensor:
    """The objective's loss of one request (see :mod:`.hccp`)."""
    if cfg.objective == "distill":
        return listnet(scores, ranker, cfg.ranker_temperature)
    if cfg.objective == "exposed":
        labels = torch.from_numpy((levels > SHOWN).astype(np.float32))
        return fn.binary_cross_entropy_with_logits(scores, labels)
    hybrid = margin_infonce(scores, levels, cfg.margin, cfg.temperature)
    return hybrid + cfg.consistency * listnet(scores, ranker, cfg.ranker_temperature)


def _query_bag(featurizer: HashedFeaturizer, query: str) -> list[int]:
    w, c, b = featurizer.features(query)
    return [i for i in (*w, *c, *b) if i] or [0]


def batch_loss(
    network: PrerankNetwork,
    batch: Sequence[tuple[StreamList, I64]],
    catalog: Catalog,
    featurizer: HashedFeaturizer,
    rng: np.random.Generator,
) -> torch.Tensor:
    """The mean loss over a batch of requests with their :func:`list_rows` (each product's
    side computed once)."""
    cfg = network.cfg
    picks = [pick(cfg, s, rows, catalog, rng) for s, rows in batch]
    rows = np.concatenate([p[0] for p in picks])
    unique, inverse = np.unique(rows, return_inverse=True)
    inputs = torch.cat(
        [network.embed(*catalog.bags(unique)), torch.from_numpy(catalog.stats[unique])], dim=1
    )
    p_all = torch.tanh(network.product(inputs))
    b_all = network.prior(inputs).squeeze(-1)
    q_all = torch.tanh(
        network.query(network.bags([_query_bag(featurizer, s.query) for s, _ in batch]))
    )
    losses = []
    at = 0
    for k, (_rows, levels, upstream, ranker) in enumerate(picks):
        idx = torch.from_numpy(inverse[at : at + len(levels)])
        at += len(levels)
        scores = p_all[idx] @ q_all[k] + b_all[idx]
        scores = scores + network.upstream(torch.from_numpy(upstream)).squeeze(-1)
        losses.append(request_loss(cfg, scores, levels, ranker))
    return torch.stack(losses).mean()


def train_network(
    cfg: PrerankConfig,
    lists: Sequence[StreamList],
    catalog: Catalog,
    featurizer: HashedFeaturizer,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[dict[str, F32], int, int]:
    """Train the network on the lists; returns its weights, the steps taken and planned."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    network = PrerankNetwork(cfg)
    # the hashed table's gradient touches a few rows per step: a sparse update
    dense = [p for name, p in network.named_parameters() if not name.startswith("table.")]
    optimisers = [
        torch.optim.SparseAdam(list(network.table.parameters()), lr=cfg.lr),
        torch.optim.Adam(dense, lr=cfg.lr),
    ]
    located = [(s, list_rows(s, catalog)) for s in lists]
    steps = cfg.epochs * -(-len(lists) // cfg.batch_requests)
    step, start = 0, time.monotonic()
    for _epoch in range(cfg.epochs):
        order = rng.permutation(len(lists))
        for at in range(0, len(lists), cfg.batch_requests):
            batch = [located[i] for i in order[at : at + cfg.batch_requests]]
            loss = batch_loss(network, batch, catalog, featurizer, rng)
            for optimiser in optimisers:
                optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            for optimiser in optimisers:
                optimiser.step()
            step += 1
            if progress is not None:
                progress(step, steps, float(loss.item()))
            if time.monotonic() - start > cfg.budget_s:
                return network.arrays(), step, steps
    return network.arrays(), step, steps


__all__ = [
    "PrerankNetwork",
    "batch_loss",
    "list_rows",
    "listnet",
    "margin_infonce",
    "pick",
    "request_loss",
    "train_network",
]
