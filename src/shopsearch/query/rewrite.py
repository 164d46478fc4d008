"""Query rewriting by cycle-consistent translation (``rewrite``) and its forward-only ablation
(``rewrite-forward``).

After the paper (JD, "Query Rewriting via Cycle-Consistent Translation for E-Commerce
Search"): a query is translated into the words of the titles its users bought or clicked, by a
small transformer trained jointly with the reverse direction and a cycle-consistency term
(:mod:`.translation`). The translations, scored by their cycle likelihood, become
``analysis.rewrites``: retrieval also searches for them, each weighted by its score.

**Pairs.** Every distinct (market, query, title) of a logged click, cart or purchase (or a
judged-relevant pair). A title's brand is left out of the target unless the query names it: a
rewrite restates what the user asked for and does not pick a brand for them.

**When a query is rewritten.** Only when its own lexical matches are few: the component cannot
see the index, so at fit time it keeps a compact word → products structure of the catalog
(:class:`~.postings.WordPostings`) and rewrites a query when fewer than ``min_products`` products
of the searched market contain all of its words (a mistyped, abbreviated or regional word the
catalog never uses gives 0; the default, ``min_products = 1``, rewrites only such queries: most
queries with one or two matches on the simulator are precise combinations of attributes, not
vocabulary gaps). A query whose words the model never saw is not rewritten either.

**Head and tail.** The rewrites of every logged query typed at least ``head_min_requests`` times
that is rewritten in a market it was typed in are decoded at fit time and saved with the
component; at search time they are looked up, not decoded. Other queries are decoded online
within ``budget_ms`` (beam search, then cycle scoring); a decoding that would pass the budget is
abandoned (the deadline is checked before each decoded word and before the scoring), and the
note (``--explain``) says so. The default, 1.2 ms, keeps this component within about 1.5 ms
and leaves the others (the intent network: about 0.8-1.2 ms) the rest of the query stage's
3 ms (p99); ``budget_ms = 0`` turns online decoding off.

What is simplified against the paper is listed in :mod:`.translation`; the ablation differs
only in its training loss (no cycle term): the same pairs, models, decoding and scoring.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Self

import orjson
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData
from shopsearch.query.postings import WordPostings, words
from shopsearch.query.translation import (
    EOS,
    PAD,
    UNK,
    ModelShape,
    TrainingConfig,
    Translator,
    Vocabulary,
    one_thread,
    rewrite_batch,
    train_translators,
)
from shopsearch.store.atomic import write_json

_CONFIG = "config.json"
_HEAD = "head.json"
_HISTORY = "training.json"
#: Head queries decoded together at fit time.
_FIT_BATCH = 128


@QUERY_COMPONENTS.register()
class CycleRewrite(QueryComponent):
    """Rewrites of queries with few lexical matches, by a query ↔ title translator trained with
    a cycle-consistency term (see the module docstring).

    Args:
        dim: width of the transformers.
        encoder_layers: encoder layers of each transformer.
        decoder_layers: decoder layers of each transformer (decoding runs them once a word).
        heads: attention heads.
        steps: training steps.
        batch_size: pairs per training step.
        learning_rate: peak learning rate.
        cycle_weight: λ of the cycle term (``None``: the class's, 0.5 here, 0 for the ablation).
        min_count: fewest occurrences of a word in the pairs for it to join the vocabulary.
        max_words: most words of a query or title the models read or write.
        beam: beam width of decoding.
        n_rewrites: most rewrites emitted per query.
        min_weight: lowest cycle likelihood a rewrite is emitted with.
        min_products: a query is rewritten when fewer products of its market contain all its
            words.
        head_min_requests: logged queries typed at least this often are decoded at fit time.
        budget_ms: most milliseconds an online decoding may take (0: no online decoding).
        threads: torch threads while fitting.
        seed: seed of training.
    """

    name: ClassVar[str] = "rewrite"
    order: ClassVar[int] = 40
    #: λ of the cycle term when ``cycle_weight`` is not given.
    default_cycle_weight: ClassVar[float] = 0.5

    vocabulary_: Vocabulary
    forward_: Translator
    backward_: Translator
    postings_: WordPostings
    head_: dict[str, dict[str, list[tuple[str, float]]]]
    history_: dict[str, list[float]]

    def __init__(
        self,
        *,
        dim: int = 64,
        encoder_layers: int = 2,
        decoder_layers: int = 1,
        heads: int = 4,
        steps: int = 1500,
        batch_size: int = 64,
        learning_rate: float = 2e-3,
        cycle_weight: float | None = None,
        min_count: int = 2,
        max_words: int = 12,
        beam: int = 4,
        n_rewrites: int = 2,
        min_weight: float = 0.2,
        min_products: int = 1,
        head_min_requests: int = 2,
        budget_ms: float = 1.2,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        weight = self.default_cycle_weight if cycle_weight is None else cycle_weight
        sizes = (dim, encoder_layers, decoder_layers, heads, steps, beam, threads)
        if weight < 0 or budget_ms < 0 or min(sizes) < 1 or dim % heads:
            raise InvalidInputError(
                f"{self.name}: cycle_weight={weight}, budget_ms={budget_ms}, dim={dim}, "
                f"encoder_layers={encoder_layers}, decoder_layers={decoder_layers}, "
                f"heads={heads}, steps={steps}, beam={beam}, threads={threads}: use "
                "cycle_weight >= 0, budget_ms >= 0, the others >= 1 and dim a multiple of heads"
            )
        self.dim = dim
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.heads = heads
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.cycle_weight = weight
        self.min_count = min_count
        self.max_words = max_words
        self.beam = beam
        self.n_rewrites = n_rewrites
        self.min_weight = min_weight
        self.min_products = min_products
        self.head_min_requests = head_min_requests
        self.budget_ms = budget_ms
        self.threads = threads
        self.seed = seed

    def _params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "encoder_layers": self.encoder_layers,
            "decoder_layers": self.decoder_layers,
            "heads": self.heads,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "cycle_weight": self.cycle_weight,
            "min_count": self.min_count,
            "max_words": self.max_words,
            "beam": self.beam,
            "n_rewrites": self.n_rewrites,
            "min_weight": self.min_weight,
            "min_products": self.min_products,
            "head_min_requests": self.head_min_requests,
            "budget_ms": self.budget_ms,
            "threads": self.threads,
            "seed": self.seed,
        }

    def _shape(self) -> ModelShape:
        return ModelShape(
            len(self.vocabulary_),
            dim=self.dim,
            heads=self.heads,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            ff=2 * self.dim,
            max_len=self.max_words,
        )

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, data: QueryData) -> Self:
        """Train the translators on the (query, title) pairs of the outcomes, keep the
        catalog's word postings and decode the head queries' rewrites.

        Raises:
            InvalidInputError: no outcome pairs a query with a product of the catalog.
        """
        pairs = _pairs(data)
        if pairs.empty:
            raise InvalidInputError(
                f"{self.name}: no logged query led to a product of the catalog; log clicks or "
                "judgments first"
            )
        query_words = [words(q)[: self.max_words] for q in pairs["query"]]
        title_words = [
            _without_brand(words(title), words(brand), query)[: self.max_words]
            for title, brand, query in zip(pairs["title"], pairs["brand"], query_words, strict=True)
        ]
        markets = sorted(set(data.catalog["domain"].astype(str)))
        self.vocabulary_ = Vocabulary.build(
            [*query_words, *title_words], self.min_count, 50_000, [_token(m) for m in markets]
        )
        self.postings_ = WordPostings.from_catalog(data.catalog)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            self.forward_, self.backward_, self.history_ = train_translators(
                [self.vocabulary_.encode(w, self.max_words) for w in query_words],
                [self.vocabulary_.encode(w, self.max_words) for w in title_words],
                [self._market(str(d)) for d in pairs["domain"]],
                self._shape(),
                TrainingConfig(
                    steps=self.steps,
                    batch_size=self.batch_size,
                    learning_rate=self.learning_rate,
                    cycle_weight=self.cycle_weight,
                    seed=self.seed,
                ),
            )
            self.head_ = self._decode_head(data)
        finally:
            torch.set_num_threads(previous)
        return self

    def _market(self, domain: str | None) -> int:
        """The market's token (``<pad>``, masked, for no market or one never trained on)."""
        return self.vocabulary_.index.get(_token(domain), PAD) if domain else PAD

    def _decode_head(self, data: QueryData) -> dict[str, dict[str, list[tuple[str, float]]]]:
        """Market → rewrites of the logged queries typed ``head_min_requests`` times or more
        there that are rewritten there."""
        counts = data.query_counts()
        counts = counts[counts["requests"] >= self.head_min_requests]
        todo: dict[tuple[str, str], list[str]] = {}
        for query, domain in zip(
            counts["query"].astype(str), counts["domain"].astype(str), strict=True
        ):
            found = words(query)[: self.max_words]
            if found and self._needs_rewrite(found, domain or None)[0]:
                todo[(domain, " ".join(found))] = found
        head: dict[str, dict[str, list[tuple[str, float]]]] = {}
        items = list(todo.items())
        for start in range(0, len(items), _FIT_BATCH):
            chunk = items[start : start + _FIT_BATCH]
            decoded = rewrite_batch(
                self.forward_,
                self.backward_,
                [self.vocabulary_.encode(found, self.max_words) for _, found in chunk],
                [self._market(domain) for (domain, _), _ in chunk],
                self.beam,
            )
            assert decoded is not None  # no deadline at fit time
            for ((domain, key), found), hits in zip(chunk, decoded, strict=True):
                head.setdefault(domain, {})[key] = self._chosen(found, hits)
        return head

    # -- applying ------------------------------------------------------------------------------
    def _needs_rewrite(self, found: list[str], domain: str | None) -> tuple[bool, int]:
        """Whether a query of ``found`` words is rewritten in ``domain``, and how many products
        contain all its words."""
        matches = self.postings_.count(found, domain)
        known = any(self.vocabulary_.index.get(w, UNK) != UNK for w in found)
        return matches < self.min_products and known, matches

    def _chosen(
        self, found: list[str], hits: list[tuple[list[int], float]]
    ) -> list[tuple[str, float]]:
        """The best ``n_rewrites`` distinct translations that differ from the query."""
        chosen: list[tuple[str, float]] = []
        seen = {" ".join(found)}
        for ids, score in hits:
            text = " ".join(self.vocabulary_.decode(ids))
            if text and text not in seen and score >= self.min_weight:
                seen.add(text)
                chosen.append((text, round(score, 4)))
            if len(chosen) == self.n_rewrites:
                break
        return chosen

    def apply(self, analysis: QueryAnalysis) -> None:
        """Add rewrites when the query's own matches are few (see the module docstring)."""
        if not hasattr(self, "forward_"):
            raise NotFittedError(f"the {self.name} component is not fitted; call fit() first")
        found = words(analysis.text)[: self.max_words]
        if not found:
            analysis.notes[self.name] = "no words: not rewritten"
            return
        rewrite, matches = self._needs_rewrite(found, analysis.domain)
        contain = f"{matches} product(s) contain every word"
        if not rewrite:
            analysis.notes[self.name] = contain + (
                f" (>= {self.min_products}): not rewritten"
                if matches >= self.min_products
                else "; the model knows none of its words: not rewritten"
            )
            return
        cached = self.head_.get(analysis.domain or "", {}).get(" ".join(found))
        if cached is not None:
            how = "precomputed for a logged query"
            chosen = cached
        elif self.budget_ms <= 0:
            analysis.notes[self.name] = f"{contain}; online decoding is off: not rewritten"
            return
        else:
            start = time.perf_counter()
            with one_thread():
                decoded = rewrite_batch(
                    self.forward_,
                    self.backward_,
                    [self.vocabulary_.encode(found, self.max_words)],
                    [self._market(analysis.domain)],
                    self.beam,
                    deadline=start + self.budget_ms / 1000,
                )
            if decoded is None:
                analysis.notes[self.name] = (
                    f"{contain}; online decoding skipped: it passed the {self.budget_ms:g} ms "
                    "budget"
                )
                return
            how = f"decoded online in {1000 * (time.perf_counter() - start):.1f} ms"
            chosen = self._chosen(found, decoded[0])
        analysis.rewrites.extend(chosen)
        shown = ", ".join(f"{text!r} {weight:.2f}" for text, weight in chosen) or "none"
        analysis.notes[self.name] = f"{contain}; rewrites ({how}): {shown}"

    # -- storage -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """``config.json`` (parameters, vocabulary), ``forward.safetensors``,
        ``backward.safetensors``, ``head.json``, ``training.json`` and the postings."""
        if not hasattr(self, "forward_"):
            raise NotFittedError(f"the {self.name} component is not fitted; nothing to save")
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / _CONFIG, {**self._params(), "vocabulary": self.vocabulary_.words})
        for name, model in (("forward", self.forward_), ("backward", self.backward_)):
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(path / f"{name}.safetensors"))
        write_json(path / _HEAD, self.head_)
        write_json(path / _HISTORY, self.history_)
        self.postings_.save(path)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a component written by :meth:`save`."""
        config = orjson.loads((path / _CONFIG).read_bytes())
        vocabulary = config.pop("vocabulary")
        component = cls(**config)
        component.vocabulary_ = Vocabulary(vocabulary)
        models = []
        for name in ("forward", "backward"):
            model = Translator(component._shape())
            model.load_state_dict(load_file(str(path / f"{name}.safetensors")))
            models.append(model.eval())
        component.forward_, component.backward_ = models
        component.head_ = {
            market: {key: [(str(t), float(w)) for t, w in hits] for key, hits in queries.items()}
            for market, queries in orjson.loads((path / _HEAD).read_bytes()).items()
        }
        component.history_ = orjson.loads((path / _HISTORY).read_bytes())
        component.postings_ = WordPostings.load(path)
        component._warm_up()
        return component

    def _warm_up(self) -> None:
        """Decode once, so that the first search's decoding does not pay torch's first calls
        (they alone pass a budget of milliseconds)."""
        with one_thread():
            rewrite_batch(self.forward_, self.backward_, [[EOS]], [PAD], self.beam)


@QUERY_COMPONENTS.register()
class ForwardRewrite(CycleRewrite):
    """The ablation of :class:`CycleRewrite` without the cycle term: the same models, pairs,
    decoding and scoring, trained on the two translation losses only."""

    name: ClassVar[str] = "rewrite-forward"
    baseline: ClassVar[bool] = True
    default_cycle_weight: ClassVar[float] = 0.0


def _token(domain: str) -> str:
    """A market's token (no word looks like it: words are letters and digits)."""
    return f"<{domain}>"


def _without_brand(title: list[str], brand: list[str], query: list[str]) -> list[str]:
    """The title's words without the brand's, unless the query names the brand."""
    if not brand or all(w in query for w in brand):
        return title
    return [w for w in title if w not in brand or w in query]


def _pairs(data: QueryData) -> pd.DataFrame:
    """Distinct ``domain, query, title, brand`` of the outcomes whose product is in the
    catalog."""
    merged = data.outcomes[["domain", "query", "product_id"]].merge(
        data.catalog[["domain", "product_id", "title", "brand"]], on=["domain", "product_id"]
    )
    pairs = merged[["domain", "query", "title", "brand"]].astype(str).drop_duplicates()
    keep = pairs["query"].map(lambda q: bool(words(q))) & pairs["title"].map(
        lambda t: bool(words(t))
    )
    return pairs[keep].reset_index(drop=True)


__all__ = ["CycleRewrite", "ForwardRewrite"]
