"""Incremental decoding of :class:`~.model.IdGenerator` for the beam: one new token per open
prefix per call, with the keys and values of earlier positions cached.

Re-running the whole decoder on every prefix at every depth (what ``forward`` does) repeats
work three ways: the cross-attention keys and values of the query's memory tokens, identical for
every prefix of one query; the self-attention keys and values of earlier positions, unchanged as
a prefix grows (the attention is causal and the layers post-norm, so position ``t``'s layer
inputs never see later tokens); and every projection of the earlier positions. This module
computes each once: the memory's keys and values once per query, and per call only the new
token's row, whose self-attention reads the cache of its parent prefix. The result equals
``forward``'s last position (tested to float tolerance).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as fn

from shopsearch.retrieval.generative.model import IdGenerator

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, dim]`` or ``[M, dim]`` as ``[B, heads, dim / heads]``."""
    return x.view(x.shape[0], heads, -1)


class _Layer:
    """One post-norm decoder layer's weights, with the memory's keys and values."""

    def __init__(self, layer: nn.TransformerDecoderLayer, memory: torch.Tensor, heads: int):
        self.heads = heads
        self.self_in = (layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias)
        self.self_out = layer.self_attn.out_proj
        dim = memory.shape[1]
        weight, bias = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
        self.cross_q = (weight[:dim], bias[:dim])
        keys_values = fn.linear(memory, weight[dim:], bias[dim:])
        self.cross_k = _heads(keys_values[:, :dim], heads)  # [M, h, dh]
        self.cross_v = _heads(keys_values[:, dim:], heads)
        self.cross_out = layer.multihead_attn.out_proj
        self.norms = (layer.norm1, layer.norm2, layer.norm3)
        self.feed = (layer.linear1, layer.linear2)
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.keys: torch.Tensor | None = None  # [B, t, h, dh]
        self.values: torch.Tensor | None = None

    def step(self, x: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
        """The layer's output at the new position of each row of ``x`` (``[B, dim]``)."""
        dim = x.shape[1]
        projected = fn.linear(x, *self.self_in)
        q, k, v = projected[:, :dim], projected[:, dim : 2 * dim], projected[:, 2 * dim :]
        k, v = _heads(k, self.heads)[:, None], _heads(v, self.heads)[:, None]
        if self.keys is not None and self.values is not None and parents is not None:
            k = torch.cat([self.keys[parents], k], dim=1)
            v = torch.cat([self.values[parents], v], dim=1)
        self.keys, self.values = k, v
        weights = torch.einsum("bhd,bthd->bht", _heads(q, self.heads), k) * self.scale
        attended = torch.einsum("bht,bthd->bhd", weights.softmax(-1), v).reshape(len(x), dim)
        x = self.norms[0](x + self.self_out(attended))
        q = _heads(fn.linear(x, *self.cross_q), self.heads)
        weights = torch.einsum("bhd,mhd->bhm", q, self.cross_k) * self.scale
        attended = torch.einsum("bhm,mhd->bhd", weights.softmax(-1), self.cross_v)
        x = self.norms[1](x + self.cross_out(attended.reshape(len(x), dim)))
        out: torch.Tensor = self.norms[2](x + self.feed[1](torch.relu(self.feed[0](x))))
        return out


class CachedSteps:
    """A :class:`~.decode.StepScores` of one query for ``model`` with a key/value cache.

    Args:
        model: the generator (in eval mode).
        query: the query vector.
    """

    def __init__(self, model: IdGenerator, query: npt.ArrayLike) -> None:
        self.model = model
        q = torch.as_tensor(np.asarray(query, np.float32))[None]
        cfg = model.config
        with torch.inference_mode():
            memory = model.query(q).view(cfg.memory, cfg.dim)
            self.layers = [_Layer(layer, memory, cfg.heads) for layer in model.decoder.layers]
        self.depth = 0

    def __call__(self, parents: I64 | None, tokens: I64 | None) -> F32:
        """Next-token log-probabilities of each prefix (see :class:`~.decode.StepScores`)."""
        with torch.inference_mode():
            if parents is None or tokens is None:
                self.depth, rows, new = 0, None, torch.full((1,), self.model.vocab)
                for layer in self.layers:
                    layer.keys = layer.values = None
            else:
                self.depth += 1
                rows, new = torch.from_numpy(parents), torch.from_numpy(tokens)
            x = self.model.token(new) + self.model.position.weight[self.depth]
            for layer in self.layers:
                x = layer.step(x, rows)
            out = torch.log_softmax(self.model.out(x), dim=-1)
        return np.asarray(out.numpy(), np.float32)


__all__ = ["CachedSteps"]
