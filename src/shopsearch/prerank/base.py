"""What the light pre-ranker's parts share: its settings, the catalog as rows of hashed bags
and logged statistics, and which logged lists an objective learns from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.errors import InvalidInputError
from shopsearch.prerank.samples import SHOWN, StreamList
from shopsearch.text.hashed import HashedFeaturizer

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Objective = Literal["hccp", "distill", "exposed"]
OBJECTIVES: tuple[str, ...] = ("hccp", "distill", "exposed")
#: The logged statistics of the product side.
STATS: tuple[str, ...] = ("shown", "clicks", "purchases")
#: Most characters of a product text read.
MAX_CHARS = 256


@dataclass(frozen=True)
class PrerankConfig:
    """The pre-ranker's sizes and training.

    Attributes:
        objective: ``hccp``, ``distill`` or ``exposed`` (see the module docstring).
        buckets: rows of the hashed feature table.
        dim: width of the query and product vectors.
        margin: the Margin InfoNCE margin ``m``.
        temperature: the Margin InfoNCE temperature ``t``.
        consistency: weight of the ListNet term towards the ranker (``hccp``).
        ranker_temperature: temperature of the ranker's standardised values in the ListNet
            target.
        level0_sample: retrieved-only candidates drawn per request and epoch.
        level1_sample: pre-ranked-only candidates drawn per request and epoch (the ones
            the ranker scored and that were shown are always kept).
        random_negatives: uniformly drawn products of the market per request (``hccp``).
        epochs: passes over the requests.
        batch_requests: requests per step.
        lr: Adam's learning rate.
        budget_s: most seconds of training.
        seed: seed of initialisation and sampling.
    """

    objective: Objective = "hccp"
    buckets: int = 2**17
    dim: int = 32
    margin: float = 0.2
    temperature: float = 0.5
    consistency: float = 1.0
    ranker_temperature: float = 1.0
    level0_sample: int = 64
    level1_sample: int = 64
    random_negatives: int = 16
    epochs: int = 4
    batch_requests: int = 16
    lr: float = 3e-3
    budget_s: float = 900.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InvalidInputError(
                f"prerank objective {self.objective!r} is not known; use one of {OBJECTIVES}"
            )
        sizes = (self.buckets - 1, self.dim, self.epochs, self.batch_requests)
        if min(sizes) < 1 or min(self.level0_sample, self.level1_sample, self.random_negatives) < 0:
            raise InvalidInputError(
                "prerank buckets >= 2, dim, epochs, batch_requests >= 1 and level0_sample, "
                "level1_sample, random_negatives >= 0 are needed"
            )
        if min(self.temperature, self.ranker_temperature, self.lr, self.budget_s) <= 0:
            raise InvalidInputError(
                "prerank temperature, ranker_temperature, lr and budget_s must be > 0"
            )


def product_text(title: str, brand: str, category: Sequence[str]) -> str:
    """The text of a product the product side reads."""
    return f"{title} {brand} {' '.join(category)}"[:MAX_CHARS]


@dataclass
class Catalog:
    """Products as rows: their hashed bags, log statistics and each market's rows.

    Attributes:
        index: ``(domain, product_id)`` → row.
        flat: the hashed feature ids of each row.
        stats: ``[n, 3]`` ``log1p`` impressions, clicks, purchases of each row.
        domain_rows: each market's rows.
    """

    index: dict[tuple[str, str], int]
    flat: list[list[int]]
    stats: F32
    domain_rows: dict[str, I64]

    def __post_init__(self) -> None:
        lengths = np.array([len(bag) for bag in self.flat], np.int64)
        #: every row's ids one after another, and where each row's start (CSR layout)
        self.ids = np.fromiter((i for bag in self.flat for i in bag), np.int64, lengths.sum())
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.lengths = lengths

    def bags(self, rows: I64) -> tuple[I64, I64]:
        """The ids and offsets (``EmbeddingBag`` layout) of ``rows``' bags, vectorised."""
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        within = np.arange(lengths.sum()) - np.repeat(offsets, lengths)
        ids = self.ids[np.repeat(self.starts[rows], lengths) + within]
        return ids, offsets


def catalog_rows(
    featurizer: HashedFeaturizer, products: pd.DataFrame, stats: pd.DataFrame | None
) -> Catalog:
    """The products of ``products`` as a :class:`Catalog` (``stats``: :func:`~.samples.
    product_stats`, ``None``: zeros)."""
    keys = list(zip(products["domain"], products["product_id"], strict=True))
    bags = [
        [i for i in (*w, *c, *b) if i]
        for w, c, b in (
            featurizer.features(product_text(t, br, cat))
            for t, br, cat in zip(
                products["title"], products["brand"], products["category"], strict=True
            )
        )
    ]
    values = np.zeros((len(keys), len(STATS)), np.float32)
    if stats is not None and len(stats):
        found = stats.reindex(products["product_id"]).fillna(0.0)
        values = found[list(STATS)].to_numpy(np.float32)
    domains = products["domain"].to_numpy()
    return Catalog(
        {k: i for i, k in enumerate(keys)},
        [b or [0] for b in bags],
        values,
        {d: np.flatnonzero(domains == d) for d in sorted(set(domains))},
    )


def usable_list(objective: str, s: StreamList) -> bool:
    """Whether a graded list has what ``objective`` learns from."""
    if objective == "distill":
        return int(np.isfinite(s.ranker).sum()) >= 2
    if objective == "exposed":
        return bool((s.levels >= SHOWN).any())
    return bool((s.levels >= 1).any())


__all__ = [
    "MAX_CHARS",
    "OBJECTIVES",
    "STATS",
    "Catalog",
    "Objective",
    "PrerankConfig",
    "catalog_rows",
    "product_text",
    "usable_list",
]
