"""What every intent component shares: the leaf categories, the targets learned from the logs,
the words of a query, and how a probability per leaf becomes :attr:`QueryAnalysis.intents
<shopsearch.query.base.QueryAnalysis.intents>`.

**Targets.** A logged request says what its query was after through the products its user
acted on (clicked, carted or bought; for judgments, judged relevant): each such product's leaf
category. Requests are grouped by (market, query key) — the query's words lower-cased, as
:func:`query_words` splits them — and each group's target for a leaf is the share of its
acting requests that acted on a product of that leaf (a multi-label target in ``[0, 1]``, most
often one leaf near 1). Requests nobody acted on say nothing and are left out.

**Output.** A component gives a probability per leaf of the catalog; :class:`IntentComponent`
keeps the leaves of the searched market (every leaf when no market is given), lists the
:attr:`~IntentComponent.top_k` most likely that reach :attr:`~IntentComponent.floor`, most
likely first, and notes the first. Retrieval boosts the categories at least ``[query]
intent_min_probability`` likely; the rank stage reads the first as the query's category of an
unseen query.
"""

from __future__ import annotations

import functools
import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from shopsearch.errors import NotFittedError, WorkspaceError
from shopsearch.query.base import QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData
from shopsearch.store.atomic import write_json

F32 = npt.NDArray[np.float32]

#: Characters of a query read at most (a longer query is cut: its intent is in its start).
MAX_QUERY_CHARS = 512
#: Words of a query read at most.
MAX_WORDS = 16
#: Characters of a word read at most.
MAX_WORD_CHARS = 32
#: Distinct (words, market) whose intents a component keeps (repeated queries are looked up).
CACHE_SIZE = 8192

_WORD = re.compile(r"[^\W_]+")
_LABELS = "labels.json"


def query_words(text: str) -> list[str]:
    """The words of ``text`` as the intent components read them: runs of letters or digits
    (any script), case-folded, at most :data:`MAX_WORDS` of at most :data:`MAX_WORD_CHARS`
    characters each."""
    found = _WORD.findall(text[:MAX_QUERY_CHARS].casefold())
    return [w[:MAX_WORD_CHARS] for w in found[:MAX_WORDS]]


def char_ngrams(word: str, low: int = 2, high: int = 4) -> list[str]:
    """The character n-grams (``low`` to ``high`` long) of ``word`` padded with ``<`` and
    ``>``: ``"sofa"`` → ``"<s", "so", ..., "ofa>"``; they match misspellings and plurals."""
    padded = f"<{word}>"
    return [padded[i : i + n] for n in range(low, high + 1) for i in range(len(padded) - n + 1)]


def query_key(text: str) -> str:
    """The words of ``text`` joined by single spaces: queries with one key are one query."""
    return " ".join(query_words(text))


@dataclass
class IntentExamples:
    """The training examples of intent classification (see the module docstring).

    Attributes:
        leaves: every leaf category path of the catalog, sorted.
        markets: market → indices of the leaves it sells.
        domains: each example's market.
        keys: each example's query key.
        targets: float32 ``[examples, leaves]`` share of the example's acting requests that
            acted in each leaf.
        requests: each example's number of acting requests.
    """

    leaves: list[str]
    markets: dict[str, list[int]]
    domains: list[str]
    keys: list[str]
    targets: F32
    requests: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.keys)

    def top(self) -> npt.NDArray[np.int64]:
        """Each example's most acted-on leaf."""
        return np.asarray(self.targets.argmax(axis=1), np.int64)


def intent_examples(data: QueryData) -> IntentExamples:
    """The examples of ``data``'s outcomes: one per (market, query key) someone acted on."""
    catalog = data.catalog[data.catalog["category"] != ""]
    leaves = sorted(set(catalog["category"]))
    index = {leaf: i for i, leaf in enumerate(leaves)}
    markets = {
        str(domain): sorted({index[c] for c in part})
        for domain, part in catalog.groupby("domain")["category"]
    }
    acted = data.outcomes[data.outcomes["category"].isin(index)]
    acted = acted.drop_duplicates(["request_id", "category"])
    keys = {q: query_key(str(q)) for q in acted["query"].unique()}
    frame = pd.DataFrame(
        {
            "request_id": acted["request_id"].to_numpy(),
            "domain": acted["domain"].astype(str).to_numpy(),
            "key": acted["query"].map(keys).to_numpy(),
            "leaf": acted["category"].map(index).to_numpy(np.int64),
        }
    )
    groups = frame.groupby(["domain", "key"], sort=True)
    per_group = groups["request_id"].nunique()
    example = pd.Series(np.arange(len(per_group)), index=per_group.index)
    pairs = frame.groupby(["domain", "key", "leaf"]).size()
    targets = np.zeros((len(per_group), len(leaves)), np.float32)
    index2 = pd.MultiIndex.from_arrays(
        [pairs.index.get_level_values("domain"), pairs.index.get_level_values("key")]
    )
    rows = example.loc[index2].to_numpy()
    cols = pairs.index.get_level_values("leaf").to_numpy()
    targets[rows, cols] = pairs.to_numpy() / per_group.to_numpy()[rows]
    return IntentExamples(
        leaves=leaves,
        markets=markets,
        domains=[str(d) for d in per_group.index.get_level_values("domain")],
        keys=[str(k) for k in per_group.index.get_level_values("key")],
        targets=targets,
        requests=np.asarray(per_group.to_numpy(), np.int64),
    )


class IntentComponent(QueryComponent):
    """An intent classifier: a probability per leaf category of the catalog for a query.

    Subclasses implement :meth:`probabilities` and save / load their own state; this class
    holds the leaves and which market sells which (:meth:`fit_labels`, :meth:`save_labels`,
    :meth:`load_labels`) and fills the analysis.
    """

    order: ClassVar[int] = 30
    #: Most categories listed in ``intents``.
    top_k: ClassVar[int] = 3
    #: Least probability of a listed category.
    floor: ClassVar[float] = 0.05

    leaves_: list[str]
    markets_: dict[str, npt.NDArray[np.int64]]

    def fit_labels(self, examples: IntentExamples) -> None:
        """Keep the leaves and the leaves of each market."""
        self.leaves_ = list(examples.leaves)
        self.markets_ = {d: np.asarray(ix, np.int64) for d, ix in examples.markets.items()}

    @abstractmethod
    def probabilities(self, words: Sequence[str], domain: str | None) -> F32 | None:
        """The probability of each leaf (order of ``leaves_``) for a query of ``words``
        searched in ``domain``; ``None`` when the component has nothing to say."""

    def predict(self, text: str, domain: str | None = None) -> list[tuple[str, float]]:
        """The intents of ``text`` searched in ``domain``: ``(leaf path, probability)``, most
        likely first.

        Raises:
            NotFittedError: before :meth:`fit`.
        """
        if not hasattr(self, "leaves_"):
            raise NotFittedError(f"the {self.name} intent component is not fitted; call fit()")
        cached = self.__dict__.get("_cached")
        if cached is None:  # per instance: a query's words and market decide its intents
            cached = self.__dict__["_cached"] = functools.lru_cache(CACHE_SIZE)(self._predict)
        return list(cached(tuple(query_words(text)), domain))

    def _predict(self, words: tuple[str, ...], domain: str | None) -> list[tuple[str, float]]:
        probs = self.probabilities(words, domain) if words else None
        if probs is None or not len(self.leaves_):
            return []
        allowed = self.markets_.get(domain) if domain is not None else None
        candidates = np.arange(len(self.leaves_)) if allowed is None else allowed
        chosen = candidates[np.argsort(-probs[candidates], kind="stable")[: self.top_k]]
        return [(self.leaves_[i], float(probs[i])) for i in chosen if probs[i] >= self.floor]

    def apply(self, analysis: QueryAnalysis) -> None:
        """Set ``analysis.intents`` from its text and market, and note the first."""
        intents = self.predict(analysis.text, analysis.domain)
        analysis.intents = intents
        if intents:
            leaf, prob = intents[0]
            analysis.notes[self.name] = f"{leaf} ({prob:.2f})"

    def save_labels(self, path: Path) -> None:
        """Write the leaves and the markets' leaves to ``path/labels.json``."""
        path.mkdir(parents=True, exist_ok=True)
        write_json(
            path / _LABELS,
            {
                "leaves": self.leaves_,
                "markets": {d: ix.tolist() for d, ix in self.markets_.items()},
            },
        )

    def load_labels(self, path: Path) -> None:
        """Read what :meth:`save_labels` wrote.

        Raises:
            WorkspaceError: ``path`` holds no labels.
        """
        try:
            labels = orjson.loads((path / _LABELS).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError) as exc:
            raise WorkspaceError(
                f"{path} holds no {self.name} intent component ({type(exc).__name__}: {exc}); "
                "train it with 'shopsearch train --stage query'"
            ) from exc
        self.leaves_ = [str(leaf) for leaf in labels["leaves"]]
        self.markets_ = {str(d): np.asarray(ix, np.int64) for d, ix in labels["markets"].items()}


__all__ = [
    "MAX_WORDS",
    "IntentComponent",
    "IntentExamples",
    "char_ngrams",
    "intent_examples",
    "query_key",
    "query_words",
]
