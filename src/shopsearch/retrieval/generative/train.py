"""Train a generative retriever from staged (query, product, stage) samples.

1. Every catalog product's vector (the encoder's, through the embedding cache when given) is
   quantised by residual k-means to ``depth`` codes. ``rq-fixed`` IDs are the first ``levels``
   codes and a collision suffix; ``sa2crq`` IDs have traffic-adaptive lengths
   (:class:`~.adaptive_ids.AdaptiveSemanticIds`): a product's traffic is its number of positive
   pairs, head products (traffic >= ``head_threshold``) get discriminative IDs, tail and cold
   products share shorter ones.
2. The generator learns by supervised next-token prediction (SFT) to emit, from the query's
   vector, the ID of each product the query led to (stage at least ``positive_stage``: clicked
   or better in a log, relevant in judgments), each pair weighted by its stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.adaptive_ids import AdaptiveSemanticIds
from shopsearch.retrieval.generative.ids import FixedSemanticIds, id_stats
from shopsearch.retrieval.generative.model import GeneratorConfig, IdGenerator
from shopsearch.retrieval.generative.quantize import ResidualKMeans
from shopsearch.retrieval.generative.trained import GenerativeModel, item_vectors
from shopsearch.retrieval.mmse import torch_threads
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.text.encoders import Encoder

F32 = npt.NDArray[np.float32]
#: SA²CRQ's settings: head products (2+ positive pairs) separated from every other product,
#: the mean ID length 3 (chosen on a by-query split of the Home Depot training file, where the
#: head-collision rate is 0.577 against rq-fixed's 0.834).
SA2CRQ: dict[str, Any] = {"target_length": 3.0, "head_split": 1, "head_threshold": 2.0,
                          "min_length": 2, "max_length": 4}  # fmt: skip


@dataclass(frozen=True)
class GenerativeConfig:
    """How the IDs are built and the generator is trained.

    Attributes:
        ids: ``rq-fixed`` or ``sa2crq``.
        levels: codes in an ``rq-fixed`` ID before the collision suffix.
        depth: codes computed per product (the in-bucket scoring reads them all).
        codewords: values per code.
        positive_stage: a pair trains the generator from this stage on.
        generator: the generator's sizes and training.
        in_bucket_temperature: see :class:`~.trained.GenerativeModel`.
        sa2crq: :class:`~.adaptive_ids.AdaptiveSemanticIds` settings (``target_length``,
            ``head_split``, ``head_threshold``, ...).
        seed: seed of the quantizer.
    """

    ids: Literal["rq-fixed", "sa2crq"] = "rq-fixed"
    levels: int = 3
    depth: int = 5
    codewords: int = 64
    positive_stage: float = 2.0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    in_bucket_temperature: float = 0.05
    sa2crq: dict[str, Any] = field(default_factory=lambda: dict(SA2CRQ))
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= self.depth:
            raise InvalidInputError(
                f"levels={self.levels}, depth={self.depth}: use 1 <= levels <= depth"
            )


@dataclass(frozen=True)
class SftPairs:
    """The positive (query, product) pairs SFT learns from.

    Attributes:
        query_vectors: ``[queries, dim]`` vectors of the samples' queries.
        query_index: per pair, its query.
        item_index: per pair, its product (a row of the catalog's IDs).
        weight: per pair, its stage.
    """

    query_vectors: F32
    query_index: npt.NDArray[np.int64]
    item_index: npt.NDArray[np.int64]
    weight: F32


def positive_pairs(samples: StagedSamples, query_vectors: F32, positive_stage: float) -> SftPairs:
    """The pairs of ``samples`` at ``positive_stage`` or above.

    Raises:
        InvalidInputError: no pair reaches the stage.
    """
    keep = samples.stage >= positive_stage
    if not keep.any():
        raise InvalidInputError(
            f"no (query, product) pair reaches stage {positive_stage}; the generator needs "
            "clicked (or relevant) products to learn from"
        )
    return SftPairs(
        query_vectors,
        samples.query_index[keep],
        samples.item_index[keep],
        samples.stage[keep].astype(np.float32),
    )


def train_generative(
    samples: StagedSamples,
    keys: Sequence[ProductKey],
    encoder: Encoder,
    config: GenerativeConfig | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> GenerativeModel:
    """IDs for every product of ``samples.items`` (``keys[i]`` is item ``i``'s key) and a
    generator trained by SFT on the positive pairs.

    Raises:
        InvalidInputError: keys that do not match the items, or no positive pair.
    """
    config = config or GenerativeConfig()
    if len(keys) != len(samples.items):
        raise InvalidInputError(f"{len(keys)} keys for {len(samples.items)} items: give one each")
    tell = say or (lambda _message: None)
    timings: dict[str, float] = {}
    start = time.monotonic()
    vectors = item_vectors(encoder, samples.items, cache_dir)
    queries = np.asarray(encoder.encode_queries(samples.queries), np.float32)
    pairs = positive_pairs(samples, queries, config.positive_stage)
    timings["encode_s"] = time.monotonic() - start
    start = time.monotonic()
    quantizer = ResidualKMeans(config.depth, config.codewords, seed=config.seed).fit(vectors)
    codes = quantizer.encode(vectors)
    traffic = np.bincount(pairs.item_index, minlength=len(keys)).astype(np.float64)
    ids: FixedSemanticIds | AdaptiveSemanticIds
    if config.ids == "sa2crq":
        settings = {**SA2CRQ, **config.sa2crq}
        ids = AdaptiveSemanticIds(list(keys), codes, traffic, codewords=config.codewords,
                                  **settings)  # fmt: skip
    else:
        ids = FixedSemanticIds(list(keys), codes, config.levels)
    timings["ids_s"] = time.monotonic() - start
    tokens = ids.tokens
    vocab = ids.vocab
    stats = id_stats(ids, traffic >= float(config.sa2crq.get("head_threshold", 2.0)), traffic == 0)
    tell(
        f"{config.ids} semantic IDs of {len(keys)} products: mean length "
        f"{stats['mean_length']:.2f}, {stats['leaves']:.0f} IDs, head collision rate "
        f"{stats['head_collision_rate']:.3f}; SFT on {len(pairs.weight)} pairs of "
        f"{len(samples.queries)} queries"
    )
    start = time.monotonic()
    with torch_threads(1):  # small matrices: a second thread costs more than it gives
        generator = IdGenerator(queries.shape[1], vocab, tokens.shape[1], config.generator).fit(
            pairs.query_vectors[pairs.query_index],
            tokens[pairs.item_index],
            pairs.weight,
            progress,
            ids.lengths[pairs.item_index],
        )
    timings["sft_s"] = time.monotonic() - start
    info: dict[str, Any] = {
        "ids": config.ids,
        "id_stats": stats,
        "levels": config.levels if config.ids == "rq-fixed" else None,
        "depth": config.depth,
        "codewords": config.codewords,
        "vocab": vocab,
        "products": len(keys),
        "pairs": len(pairs.weight),
        "queries": len(samples.queries),
        "seconds": timings,
    }
    return GenerativeModel(encoder, quantizer, ids, generator, config.in_bucket_temperature, info)


__all__ = [
    "GenerativeConfig",
    "SftPairs",
    "positive_pairs",
    "train_generative",
]
