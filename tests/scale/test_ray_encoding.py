"""Catalog encoding on a local Ray cluster (started here on 127.0.0.1, 2 CPUs): the vectors of
a run spread over Ray workers equal the local encoder's and land in the same embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.learned_train import item_texts
from shopsearch.text.embedding_cache import EmbeddingCache
from shopsearch.training.distributed import RayEncoding, encode_catalog

from ..retrieval.test_sci import encoder, products, toy_log

ray = pytest.importorskip("ray")
# Ray's own modules warn about their deprecated settings on import
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.slow
def test_ray_encoding_equals_local_and_fills_the_same_cache(cluster: None, tmp_path: Path) -> None:
    samples, _ = toy_log()
    learned = encoder().fit(samples)  # a learned encoder reaches the workers as saved files
    texts = list(item_texts(products()).values())
    progress: list[tuple[int, int]] = []

    def tell(done: int, total: int) -> None:
        progress.append((done, total))

    vectors = encode_catalog(texts, learned, tmp_path, workers=2, progress=tell)
    np.testing.assert_allclose(vectors, learned.encode_items(texts), atol=1e-6)
    assert progress[-1] == (len(texts), len(texts))
    cache = EmbeddingCache(tmp_path, learned)
    again = cache.encode_items(texts)  # a local run now only reads the cache
    assert (cache.hits, cache.misses) == (len(texts), 0)
    np.testing.assert_array_equal(again, vectors)
    assert RayEncoding(learned)([], None).shape == (0, learned.dim)


def test_bad_settings_are_clear_errors() -> None:
    samples, _ = toy_log()
    with pytest.raises(InvalidInputError, match="use >= 1"):
        RayEncoding(encoder().fit(samples), workers=0)
