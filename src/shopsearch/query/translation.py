"""A small transformer translating queries into titles and back, trained with a cycle term.

Two encoder-decoder transformers share one word vocabulary: ``forward`` translates a query into
a product title, ``backward`` a title into a query. A source starts with its market's token
(markets name the same thing with different words; ``<pad>``, masked, when the market is
unknown, as for a share of the training pairs). :func:`train_translators` trains them jointly
on (query, title) pairs with

``loss = NLL_forward(title | query) + NLL_backward(query | title) + λ · cycle``

where the cycle term asks a title the forward model writes for a query to translate back into
that query: for each query, ``samples`` titles ``t̂`` are sampled from the forward model (so
the term is an expectation over its translations, as in dual learning) and

``cycle = −E_t̂ [log P_backward(query | t̂)]``, per query token.

The backward model gets the gradient of this term directly (it learns to read the forward
model's titles back: back-translation); the forward model, whose samples are discrete, gets it
by the score function (REINFORCE): the reward of a sample is its per-token log-likelihood of
the query, minus the mean reward of the query's other samples (a baseline that needs no second
decoder). The term starts after ``cycle_start`` of the steps, once the forward model writes
titles worth reading back. ``λ = 0`` is the forward-only ablation: the same two models on the
same pairs, without the term.

:func:`rewrite_batch` decodes rewrites: the forward model's beam search gives candidate titles,
and each is scored by its cycle likelihood, the geometric mean per token of
``P_forward(t | query) · P_backward(query | t)`` (a title that reads back into the query scores
high). A deadline stops decoding between steps.

Simplified against the paper (JD, "Query Rewriting via Cycle-Consistent Translation for
E-Commerce Search"; built from its description, not its code): words, not subwords, with a
vocabulary built from the pairs (the catalog's vocabulary is small, and a word per step keeps
decoding within a budget of milliseconds; a mistyped word the pairs never saw is ``<unk>``);
two encoder layers and one decoder layer of width 64, so that training takes minutes on two
CPU cores and each decoded word costs one small layer; the cycle term is estimated with samples
and a score-function gradient rather than differentiated through the decoder, only for the
query → title → query cycle, on half of each batch; the title-like translation itself is the
rewrite (the lexical index searches titles), and the backward model only scores it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
#: Tokens a decoder never writes.
_NEVER = [PAD, BOS, UNK]


class Vocabulary:
    """Words ↔ numbers; the first four are ``<pad> <s> </s> <unk>``.

    Args:
        words: every token in number order, the four specials first.
    """

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(
        cls,
        texts: Iterable[Sequence[str]],
        min_count: int,
        max_size: int,
        tokens: Sequence[str] = (),
    ) -> Vocabulary:
        """The specials, ``tokens`` (e.g. markets), then the words seen at least ``min_count``
        times in ``texts``, most frequent first (at most ``max_size``)."""
        counts = Counter(w for text in texts for w in text)
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls([*SPECIALS, *tokens, *kept[:max_size]])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Sequence[str], max_len: int) -> list[int]:
        """The first ``max_len`` words as numbers (``<unk>`` for unknown ones), then ``</s>``."""
        return [self.index.get(w, UNK) for w in words[:max_len]] + [EOS]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """The words of ``ids`` up to the first ``</s>``, specials left out."""
        out: list[str] = []
        for i in ids:
            if i == EOS:
                break
            if i > UNK:
                out.append(self.words[i])
        return out


@dataclass(frozen=True)
class ModelShape:
    """The size of one translator.

    Attributes:
        vocab_size: tokens in the shared vocabulary.
        dim: width of embeddings and layers.
        heads: attention heads.
        encoder_layers: encoder layers.
        decoder_layers: decoder layers (each decoded word runs through them once).
        ff: width of the feed-forward sublayers.
        max_len: most words of a source or a translation.
        dropout: dropout while training.
    """

    vocab_size: int
    dim: int = 64
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 1
    ff: int = 128
    max_len: int = 16
    dropout: float = 0.1


F = nn.functional


def _norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias)


def _linear(x: Tensor, layer: nn.Linear) -> Tensor:
    return F.linear(x, layer.weight, layer.bias)


class _Block(nn.Module):
    """A pre-norm transformer layer: self-attention, cross-attention (decoder layers only),
    feed-forward. Sublayers are called as functions on the modules' parameters (decoding calls
    a layer once per word, and module calls cost more than the arithmetic at this width)."""

    def __init__(self, shape: ModelShape, cross: bool) -> None:
        super().__init__()
        self.heads = shape.heads
        self.dropout = shape.dropout
        self.self_norm = nn.LayerNorm(shape.dim)
        self.query_key_value = nn.Linear(shape.dim, 3 * shape.dim)
        self.self_out = nn.Linear(shape.dim, shape.dim)
        self.cross = cross
        if cross:
            self.cross_norm = nn.LayerNorm(shape.dim)
            self.cross_query = nn.Linear(shape.dim, shape.dim)
            self.cross_key_value = nn.Linear(shape.dim, 2 * shape.dim)
            self.cross_out = nn.Linear(shape.dim, shape.dim)
        self.ff_norm = nn.LayerNorm(shape.dim)
        self.ff_in = nn.Linear(shape.dim, shape.ff)
        self.ff_out = nn.Linear(shape.ff, shape.dim)

    def _heads(self, x: Tensor, parts: int) -> tuple[Tensor, ...]:
        """``(B, T, parts · dim)`` → ``parts`` tensors ``(B, heads, T, dim / heads)``."""
        batch, steps, _ = x.shape
        return x.view(batch, steps, parts, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

    def _attend(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, out: nn.Linear
    ) -> Tensor:
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self._drop(_linear(attended.transpose(1, 2).flatten(2), out))

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.dropout, training=True) if self.training else x

    def memory(self, encoded: Tensor) -> tuple[Tensor, Tensor]:
        """This decoder layer's cross-attention keys and values of the encoder's output."""
        key, value = self._heads(_linear(encoded, self.cross_key_value), 2)
        return key, value

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        cache: tuple[Tensor, Tensor] | None = None,
        memory: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x`` through the layer, and its self-attention keys and values (after ``cache``'s:
        the keys of earlier positions when decoding one position at a time). ``memory`` is the
        encoder's ``(keys, values, mask)`` for the cross-attention of a decoder layer."""
        query, key, value = self._heads(_linear(_norm(x, self.self_norm), self.query_key_value), 3)
        if cache is not None:
            key, value = torch.cat([cache[0], key], dim=2), torch.cat([cache[1], value], dim=2)
        x = x + self._attend(query, key, value, mask, self.self_out)
        if memory is not None:
            (cross,) = self._heads(_linear(_norm(x, self.cross_norm), self.cross_query), 1)
            x = x + self._attend(cross, *memory, self.cross_out)
        hidden = F.gelu(_linear(_norm(x, self.ff_norm), self.ff_in), approximate="tanh")
        return x + self._drop(_linear(hidden, self.ff_out)), (key, value)


#: Each decoder layer's cross-attention keys and values, and the source mask.
Memory = list[tuple[Tensor, Tensor, Tensor]]
#: Each decoder layer's self-attention keys and values of the positions decoded so far.
Cache = list[tuple[Tensor, Tensor]]


class Translator(nn.Module):
    """An encoder-decoder transformer (pre-norm, learned positions, output tied to the input
    embedding). Sources and targets are numbers ending with ``</s>``, padded with ``<pad>``;
    decoding goes one position at a time with cached keys and values (:meth:`step`)."""

    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab_size, shape.dim, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=shape.dim**-0.5)
        self.position = nn.Embedding(shape.max_len + 2, shape.dim)
        nn.init.normal_(self.position.weight, std=shape.dim**-0.5)
        self.encoder = nn.ModuleList(
            _Block(shape, cross=False) for _ in range(shape.encoder_layers)
        )
        self.decoder = nn.ModuleList(_Block(shape, cross=True) for _ in range(shape.decoder_layers))
        self.encoder_norm = nn.LayerNorm(shape.dim)
        self.decoder_norm = nn.LayerNorm(shape.dim)
        self.scale = math.sqrt(shape.dim)

    def _embed(self, ids: Tensor, start: int = 0) -> Tensor:
        positions = self.position.weight[start : start + ids.shape[1]]
        embedded: Tensor = F.embedding(ids, self.embed.weight) * self.scale + positions
        return embedded

    def _output(self, x: Tensor) -> Tensor:
        return F.linear(_norm(x, self.decoder_norm), self.embed.weight)

    def encode(self, source: Tensor) -> Memory:
        """The encoded ``source``: each decoder layer's cross-attention keys, values and the
        mask of the source's words."""
        mask = (source != PAD)[:, None, None, :]
        x = self._embed(source)
        for block in self.encoder:
            x, _ = block(x, mask)
        x = _norm(x, self.encoder_norm)
        return [(*cast(_Block, block).memory(x), mask) for block in self.decoder]

    def logits(self, memory: Memory, prefix: Tensor) -> Tensor:
        """Next-token logits ``(B, T, vocab)`` after each position of ``prefix`` (teacher
        forcing)."""
        steps = prefix.shape[1]
        causal = torch.ones(steps, steps, dtype=torch.bool).tril()
        x = self._embed(prefix)
        for block, layer_memory in zip(self.decoder, memory, strict=True):
            x, _ = block(x, causal, memory=layer_memory)
        return self._output(x)

    def step(
        self, token: Tensor, position: int, memory: Memory, cache: Cache
    ) -> tuple[Tensor, Cache]:
        """Logits ``(B, vocab)`` after ``token`` ``(B,)`` at ``position``, given the keys of the
        earlier positions (``cache``; empty at position 0), and the cache with this one."""
        x = self._embed(token[:, None], position)
        grown: Cache = []
        for n, (block, layer_memory) in enumerate(zip(self.decoder, memory, strict=True)):
            x, keys = block(x, None, cache[n] if cache else None, layer_memory)
            grown.append(keys)
        return self._output(x[:, 0]), grown

    def log_likelihood(self, source: Tensor, target: Tensor) -> Tensor:
        """``log P(target | source)`` of each row ``(B,)``, ``</s>`` included."""
        start = torch.full((target.shape[0], 1), BOS, dtype=torch.long)
        prefix = torch.cat([start, target[:, :-1]], dim=1)
        log_probs = torch.log_softmax(self.logits(self.encode(source), prefix), dim=-1)
        tokens = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return (tokens * (target != PAD)).sum(dim=1)


def pad_batch(sequences: Sequence[Sequence[int]]) -> Tensor:
    """Sequences of numbers as one ``(B, longest)`` tensor padded with ``<pad>``."""
    longest = max(len(s) for s in sequences)
    return torch.tensor([[*s, *[PAD] * (longest - len(s))] for s in sequences], dtype=torch.long)


def lengths(batch: Tensor) -> Tensor:
    """Tokens of each row that are not padding (``</s>`` included)."""
    return (batch != PAD).sum(dim=1).to(torch.float32)


@torch.no_grad()
def sample(model: Translator, source: Tensor, generator: torch.Generator) -> Tensor:
    """One translation of each source row, sampled token by token (ends with ``</s>``)."""
    was_training = model.training
    model.eval()
    memory = model.encode(source)
    cache: Cache = []
    token = torch.full((source.shape[0],), BOS, dtype=torch.long)
    done = torch.zeros(source.shape[0], dtype=torch.bool)
    written: list[Tensor] = []
    for position in range(model.shape.max_len):
        logits, cache = model.step(token, position, memory, cache)
        logits[:, _NEVER] = -math.inf
        token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]
        token = torch.where(done, PAD, token)
        written.append(token)
        done |= token == EOS
        if bool(done.all()):
            break
    if not bool(done.all()):  # unfinished translations end at the length limit
        written.append(torch.where(done, PAD, EOS))
    model.train(was_training)
    return torch.stack(written, dim=1)


def sourced(markets: Tensor, words: Tensor) -> Tensor:
    """A source: the market token ``(B,)`` (``<pad>``: none, masked), then the words."""
    return torch.cat([markets[:, None], words], dim=1)


def cycle_losses(
    forward: Translator,
    backward: Translator,
    queries: Tensor,
    titles: Tensor,
    markets: Tensor,
    cycle_weight: float,
    samples: int,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """The losses of one batch of (query, title) pairs of ``markets`` (see the module
    docstring); the cycle term reads back ``samples`` sampled titles of each of the batch's
    first ``len(queries) / samples`` queries.

    Returns:
        ``forward`` and ``backward`` (per-token NLL of each direction), ``cycle`` (per-token NLL
        of the queries read back from sampled titles; only when ``cycle_weight > 0``) and
        ``total``, the objective: ``forward + backward + cycle_weight · (cycle − advantage ·
        log P_forward(t̂ | query))``.
    """
    written_nll = forward.log_likelihood(sourced(markets, queries), titles) / lengths(titles)
    read_nll = backward.log_likelihood(sourced(markets, titles), queries) / lengths(queries)
    forward_nll, backward_nll = -written_nll.mean(), -read_nll.mean()
    losses = {"forward": forward_nll, "backward": backward_nll}
    total = forward_nll + backward_nll
    if cycle_weight > 0:  # on a share of the batch, so that it holds as many titles as pairs
        kept = max(1, len(queries) // samples)
        query = queries[:kept].repeat_interleave(samples, dim=0)
        market = markets[:kept].repeat_interleave(samples, dim=0)
        sampled = sample(forward, sourced(market, query), generator)
        read_back = backward.log_likelihood(sourced(market, sampled), query) / lengths(query)
        written = forward.log_likelihood(sourced(market, query), sampled) / lengths(sampled)
        reward = read_back.detach().view(-1, samples)
        advantage = (reward - reward.mean(dim=1, keepdim=True)).view(-1)
        cycle = -read_back.mean()
        losses["cycle"] = cycle
        total = total + cycle_weight * (cycle - (advantage * written).mean())
    losses["total"] = total
    return losses


@dataclass(frozen=True)
class TrainingConfig:
    """How :func:`train_translators` trains.

    Attributes:
        steps: optimiser steps.
        batch_size: pairs per step.
        learning_rate: AdamW's peak rate (linear warm-up over 5% of the steps, then linear
            decay).
        cycle_weight: λ of the cycle term (0: forward-only ablation).
        samples: titles sampled per query for the cycle term.
        cycle_start: share of the steps before the cycle term starts.
        market_dropout: share of the pairs trained without their market token (so that a
            query of no known market still translates).
        seed: seed of initialisation, batches and sampling.
    """

    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 2e-3
    cycle_weight: float = 0.5
    samples: int = 2
    cycle_start: float = 0.3
    market_dropout: float = 0.1
    seed: int = 0


def train_translators(
    queries: Sequence[Sequence[int]],
    titles: Sequence[Sequence[int]],
    markets: Sequence[int],
    shape: ModelShape,
    config: TrainingConfig,
    log: Callable[[str], None] | None = None,
) -> tuple[Translator, Translator, dict[str, list[float]]]:
    """Train ``forward`` (query → title) and ``backward`` (title → query) jointly on the pairs
    ``(queries[i], titles[i])`` (numbers ending with ``</s>``) of market token ``markets[i]``.

    Returns:
        The two models (in eval mode) and the history: each loss averaged over every 50 steps
        (``cycle`` only over steps where the term was on), with the step it ends at.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        forward, backward = Translator(shape), Translator(shape)
        parameters = [*forward.parameters(), *backward.parameters()]
        optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.01)
        warm = max(1, config.steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser,
            lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1.0 - s / max(config.steps, 1)),
        )
        rng = np.random.default_rng(config.seed)
        market = np.asarray(markets, dtype=np.int64)
        generator = torch.Generator().manual_seed(config.seed)
        start = round(config.cycle_start * config.steps)
        history: dict[str, list[float]] = {"step": [], "forward": [], "backward": [], "cycle": []}
        window: dict[str, list[float]] = {"forward": [], "backward": [], "cycle": []}
        forward.train()
        backward.train()
        for step in range(config.steps):
            batch = rng.integers(0, len(queries), config.batch_size)
            losses = cycle_losses(
                forward,
                backward,
                pad_batch([queries[i] for i in batch]),
                pad_batch([titles[i] for i in batch]),
                torch.tensor(
                    np.where(rng.random(len(batch)) < config.market_dropout, PAD, market[batch])
                ),
                config.cycle_weight if step >= start else 0.0,
                config.samples,
                generator,
            )
            optimiser.zero_grad()
            losses["total"].backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(parameters, 1.0)
            optimiser.step()
            schedule.step()
            for name, values in window.items():
                if name in losses:
                    values.append(float(losses[name].detach()))
            if (step + 1) % 50 == 0 or step + 1 == config.steps:
                history["step"].append(step + 1)
                for name, values in window.items():
                    history[name].append(float(np.mean(values)) if values else math.nan)
                    values.clear()
                if log is not None:
                    log(
                        f"step {step + 1}/{config.steps}: forward {history['forward'][-1]:.3f}, "
                        f"backward {history['backward'][-1]:.3f}, cycle {history['cycle'][-1]:.3f}"
                    )
    forward.eval()
    backward.eval()
    return forward, backward, history


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run a block on one torch thread (decoding one query: more threads only contend)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.inference_mode()
def beam_search(
    model: Translator, sources: Tensor, beam: int, deadline: float | None = None
) -> list[list[tuple[list[int], float]]] | None:
    """The ``beam`` best translations of each source row with their log-likelihoods
    (``</s>`` included); ``None`` when ``time.perf_counter()`` passes ``deadline``.

    Finished translations stay in the beam with their score frozen, so they compete with the
    unfinished ones; at ``max_len`` words a translation must end.
    """
    count = sources.shape[0]
    size = model.shape.vocab_size
    # the beams of a source share its encoding: reordering them never moves the memory
    memory: Memory = [
        (k.repeat_interleave(beam, 0), v.repeat_interleave(beam, 0), m.repeat_interleave(beam, 0))
        for k, v, m in model.encode(sources)
    ]
    cache: Cache = []
    # added to the next word's log-probabilities: of any word, of the last one, of a finished one
    never = torch.zeros(size)
    never[_NEVER] = -math.inf
    ending = torch.full((size,), -math.inf)
    ending[EOS] = 0.0
    finished = torch.full((size,), -math.inf)
    finished[PAD] = 0.0
    first = (torch.arange(count) * beam)[:, None]
    token = torch.full((count * beam,), BOS, dtype=torch.long)
    prefix = token[:, None]
    scores = torch.zeros(count, beam)
    scores[:, 1:] = -math.inf  # one start per source, not ``beam`` copies of it
    done = torch.zeros(count * beam, dtype=torch.bool)
    for position in range(model.shape.max_len + 1):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        logits, cache = model.step(token, position, memory, cache)
        log_probs = torch.log_softmax(logits, dim=-1)
        log_probs = log_probs + (ending if position == model.shape.max_len else never)
        log_probs = torch.where(done[:, None], finished, log_probs)
        scores, chosen = (scores.view(-1, 1) + log_probs).view(count, -1).topk(beam, dim=1)
        rows = (first + torch.div(chosen, size, rounding_mode="floor")).view(-1)
        token = (chosen % size).view(-1)
        cache = [(k[rows], v[rows]) for k, v in cache]
        prefix = torch.cat([prefix[rows], token[:, None]], dim=1)
        done = done[rows] | (token == EOS)
        if bool(done.all()):
            break
    out: list[list[tuple[list[int], float]]] = []
    for n in range(count):
        found: list[tuple[list[int], float]] = []
        for b in range(beam):
            score = float(scores[n, b])
            if math.isfinite(score):
                ids = prefix[n * beam + b, 1:].tolist()
                found.append((ids[: ids.index(EOS) + 1] if EOS in ids else ids, score))
        out.append(found)
    return out


@torch.inference_mode()
def rewrite_batch(
    forward: Translator,
    backward: Translator,
    queries: Sequence[Sequence[int]],
    markets: Sequence[int],
    beam: int,
    deadline: float | None = None,
) -> list[list[tuple[list[int], float]]] | None:
    """Candidate titles of each query (numbers ending with ``</s>``) of market token
    ``markets[n]`` (``<pad>``: none) by beam search, each with its cycle likelihood (see the
    module docstring), best first; ``None`` past ``deadline``."""
    sources = pad_batch([[market, *query] for market, query in zip(markets, queries, strict=True)])
    found = beam_search(forward, sources, beam, deadline)
    if found is None:
        return None
    pairs = [(n, ids, score) for n, hits in enumerate(found) for ids, score in hits]
    if not pairs:
        return [[] for _ in queries]
    if deadline is not None and time.perf_counter() > deadline:
        return None
    read_back = backward.log_likelihood(
        pad_batch([[markets[n], *ids] for n, ids, _ in pairs]),
        pad_batch([queries[n] for n, _, _ in pairs]),
    ).tolist()
    out: list[list[tuple[list[int], float]]] = [[] for _ in queries]
    for (n, ids, written), back in zip(pairs, read_back, strict=True):
        tokens = len(ids) + len(queries[n])
        out[n].append((ids, math.exp((written + back) / tokens)))
    for hits in out:
        hits.sort(key=lambda hit: -hit[1])
    return out


__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "ModelShape",
    "TrainingConfig",
    "Translator",
    "Vocabulary",
    "beam_search",
    "cycle_losses",
    "lengths",
    "one_thread",
    "pad_batch",
    "rewrite_batch",
    "sample",
    "sourced",
    "train_translators",
]
