"""Train a generative retriever from staged (query, product, stage) samples.

1. Every catalog product's vector (the encoder's, through the embedding cache when given) is
   quantised by residual k-means to ``depth`` codes; its ID is the first ``levels`` codes and a
   collision suffix (``rq-fixed``).
2. The generator learns by supervised next-token prediction (SFT) to emit, from the query's
   vector, the ID of each product the query led to (stage at least ``positive_stage``: clicked
   or better in a log, relevant in judgments), each pair weighted by its stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.ids import FixedSemanticIds
from shopsearch.retrieval.generative.model import GeneratorConfig, IdGenerator
from shopsearch.retrieval.generative.quantize import ResidualKMeans
from shopsearch.retrieval.generative.trained import GenerativeModel, item_vectors
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.text.encoders import Encoder

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GenerativeConfig:
    """How the IDs are built and the generator is trained.

    Attributes:
        levels: codes in an ID before the collision suffix.
        depth: codes computed per product (the in-bucket scoring reads them all).
        codewords: values per code.
        positive_stage: a pair trains the generator from this stage on.
        generator: the generator's sizes and training.
        in_bucket_temperature: see :class:`~.trained.GenerativeModel`.
        seed: seed of the quantizer.
    """

    levels: int = 3
    depth: int = 5
    codewords: int = 64
    positive_stage: float = 2.0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    in_bucket_temperature: float = 0.05
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
    ids = FixedSemanticIds(list(keys), quantizer.encode(vectors), config.levels)
    timings["ids_s"] = time.monotonic() - start
    tokens = ids.tokens
    vocab = int(tokens.max()) + 1
    tell(
        f"semantic IDs: {len(keys)} products, {config.levels} codes of {config.codewords} + "
        f"a suffix (collision rate {ids.collision_rate():.3f}); SFT on {len(pairs.weight)} pairs "
        f"of {len(samples.queries)} queries"
    )
    start = time.monotonic()
    generator = IdGenerator(queries.shape[1], vocab, tokens.shape[1], config.generator).fit(
        pairs.query_vectors[pairs.query_index],
        tokens[pairs.item_index],
        pairs.weight,
        progress,
        ids.lengths[pairs.item_index],
    )
    timings["sft_s"] = time.monotonic() - start
    info: dict[str, Any] = {
        "ids": "rq-fixed",
        "levels": config.levels,
        "depth": config.depth,
        "codewords": config.codewords,
        "vocab": vocab,
        "products": len(keys),
        "pairs": len(pairs.weight),
        "queries": len(samples.queries),
        "collision_rate": ids.collision_rate(),
        "seconds": timings,
    }
    return GenerativeModel(encoder, quantizer, ids, generator, config.in_bucket_temperature, info)


__all__ = [
    "GenerativeConfig",
    "SftPairs",
    "positive_pairs",
    "train_generative",
]
