"""``shopsearch index --ray-address local``: the products are encoded on a local Ray cluster
(started on 127.0.0.1) into the workspace's embedding cache, then indexed from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shopsearch.cli import run
from shopsearch.store.workspace import Workspace
from shopsearch.text.embedding_cache import EmbeddingCache
from shopsearch.text.encoders import MiniLMEncoder

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.slow
def test_index_encodes_on_ray_into_the_embedding_cache(
    dense_workspace: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(dense_workspace, root)
    cache = root / "cache" / "embeddings"
    shutil.rmtree(cache)  # nothing cached: every product is encoded on Ray
    try:
        code = run(["index", "-w", str(root), "--ray-address", "local", "--workers", "2"])
    finally:
        ray.shutdown()
    assert code == 0
    ws = Workspace.open(root)
    encoder = MiniLMEncoder()
    stored = EmbeddingCache(cache, encoder)
    assert len(stored) == ws.count("products")  # the Ray workers' vectors, in the same cache
    assert run(["search", "sofa", "-w", str(root)]) == 0
    assert run(["index", "-w", str(root), "--workers", "0"]) == 2  # a clear usage error
