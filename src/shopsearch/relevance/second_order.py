"""First- and second-order relevance over the query-product graph.

After JD's "Heterogeneous Network Embedding for Deep Semantic Relevance Match in E-commerce
Search" (built from the paper's description). A pair (query ``q``, product ``p``) is scored from

* **first order**: the pair itself: hashed n-gram vectors of ``q`` and ``p`` (one table, as the
  student's, :mod:`.student`), matched as ``[q, p, q * p, |q - p|]``;
* **second order**: their neighbours in the bipartite graph of queries and the products they
  led to (clicks and purchases, or judgments): ``N(p)``, the mean vector of the other queries
  linked to ``p``; ``N(q)``, the mean vector of the products linked to the queries most like
  ``q`` (character n-gram TF-IDF cosine; ``q`` itself left out, so a query the graph never saw
  is handled as one it did) and ``S(q)``, the mean vector of those similar queries. The network
  reads ``[first order, N(q), N(p), S(q), q * N(p), p * N(q)]``.

"External knowledge from BERT refines the network": the caller removes the edges the teacher
judges irrelevant before fitting (:func:`prune_edges`). The pair being scored never counts as
its own neighbour (``q`` is left out of ``N(p)``), so a judged pair's label does not leak into
its features. Labels are human grades on ``[0, 1]`` (binary cross-entropy on the grade).

**Simplified from the paper, and why.** The paper learns node embeddings of a heterogeneous
network (queries, items, brands, categories, shops) with meta-path random walks; our catalogs
give titles and, at most, categories, so the neighbours are aggregated by mean of the shared
n-gram table, GraphSAGE-style, trained end to end with the matching network. With
``order=1`` the model is the ablation: the same network on the first-order part only.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.relevance.distill import LabelledPairs
from shopsearch.relevance.student import features
from shopsearch.text.hashed import HashedFeaturizer

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GraphRelevanceConfig:
    """Sizes, neighbours and training of :class:`GraphRelevance`.

    Attributes:
        order: ``2`` with the graph neighbours, ``1`` the pair only (the ablation).
        similar_queries: how many most similar graph queries stand in for a query's side.
        max_neighbours: most products (of ``N(q)``) and queries (of ``N(p)``) read per side.
        buckets: rows of the hashed feature table.
        dim: width of the embeddings.
        hidden: width of the two hidden layers.
        epochs: passes over the labelled pairs.
        batch_size: pairs per step.
        lr: Adam's learning rate.
        budget_s: most seconds of training.
        seed: seed of initialisation and shuffling.
    """

    order: int = 2
    similar_queries: int = 5
    max_neighbours: int = 10
    buckets: int = 2**18
    dim: int = 64
    hidden: int = 128
    epochs: int = 2
    batch_size: int = 256
    lr: float = 2e-3
    budget_s: float = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise InvalidInputError(f"order={self.order}: use 1 (pair only) or 2 (neighbours)")
        sizes = (self.similar_queries, self.max_neighbours, self.buckets, self.dim,
                 self.hidden, self.epochs, self.batch_size)  # fmt: skip
        if min(sizes) < 1 or self.lr <= 0 or self.budget_s <= 0:
            raise InvalidInputError(f"graph relevance settings {self}: use sizes >= 1, lr > 0")


def prune_edges(
    edges: Sequence[tuple[str, ProductKey]], teacher_scores: npt.ArrayLike, threshold: float
) -> list[tuple[str, ProductKey]]:
    """The edges whose teacher score is at least ``threshold`` (the others are noise)."""
    scores = np.asarray(teacher_scores, np.float64)
    if len(scores) != len(edges):
        raise InvalidInputError(f"{len(edges)} edges but {len(scores)} teacher scores")
    return [edge for edge, s in zip(edges, scores, strict=True) if s >= threshold]


class _Network(nn.Module):
    def __init__(self, config: GraphRelevanceConfig) -> None:
        super().__init__()
        self.order = config.order
        self.table = nn.EmbeddingBag(config.buckets, config.dim, mode="mean", padding_idx=0)
        nn.init.normal_(self.table.weight, std=0.05)
        width = (4 if config.order == 1 else 9) * config.dim
        self.mlp = nn.Sequential(
            nn.Linear(width, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, 1),
        )  # fmt: skip

    def bag(self, rows: Sequence[list[int]]) -> torch.Tensor:
        """``[B, dim]``: the mean embedding of each row's ids (a row without ids: zeros)."""
        lengths = [len(r) for r in rows]
        flat = [i for r in rows for i in r] or [0]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        out: torch.Tensor = self.table(torch.tensor(flat), torch.from_numpy(offsets))
        return out

    def forward(self, sides: Sequence[Sequence[list[int]]]) -> torch.Tensor:
        q, p = self.bag(sides[0]), self.bag(sides[1])
        parts = [q, p, q * p, (q - p).abs()]
        if self.order == 2:
            nq, np_, sq = (self.bag(s) for s in sides[2:5])
            parts += [nq, np_, sq, q * np_, p * nq]
        out: torch.Tensor = self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)
        return out


class GraphRelevance:
    """The first/second-order relevance model (see the module docstring).

    Args:
        config: neighbours, sizes and training.
    """

    def __init__(self, config: GraphRelevanceConfig | None = None) -> None:
        self.config = config or GraphRelevanceConfig()
        self.featurizer = HashedFeaturizer(self.config.buckets)
        self._ids: dict[str, list[int]] = {}

    def _features(self, text: str) -> list[int]:
        ids = self._ids.get(text)
        if ids is None:
            ids = self._ids[text] = features(self.featurizer, text)
        return ids

    def _index_graph(
        self, edges: Sequence[tuple[str, ProductKey]], texts: dict[ProductKey, str]
    ) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        products_of: dict[str, list[ProductKey]] = defaultdict(list)
        queries_of: dict[ProductKey, list[str]] = defaultdict(list)
        for query, key in dict.fromkeys(edges):
            if key in texts:
                products_of[query].append(key)
                queries_of[key].append(query)
        self.products_of_, self.queries_of_ = dict(products_of), dict(queries_of)
        self.texts_ = texts
        self.graph_queries_ = sorted(products_of)
        self.vectorizer_ = None
        if self.graph_queries_:
            self.vectorizer_ = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4),
                                               sublinear_tf=True)  # fmt: skip
            self.query_matrix_ = self.vectorizer_.fit_transform(self.graph_queries_)

    def _similar(self, queries: Sequence[str]) -> dict[str, list[str]]:
        """The most similar graph queries of each query, the query itself left out."""
        distinct = list(dict.fromkeys(queries))
        out: dict[str, list[str]] = {q: [] for q in distinct}
        if self.vectorizer_ is None:
            return out
        k = self.config.similar_queries
        for at in range(0, len(distinct), 2048):
            chunk = distinct[at : at + 2048]
            sims = (self.vectorizer_.transform(chunk) @ self.query_matrix_.T).toarray()
            top = np.argsort(-sims, axis=1)[:, : k + 1]
            for row, query in enumerate(chunk):
                names = [self.graph_queries_[j] for j in top[row] if sims[row, j] > 0]
                out[query] = [n for n in names if n != query][:k]
        return out

    def _sides(
        self, queries: Sequence[str], keys: Sequence[ProductKey], similar: dict[str, list[str]]
    ) -> list[list[list[int]]]:
        most = self.config.max_neighbours
        q_side = [self._features(q) for q in queries]
        p_side = [self._features(self.texts_[k]) for k in keys]
        if self.config.order == 1:
            return [q_side, p_side]
        nq, np_, sq = [], [], []
        for query, key in zip(queries, keys, strict=True):
            like = similar[query]
            products = list(dict.fromkeys(k for s in like for k in self.products_of_.get(s, ())))
            products = products[:most]
            nq.append([i for k in products for i in self._features(self.texts_[k])])
            others = [x for x in self.queries_of_.get(key, ()) if x != query][:most]
            np_.append([i for x in others for i in self._features(x)])
            sq.append([i for s in like for i in self._features(s)])
        return [q_side, p_side, nq, np_, sq]

    def fit(
        self,
        labelled: LabelledPairs,
        texts: dict[ProductKey, str],
        edges: Sequence[tuple[str, ProductKey]] = (),
    ) -> Self:
        """Learn from judged pairs, with ``edges`` (query, product) as the graph.

        Raises:
            InvalidInputError: a judged product without text.
        """
        missing = [k for k in labelled.keys if k not in texts][:3]
        if missing:
            raise InvalidInputError(f"judged products without text: {missing}")
        cfg = self.config
        self._index_graph(edges, texts)
        torch.manual_seed(cfg.seed)
        self.network_ = _Network(cfg)
        similar = self._similar(labelled.queries)
        grades = torch.tensor(np.clip(labelled.grades, 0.0, 1.0), dtype=torch.float32)
        optimiser = torch.optim.Adam(self.network_.parameters(), lr=cfg.lr)
        generator = np.random.default_rng(cfg.seed)
        n = len(labelled.grades)
        self.planned_steps_ = cfg.epochs * -(-n // cfg.batch_size)
        step, start = 0, time.monotonic()
        self.network_.train()
        for _epoch in range(cfg.epochs):
            order = generator.permutation(n)
            for at in range(0, n, cfg.batch_size):
                rows = order[at : at + cfg.batch_size]
                sides = self._sides([labelled.queries[i] for i in rows],
                                    [labelled.keys[i] for i in rows], similar)  # fmt: skip
                loss = nn.functional.binary_cross_entropy_with_logits(
                    self.network_(sides), grades[torch.from_numpy(rows)]
                )
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                step += 1
            if time.monotonic() - start > cfg.budget_s:
                break
        self.steps_ = step
        self.network_.eval()
        return self

    def score(self, queries: Sequence[str], keys: Sequence[ProductKey]) -> F32:
        """The probability of relevance of each (query, product) pair."""
        if len(queries) != len(keys):
            raise InvalidInputError(f"{len(queries)} queries and {len(keys)} products")
        missing = [k for k in keys if k not in self.texts_][:3]
        if missing:
            raise InvalidInputError(f"products the model has no text of: {missing}")
        similar = self._similar(queries)
        out = np.zeros(len(keys), np.float32)
        with torch.inference_mode():
            for at in range(0, len(keys), 1024):
                sides = self._sides(queries[at : at + 1024], keys[at : at + 1024], similar)
                out[at : at + 1024] = torch.sigmoid(self.network_(sides)).numpy()
        return out

    def graph_size(self) -> dict[str, Any]:
        """Queries, products and edges of the fitted graph."""
        return {
            "queries": len(self.products_of_),
            "products": len(self.queries_of_),
            "edges": sum(len(v) for v in self.products_of_.values()),
        }


__all__ = ["GraphRelevance", "GraphRelevanceConfig", "prune_edges"]
