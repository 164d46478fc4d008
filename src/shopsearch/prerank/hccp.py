"""HCCP pre-ranking and its two baselines: one light model, three ways of training it.

After JD's "A Hybrid Cross-Stage Coordination Pre-ranking Model for Online Recommendation
Systems" (HCCP; built from the paper's description).

**The light model.** A pre-ranker scores thousands of candidates per search, so it is a
two-sided model whose product side is computed once per product and stored in the bundle:

* product side: the mean of the hashed word / character-trigram / bigram embeddings of the
  product's title, brand and category (:class:`~shopsearch.text.hashed.HashedFeaturizer`),
  with ``log1p`` of its logged impressions, clicks and purchases, through one ``tanh`` layer
  to ``p`` (``dim`` wide) and one linear bias ``b``;
* query side: the mean embedding of the query's hashed features (the same table) through one
  ``tanh`` layer to ``q``;
* upstream (cross-stage from retrieval): the candidate's retrieval score over the request's
  best and its retrieval depth (:func:`~.samples.upstream_features`), weighted by ``w``.

``score = q . p + b + w . u``: at request time one query vector, a gather of the candidates'
precomputed rows and one matrix-vector product in numpy (no torch), on one thread.

**Objectives** (``objective``), the rest equal, so the comparison is of the training alone:

* ``hccp`` - *hybrid sample construction* (:mod:`.samples`: every logged candidate with the
  deepest level it reached: retrieved, pre-ranked, shown, clicked, carted, purchased) and the
  *hybrid objective*: the **Margin InfoNCE** loss - for every candidate ``i`` of level ``l >= 1``
  against every candidate of a lower level in the same request, plus ``random_negatives``
  products of the market drawn uniformly (not by popularity, so the long tail is seen)::

      -log( e^{(s_i - m)/t} / (e^{(s_i - m)/t} + sum_{j: l_j < l_i} e^{s_j/t}) )

  averaged per level and summed over levels (global consistency with the whole stream, and the
  few clicks and purchases weigh as much as the many pre-ranked; each step samples
  ``level0_sample`` retrieved-only and ``level1_sample`` pre-ranked-only candidates of a
  request and keeps every shown one), plus ``consistency`` times a
  ListNet term towards the logged ranking model's values of the ranked candidates (local
  consistency with ranking);
* ``distill`` (``baseline/prerank-distill``): the ListNet term alone - imitates the ranker;
* ``exposed`` (``baseline/prerank-exposed``): binary cross-entropy of a click on the shown
  products alone - the classic pre-ranker that only sees what earlier stages let through.

**Simplified from the paper, and why.** The paper's pre-ranker is a production DNN over user
and item features with a hybrid list/pointwise loss over several exposure spaces; ours is the
two-sided light model above (search has a query, not a user history, and our products carry
text), its level-structured lists come from the logged stream of one engine, and the margin
and temperature are fixed settings rather than tuned per level.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict
from operator import itemgetter
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.prerank.base import STATS, PrerankConfig, catalog_rows, usable_list
from shopsearch.prerank.samples import StreamList
from shopsearch.store.atomic import write_json
from shopsearch.text.hashed import HashedFeaturizer

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_CONFIG = "prerank.json"
_WEIGHTS = "prerank.safetensors"


class LightPreranker:
    """The light pre-ranking model (see the module docstring).

    Args:
        config: sizes, objective and training.
    """

    def __init__(self, config: PrerankConfig | None = None) -> None:
        self.config = config or PrerankConfig()
        self.featurizer = HashedFeaturizer(self.config.buckets)
        self._domains: dict[str, dict[str, int]] | None = None

    # -- training --------------------------------------------------------------------------
    def fit(
        self,
        lists: Sequence[StreamList],
        products: pd.DataFrame,
        stats: pd.DataFrame | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> Self:
        """Learn from graded stream lists (:func:`~.samples.stream_lists`).

        Args:
            lists: the requests' graded candidates.
            products: the catalog (``domain``, ``product_id``, ``title``, ``brand``,
                ``category``); every product gets its row in the bundle.
            stats: ``log1p`` impressions / clicks / purchases per product id
                (:func:`~.samples.product_stats`); ``None``: zeros.
            progress: called as ``progress(step, steps, loss)``.

        Raises:
            InvalidInputError: no list has what the objective learns from.
        """
        from shopsearch.prerank.network import train_network

        cfg = self.config
        catalog = catalog_rows(self.featurizer, products, stats)
        usable = [s for s in lists if usable_list(cfg.objective, s)]
        if not usable:
            need = {
                "hccp": "a candidate pre-ranked or shown",
                "distill": "candidates the ranking model scored (a logged 'rank' stream)",
                "exposed": "a shown product",
            }[cfg.objective]
            raise InvalidInputError(
                f"prerank objective {cfg.objective!r}: no logged request has {need}; log the "
                "stream of an engine with that stage ([pipeline] stream_sample)"
            )
        weights, self.steps_, self.planned_steps_ = train_network(
            cfg, usable, catalog, self.featurizer, progress
        )
        self.requests_ = len(usable)
        self._set_weights(weights)
        self.keys_ = list(catalog.index)
        self.index_ = dict(catalog.index)
        self.rows_ = self._product_rows(catalog.flat, catalog.stats)
        return self

    def _set_weights(self, arrays: dict[str, F32]) -> None:
        self.table_ = arrays["table"]
        self.query_weight_, self.query_bias_ = arrays["query_weight"], arrays["query_bias"]
        self.product_weight_ = arrays["product_weight"]
        self.product_bias_ = arrays["product_bias"]
        self.prior_weight_, self.prior_bias_ = arrays["prior_weight"], arrays["prior_bias"]
        self.upstream_ = arrays["upstream"]

    # -- serving ---------------------------------------------------------------------------
    def _product_rows(self, bags: Sequence[list[int]], stats: F32) -> F32:
        """``[n, dim + 1]``: each product's ``p`` and bias ``b``."""
        means = (
            np.stack([self.table_[bag].mean(axis=0) for bag in bags])
            if bags
            else (np.zeros((0, self.config.dim), np.float32))
        )
        inputs = np.concatenate([means, stats], axis=1)
        p = np.tanh(inputs @ self.product_weight_.T + self.product_bias_)
        b = inputs @ self.prior_weight_.T + self.prior_bias_
        return np.concatenate([p, b], axis=1).astype(np.float32)

    def query_vector(self, query: str) -> F32:
        """``q`` of a query."""
        w, c, b = self.featurizer.features(query)
        bag = [i for i in (*w, *c, *b) if i] or [0]
        out = np.tanh(self.query_weight_ @ self.table_[bag].mean(axis=0) + self.query_bias_)
        return np.asarray(out, np.float32)

    def rows_of(
        self,
        keys: Sequence[tuple[str, str]],
        texts: Callable[[int], str],
        domain: str | None = None,
    ) -> F32:
        """The product rows of ``keys``; a product the model has no row for (added since)
        gets one from ``texts(i)`` (its text; no logged statistics) and keeps it. ``domain``:
        every key is of that market (a faster look-up by product id)."""
        by_id = self._by_domain().get(domain) if domain is not None else None
        if by_id is not None:
            found = map(by_id.get, map(itemgetter(1), keys), itertools.repeat(-1))
        else:
            found = map(self.index_.get, keys, itertools.repeat(-1))
        rows = np.fromiter(found, np.int64, len(keys))
        missing = np.flatnonzero(rows < 0)
        if missing.size:
            bags = []
            for i in missing.tolist():
                w, c, b = self.featurizer.features(texts(i))
                bags.append([x for x in (*w, *c, *b) if x] or [0])
            new = self._product_rows(bags, np.zeros((len(bags), len(STATS)), np.float32))
            start = len(self.rows_)
            self.rows_ = np.concatenate([self.rows_, new])
            for j, i in enumerate(missing.tolist()):
                self.index_[keys[i]] = start + j
                self.keys_.append(keys[i])
                rows[i] = start + j
            self._domains = None
        out: F32 = self.rows_[rows]
        return out

    def _by_domain(self) -> dict[str, dict[str, int]]:
        """Row of each product id, per market (built on first use)."""
        if self._domains is None:
            domains: dict[str, dict[str, int]] = {}
            for (market, product_id), row in self.index_.items():
                domains.setdefault(market, {})[product_id] = row
            self._domains = domains
        return self._domains

    def score(self, query: str, rows: F32, upstream: F32) -> F32:
        """Scores of candidates given by their :meth:`rows_of` and upstream features."""
        d = self.config.dim
        q = self.query_vector(query)
        out = rows[:, :d] @ q + rows[:, d] + upstream @ self.upstream_
        return np.asarray(out, np.float32)

    # -- storage ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """``prerank.json`` (settings, product keys) and ``prerank.safetensors`` (weights and
        the precomputed product rows)."""
        from safetensors.numpy import save_file

        path.mkdir(parents=True, exist_ok=True)
        n = len(self.keys_)
        save_file(
            {
                "table": self.table_,
                "query_weight": self.query_weight_,
                "query_bias": self.query_bias_,
                "product_weight": self.product_weight_,
                "product_bias": self.product_bias_,
                "prior_weight": self.prior_weight_,
                "prior_bias": self.prior_bias_,
                "upstream": self.upstream_,
                "rows": np.ascontiguousarray(self.rows_[:n]),
            },
            str(path / _WEIGHTS),
        )
        write_json(
            path / _CONFIG,
            {
                "config": asdict(self.config),
                "steps": self.steps_,
                "planned_steps": self.planned_steps_,
                "requests": self.requests_,
                "keys": [list(k) for k in self.keys_],
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """The model :meth:`save` wrote.

        Raises:
            WorkspaceError: ``path`` holds no pre-ranking model.
        """
        from safetensors.numpy import load_file

        try:
            body = orjson.loads((path / _CONFIG).read_bytes())
            arrays = load_file(str(path / _WEIGHTS))
        except (FileNotFoundError, orjson.JSONDecodeError, OSError) as exc:
            raise WorkspaceError(
                f"{path} holds no pre-ranking model ({type(exc).__name__}: {exc}); train one "
                "with 'shopsearch train --stage prerank'"
            ) from exc
        model = cls(PrerankConfig(**body["config"]))
        model._set_weights(arrays)
        model.rows_ = arrays["rows"]
        model.keys_ = [(str(d), str(p)) for d, p in body["keys"]]
        model.index_ = {k: i for i, k in enumerate(model.keys_)}
        model.steps_, model.planned_steps_ = int(body["steps"]), int(body["planned_steps"])
        model.requests_ = int(body["requests"])
        return model


__all__ = ["LightPreranker"]
