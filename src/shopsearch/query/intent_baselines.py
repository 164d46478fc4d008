"""Baselines of intent classification, each a query component (``eval query`` compares them with
MMAN, :mod:`shopsearch.query.mman`).

* ``query-majority`` — what the ranking features knew before: the categories acted on after the
  exact same query (its key, every market pooled), as shares of its acting requests; nothing for
  a query never logged with an outcome.
* ``intent-linear`` — TF-IDF of the query's character 2-5-grams (padded words, sublinear term
  frequency, n-grams seen in at least two queries) and a multinomial logistic regression
  (scikit-learn, trained with every (query, leaf) target as a weighted row).
* ``minilm-nearest`` — the leaf whose name (its path, words only) is nearest to the query under
  MiniLM cosine; probabilities are the softmax of the cosines at a temperature fitted on the logs.
  The query is encoded with the transformer on every search (milliseconds: the slow one).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt
import orjson

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
)
from shopsearch.store.atomic import write_json
from shopsearch.text.encoders import MiniLMEncoder

_MAJORITY = "majority.json"
_LINEAR = "linear.json"
_COEF = "coef.npy"
_NEAREST = "nearest.json"
_NAMES = "names.npy"


def _read_json(path: Path, name: str) -> dict[str, object]:
    try:
        body: dict[str, object] = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError) as exc:
        raise WorkspaceError(
            f"{path} is missing or unreadable ({type(exc).__name__}: {exc}); train the {name} "
            "component again with 'shopsearch train --stage query'"
        ) from exc
    return body


def _read_npy(path: Path, name: str) -> npt.NDArray[np.float32]:
    try:
        return np.asarray(np.load(path, allow_pickle=False), np.float32)
    except (FileNotFoundError, ValueError) as exc:
        raise WorkspaceError(
            f"{path} is missing or unreadable ({type(exc).__name__}: {exc}); train the {name} "
            "component again with 'shopsearch train --stage query'"
        ) from exc


def _softmax(logits: npt.NDArray[np.float64]) -> F32:
    z = np.exp(logits - logits.max())
    return np.asarray(z / z.sum(), np.float32)


@QUERY_COMPONENTS.register()
class QueryMajorityIntent(IntentComponent):
    """The categories acted on after the exact same logged query (see the module docstring)."""

    name = "query-majority"
    baseline = True

    def fit(self, data: QueryData) -> Self:
        """Count, per query key, the share of acting requests per leaf (markets pooled)."""
        examples = intent_examples(data)
        self.fit_labels(examples)
        pooled: dict[str, dict[int, float]] = {}
        totals: Counter[str] = Counter()
        for key, row, n in zip(examples.keys, examples.targets, examples.requests, strict=True):
            shares = pooled.setdefault(key, {})
            for leaf in np.flatnonzero(row).tolist():
                shares[leaf] = shares.get(leaf, 0.0) + float(row[leaf]) * int(n)
            totals[key] += int(n)
        self.table_ = {
            key: sorted(((leaf, v / totals[key]) for leaf, v in shares.items()),
                        key=lambda pair: -pair[1])
            for key, shares in pooled.items()
        }  # fmt: skip
        return self

    def probabilities(self, words: Sequence[str], domain: str | None) -> F32 | None:
        """The key's shares per leaf; ``None`` for a query never logged with an outcome."""
        found = self.table_.get(" ".join(words))
        if found is None:
            return None
        probs = np.zeros(len(self.leaves_), np.float32)
        for leaf, share in found:
            probs[leaf] = share
        return probs

    def save(self, path: Path) -> None:
        """``labels.json`` and ``majority.json`` (key → [[leaf, share], ...])."""
        self.save_labels(path)
        write_json(path / _MAJORITY, self.table_)

    @classmethod
    def load(cls, path: Path) -> Self:
        """The component :meth:`save` wrote."""
        component = cls()
        component.load_labels(path)
        table = _read_json(path / _MAJORITY, cls.name)
        component.table_ = {
            str(key): [(int(leaf), float(share)) for leaf, share in pairs]  # type: ignore[attr-defined]
            for key, pairs in table.items()
        }
        return component


@QUERY_COMPONENTS.register()
class LinearIntent(IntentComponent):
    """TF-IDF character n-grams and a logistic regression (see the module docstring).

    Args:
        c: inverse regularisation strength of the logistic regression.
        min_df: least number of training queries an n-gram must occur in.
    """

    name = "intent-linear"
    baseline = True

    def __init__(self, c: float = 1.0, min_df: int = 2) -> None:
        self.c = c
        self.min_df = min_df

    def _features(self, words: Sequence[str]) -> tuple[npt.NDArray[np.int64], F32]:
        """The known n-grams of ``words`` and their normalised TF-IDF weights."""
        counts = Counter(g for w in words for g in char_ngrams(w, 2, 5))
        found = [(self.vocabulary_[g], c) for g, c in counts.items() if g in self.vocabulary_]
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids = np.array([i for i, _ in found], np.int64)
        tf = np.array([1.0 + math.log(c) for _, c in found])
        weights = tf * self.idf_[ids]
        return ids, np.asarray(weights / np.linalg.norm(weights), np.float32)

    def fit(self, data: QueryData) -> Self:
        """Fit the vocabulary, the IDF and the regression on every (query, leaf) target."""
        from scipy.sparse import csr_matrix
        from sklearn.linear_model import LogisticRegression

        examples = intent_examples(data)
        self.fit_labels(examples)
        grams = [set(g for w in key.split() for g in char_ngrams(w, 2, 5)) for key in examples.keys]
        df = Counter(g for found in grams for g in found)
        kept = sorted(g for g, n in df.items() if n >= self.min_df)
        self.vocabulary_ = {g: i for i, g in enumerate(kept)}
        n = max(len(examples), 1)
        self.idf_ = np.array([1.0 + math.log((1 + n) / (1 + df[g])) for g in kept], np.float32)
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        labels: list[int] = []
        weights: list[float] = []
        for key, target, requests in zip(
            examples.keys, examples.targets, examples.requests, strict=True
        ):
            ids, w = self._features(key.split())
            for leaf in np.flatnonzero(target).tolist():
                rows.extend([len(labels)] * len(ids))
                cols.extend(ids.tolist())
                vals.extend(w.tolist())
                labels.append(leaf)
                weights.append(float(target[leaf]) * float(requests))
        self.classes_ = np.zeros(0, np.int64)
        self.coef_ = np.zeros((0, len(kept)), np.float32)
        self.intercept_ = np.zeros(0, np.float32)
        if len(set(labels)) >= 2:
            x = csr_matrix((vals, (rows, cols)), shape=(len(labels), len(kept)), dtype=np.float64)
            model = LogisticRegression(C=self.c, max_iter=300)
            model.fit(x, np.array(labels), sample_weight=np.array(weights))
            self.classes_ = np.asarray(model.classes_, np.int64)
            self.coef_ = np.asarray(model.coef_, np.float32)
            self.intercept_ = np.asarray(model.intercept_, np.float32)
        elif labels:
            self.classes_ = np.array([labels[0]], np.int64)
            self.coef_ = np.zeros((1, len(kept)), np.float32)
            self.intercept_ = np.zeros(1, np.float32)
        return self

    def probabilities(self, words: Sequence[str], domain: str | None) -> F32 | None:
        """The regression's softmax over the leaves it was trained on (0 for the others)."""
        if not len(self.classes_):
            return None
        ids, weights = self._features(words)
        logits = self.intercept_.astype(np.float64) + self.coef_[:, ids] @ weights
        if self.coef_.shape[0] == 1:  # one class seen in training: it is the answer
            logits = np.zeros(1)
        probs = np.zeros(len(self.leaves_), np.float32)
        probs[self.classes_] = _softmax(np.asarray(logits, np.float64))
        return probs

    def save(self, path: Path) -> None:
        """``labels.json``, ``linear.json`` (settings, n-grams, IDF, classes, intercepts) and
        ``coef.npy``."""
        self.save_labels(path)
        write_json(
            path / _LINEAR,
            {
                "c": self.c,
                "min_df": self.min_df,
                "ngrams": sorted(self.vocabulary_, key=self.vocabulary_.__getitem__),
                "idf": self.idf_.tolist(),
                "classes": self.classes_.tolist(),
                "intercept": self.intercept_.tolist(),
            },
        )
        np.save(path / _COEF, self.coef_, allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> Self:
        """The component :meth:`save` wrote."""
        body = _read_json(path / _LINEAR, cls.name)
        component = cls(float(str(body["c"])), int(str(body["min_df"])))
        component.load_labels(path)
        ngrams = [str(g) for g in body["ngrams"]]  # type: ignore[attr-defined]
        component.vocabulary_ = {g: i for i, g in enumerate(ngrams)}
        component.idf_ = np.asarray(body["idf"], np.float32)
        component.classes_ = np.asarray(body["classes"], np.int64)
        component.intercept_ = np.asarray(body["intercept"], np.float32)
        component.coef_ = _read_npy(path / _COEF, cls.name).reshape(-1, len(ngrams))
        return component


def leaf_name(path: str) -> str:
    """A leaf path as words for an encoder: ``"Home > Audio > Headphones"`` →
    ``"Home Audio Headphones"``."""
    return " ".join(part.strip() for part in path.split(CATEGORY_SEPARATOR.strip()))


@QUERY_COMPONENTS.register()
class MiniLMNearestIntent(IntentComponent):
    """The leaf whose name is nearest to the query under MiniLM (see the module docstring).

    Args:
        encoder: the sentence encoder (default: MiniLM, loaded on first use).
    """

    name = "minilm-nearest"
    baseline = True
    #: The temperatures tried when fitting (the one with the best log-likelihood is kept).
    temperatures: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2)

    def __init__(self, encoder: MiniLMEncoder | None = None) -> None:
        self.encoder = encoder or MiniLMEncoder()

    def fit(self, data: QueryData) -> Self:
        """Encode the leaf names; fit the softmax temperature on the logged targets."""
        examples = intent_examples(data)
        self.fit_labels(examples)
        self.names_ = self.encoder.encode_items([leaf_name(p) for p in self.leaves_])
        self.temperature_ = self._temperature(examples)
        return self

    def _temperature(self, examples: IntentExamples) -> float:
        if not len(examples) or not self.leaves_:
            return self.temperatures[0]
        cosines = self.encoder.encode_items(examples.keys) @ self.names_.T
        weights = examples.targets * examples.requests[:, None]
        best, chosen = -math.inf, self.temperatures[0]
        for t in self.temperatures:
            logits = cosines / t
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            score = float((weights * log_probs).sum())
            if score > best:
                best, chosen = score, t
        return chosen

    def probabilities(self, words: Sequence[str], domain: str | None) -> F32 | None:
        """Softmax of the cosines of the query and every leaf name."""
        if not self.leaves_:
            return None
        query = self.encoder.encode_queries([" ".join(words)])[0]
        return _softmax((self.names_ @ query).astype(np.float64) / self.temperature_)

    def save(self, path: Path) -> None:
        """``labels.json``, ``nearest.json`` (the temperature) and ``names.npy`` (the leaf
        names' vectors)."""
        self.save_labels(path)
        write_json(path / _NEAREST, {"temperature": self.temperature_})
        np.save(path / _NAMES, self.names_, allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> Self:
        """The component :meth:`save` wrote (the encoder loads on the first query)."""
        component = cls()
        component.load_labels(path)
        component.temperature_ = float(_read_json(path / _NEAREST, cls.name)["temperature"])  # type: ignore[arg-type]
        component.names_ = _read_npy(path / _NAMES, cls.name)
        return component


__all__ = ["LinearIntent", "MiniLMNearestIntent", "QueryMajorityIntent", "leaf_name"]
