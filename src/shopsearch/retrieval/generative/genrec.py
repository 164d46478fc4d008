"""GenRec (Zou et al., JD, SIGIR'26, arXiv 2604.14878): a generator of semantic IDs that reads
the user's history, trained on whole pages.

**Prompt (encoder side).** The query vector becomes ``memory`` query tokens (as in
:class:`~.model.IdGenerator`, whose modules this net reuses), followed by the user's history
(:mod:`.pages`: earlier interacted products, most recent first). With the **asymmetric linear
Token Merger** each history item is *one* token: ``W_m [e(t_1); ...; e(t_D)] + b`` over its ID
tokens' embeddings (shared with the decoder; tokens past the ID's length are zero), plus an
embedding of its stage (click, cart, purchase) and of its recency rank. Without the merger an
item is ``D`` tokens, each its token embedding plus a position-in-ID embedding (and the same
stage and recency embeddings). One transformer encoder layer mixes query and history tokens.
The decoder and its output vocabulary are unchanged either way (full-resolution decoding):
that is the asymmetry.

**Page-wise NTP.** The target is the concatenation of the page's interacted products' IDs
(purchase > cart > click, then position; :class:`~.pages.Page`), then an end-of-page token
``EOP``. IDs are prefix-free, so the trie restarts at its root after each one. Every input
token carries the position-in-ID and the item slot of the token it predicts. Loss: the mean
NLL over the whole target, averaged over pages. The **point-wise** baseline is one example
per (request, interacted product) with the ID alone as the target.

**Serving** decodes the first item slot only, with the constrained beam
(:func:`~.decode.beam_search` and :meth:`GenRec.step_scores`, which encodes the prompt once
and then scores prefixes). GRPO-SR is in :mod:`.grpo`.

**Measured** (``eval retrieval --dataset sim --genrec all``; 5,110 products, 12,032 training
pages, 2,000 test requests, top 100; see :mod:`shopsearch.evaluate.suites.retrieval_sim_genrec`):
none of GenRec's three mechanisms helped here. NDCG@10 / recall@100 / MRR: page-wise SFT with
history and merger 0.756 / 0.916 / 0.865; + GRPO-SR 0.755 / 0.879 / 0.854 (recall falls); no
merger (+ GRPO-SR) 0.754 / 0.885 / 0.852 at 3.2x the prompt tokens (47 vs 15); no history
0.762 / 0.921 / 0.876; point-wise, no history 0.768 / 0.920 / 0.875; the MiniLM dense index
0.837 / 0.923 / 0.939. The same holds on the ``active_users`` slice (83% of the requests).

Uncertain points of the reconstruction [U4]: whether the page target is an ordered sequence or
a set (ours: ordered); the exact form of the merger's input (ours: the item's padded token
embeddings concatenated); recency and stage embeddings; the small encoder–decoder (the paper
fine-tunes a decoder-only Qwen2.5).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import orjson
import torch
from torch import nn
from torch.nn import functional

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.retrieval.generative.decode import StepScores, beam_search, prefix_scorer
from shopsearch.retrieval.generative.model import GeneratorConfig, IdGenerator
from shopsearch.retrieval.generative.pages import Page
from shopsearch.retrieval.generative.trie import PrefixTrie
from shopsearch.store.atomic import write_bytes, write_json

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
_FORMAT = "shopsearch-genrec"
_FORMAT_VERSION = 1
#: Stage → stage index of a history item (click, add to cart, purchase).
STAGE_INDEX = {2.0: 0, 2.5: 1, 3.0: 2}


@dataclass(frozen=True)
class GenRecConfig:
    """GenRec's own settings (sizes and SFT training are :class:`~.model.GeneratorConfig`).

    Attributes:
        merger: one prompt token per history item (the Token Merger); ``False``: one per ID
            token.
        history: most history items read (0: query only).
        page_wise: page-wise targets (every interacted product, then EOP); ``False``: one
            example per interacted product, its ID alone.
        page_items: most products of a page target (the best first).
        encoder_layers: transformer encoder layers over the prompt.
    """

    merger: bool = True
    history: int = 20
    page_wise: bool = True
    page_items: int = 5
    encoder_layers: int = 1

    def __post_init__(self) -> None:
        if self.history < 0 or self.page_items < 1 or self.encoder_layers < 0:
            raise InvalidInputError(
                f"history={self.history}, page_items={self.page_items}, encoder_layers="
                f"{self.encoder_layers}: use history >= 0, page_items >= 1, encoder_layers >= 0"
            )


@dataclass(frozen=True)
class GenRecExamples:
    """Training (or serving) examples over product rows of an ID table.

    Attributes:
        queries: ``[n, query_dim]`` query vectors.
        items: per example, the target's product rows, best first (may be empty at serving).
        history: ``[n, H]`` history product rows, most recent first, ``-1`` padded.
        history_stage: ``[n, H]`` each history item's stage index (:data:`STAGE_INDEX`).
        domain: per example, its market.
        page: per example, the index of the page it came from.
    """

    queries: F32
    items: list[I64]
    history: I64
    history_stage: I64
    domain: list[str]
    page: I64

    def __len__(self) -> int:
        return len(self.queries)

    def subset(self, rows: npt.ArrayLike) -> GenRecExamples:
        """The examples at ``rows``."""
        picked = np.asarray(rows, np.int64)
        return GenRecExamples(
            self.queries[picked],
            [self.items[i] for i in picked.tolist()],
            self.history[picked],
            self.history_stage[picked],
            [self.domain[i] for i in picked.tolist()],
            self.page[picked],
        )

    @classmethod
    def from_pages(
        cls,
        pages: Sequence[Page],
        query_vectors: npt.ArrayLike,
        row_of: dict[ProductKey, int],
        history: int = 20,
        point_wise: bool = False,
    ) -> GenRecExamples:
        """Examples of pages (``query_vectors[i]`` is page ``i``'s query); products without a
        row are dropped (a page left without items is dropped too); ``point_wise``: one
        example per (page, item).

        Raises:
            InvalidInputError: not one query vector per page.
        """
        q = np.asarray(query_vectors, np.float32)
        if q.ndim != 2 or len(q) != len(pages):
            raise InvalidInputError(f"give one query vector per page ({len(pages)}), not {q.shape}")
        keep, items, hist, stage = [], [], [], []
        for at, page in enumerate(pages):
            rows = np.array([row_of[k] for k in page.items if k in row_of], np.int64)
            if not rows.size:
                continue
            h, s = history_rows([page.history], [page.history_stages], row_of, history)
            for target in [rows[i : i + 1] for i in range(len(rows))] if point_wise else [rows]:
                keep.append(at)
                items.append(target)
                hist.append(h[0])
                stage.append(s[0])
        chosen = np.array(keep, np.int64)
        width = max(history, 0)
        return cls(
            q[chosen] if chosen.size else np.zeros((0, q.shape[1]), np.float32),
            items,
            np.array(hist, np.int64).reshape(len(keep), width),
            np.array(stage, np.int64).reshape(len(keep), width),
            [pages[i].domain for i in keep],
            chosen,
        )


def history_rows(
    histories: Sequence[Sequence[ProductKey]],
    stages: Sequence[Sequence[float]],
    row_of: dict[ProductKey, int],
    size: int,
) -> tuple[I64, I64]:
    """``[n, size]`` rows (``-1`` padded; products without a row skipped) and stage indexes."""
    rows = np.full((len(histories), size), -1, np.int64)
    index = np.zeros((len(histories), size), np.int64)
    for i, (keys, values) in enumerate(zip(histories, stages, strict=True)):
        known = [(row_of[k], STAGE_INDEX.get(v, 0)) for k, v in zip(keys, values, strict=True)
                 if k in row_of][:size]  # fmt: skip
        for j, (row, stage) in enumerate(known):
            rows[i, j], index[i, j] = row, stage
    return rows, index


class GenRecNet(nn.Module):
    """The GenRec generator (see the module docstring).

    Args:
        query_dim: width of the query vectors.
        vocab: ID tokens (``0..vocab-1``); ``vocab`` is EOP and ``vocab + 1`` BOS.
        depth: the longest ID.
        config: sizes and SFT training.
        genrec: GenRec's settings.
    """

    def __init__(
        self, query_dim: int, vocab: int, depth: int, config: GeneratorConfig, genrec: GenRecConfig
    ) -> None:
        super().__init__()
        self.config, self.genrec, self.id_vocab, self.depth = config, genrec, vocab, depth
        self.core = IdGenerator(query_dim, vocab + 1, depth, config)  # outputs: IDs + EOP
        dim = config.dim
        self.slot = nn.Embedding(genrec.page_items + 1, dim)
        self.stage = nn.Embedding(len(STAGE_INDEX), dim)
        self.recency = nn.Embedding(max(genrec.history, 1), dim)
        self.merger = nn.Linear(depth * dim, dim) if genrec.merger else None
        self.id_position = nn.Embedding(depth, dim)
        layer = nn.TransformerEncoderLayer(dim, config.heads, 4 * dim, 0.0, batch_first=True)
        self.encoder = (
            nn.TransformerEncoder(layer, genrec.encoder_layers, enable_nested_tensor=False)
            if genrec.encoder_layers
            else None
        )

    @property
    def eop(self) -> int:
        """The end-of-page token."""
        return self.id_vocab

    @property
    def bos(self) -> int:
        """The start token."""
        return self.id_vocab + 1

    def encode(
        self,
        queries: torch.Tensor,
        hist_tokens: torch.Tensor,
        hist_lengths: torch.Tensor,
        hist_stages: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt: ``memory [B, M, dim]`` and its padding mask ``[B, M]`` (True = pad).

        Args:
            queries: ``[B, query_dim]``.
            hist_tokens: ``[B, H, depth]`` ID tokens of the history items.
            hist_lengths: ``[B, H]`` their ID lengths (0: no item).
            hist_stages: ``[B, H]`` their stage indexes.
        """
        cfg = self.config
        batch = len(queries)
        query = self.core.query(queries).view(batch, cfg.memory, cfg.dim)
        parts, pads = [query], [torch.zeros(batch, cfg.memory, dtype=torch.bool)]
        h = hist_tokens.shape[1]
        if h:
            inside = torch.arange(self.depth)[None, None, :] < hist_lengths[:, :, None]
            embedded = self.core.token(hist_tokens.clamp(0, self.id_vocab - 1))
            embedded = embedded * inside[..., None]
            extra = self.stage(hist_stages) + self.recency(torch.arange(h))[None]
            if self.merger is not None:
                items = self.merger(embedded.reshape(batch, h, self.depth * cfg.dim)) + extra
                parts.append(items)
                pads.append(hist_lengths <= 0)
            else:
                items = embedded + self.id_position(torch.arange(self.depth))[None, None]
                items = items + extra[:, :, None, :]
                parts.append(items.reshape(batch, h * self.depth, cfg.dim))
                pads.append(~inside.reshape(batch, h * self.depth))
        memory, pad = torch.cat(parts, dim=1), torch.cat(pads, dim=1)
        if self.encoder is not None:
            memory = self.encoder(memory, src_key_padding_mask=pad)
        return memory, pad

    def logits(
        self,
        memory: torch.Tensor,
        pad: torch.Tensor,
        inputs: torch.Tensor,
        positions: torch.Tensor,
        slots: torch.Tensor,
    ) -> torch.Tensor:
        """``[B, T, vocab + 1]`` next-token logits (ID tokens and EOP) after each input
        token; ``positions`` / ``slots`` are those of the token predicted."""
        length = inputs.shape[1]
        x = self.core.token(inputs) + self.core.position(positions) + self.slot(slots)
        causal = nn.Transformer.generate_square_subsequent_mask(length)
        out = self.core.decoder(
            x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=pad
        )
        result: torch.Tensor = self.core.out(out)
        return result

    def cross_keys(self, memory: torch.Tensor, pad: torch.Tensor) -> CrossKeys:
        """The decoder's cross-attention keys and values of prompts, computed once per prompt
        (serving and sampling score many prefixes against the same prompt)."""
        batch, size, dim = memory.shape
        heads = self.config.heads
        pairs = []
        for layer in self.core.decoder.layers:
            weight, bias = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
            k = functional.linear(memory, weight[dim : 2 * dim], bias[dim : 2 * dim])
            v = functional.linear(memory, weight[2 * dim :], bias[2 * dim :])
            pairs.append(
                (
                    k.view(batch, size, heads, dim // heads).transpose(1, 2),
                    v.view(batch, size, heads, dim // heads).transpose(1, 2),
                )
            )
        return CrossKeys(pairs, ~pad[:, None, None, :])

    def last_logits(
        self,
        keys: CrossKeys,
        prompt: torch.Tensor | None,
        inputs: torch.Tensor,
        positions: torch.Tensor,
        slots: torch.Tensor,
    ) -> torch.Tensor:
        """``[P, vocab + 1]`` next-token logits after the last input token of each prefix, with
        cached cross-attention keys (equal to :meth:`logits`' last position); ``prompt``:
        each prefix's prompt row (``None``: one prompt for every prefix)."""
        rows, length = inputs.shape
        dim, heads = self.config.dim, self.config.heads
        x = self.core.token(inputs) + self.core.position(positions) + self.slot(slots)
        causal = nn.Transformer.generate_square_subsequent_mask(length)
        allow = keys.allow if prompt is None else keys.allow[prompt]
        for layer, (k, v) in zip(self.core.decoder.layers, keys.pairs, strict=True):
            if prompt is None:
                k, v = k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)
            else:
                k, v = k[prompt], v[prompt]
            attended = layer.self_attn(x, x, x, attn_mask=causal, is_causal=True,
                                       need_weights=False)[0]  # fmt: skip
            x = layer.norm1(x + attended)
            cross = layer.multihead_attn
            q = functional.linear(x, cross.in_proj_weight[:dim], cross.in_proj_bias[:dim])
            q = q.view(rows, length, heads, dim // heads).transpose(1, 2)
            a = functional.scaled_dot_product_attention(q, k, v, attn_mask=allow)
            x = layer.norm2(x + cross.out_proj(a.transpose(1, 2).reshape(rows, length, dim)))
            x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
        result: torch.Tensor = self.core.out(x[:, -1])
        return result


@dataclass(frozen=True)
class CrossKeys:
    """Per decoder layer, cross-attention keys and values ``[B, heads, M, dim/heads]``, and
    which prompt tokens may be attended to (``[B, 1, 1, M]``)."""

    pairs: list[tuple[torch.Tensor, torch.Tensor]]
    allow: torch.Tensor


@dataclass(frozen=True)
class Targets:
    """Teacher-forced decoder inputs and targets of a batch (``[B, T]`` each)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor
    slots: torch.Tensor
    mask: torch.Tensor


class GenRec:
    """A GenRec generator over a fixed table of product IDs: training, serving, save/load.

    Args:
        tokens: ``[n, depth]`` ID tokens of every product row (e.g.
            :attr:`~.ids.FixedSemanticIds.tokens`).
        lengths: each row's ID length.
        query_dim: width of the query vectors.
        config: sizes and SFT training.
        genrec: GenRec's settings.
        vocab: ID tokens (default: the largest token + 1).
    """

    def __init__(
        self,
        tokens: npt.ArrayLike,
        lengths: npt.ArrayLike,
        query_dim: int,
        config: GeneratorConfig | None = None,
        genrec: GenRecConfig | None = None,
        vocab: int | None = None,
    ) -> None:
        self.tokens = np.asarray(tokens, np.int64)
        self.lengths = np.asarray(lengths, np.int64)
        self.trie = PrefixTrie(self.tokens, self.lengths)
        size = int(self.tokens.max()) + 1 if vocab is None else vocab
        if self.tokens.size and (self.tokens.min() < 0 or self.tokens.max() >= size):
            raise InvalidInputError(f"ID tokens must be in 0..{size - 1}")
        self.config = config or GeneratorConfig()
        self.genrec = genrec or GenRecConfig()
        torch.manual_seed(self.config.seed)
        self.net = GenRecNet(query_dim, size, self.tokens.shape[1], self.config, self.genrec)
        self.net.eval()
        self.query_dim = query_dim

    @property
    def vocab(self) -> int:
        """ID tokens (``0..vocab-1``)."""
        return int(self.net.id_vocab)

    # -- tensors ---------------------------------------------------------------------------
    def history_tensors(
        self, rows: npt.ArrayLike, stages: npt.ArrayLike
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens ``[B, H, depth]``, lengths ``[B, H]`` and stages of history rows (``-1``:
        none), cut to the configured history size."""
        r = np.asarray(rows, np.int64)[:, : self.genrec.history]
        s = np.asarray(stages, np.int64)[:, : self.genrec.history]
        safe = np.maximum(r, 0)
        lengths = np.where(r >= 0, self.lengths[safe], 0)
        return (
            torch.from_numpy(self.tokens[safe]),
            torch.from_numpy(lengths),
            torch.from_numpy(np.clip(s, 0, len(STAGE_INDEX) - 1)),
        )

    def targets(self, items: Sequence[I64]) -> Targets:
        """Page-wise (IDs then EOP) or point-wise (the ID alone) targets of product rows."""
        seqs, positions, slots = [], [], []
        for rows in items:
            seq: list[int] = []
            pos: list[int] = []
            slot: list[int] = []
            for s, row in enumerate(np.asarray(rows)[: self.genrec.page_items].tolist()):
                n = int(self.lengths[row])
                seq += self.tokens[row, :n].tolist()
                pos += list(range(n))
                slot += [s] * n
            if self.genrec.page_wise:
                seq.append(self.net.eop)
                pos.append(0)
                slot.append(min(len(rows), self.genrec.page_items))
            seqs.append(seq)
            positions.append(pos)
            slots.append(slot)
        width = max((len(s) for s in seqs), default=1)
        shape = (len(seqs), width)
        target = np.zeros(shape, np.int64)
        position = np.zeros(shape, np.int64)
        slot_of = np.zeros(shape, np.int64)
        mask = np.zeros(shape, bool)
        for i, (seq, pos, slot) in enumerate(zip(seqs, positions, slots, strict=True)):
            target[i, : len(seq)], position[i, : len(seq)] = seq, pos
            slot_of[i, : len(seq)], mask[i, : len(seq)] = slot, True
        y = torch.from_numpy(target)
        inputs = torch.cat([torch.full((len(y), 1), self.net.bos), y[:, :-1]], dim=1)
        return Targets(
            inputs, y, torch.from_numpy(position), torch.from_numpy(slot_of), torch.from_numpy(mask)
        )

    def encode(self, examples: GenRecExamples) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompts of examples (memory and padding mask)."""
        tokens, lengths, stages = self.history_tensors(examples.history, examples.history_stage)
        return self.net.encode(torch.from_numpy(examples.queries), tokens, lengths, stages)

    def nll(self, examples: GenRecExamples) -> torch.Tensor:
        """Mean over examples of the mean NLL of each one's target tokens (differentiable)."""
        memory, pad = self.encode(examples)
        t = self.targets(examples.items)
        logp = torch.log_softmax(self.net.logits(memory, pad, t.inputs, t.positions, t.slots), -1)
        token = logp.gather(2, t.targets[:, :, None]).squeeze(2) * t.mask
        return (-token.sum(1) / t.mask.sum(1).clamp(min=1)).mean()

    def prompt_tokens(self, history: npt.ArrayLike) -> F64:
        """Prompt length of each example with history rows ``[B, H]`` (query tokens + history
        tokens: one per item with the merger, one per ID token without)."""
        r = np.asarray(history, np.int64)[:, : self.genrec.history]
        lengths = np.where(r >= 0, self.lengths[np.maximum(r, 0)], 0)
        per = (lengths > 0).sum(1) if self.genrec.merger else lengths.sum(1)
        return np.asarray(self.config.memory + per, np.float64)

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        examples: GenRecExamples,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> Self:
        """Supervised training (page-wise or point-wise NTP) with AdamW, seeded, within
        :attr:`~.model.GeneratorConfig.budget_s` seconds.

        Raises:
            InvalidInputError: no examples, or an example without a target.
        """
        if not len(examples) or any(not len(i) for i in examples.items):
            raise InvalidInputError("GenRec needs examples, each with at least one target item")
        cfg = self.config
        torch.manual_seed(cfg.seed)
        order_rng = np.random.default_rng(cfg.seed)
        optimiser = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr)
        steps = cfg.epochs * -(-len(examples) // cfg.batch_size)
        step, start = 0, time.monotonic()
        self.net.train()
        try:
            for _epoch in range(cfg.epochs):
                order = order_rng.permutation(len(examples))
                for at in range(0, len(order), cfg.batch_size):
                    loss = self.nll(examples.subset(order[at : at + cfg.batch_size]))
                    optimiser.zero_grad()
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimiser.step()
                    step += 1
                    if progress is not None:
                        progress(step, steps, float(loss.item()))
                    if time.monotonic() - start > cfg.budget_s:
                        return self
        finally:
            self.net.eval()
        return self

    # -- serving ---------------------------------------------------------------------------
    def step_scores(
        self,
        query: npt.ArrayLike,
        history: npt.ArrayLike = (),
        history_stage: npt.ArrayLike = (),
    ) -> StepScores:
        """The next-token scorer of the first item slot for one request (for the beam): the
        prompt (query vector and history rows, most recent first, with stage indexes) is
        encoded once, then each call scores a batch of prefixes."""
        q = torch.as_tensor(np.asarray(query, np.float32))[None]
        rows = np.asarray(history, np.int64).reshape(1, -1)
        stages = np.asarray(history_stage, np.int64).reshape(1, -1)
        if stages.shape != rows.shape:
            stages = np.zeros_like(rows)
        with torch.inference_mode():
            keys = self.net.cross_keys(*self.net.encode(q, *self.history_tensors(rows, stages)))

        def scores(prefixes: Sequence[Sequence[int]]) -> F32:
            length = len(prefixes[0]) if prefixes else 0
            inputs = torch.tensor([[self.net.bos, *p] for p in prefixes], dtype=torch.int64)
            inputs = inputs.view(len(prefixes), length + 1)
            positions = torch.arange(length + 1)[None].expand(len(prefixes), -1)
            with torch.inference_mode():
                logits = self.net.last_logits(
                    keys, None, inputs, positions, torch.zeros_like(inputs)
                )
                out = torch.log_softmax(logits, dim=-1)
            return np.asarray(out.numpy(), np.float32)

        return prefix_scorer(scores)

    def retrieve(
        self,
        query: npt.ArrayLike,
        history: npt.ArrayLike = (),
        history_stage: npt.ArrayLike = (),
        k: int = 100,
        beam: int = 100,
        allowed: Bool | None = None,
    ) -> tuple[I64, F64]:
        """The product rows of the ``k`` best first-slot IDs (constrained beam; ``allowed``:
        :meth:`~.trie.PrefixTrie.allowed` of a filter) and their log-probabilities."""
        step = self.step_scores(query, history, history_stage)
        rows, scores = beam_search(self.trie, step, k, max(beam, k), allowed).rows(self.trie)
        return rows[:k], scores[:k]

    # -- persistence -----------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """``genrec.json``, ``genrec.safetensors`` and the ID table (``id_tokens.npy``,
        ``id_lengths.npy``) in ``folder``."""
        from safetensors.torch import save

        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        write_bytes(folder / "genrec.safetensors", save(state))
        np.save(folder / "id_tokens.npy", self.tokens)
        np.save(folder / "id_lengths.npy", self.lengths)
        settings: dict[str, Any] = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "query_dim": self.query_dim,
            "vocab": self.net.id_vocab,
            "config": asdict(self.config),
            "genrec": asdict(self.genrec),
        }
        write_json(folder / "genrec.json", settings)

    @classmethod
    def load(cls, folder: Path) -> GenRec:
        """The generator :meth:`save` wrote.

        Raises:
            WorkspaceError: ``folder`` holds no GenRec generator.
        """
        from safetensors.torch import load_file

        try:
            settings = orjson.loads((folder / "genrec.json").read_bytes())
            tokens = np.load(folder / "id_tokens.npy", allow_pickle=False)
            lengths = np.load(folder / "id_lengths.npy", allow_pickle=False)
            state = load_file(str(folder / "genrec.safetensors"))
        except (FileNotFoundError, OSError, orjson.JSONDecodeError, ValueError) as exc:
            raise WorkspaceError(f"{folder} holds no GenRec generator ({exc})") from exc
        if settings.get("format") != _FORMAT or settings.get("format_version") != _FORMAT_VERSION:
            raise WorkspaceError(f"{folder} holds {settings.get('format')!r}, not a GenRec model")
        model = cls(
            tokens,
            lengths,
            int(settings["query_dim"]),
            GeneratorConfig(**settings["config"]),
            GenRecConfig(**settings["genrec"]),
            vocab=int(settings["vocab"]),
        )
        model.net.load_state_dict(state)
        model.net.eval()
        return model


__all__ = [
    "STAGE_INDEX",
    "CrossKeys",
    "GenRec",
    "GenRecConfig",
    "GenRecExamples",
    "GenRecNet",
    "Targets",
    "history_rows",
]
