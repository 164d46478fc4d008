"""An on-disk cache of item vectors keyed by content hash, so re-indexing encodes only new text.

Layout (one folder per encoder name, e.g. ``W/cache/embeddings/minilm/``)::

    shard-<uuid>.npy   a structured array: ``hash`` (sha1, uint8[20]) and ``vector`` (float32[dim])

A key is ``sha1(encoder name, encoder version, side, text)``, so a new encoder version or a
changed product text misses and is encoded again, while an unchanged text hits whatever else
about the product changed. Each call that encodes something appends one shard, written
atomically (a reader sees a whole shard or none); when there are more than ``max_shards``, they
are merged into one. Shards are plain ``.npy`` files (no pickles) and load at disk speed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shopsearch.errors import WorkspaceError
from shopsearch.progress import Progress
from shopsearch.store.atomic import atomic_path
from shopsearch.text.encoders import Encoder, FloatMatrix

_SHARD_GLOB = "shard-*.npy"


def _hash_array(keys: list[bytes]) -> npt.NDArray[np.uint8]:
    # uint8 rows, not numpy bytes ("S20"), which drops trailing NUL bytes of a digest.
    return np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), 20)


def _offset(progress: Progress, ready: int, total: int) -> Progress:
    """``progress`` over all ``total`` texts, fed by the encoder's counts of the missing ones."""
    return lambda done, _missing: progress(ready + done, total)


#: ``encode(texts, progress) -> [len(texts), dim]`` float32 item vectors.
ItemEncoding = Callable[[list[str], Progress | None], FloatMatrix]


class EmbeddingCache:
    """Item vectors of one encoder, stored under ``directory / encoder.name``.

    Args:
        directory: the cache root, e.g. ``W/cache/embeddings``.
        encoder: the encoder whose item vectors are cached.
        max_shards: merge the shards into one when there are more than this many.

    Attributes:
        hits: texts found in the cache so far.
        misses: texts encoded so far.
    """

    def __init__(self, directory: Path, encoder: Encoder, max_shards: int = 16) -> None:
        self.directory = Path(directory) / encoder.name
        self.encoder = encoder
        self.max_shards = max_shards
        self.hits = 0
        self.misses = 0
        self._prefix = f"{encoder.name}\0{encoder.version}\0item\0".encode()
        self._rows: dict[bytes, int] | None = None
        self._vectors = np.empty((0, 0), dtype=np.float32)

    def _dtype(self) -> np.dtype[np.void]:
        return np.dtype([("hash", np.uint8, (20,)), ("vector", np.float32, (self.encoder.dim,))])

    def key(self, text: str) -> bytes:
        """The 20-byte cache key of ``text``."""
        return hashlib.sha1(self._prefix + text.encode()).digest()

    def _shards(self) -> list[Path]:
        return sorted(self.directory.glob(_SHARD_GLOB))

    def _load(self) -> dict[bytes, int]:
        if self._rows is not None:
            return self._rows
        dtype = self._dtype()
        parts = []
        for shard in self._shards():
            part = np.load(shard, allow_pickle=False)
            if part.dtype != dtype:
                raise WorkspaceError(
                    f"embedding cache shard {shard} holds {part.dtype} records, not {dtype} of "
                    f"encoder {self.encoder.name!r}; delete {self.directory} to rebuild the cache"
                )
            parts.append(part)
        records = np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
        self._vectors = np.ascontiguousarray(records["vector"])
        blob = records["hash"].tobytes()
        keys = [blob[i : i + 20] for i in range(0, len(blob), 20)]
        self._rows = dict(zip(keys, range(len(records)), strict=True))
        return self._rows

    def __len__(self) -> int:
        return len(self._load())

    def _write_shard(self, records: np.ndarray) -> Path:
        target = self.directory / f"shard-{uuid.uuid4().hex}.npy"
        with atomic_path(target) as tmp, tmp.open("wb") as fh:
            np.save(fh, records, allow_pickle=False)
        return target

    def _merge_shards(self) -> None:
        shards = self._shards()
        if len(shards) <= self.max_shards:
            return
        rows = self._load()
        records = np.empty(len(rows), dtype=self._dtype())
        records["hash"] = _hash_array(list(rows))
        records["vector"] = self._vectors[list(rows.values())]
        merged = self._write_shard(records)
        for shard in shards:
            if shard != merged:
                shard.unlink(missing_ok=True)

    def encode_items(
        self,
        texts: Sequence[str],
        progress: Progress | None = None,
        encode: ItemEncoding | None = None,
    ) -> FloatMatrix:
        """Item vectors of ``texts``: cached ones are read, the others encoded and stored.

        Args:
            texts: product texts (see :mod:`shopsearch.text.product_text`).
            progress: reports ``(done, total)`` over all of ``texts``: the cached ones (and
                repeats of a text) are done at once, the others as they are encoded.
            encode: how the texts not in the cache are encoded (default: the cache's encoder's
                ``encode_items``; e.g. spread over a Ray cluster); this process still writes
                the cache, so there is one writer.

        Returns:
            float32 ``[len(texts), dim]``, in the order of ``texts``.
        """
        rows = self._load()
        keys = [self.key(t) for t in texts]
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in rows:
                missing[key] = text
        self.misses += len(missing)
        ready = len(texts) - len(missing)
        self.hits += ready
        if progress is not None and texts:
            progress(ready, len(texts))
        if missing:
            encoding = None if progress is None else _offset(progress, ready, len(texts))
            vectors = (encode or self.encoder.encode_items)(list(missing.values()), encoding)
            records = np.empty(len(missing), dtype=self._dtype())
            records["hash"] = _hash_array(list(missing))
            records["vector"] = vectors
            self._write_shard(records)
            start = len(self._vectors)
            self._vectors = np.concatenate([self._vectors, vectors])
            rows.update(zip(missing, range(start, start + len(missing)), strict=True))
            self._merge_shards()
        return self._vectors[np.fromiter((rows[k] for k in keys), np.int64, len(keys))]
