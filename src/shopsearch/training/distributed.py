"""Catalog encoding on a Ray cluster (``pip install "shopsearch[ray]"``; issue 19).

:class:`RayEncoding` spreads the item texts an :class:`~shopsearch.text.embedding_cache.
EmbeddingCache` is missing over ``workers`` Ray Data actors, each holding its own copy of the
encoder, in batches; the vectors come back in the texts' order and this process writes them into
the same content-hashed cache as a local run (one writer), so a later local ``index`` reads them
as hits. The encoder reaches the workers by name and config (MiniLM: each worker loads the
model files of its own installation; nothing is downloaded), or, for a learned encoder, through
its saved files in a folder every worker can read (on one machine: a temporary folder; on
several: pass a shared ``stage_dir``).

``address``: ``None`` starts a local Ray instance on 127.0.0.1 with ``workers`` CPUs, ``"auto"``
joins the cluster this machine belongs to, ``HOST:PORT`` a given one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError
from shopsearch.progress import Progress
from shopsearch.ray_cluster import connect, ray_module
from shopsearch.text.embedding_cache import EmbeddingCache
from shopsearch.text.encoders import Encoder, FloatMatrix, cap_encoder_threads, make_encoder

#: Texts per batch a worker encodes at once.
BATCH = 256


class _EncodeBatch:
    """A Ray Data actor: one encoder, loaded once, encoding batches of texts."""

    def __init__(self, name: str, config: dict[str, Any] | None, folder: str | None) -> None:
        # one CPU per actor: an encoder's own default (every core) would make the actors contend
        cap_encoder_threads(1)
        if folder is not None:
            from shopsearch.retrieval.learned import load_encoder

            self.encoder = load_encoder(Path(folder))
        else:
            self.encoder = make_encoder(name, config)

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        texts = [str(t) for t in batch["text"]]
        vectors = np.asarray(self.encoder.encode_items(texts), np.float32)
        return {"i": batch["i"], "vector": vectors}


class RayEncoding:
    """``encode(texts, progress)`` on a Ray cluster, for :meth:`EmbeddingCache.encode_items`.

    Args:
        encoder: the encoder (its name and config, or its saved files, reach the workers).
        address: the cluster (see the module docstring).
        workers: actors encoding at once (one CPU each).
        batch_size: texts per batch.
        stage_dir: where a learned encoder is saved for the workers (default: a temporary
            folder, which only workers on this machine can read).

    Raises:
        InvalidInputError: ``workers`` or ``batch_size`` below 1.
    """

    def __init__(
        self,
        encoder: Encoder,
        address: str | None = None,
        workers: int = 2,
        batch_size: int = BATCH,
        stage_dir: Path | None = None,
    ) -> None:
        if workers < 1 or batch_size < 1:
            raise InvalidInputError(f"workers={workers}, batch_size={batch_size}: use >= 1")
        self.encoder, self.address, self.workers = encoder, address, workers
        self.batch_size, self.stage_dir = batch_size, stage_dir

    def __call__(self, texts: list[str], progress: Progress | None = None) -> FloatMatrix:
        """The item vectors of ``texts``, in order."""
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32)
        connect(self.address, self.workers)
        if not self.encoder.learned:
            return self._run(texts, self.encoder.get_config(), None, progress)
        from shopsearch.retrieval.learned import save_encoder

        with tempfile.TemporaryDirectory(prefix="shopsearch-encoder-", dir=self.stage_dir) as tmp:
            save_encoder(self.encoder, Path(tmp))
            return self._run(texts, None, tmp, progress)

    def _run(
        self,
        texts: Sequence[str],
        config: dict[str, Any] | None,
        folder: str | None,
        progress: Progress | None,
    ) -> FloatMatrix:
        ray = ray_module()
        dataset = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)])
        encoded = dataset.map_batches(
            _EncodeBatch,
            fn_constructor_args=(self.encoder.name, config, folder),
            batch_size=self.batch_size,
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=1,
        )
        out = np.empty((len(texts), self.encoder.dim), np.float32)
        done = 0
        for batch in encoded.iter_batches(batch_size=self.batch_size, batch_format="numpy"):
            out[batch["i"]] = np.stack(batch["vector"])
            done += len(batch["i"])
            if progress is not None:
                progress(done, len(texts))
        return out


def encode_catalog(
    texts: Sequence[str],
    encoder: Encoder,
    cache_dir: Path,
    address: str | None = None,
    workers: int = 2,
    progress: Progress | None = None,
) -> FloatMatrix:
    """The item vectors of ``texts`` through the embedding cache at ``cache_dir``, the texts it
    lacks encoded on the Ray cluster (:class:`RayEncoding`)."""
    cache = EmbeddingCache(cache_dir, encoder)
    return cache.encode_items(list(texts), progress, encode=RayEncoding(encoder, address, workers))


__all__ = ["RayEncoding", "encode_catalog"]
