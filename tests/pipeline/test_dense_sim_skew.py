"""The ranking model's ``dense_sim`` is bound to the vector space it was trained in.

Before the pipeline, ``learned_use = "replace-dense"`` gave the learned retriever the name
``dense``, copied the bundle's ``ranking/`` folder over, and the engine handed the ranking stage
the first dense retriever it found: a model trained on one encoder's cosines was scored with the
two-tower's. Now the model records its space, serving refuses another, and retrieval training
leaves a model whose space is gone out of the new bundle.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from shopsearch.config import RankingSettings, RetrievalSettings, Settings
from shopsearch.errors import WorkspaceError
from shopsearch.pipeline.engine import RETRIEVAL_DIR, Engine, SearchParams
from shopsearch.pipeline.stages.rank import RANKING_DIR
from shopsearch.progress import Progress
from shopsearch.ranking.ranker import Ranker
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.bundles import bundle_meta, current_bundle, new_bundle_dir, publish_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.text.encoders import ENCODERS, Encoder, FloatMatrix
from shopsearch.training.index import build_index
from shopsearch.training.ranking import train_ranking_bundle
from shopsearch.training.retrieval import train_retrieval_bundle

TINY = SimulationConfig(domains=2, products=120, users=60, sessions=250, seed=9)


class WordHashEncoder(Encoder):
    """Hashed bag of words → unit vector (a stand-in for MiniLM)."""

    name = "test-skew-hash"
    config_keys: ClassVar[list[str]] = []

    @property
    def dim(self) -> int:
        return 24

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), 24), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
                out[row, h % 24] += 1.0
            out[row, 0] += 0.01
        unit: FloatMatrix = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit

    #: every query text encoded, by any instance
    encoded: ClassVar[list[str]] = []

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        WordHashEncoder.encoded.extend(texts)
        return self._encode(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        return self._encode(texts)


def _settings(**retrieval: object) -> Settings:
    values = {"sources": ["lexical"], "learned": ["two-tower"], "learned_epochs": 1,
              "learned_buckets": 4096, **retrieval}  # fmt: skip
    return Settings(retrieval=RetrievalSettings.model_validate(values))


@pytest.fixture(scope="module")
def ranked_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A workspace whose current bundle has lexical + a hashed ``dense`` source and a ranking
    model trained with ``dense_sim`` from that source."""
    with ENCODERS.registered(WordHashEncoder.name, WordHashEncoder):
        root = tmp_path_factory.mktemp("skew") / "ws"
        ws = Workspace.create(root)
        simulate(ws, TINY)
        build_index(ws, _settings())
        old = current_bundle(ws)
        bundle = new_bundle_dir(ws)
        shutil.copytree(old / RETRIEVAL_DIR, bundle / RETRIEVAL_DIR)
        hybrid = HybridRetriever.load(bundle / RETRIEVAL_DIR)
        dense = DenseRetriever(encoder=WordHashEncoder()).index(ws.table("products"))
        dense.fit_matches()  # as shopsearch index does
        HybridRetriever({**hybrid.sources, "dense": dense}).save(bundle / RETRIEVAL_DIR)
        publish_bundle(ws, bundle, bundle_meta(old))
        train_ranking_bundle(ws, RankingSettings(model="dnn", epochs=1), settings=_settings())
        yield root


def _copy(root: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(root, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws")


def test_the_model_records_its_space_and_serving_uses_that_source(
    ranked_root: Path, tmp_path: Path
) -> None:
    with ENCODERS.registered(WordHashEncoder.name, WordHashEncoder):
        ws = _copy(ranked_root, tmp_path)
        bundle = current_bundle(ws)
        space = Ranker.load(bundle / RANKING_DIR).dense_space
        assert space is not None
        assert space.startswith("test-skew-hash@")
        engine = Engine.load(ws, _settings())
        assert engine.ranking is not None
        assert engine.ranking.vector_space == space
        similarity = engine.ranking.similarity
        assert similarity is not None
        assert similarity.source is engine.retrieval.sources["dense"]
        response = engine.search(SearchParams("sofa", explain=True))
        assert [s.name for s in response.pipeline if s.status == "ran"] == ["retrieve", "rank"]


def test_replace_dense_leaves_the_stale_ranking_model_out(
    ranked_root: Path, tmp_path: Path
) -> None:
    with ENCODERS.registered(WordHashEncoder.name, WordHashEncoder):
        ws = _copy(ranked_root, tmp_path)
        ranked = current_bundle(ws)
        said: list[str] = []
        new = train_retrieval_bundle(ws, _settings(learned_use="replace-dense"), say=said.append)
        assert not (new / RANKING_DIR).exists()
        assert RANKING_DIR not in bundle_meta(new)["stages"]  # type: ignore[operator]
        assert any("ranking model read dense_sim" in line for line in said)
        engine = Engine.load(ws, _settings())
        assert engine.ranking is None
        assert (
            engine.retrieval.sources["dense"].vector_space
            != Ranker.load(ranked / RANKING_DIR).dense_space
        )
        skipped = {s.name: s for s in engine.search(SearchParams("sofa")).pipeline}["rank"]
        assert skipped.status == "skipped"

        # what the old code did: the ranking folder copied over a replaced dense source
        shutil.copytree(ranked / RANKING_DIR, new / RANKING_DIR)
        with pytest.raises(WorkspaceError, match=r"no source of its vectors \(test-skew-hash@"):
            Engine.load(ws, _settings())


def test_adding_a_learned_source_keeps_the_ranking_model(ranked_root: Path, tmp_path: Path) -> None:
    with ENCODERS.registered(WordHashEncoder.name, WordHashEncoder):
        ws = _copy(ranked_root, tmp_path)
        new = train_retrieval_bundle(ws, _settings(learned_use="add"))
        assert (new / RANKING_DIR).is_dir()
        engine = Engine.load(ws, _settings())
        assert engine.ranking is not None
        similarity = engine.ranking.similarity
        assert similarity is not None
        assert similarity.source is engine.retrieval.sources["dense"]
        assert set(engine.retrieval.sources) == {"lexical", "dense", "two_tower"}


def test_the_query_is_encoded_once_even_without_a_query_cache(
    ranked_root: Path, tmp_path: Path
) -> None:
    """Ranking takes the query vector retrieval computed (it used to read the dense source's
    cache back, encoding the query twice when the cache was off)."""
    with ENCODERS.registered(WordHashEncoder.name, WordHashEncoder):
        ws = _copy(ranked_root, tmp_path)
        engine = Engine.load(ws, _settings(query_cache_size=0))
        assert engine.ranking is not None
        WordHashEncoder.encoded.clear()
        response = engine.search(SearchParams("grey linen sofa", explain=True))
        assert WordHashEncoder.encoded == ["grey linen sofa"]
        assert any(item.stages.get("rank.value") is not None for item in response.items)
