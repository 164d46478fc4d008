"""The generator: a small transformer decoder that maps a query vector to a semantic ID, token
by token, trained by supervised next-token prediction (SFT) on (query, product) pairs.

The query (any encoder's vector: MiniLM, a two-tower's query side) becomes ``memory`` tokens
through one linear layer; a causal transformer decoder reads ``[BOS, t_1, ..., t_{d-1}]`` (token
and depth embeddings) with cross-attention to them and predicts ``t_d`` at every depth. Loss:
cross-entropy of every ID token (teacher forcing), a pair's loss weighted by its ``weight``
(e.g. purchase > cart > click). :class:`~.incremental.CachedSteps` decodes it incrementally
for :func:`~.decode.beam_search`, so decoding is constrained to the trie of valid IDs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from shopsearch.errors import InvalidInputError

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator's sizes and training.

    Attributes:
        dim: width of the decoder.
        heads: attention heads.
        layers: decoder layers.
        memory: query tokens the query vector becomes.
        epochs: passes over the pairs.
        batch_size: pairs per step.
        lr: AdamW's learning rate.
        budget_s: most seconds of training.
        seed: seed of initialisation and shuffling.
    """

    dim: int = 64
    heads: int = 4
    layers: int = 2
    memory: int = 4
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    budget_s: float = 2700.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.dim, self.heads, self.layers, self.memory, self.epochs, self.batch_size) < 1:
            raise InvalidInputError("generator sizes, epochs and batch_size must be >= 1")
        if self.dim % self.heads:
            raise InvalidInputError(f"dim={self.dim} must be a multiple of heads={self.heads}")


class IdGenerator(nn.Module):
    """The decoder (see the module docstring).

    Args:
        query_dim: width of the query vectors.
        vocab: ID tokens (``0..vocab-1``; ``vocab`` is BOS).
        depth: ID length.
        config: sizes and training.
    """

    def __init__(self, query_dim: int, vocab: int, depth: int, config: GeneratorConfig) -> None:
        super().__init__()
        self.config, self.vocab, self.depth = config, vocab, depth
        torch.manual_seed(config.seed)  # the initial weights, so a training run repeats
        dim = config.dim
        self.query = nn.Linear(query_dim, dim * config.memory)
        self.token = nn.Embedding(vocab + 1, dim)
        self.position = nn.Embedding(depth, dim)
        layer = nn.TransformerDecoderLayer(dim, config.heads, 4 * dim, 0.0, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, config.layers)
        self.out = nn.Linear(dim, vocab)

    def forward(self, queries: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        """``[B, T, vocab]`` next-token logits after each position of ``[B, T]`` inputs that
        start with BOS (``T <= depth``)."""
        batch, length = prefixes.shape
        memory = self.query(queries).view(batch, self.config.memory, self.config.dim)
        x = self.token(prefixes) + self.position(torch.arange(length))[None]
        causal = nn.Transformer.generate_square_subsequent_mask(length)
        out: torch.Tensor = self.out(self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True))
        return out

    def token_logprobs(
        self, queries: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B, depth]`` log-probability of each token of ``ids`` (teacher forcing; 0 past a
        row's length), differentiable: the building block of every training loss."""
        inputs = torch.cat([torch.full((len(ids), 1), self.vocab), ids[:, :-1]], dim=1)
        logits = torch.log_softmax(self(queries, inputs), dim=-1)
        out = logits.gather(2, ids[:, :, None]).squeeze(2)
        if lengths is not None:
            out = out * (torch.arange(self.depth)[None, :] < lengths[:, None])
        return out

    def check_ids(self, queries: npt.ArrayLike, ids: npt.ArrayLike,
                  lengths: npt.ArrayLike | None = None) -> tuple[torch.Tensor, ...]:  # fmt: skip
        """``queries``, ``ids`` (padded to ``depth``; padding may be any valid token) and
        ``lengths`` as tensors.

        Raises:
            InvalidInputError: shapes that do not match, a token out of the vocabulary or a
                length out of ``1..depth``.
        """
        q = torch.as_tensor(np.asarray(queries, np.float32))
        y = torch.as_tensor(np.asarray(ids, np.int64))
        if q.ndim != 2 or y.shape != (len(q), self.depth):
            raise InvalidInputError(
                f"queries {tuple(q.shape)} and ids {tuple(y.shape)}: give one ID of "
                f"{self.depth} tokens per query"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.vocab):
            raise InvalidInputError(f"ID tokens must be in 0..{self.vocab - 1}")
        n = torch.full((len(y),), self.depth) if lengths is None else torch.as_tensor(
            np.asarray(lengths, np.int64))  # fmt: skip
        if n.shape != (len(y),) or (len(n) and (int(n.min()) < 1 or int(n.max()) > self.depth)):
            raise InvalidInputError(f"give one length in 1..{self.depth} per ID")
        return q, y, n

    def fit(
        self,
        queries: npt.ArrayLike,
        ids: npt.ArrayLike,
        weights: npt.ArrayLike | None = None,
        progress: Callable[[int, int, float], None] | None = None,
        lengths: npt.ArrayLike | None = None,
    ) -> IdGenerator:
        """Learn to emit ``ids[i]`` (``[n, depth]`` tokens, the first ``lengths[i]`` of them
        the ID; default: all) for ``queries[i]``: the weighted mean of each pair's ID NLL.

        Raises:
            InvalidInputError: see :meth:`check_ids`.
        """
        q, y, n = self.check_ids(queries, ids, lengths)
        w = torch.ones(len(q)) if weights is None else torch.as_tensor(np.asarray(weights))
        cfg = self.config
        torch.manual_seed(cfg.seed)
        order_rng = np.random.default_rng(cfg.seed)
        optimiser = torch.optim.AdamW(self.parameters(), lr=cfg.lr)
        steps = cfg.epochs * -(-len(q) // cfg.batch_size)
        step, start = 0, time.monotonic()
        self.train()
        for _epoch in range(cfg.epochs):
            order = torch.from_numpy(order_rng.permutation(len(q)))
            for at in range(0, len(q), cfg.batch_size):
                rows = order[at : at + cfg.batch_size]
                nll = -self.token_logprobs(q[rows], y[rows], n[rows]).sum(1)
                loss = (nll * w[rows].float()).sum() / w[rows].float().sum()
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                step += 1
                if progress is not None:
                    progress(step, steps, float(loss.item()))
                if time.monotonic() - start > cfg.budget_s:
                    self.eval()
                    return self
        self.eval()
        return self


__all__ = ["GeneratorConfig", "IdGenerator"]
