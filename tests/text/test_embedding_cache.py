"""The on-disk item-vector cache keyed by content hash."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from shopsearch.errors import WorkspaceError
from shopsearch.progress import Progress
from shopsearch.text.embedding_cache import EmbeddingCache
from shopsearch.text.encoders import Encoder, FloatMatrix


class CountingEncoder(Encoder):
    """Deterministic vectors from a text's bytes; records every text it encodes."""

    name = "test-counting"

    def __init__(self, size: int = 8, version: str = "1") -> None:
        self.size = size
        self._version = version
        self.encoded: list[str] = []

    @property
    def dim(self) -> int:
        return self.size

    @property
    def version(self) -> str:
        return self._version

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self.encode_items(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        self.encoded.extend(texts)
        if progress is not None:
            progress(len(texts), len(texts))
        out = np.ones((len(texts), self.size), np.float32)
        for row, text in enumerate(texts):
            for i, byte in enumerate(text.encode()):
                out[row, i % self.size] += byte
        unit: FloatMatrix = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit


def test_hits_misses_and_persistence(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path, encoder)
    texts = ["red shoe", "blue lamp", "red shoe"]
    first = cache.encode_items(texts)
    assert encoder.encoded == ["red shoe", "blue lamp"]
    np.testing.assert_array_equal(first, CountingEncoder().encode_items(texts))
    assert (cache.hits, cache.misses) == (1, 2)

    second = cache.encode_items(["blue lamp", "green sofa"])
    assert encoder.encoded[-1:] == ["green sofa"]
    np.testing.assert_array_equal(second[0], first[1])

    reopened = CountingEncoder()
    again = EmbeddingCache(tmp_path, reopened)
    assert len(again) == 3
    np.testing.assert_array_equal(again.encode_items(texts), first)
    assert reopened.encoded == []
    assert again.encode_items([]).shape == (0, 8)

    newer = CountingEncoder(version="2")
    EmbeddingCache(tmp_path, newer).encode_items(["red shoe"])
    assert newer.encoded == ["red shoe"]


def test_shards_merge_past_the_limit(tmp_path: Path) -> None:
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path, encoder, max_shards=3)
    for i in range(5):
        cache.encode_items([f"text {i}"])
    shards = list((tmp_path / "test-counting").glob("shard-*.npy"))
    assert len(shards) <= 3
    reopened = EmbeddingCache(tmp_path, CountingEncoder(), max_shards=3)
    assert len(reopened) == 5
    np.testing.assert_array_equal(
        reopened.encode_items([f"text {i}" for i in range(5)]),
        cache.encode_items([f"text {i}" for i in range(5)]),
    )


def test_shard_of_another_dimension_fails_clearly(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path, CountingEncoder(size=8)).encode_items(["a"])
    with pytest.raises(WorkspaceError, match=r"delete .* to rebuild the cache"):
        EmbeddingCache(tmp_path, CountingEncoder(size=4)).encode_items(["a"])


def test_keys_ending_in_nul_bytes_survive_a_reload(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, CountingEncoder())
    texts = [t for t in (f"text {i}" for i in range(5000)) if cache.key(t)[-1] == 0][:3]
    assert texts
    cache.encode_items(texts)
    reopened = CountingEncoder()
    EmbeddingCache(tmp_path, reopened).encode_items(texts)
    assert reopened.encoded == []


def test_progress_counts_every_text_cached_or_encoded(tmp_path: Path) -> None:
    """A bar over an index counts every product: cached and repeated texts are done at once."""
    cache = EmbeddingCache(tmp_path, CountingEncoder())
    cache.encode_items(["red shoe", "blue lamp"])
    reports: list[tuple[int, int]] = []
    cache.encode_items(
        ["red shoe", "blue lamp", "green sofa", "green sofa"],
        lambda done, total: reports.append((done, total)),
    )
    assert reports == [(3, 4), (4, 4)]

    reports.clear()
    cache.encode_items(["red shoe", "blue lamp"], lambda done, total: reports.append((done, total)))
    assert reports == [(2, 2)]
