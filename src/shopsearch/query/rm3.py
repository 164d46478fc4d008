"""``rm3``: pseudo-relevance feedback (RM3), the classic baseline of query expansion.

At fit time the component indexes the catalog's text (title, brand, category, description;
lower-cased words, English stop words left out) with BM25 (bm25s) and keeps each product's word
counts. For a query it:

1. retrieves the top ``fb_docs`` products of its market by BM25 (the first pass);
2. builds the relevance model ``P(w | R) = Σ_D P(w | D) · P(D | Q)``, with ``P(w | D)`` the
   word's share of the product's words and ``P(D | Q)`` the product's BM25 score normalised
   over the feedback products;
3. interpolates it with the query, ``P'(w) = λ · P(w | Q) + (1 − λ) · P(w | R)``
   (``λ = original_weight``), and keeps the ``fb_terms`` most likely words not in the query.

Simplified for the pipeline's plan: a rewrite is a list of words with one weight, so the
expansion words share one weight, the ratio of their mass under ``P'`` to the mass of the
query's own words, ``(1 − λ) · Σ_E P(w | R) / (λ + (1 − λ) · Σ_Q P(w | R))``; the query itself
is searched with weight 1 as always. Every query is expanded (RM3 has no gate).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import ClassVar, Self

import bm25s
import numpy as np
import numpy.typing as npt
import orjson
from bm25s.stopwords import STOPWORDS_EN
from bm25s.tokenization import Tokenized

from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData
from shopsearch.query.postings import MAX_LOOKUP_WORDS, catalog_text, words
from shopsearch.store.atomic import write_json

_CONFIG = "config.json"
_BM25 = "bm25"
_STOP = frozenset(STOPWORDS_EN)


@QUERY_COMPONENTS.register()
class RM3Expansion(QueryComponent):
    """RM3 expansion of every query from a first-pass BM25 over the catalog (see the module
    docstring).

    Args:
        fb_docs: feedback products (the first pass's top).
        fb_terms: expansion words kept.
        original_weight: λ, the query's share of the interpolated model.
    """

    name: ClassVar[str] = "rm3"
    baseline: ClassVar[bool] = True
    order: ClassVar[int] = 40

    vocabulary_: list[str]
    bm25_: bm25s.BM25
    domains_: list[str]
    product_domain_: npt.NDArray[np.int32]
    offsets_: npt.NDArray[np.int64]
    terms_: npt.NDArray[np.int32]
    counts_: npt.NDArray[np.float32]

    def __init__(self, fb_docs: int = 10, fb_terms: int = 10, original_weight: float = 0.5) -> None:
        if fb_docs < 1 or fb_terms < 1 or not 0 < original_weight <= 1:
            raise InvalidInputError(
                f"rm3: fb_docs={fb_docs}, fb_terms={fb_terms}, original_weight="
                f"{original_weight}: use fb_docs >= 1, fb_terms >= 1, 0 < original_weight <= 1"
            )
        self.fb_docs = fb_docs
        self.fb_terms = fb_terms
        self.original_weight = original_weight

    def fit(self, data: QueryData) -> Self:
        """Index the catalog's text with BM25 and keep each product's word counts."""
        catalog = data.catalog
        text = catalog_text(catalog)
        documents = [[w for w in words(t) if w not in _STOP] for t in text]
        self.vocabulary_ = sorted({w for d in documents for w in d})
        number = {w: i for i, w in enumerate(self.vocabulary_)}
        ids = [[number[w] for w in d] for d in documents]
        self.domains_ = sorted(set(catalog["domain"].astype(str)))
        self.product_domain_ = np.array(
            [self.domains_.index(d) for d in catalog["domain"].astype(str)], dtype=np.int32
        )
        counted = [Counter(d) for d in ids]
        self.offsets_ = np.concatenate([[0], np.cumsum([len(c) for c in counted])]).astype(np.int64)
        self.terms_ = np.array([t for c in counted for t in c], dtype=np.int32)
        self.counts_ = np.array([n for c in counted for n in c.values()], dtype=np.float32)
        self.bm25_ = bm25s.BM25()
        self.bm25_.index(Tokenized(ids=ids, vocab=number), show_progress=False)
        return self

    def apply(self, analysis: QueryAnalysis) -> None:
        """Add the expansion of ``analysis.text`` as one weighted rewrite."""
        if not hasattr(self, "bm25_"):
            raise NotFittedError("the rm3 component is not fitted; call fit() first")
        number = self.bm25_.vocab_dict
        query = [number[w] for w in dict.fromkeys(words(analysis.text)) if w in number]
        query = [t for t in query if self.vocabulary_[t] not in _STOP][:MAX_LOOKUP_WORDS]
        if not query:
            analysis.notes[self.name] = (
                "no word of the query (stop words aside) is in the catalog: not expanded"
            )
            return
        mask = np.ones(len(self.product_domain_), dtype=np.float32)
        if analysis.domain is not None:
            if analysis.domain not in self.domains_:
                analysis.notes[self.name] = f"no product in market {analysis.domain!r}"
                return
            mask = (self.product_domain_ == self.domains_.index(analysis.domain)).astype(np.float32)
        found, scores = self.bm25_.retrieve(
            Tokenized(ids=[query], vocab=number),
            k=min(self.fb_docs, len(mask)),
            show_progress=False,
            weight_mask=mask,
        )
        keep = scores[0] > 0
        documents, weights = found[0][keep], scores[0][keep]
        if not len(documents):
            analysis.notes[self.name] = "the first pass found nothing: not expanded"
            return
        relevance = np.zeros(len(self.vocabulary_), dtype=np.float64)
        for document, weight in zip(documents, weights / weights.sum(), strict=True):
            start, end = self.offsets_[document], self.offsets_[document + 1]
            counts = self.counts_[start:end]
            np.add.at(relevance, self.terms_[start:end], weight * counts / counts.sum())
        own = relevance[query].sum()
        relevance[query] = 0.0
        expansion = np.argsort(-relevance, kind="stable")[: self.fb_terms]
        expansion = expansion[relevance[expansion] > 0]
        if not len(expansion):
            analysis.notes[self.name] = "the feedback products add no word: not expanded"
            return
        lam = self.original_weight
        weight = (1 - lam) * relevance[expansion].sum() / (lam + (1 - lam) * own)
        text = " ".join(self.vocabulary_[t] for t in expansion)
        analysis.rewrites.append((text, round(float(weight), 4)))
        analysis.notes[self.name] = (
            f"{len(documents)} feedback products: + {text!r} weighted {weight:.2f}"
        )

    def save(self, path: Path) -> None:
        """``config.json``, the BM25 index (bm25s's json and npy files, in ``bm25/``) and the
        products' word counts (``.npy``)."""
        if not hasattr(self, "bm25_"):
            raise NotFittedError("the rm3 component is not fitted; nothing to save")
        path.mkdir(parents=True, exist_ok=True)
        write_json(
            path / _CONFIG,
            {
                "fb_docs": self.fb_docs,
                "fb_terms": self.fb_terms,
                "original_weight": self.original_weight,
                "vocabulary": self.vocabulary_,
                "domains": self.domains_,
            },
        )
        self.bm25_.save(str(path / _BM25), allow_pickle=False, show_progress=False)
        for name in ("product_domain_", "offsets_", "terms_", "counts_"):
            np.save(path / f"{name.rstrip('_')}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a component written by :meth:`save`."""
        config = orjson.loads((path / _CONFIG).read_bytes())
        component = cls(config["fb_docs"], config["fb_terms"], config["original_weight"])
        component.vocabulary_ = list(config["vocabulary"])
        component.domains_ = list(config["domains"])
        component.bm25_ = bm25s.BM25.load(str(path / _BM25), allow_pickle=False)
        for name in ("product_domain_", "offsets_", "terms_", "counts_"):
            array = np.load(path / f"{name.rstrip('_')}.npy", allow_pickle=False)
            setattr(component, name, array)
        return component


__all__ = ["RM3Expansion"]
