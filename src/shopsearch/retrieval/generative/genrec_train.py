"""Train the served GenRec source (``shopsearch train --stage retrieval --model genrec``).

From a workspace's logged pages (:class:`~.pages.PageSamples`: every request with a click or
better, its user's earlier history) it builds ``rq-fixed`` semantic IDs of the catalog's encoder
vectors and trains :class:`~.genrec.GenRec` by page-wise next-token prediction with the Token
Merger. GRPO-SR is not part of the served model: on the simulator it lowered recall@100 (RESULTS
.md, issue 17), so it stays an ``eval retrieval --genrec`` system.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.genrec import GenRec, GenRecConfig, GenRecExamples
from shopsearch.retrieval.generative.ids import FixedSemanticIds
from shopsearch.retrieval.generative.model import GeneratorConfig
from shopsearch.retrieval.generative.pages import PageSamples
from shopsearch.retrieval.generative.quantize import ResidualKMeans
from shopsearch.retrieval.generative.trained import GenerativeModel, item_vectors
from shopsearch.retrieval.mmse import torch_threads
from shopsearch.text.encoders import Encoder


@dataclass(frozen=True)
class GenRecTrainConfig:
    """How the served GenRec model is built.

    Attributes:
        levels: residual k-means codes per ID (then a collision suffix).
        codewords: centroids per level.
        generator: sizes and SFT training of the network.
        genrec: history size, merger, page-wise targets.
        in_bucket_temperature: see :class:`~.trained.GenerativeModel`.
    """

    levels: int = 3
    codewords: int = 64
    generator: GeneratorConfig = field(
        default_factory=lambda: GeneratorConfig(epochs=8, batch_size=256, budget_s=2700.0)
    )
    genrec: GenRecConfig = field(default_factory=GenRecConfig)
    in_bucket_temperature: float = 0.05


def train_genrec(
    pages: PageSamples,
    keys: Sequence[ProductKey],
    texts: Sequence[str],
    encoder: Encoder,
    config: GenRecTrainConfig | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> GenerativeModel:
    """IDs of the products ``keys`` (``texts[i]`` is product ``i``'s text) and a GenRec model
    trained page-wise on ``pages``.

    Raises:
        InvalidInputError: not one text per key, or no page naming a product of ``keys``.
    """
    config = config or GenRecTrainConfig()
    if len(keys) != len(texts):
        raise InvalidInputError(f"{len(keys)} keys but {len(texts)} texts: give one text each")
    row_of = {key: row for row, key in enumerate(keys)}
    if not any(key in row_of for page in pages.pages for key in page.items):
        raise InvalidInputError(
            "no logged page has a click, cart or purchase of a catalog product: GenRec learns "
            "from logged searches with interactions ('shopsearch ingest events FILE -w W')"
        )
    tell = say or (lambda _message: None)
    timings: dict[str, float] = {}
    start = time.monotonic()
    vectors = item_vectors(encoder, texts, cache_dir)
    queries = sorted({page.query for page in pages.pages})
    found = np.asarray(encoder.encode_queries(queries), np.float32)
    vector_of = dict(zip(queries, found, strict=True))
    timings["encode_s"] = time.monotonic() - start
    start = time.monotonic()
    seed = config.generator.seed
    quantizer = ResidualKMeans(config.levels, config.codewords, seed=seed).fit(vectors)
    ids = FixedSemanticIds(list(keys), quantizer.encode(vectors), config.levels)
    timings["ids_s"] = time.monotonic() - start
    examples = GenRecExamples.from_pages(
        pages.pages,
        np.stack([vector_of[page.query] for page in pages.pages]),
        row_of,
        config.genrec.history,
        point_wise=not config.genrec.page_wise,
    )
    with_history = int((examples.history >= 0).any(axis=1).sum())
    tell(
        f"GenRec: rq-fixed IDs of {len(keys)} products; page-wise SFT on {len(examples)} pages "
        f"({with_history} with a user history)"
    )
    start = time.monotonic()
    with torch_threads(1):  # small matrices: a second thread costs more than it gives
        model = GenRec(ids.tokens, ids.lengths, vectors.shape[1], config.generator,
                       config.genrec, vocab=ids.vocab).fit(examples, progress)  # fmt: skip
    timings["sft_s"] = time.monotonic() - start
    info: dict[str, Any] = {
        "ids": "rq-fixed",
        "levels": config.levels,
        "codewords": config.codewords,
        "vocab": ids.vocab,
        "products": len(keys),
        "pages": len(examples),
        "pages_with_history": with_history,
        "genrec": asdict(config.genrec),
        "grpo": False,
        "seconds": timings,
    }
    return GenerativeModel(encoder, quantizer, ids, model, config.in_bucket_temperature, info)


__all__ = ["GenRecTrainConfig", "train_genrec"]
