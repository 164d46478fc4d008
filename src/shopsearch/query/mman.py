"""MMAN: query intent classification by matching the query against every category name.

After JD's "A Multi-Granularity Matching Attention Network for Query Intent Classification in
E-commerce Retrieval" (built from the paper's description). The query is matched against the
name of every leaf category — the words of its path, the leaf's own level apart from its
ancestors' — by three modules whose features feed one multi-label classifier over the leaves:

* **self-matching**: each query word is embedded (a learned word embedding, the mean of learned
  embeddings of its hashed character 2-4-grams, and a projection of its frozen MiniLM vector),
  one multi-head self-attention layer (residual, layer norm) lets the words read each other, an
  attention pooling weighs them (``alpha``), and the pooled query plus a market embedding is
  scored against a learned embedding of every leaf;
* **char-level matching**: the interaction matrix of cosines between the character 2-4-gram
  sets of every query word and every category-name word (max over the words of the leaf's level,
  and of its ancestors), pooled over the query by RBF kernels weighted by ``alpha`` (soft match
  counts, as in K-NRM) and by a max — it matches misspellings and plurals ("flashlite" and
  "Flashlights");
* **semantic-level matching**: the same interaction and pooling over cosines of frozen MiniLM
  word vectors (word level: "couch" and "Sofas"), and the cosine of the ``alpha``-weighted
  query vector and the MiniLM vector of the whole path (sentence level).

A leaf's logit is its self-matching score plus a small MLP, shared by all leaves, of its
matching features, plus a bias; a sigmoid gives its probability. Training minimises the binary
cross-entropy against the logged targets of :mod:`shopsearch.query.intents` (the share of a
query's acting requests that acted in each leaf), each distinct (market, query) weighted by the
square root of its requests, with word dropout (a word's learned embedding is zeroed at
random, its matching features kept) so that the matching channels learn to carry words the
self-matching module knows little about. Small logs get at least ``min_steps`` optimiser steps.

**Serving.** Everything that depends only on the categories is computed once (at fit and load):
the category words' n-gram matrix and MiniLM vectors, the paths' vectors. MiniLM runs only at
fit time, on the words of the catalog and of the logged queries (a frozen word → vector table);
a query is a table look-up, two small sparse / dense products for the interaction matrices and
one forward pass of a ~100k-parameter network on one torch thread (about 0.7 ms on this machine
with 24 leaves, mostly torch's per-operation overhead); a repeated query is looked up in a
cache of the last 8,192 (words, market).

**Simplified from the paper, and why.**

* The paper encodes the query and the labels with a BERT-sized encoder fine-tuned end to end;
  here MiniLM is frozen and only consulted per word at fit time, because a transformer on every
  search costs milliseconds and the whole query stage has 3 ms (p99). Unknown words get no
  semantic vector (the char module still matches them).
* The paper's char-level module reads Chinese characters; English queries are matched by
  character n-grams of words instead, the nearest analogue.
* The interaction matrices are pooled by kernels and a max instead of the paper's convolutions
  over them: queries and category names are a few words long, so local patterns add little and
  kernel pooling is cheaper and needs no padding to a fixed size.
* The paper's label-side attention over the hierarchy is reduced to two granularities of the
  label (its own level and its ancestors'); the full path's sentence vector carries the rest.
* One self-attention layer, small dimensions (64) and a shared MLP keep the model trainable in
  about a minute on a CPU from a 20k-session log.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import orjson
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.errors import WorkspaceError
from shopsearch.query.base import QUERY_COMPONENTS
from shopsearch.query.data import QueryData
from shopsearch.query.intents import (
    F32,
    IntentComponent,
    IntentExamples,
    char_ngrams,
    intent_examples,
    query_words,
)
from shopsearch.query.translation import one_thread
from shopsearch.store.atomic import write_json
from shopsearch.text.encoders import Encoder, MiniLMEncoder

I64 = npt.NDArray[np.int64]
_CONFIG = "mman.json"
_WEIGHTS = "weights.safetensors"
_VECTORS = "vectors.safetensors"
#: Matching channels per (query word, leaf): char / semantic × the leaf's level / its ancestors.
CHANNELS = ("char_leaf", "char_ancestors", "semantic_leaf", "semantic_ancestors")


@dataclass(frozen=True)
class MMANConfig:
    """The network's sizes and its training.

    Attributes:
        dim: width of word and query representations.
        heads: attention heads of the self-matching layer.
        buckets: hash buckets of the character n-gram embeddings.
        hidden: width of the matching features' MLP.
        kernels: centres of the RBF kernels pooling the interaction matrices.
        sigma: width of every kernel but the exact-match one (centre 1, width 0.01).
        epochs: passes over the training examples.
        min_steps: least number of optimiser steps (more passes over a small log).
        word_dropout: chance that a word's learned embedding is zeroed in a training step.
        batch_size: examples per step.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        max_semantic_words: most words given a MiniLM vector (the most frequent in the catalog
            and the logged queries).
        seed: seed of initialisation and shuffling.
    """

    dim: int = 64
    heads: int = 2
    buckets: int = 2**14
    hidden: int = 32
    kernels: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4, 0.2)
    sigma: float = 0.1
    epochs: int = 8
    min_steps: int = 300
    word_dropout: float = 0.2
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 1e-5
    max_semantic_words: int = 20_000
    seed: int = 0


def _ngram_ids(word: str, buckets: int) -> list[int]:
    """Hashed character 2-4-grams of ``word`` and the whole word (``"<sofa>"``), in
    ``[1, buckets)`` (CRC-32: stable anywhere)."""
    grams = dict.fromkeys([*char_ngrams(word), f"<{word}>"])
    return [1 + zlib.crc32(g.encode()) % (buckets - 1) for g in grams]


def leaf_levels(path: str) -> tuple[list[str], list[str]]:
    """The words of a leaf path's last level and of its ancestors, in order, each once."""
    parts = [p.strip() for p in path.split(CATEGORY_SEPARATOR.strip())]
    leaf = list(dict.fromkeys(query_words(parts[-1])))
    ancestors = [w for w in dict.fromkeys(query_words(" ".join(parts[:-1]))) if w not in leaf]
    return leaf, ancestors


class CategoryMatcher:
    """The category side of the char- and semantic-level matching, computed once.

    Every (leaf, level) is a run of columns, one per word of the leaf's name at that level (an
    empty level gets one empty column that matches nothing); a query word's similarity to a
    (leaf, level) is the most similar of its words.

    Args:
        leaves: the leaf paths.
        vectors: word → its MiniLM vector (unit length); words without one match at 0.
    """

    def __init__(self, leaves: Sequence[str], vectors: dict[str, F32], dim: int) -> None:
        columns: list[str] = []
        starts: list[int] = []
        for path in leaves:
            for level in leaf_levels(path):
                starts.append(len(columns))
                columns.extend(level or [""])
        self.starts = np.asarray(starts, np.int64)
        self.n_leaves = len(leaves)
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for j, word in enumerate(columns):
            found = set(char_ngrams(word)) if word else set()
            for g in found:
                entry = postings.setdefault(g, ([], []))
                entry[0].append(j)
                entry[1].append(1.0 / math.sqrt(len(found)))
        self.postings = {
            g: (np.asarray(cols, np.int64), np.asarray(vals, np.float64))
            for g, (cols, vals) in postings.items()
        }
        self.columns = len(columns)
        zero = np.zeros(dim, np.float32)
        self.semantic = np.stack([vectors.get(w, zero) for w in columns] or [zero]).T

    def match(self, words: Sequence[str], vectors: F32) -> F32:
        """``[len(words), leaves, 4]``: each word's similarity to each leaf per channel
        (:data:`CHANNELS`); ``vectors`` are the words' MiniLM vectors (zero when unknown)."""
        n = len(words)
        if not n or not self.n_leaves:
            return np.zeros((n, self.n_leaves, len(CHANNELS)), np.float32)
        char = np.zeros((n, self.columns), np.float32)
        for i, word in enumerate(words):
            found = set(char_ngrams(word))
            hits = [self.postings[g] for g in found if g in self.postings]
            if hits:
                cols = np.concatenate([h[0] for h in hits])
                vals = np.concatenate([h[1] for h in hits]) / math.sqrt(len(found))
                char[i] = np.bincount(cols, vals, minlength=self.columns)
        semantic = vectors @ self.semantic
        out = np.empty((n, self.n_leaves, len(CHANNELS)), np.float32)
        for k, sims in enumerate((char, semantic)):
            pooled = np.maximum.reduceat(sims, self.starts, axis=1).reshape(n, self.n_leaves, 2)
            out[:, :, 2 * k : 2 * k + 2] = pooled
        return out


class MMANetwork(nn.Module):
    """The network (see the module docstring); inputs come from :class:`MMANIntent`.

    The parts that refine the plain bag of n-grams start as the identity (zero-initialised
    attention output, pooling scores and matching MLP output), so training starts from a
    fastText-like classifier and moves away from it only as far as the logs ask.

    Args:
        config: sizes.
        markets: market embeddings (0 = no or an unknown market).
        semantic: frozen ``[semantic words + 1, 384]`` MiniLM vectors (row 0: none).
        paths: frozen ``[leaves, 384]`` MiniLM vectors of the leaf paths.
    """

    def __init__(
        self, config: MMANConfig, markets: int, semantic: torch.Tensor, paths: torch.Tensor
    ) -> None:
        super().__init__()
        dim, leaves = config.dim, paths.shape[0]
        self.word_dropout = config.word_dropout
        self.semantic: torch.Tensor
        self.paths: torch.Tensor
        self.centres: torch.Tensor
        self.widths: torch.Tensor
        self.register_buffer("semantic", semantic)
        self.register_buffer("paths", paths)
        self.register_buffer("centres", torch.tensor(config.kernels, dtype=torch.float32))
        widths = [0.01 if c == 1.0 else config.sigma for c in config.kernels]
        self.register_buffer("widths", torch.tensor(widths, dtype=torch.float32))
        self.gram = nn.EmbeddingBag(config.buckets, dim, mode="mean", padding_idx=0)
        self.attention = nn.MultiheadAttention(dim, config.heads, batch_first=True)
        self.pool = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.market = nn.Embedding(markets, dim)
        self.label = nn.Parameter(torch.randn(leaves, dim) * 0.05)
        self.bias = nn.Parameter(torch.zeros(leaves))
        features = len(CHANNELS) * (len(config.kernels) + 1) + 1
        self.mlp = nn.Sequential(nn.Linear(features, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, 1))  # fmt: skip
        for layer in (self.attention.out_proj, self.pool[2], self.mlp[2]):
            assert isinstance(layer, nn.Linear)
            nn.init.zeros_(layer.weight)

    def forward(
        self,
        gram_ids: torch.Tensor,
        semantic_ids: torch.Tensor,
        market_ids: torch.Tensor,
        matches: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Logits and every module's contribution.

        Args:
            gram_ids: ``[B, L, G]`` hashed n-grams per word (0 = padding; a word has at least
                one, a padding word none).
            semantic_ids: ``[B, L]`` rows of the semantic table (0 = none).
            market_ids: ``[B]``.
            matches: ``[B, L, leaves, 4]`` char and semantic similarities (:data:`CHANNELS`).

        Returns:
            ``logits`` ``[B, leaves]``; ``self`` (self-matching scores), ``char`` and
            ``semantic`` (the pooled interaction features, ``[B, leaves, 2, K + 1]``),
            ``sentence`` (``[B, leaves]``) and ``alpha`` (``[B, L]``, the words' weights).
        """
        mask = gram_ids[:, :, 0] > 0
        tokens = self.gram(gram_ids.flatten(0, 1)).view(*mask.shape, -1)
        if self.training and self.word_dropout > 0:
            keep = torch.rand(mask.shape, device=tokens.device) >= self.word_dropout
            tokens = tokens * keep.unsqueeze(-1)
        attended, _ = self.attention(tokens, tokens, tokens, key_padding_mask=~mask,
                                     need_weights=False)  # fmt: skip
        hidden = tokens + attended
        scores = self.pool(hidden).squeeze(-1).masked_fill(~mask, -1e4)
        alpha = torch.softmax(scores, dim=1) * mask
        query = (alpha.unsqueeze(-1) * hidden).sum(1) + self.market(market_ids)
        self_score = query @ self.label.T
        # kernel pooling of the interaction matrices, weighted by the words' attention
        m = matches.permute(0, 2, 3, 1)  # [B, leaves, 4, L]
        rbf = torch.exp(-((m.unsqueeze(-1) - self.centres) ** 2) / (2 * self.widths**2))
        soft = (rbf * alpha[:, None, None, :, None]).sum(3)  # [B, leaves, 4, K]
        hard = m.masked_fill(~mask[:, None, None, :], 0.0).amax(3, keepdim=True)
        pooled = torch.cat([soft, hard], dim=-1)  # [B, leaves, 4, K + 1]
        semantic = self.semantic[semantic_ids]
        sentence = nn.functional.normalize((alpha.unsqueeze(-1) * semantic).sum(1), dim=-1)
        sentence = sentence @ self.paths.T  # [B, leaves]
        features = torch.cat([pooled.flatten(2), sentence.unsqueeze(-1)], dim=-1)
        logits = self_score + self.mlp(features).squeeze(-1) + self.bias
        return {
            "logits": logits,
            "self": self_score,
            "char": pooled[:, :, :2],
            "semantic": pooled[:, :, 2:],
            "sentence": sentence,
            "alpha": alpha,
        }


@QUERY_COMPONENTS.register()
class MMANIntent(IntentComponent):
    """MMAN intent classification (see the module docstring).

    Args:
        config: sizes and training.
        encoder: the frozen sentence encoder of the semantic module (default: MiniLM).
    """

    name = "intent"

    def __init__(self, config: MMANConfig | None = None, encoder: Encoder | None = None) -> None:
        self.config = config or MMANConfig()
        self.encoder = encoder

    # -- inputs ------------------------------------------------------------------------------
    def _vectors_of(self, words: Sequence[str]) -> F32:
        rows = [self.semantic_index_.get(w, -1) for w in words]
        out = np.zeros((len(words), self.vectors_.shape[1]), np.float32)
        known = [i for i, r in enumerate(rows) if r >= 0]
        out[known] = self.vectors_[[rows[i] for i in known]]
        return out

    def _inputs(
        self, queries: Sequence[Sequence[str]], domains: Sequence[str | None]
    ) -> tuple[torch.Tensor, ...]:
        """The network's inputs for word lists searched in ``domains``."""
        width = max((len(q) for q in queries), default=1) or 1
        b, leaves = len(queries), len(self.leaves_)
        unique = list(dict.fromkeys(w for q in queries for w in q))
        where = {w: i for i, w in enumerate(unique)}
        vectors = self._vectors_of(unique)
        matched = self.matcher_.match(unique, vectors)
        grams = {w: _ngram_ids(w, self.config.buckets) for w in unique}
        depth = max((len(g) for g in grams.values()), default=1)
        semantic_ids = np.zeros((b, width), np.int64)
        gram_ids = np.zeros((b, width, depth), np.int64)
        matches = np.zeros((b, width, leaves, len(CHANNELS)), np.float32)
        for i, query in enumerate(queries):
            for j, w in enumerate(query):
                semantic_ids[i, j] = self.semantic_index_.get(w, -1) + 1
                gram_ids[i, j, : len(grams[w])] = grams[w]
                matches[i, j] = matched[where[w]]
        markets = np.array([self.market_index_.get(d or "", 0) for d in domains], np.int64)
        return (
            torch.from_numpy(gram_ids),
            torch.from_numpy(semantic_ids),
            torch.from_numpy(markets),
            torch.from_numpy(matches),
        )

    def _build(self) -> None:
        """The category matcher and the network over the fitted vocabularies."""
        vectors = {w: self.vectors_[i] for w, i in self.semantic_index_.items()}
        self.matcher_ = CategoryMatcher(self.leaves_, vectors, self.vectors_.shape[1])
        semantic = torch.from_numpy(np.vstack([np.zeros((1, self.vectors_.shape[1]), np.float32),
                                               self.vectors_]))  # fmt: skip
        torch.manual_seed(self.config.seed)
        self.network_ = MMANetwork(
            self.config,
            len(self.market_index_) + 1,
            semantic,
            torch.from_numpy(self.paths_),
        )

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, data: QueryData) -> Self:
        """Learn the vocabularies, encode the words once with MiniLM, train the network."""
        examples = intent_examples(data)
        self.fit_labels(examples)
        keys = [k.split() for k in examples.keys]
        counts = Counter(w for k in keys for w in k)
        self.market_index_ = {d: i + 1 for i, d in enumerate(sorted(examples.markets))}
        # a catalog without categories has nothing to classify: no word is encoded
        semantic_words = self._semantic_words(data, counts) if self.leaves_ else []
        encoder = self.encoder or MiniLMEncoder()
        self.semantic_index_ = {w: i for i, w in enumerate(semantic_words)}
        names = [" ".join(query_words(p)) for p in self.leaves_]
        # stored as float16: rounded now, so that a loaded component predicts the same
        self.vectors_ = self._encode(encoder, semantic_words).astype(np.float16).astype(np.float32)
        self.paths_ = self._encode(encoder, names)
        self._build()
        if len(examples) and self.leaves_:
            self._train(examples, keys)
        self.network_.eval()
        return self

    @staticmethod
    def _encode(encoder: Encoder, texts: list[str]) -> F32:
        if not texts:
            return np.zeros((0, encoder.dim), np.float32)
        return np.asarray(encoder.encode_items(texts), np.float32)

    def _semantic_words(self, data: QueryData, counts: Counter[str]) -> list[str]:
        """Category words, then the most frequent words of the catalog and the queries."""
        category = {w for p in self.leaves_ for level in leaf_levels(p) for w in level}
        catalog = Counter(
            w
            for text in data.catalog["title"].fillna("") + " " + data.catalog["brand"].fillna("")
            for w in query_words(str(text))
        )
        merged = catalog + counts
        ranked = sorted(merged, key=lambda w: (-merged[w], w))
        rest = [w for w in ranked if w not in category][: self.config.max_semantic_words]
        return sorted(category) + rest

    def _train(self, examples: IntentExamples, keys: list[list[str]]) -> None:
        cfg = self.config
        network = self.network_
        prior = examples.targets.mean(axis=0).clip(1e-4, 1 - 1e-4)
        with torch.no_grad():  # start from the leaves' base rates, not from 0.5 each
            network.bias.copy_(torch.from_numpy(np.log(prior / (1 - prior))))
        generator = torch.Generator().manual_seed(cfg.seed)
        targets = torch.from_numpy(examples.targets)
        weights = torch.from_numpy(np.sqrt(examples.requests).astype(np.float32))
        optimiser = torch.optim.Adam(network.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)  # fmt: skip
        network.train()
        n = len(keys)
        batches = math.ceil(n / cfg.batch_size)
        for _epoch in range(max(cfg.epochs, math.ceil(cfg.min_steps / max(batches, 1)))):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, cfg.batch_size):
                rows = order[start : start + cfg.batch_size]
                out = network(
                    *self._inputs(
                        [keys[i] for i in rows.tolist()],
                        [examples.domains[i] for i in rows.tolist()],
                    )
                )
                loss = nn.functional.binary_cross_entropy_with_logits(
                    out["logits"], targets[rows], reduction="none"
                ).sum(1)
                loss = (loss * weights[rows]).sum() / weights[rows].sum()
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()

    # -- serving -----------------------------------------------------------------------------
    def forward(
        self, queries: Sequence[Sequence[str]], domains: Sequence[str | None]
    ) -> dict[str, torch.Tensor]:
        """The network's outputs (logits and each module's part) for word lists searched in
        ``domains`` (for tests and analyses; :meth:`probabilities` serves)."""
        with torch.inference_mode():
            out: dict[str, torch.Tensor] = self.network_(*self._inputs(queries, domains))
            return out

    def probabilities(self, words: Sequence[str], domain: str | None) -> F32 | None:
        """Each leaf's sigmoid probability."""
        if not self.leaves_:
            return None
        with one_thread():  # one short query: more threads only contend
            logits = self.forward([words], [domain])["logits"][0]
        return np.asarray(torch.sigmoid(logits).numpy(), np.float32)

    def save(self, path: Path) -> None:
        """``labels.json``, ``mman.json`` (config and vocabularies), ``vectors.safetensors``
        (the frozen MiniLM vectors of words and paths) and ``weights.safetensors``."""
        self.save_labels(path)
        write_json(
            path / _CONFIG,
            {
                "config": asdict(self.config),
                "markets": sorted(self.market_index_, key=self.market_index_.__getitem__),
                "semantic_words": sorted(self.semantic_index_,
                                         key=self.semantic_index_.__getitem__),
            },
        )  # fmt: skip
        save_file(
            {
                "words": torch.from_numpy(self.vectors_.astype(np.float16)),
                "paths": torch.from_numpy(self.paths_),
            },
            str(path / _VECTORS),
        )
        state = {
            k: v.contiguous()
            for k, v in self.network_.state_dict().items()
            if k not in ("semantic", "paths")
        }
        save_file(state, str(path / _WEIGHTS))

    @classmethod
    def load(cls, path: Path) -> Self:
        """The component :meth:`save` wrote (no encoder needed: its vectors are saved)."""
        try:
            body: dict[str, Any] = orjson.loads((path / _CONFIG).read_bytes())
            vectors = load_file(str(path / _VECTORS))
            weights = load_file(str(path / _WEIGHTS))
        except (FileNotFoundError, orjson.JSONDecodeError, OSError) as exc:
            raise WorkspaceError(
                f"{path} holds no MMAN intent component ({type(exc).__name__}: {exc}); train "
                "it with 'shopsearch train --stage query'"
            ) from exc
        raw = dict(body["config"])
        raw["kernels"] = tuple(raw["kernels"])
        component = cls(MMANConfig(**raw))
        component.load_labels(path)
        component.market_index_ = {d: i + 1 for i, d in enumerate(body["markets"])}
        component.semantic_index_ = {w: i for i, w in enumerate(body["semantic_words"])}
        component.vectors_ = vectors["words"].float().numpy()
        component.paths_ = vectors["paths"].numpy()
        component._build()
        missing, unexpected = component.network_.load_state_dict(weights, strict=False)
        if set(missing) != {"semantic", "paths"} or unexpected:
            raise WorkspaceError(
                f"{path / _WEIGHTS} does not fit the MMAN network (missing {missing}, "
                f"unexpected {unexpected}); train it again with 'shopsearch train --stage query'"
            )
        component.network_.eval()
        return component


__all__ = ["CHANNELS", "CategoryMatcher", "MMANConfig", "MMANIntent", "MMANetwork", "leaf_levels"]
