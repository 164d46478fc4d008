"""Hybrid retrieval: several candidate sources searched in turn and fused into one list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Literal, Self

import orjson
import pyarrow as pa

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.base import Retriever, check_k
from shopsearch.retrieval.fusion import WeightedScoreFusion, reciprocal_rank_fusion
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.atomic import write_json

FusionMethod = Literal["rrf", "weighted"]


@RETRIEVERS.register()
class HybridRetriever(Retriever):
    """Fuses the candidates of several retrievers (lexical, dense, learned, graph ...).

    Args:
        sources: source name → retriever.
        fusion: ``"rrf"`` (reciprocal-rank fusion) or ``"weighted"`` (normalised weighted score
            fusion, fitted on judgments with :meth:`fit_fusion`).
        per_source_k: how many candidates each source contributes before fusion (at least the
            requested ``k``).
        rrf_constant: the ``c`` in ``1 / (c + rank)``.
    """

    name = "hybrid"
    config_keys: ClassVar[list[str]] = ["fusion", "per_source_k", "rrf_constant"]

    def __init__(
        self,
        sources: Mapping[str, Retriever],
        fusion: FusionMethod = "rrf",
        per_source_k: int = 200,
        rrf_constant: float = 60.0,
    ) -> None:
        if not sources:
            raise InvalidInputError("a hybrid retriever needs at least one source")
        if fusion not in ("rrf", "weighted"):
            raise InvalidInputError(f"fusion={fusion!r} is not one of 'rrf', 'weighted'")
        check_k(per_source_k)
        self.sources = dict(sources)
        self.fusion = fusion
        self.per_source_k = per_source_k
        self.rrf_constant = rrf_constant
        self.weighting_ = WeightedScoreFusion(list(self.sources))

    def index(self, products: pa.Table) -> Self:
        """Index the products in every source."""
        for retriever in self.sources.values():
            retriever.index(products)
        return self

    def source_candidates(
        self, query: str, k: int, filters: Filters | None = None
    ) -> dict[str, Candidates]:
        """Each source's own candidates for ``query`` (``max(k, per_source_k)`` from each)."""
        depth = max(k, self.per_source_k)
        return {name: r.retrieve(query, depth, filters) for name, r in self.sources.items()}

    def fuse(self, lists: Mapping[str, Candidates], k: int) -> Candidates:
        """Fuse candidate lists with this retriever's fusion method."""
        if self.fusion == "rrf":
            return reciprocal_rank_fusion(lists, k, self.rrf_constant)
        return self.weighting_.fuse(lists, k)

    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The top ``k`` fused candidates; ``Candidates.sources`` keeps each source's score.

        Sources may be indexed before they are combined; an unindexed source raises
        :class:`~shopsearch.errors.NotFittedError`.
        """
        check_k(k)
        return self.fuse(self.source_candidates(query, k, filters), k)

    def fit_fusion(
        self, queries: Sequence[str], judgments: Sequence[Mapping[ProductKey, float]]
    ) -> Self:
        """Fit weighted fusion on training queries and their graded judgments; sets ``weighted``.

        Args:
            queries: training query texts.
            judgments: per query, product key → grade.
        """
        lists = [self.source_candidates(q, self.per_source_k) for q in queries]
        self.weighting_.fit(lists, judgments)
        self.fusion = "weighted"
        return self

    def save(self, path: Path) -> None:
        """Save each source in its own sub-folder plus ``config.json``."""
        path.mkdir(parents=True, exist_ok=True)
        for name, retriever in self.sources.items():
            retriever.save(path / name)
        write_json(
            path / "config.json",
            {
                **self.get_config(),
                "sources": {name: RETRIEVERS.name_of(r) for name, r in self.sources.items()},
                "weights": self.weighting_.weights_,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Load a hybrid retriever saved by :meth:`save`."""
        config = orjson.loads((path / "config.json").read_bytes())
        sources = {
            name: RETRIEVERS.get(kind).load(path / name)
            for name, kind in config["sources"].items()
        }
        hybrid = cls(sources, config["fusion"], config["per_source_k"], config["rrf_constant"])
        hybrid.weighting_.weights_ = {k: float(v) for k, v in config["weights"].items()}
        return hybrid
