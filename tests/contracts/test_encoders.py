"""The Encoder contract, checked on every registered encoder.

Parametrized over ``ENCODERS.names()``; a new encoder fails :func:`test_every_encoder_has_a_builder`
until :data:`BUILDERS` says how to build it. MiniLM is checked for registration and config only:
loading the model takes seconds (its vectors are tested in tests/text/test_encoders.py).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shopsearch.retrieval.learned_train import Learned
from shopsearch.text.encoders import ENCODERS, Encoder, MiniLMEncoder, make_encoder


def _learned(request: pytest.FixtureRequest) -> Learned:
    learned: Learned = request.getfixturevalue("learned")
    return learned


def _model2vec(request: pytest.FixtureRequest) -> Encoder:
    """model2vec distilled from the tiny random BERT (MiniLM's tokenizer), not the real MiniLM
    (minutes): same code path, seconds."""
    from shopsearch.text.static_encoder import Model2VecEncoder

    return Model2VecEncoder(**request.getfixturevalue("tiny_model2vec"))


#: Registered encoder name → a fitted instance built from the test's fixtures (the trained
#: learned models, a tiny BERT), or ``None`` for an encoder whose model is too slow to load in
#: these tests (config checks only).
BUILDERS: dict[str, Callable[[pytest.FixtureRequest], Encoder] | None] = {
    "minilm": None,
    "mmse": lambda request: _learned(request).encoder,
    "search-gcn": lambda request: _learned(request).retrievers["gcn"].encoder,
    "model2vec": _model2vec,
}

NAMES = ENCODERS.names()
QUERIES = ["red shoe", "lamp", "", "Blue COTTON running table!", "red shoe"]
ITEMS = ["red shoe item1", "wood desk lamp", "steel phone case, Acme", "x", "table"]


@pytest.fixture
def encoder(request: pytest.FixtureRequest) -> Callable[[str], Encoder]:
    """``encoder(name)``: the fitted encoder registered as ``name`` (skips config-only ones)."""

    def make(name: str) -> Encoder:
        if name not in BUILDERS:
            pytest.fail(
                f"encoder {name!r} is registered but tests/contracts/test_encoders.py has no "
                f"builder for it: add BUILDERS[{name!r}] = lambda request: <a fitted encoder>"
            )
        build = BUILDERS[name]
        if build is None:
            pytest.skip(f"{name}: loading its model is too slow for the contract tests")
        built = build(request)
        assert isinstance(built, ENCODERS.get(name))
        return built

    return make


def _check_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_every_encoder_has_a_builder(name: str) -> None:
    assert name in BUILDERS, (
        f"encoder {name!r} is registered but has no entry in BUILDERS "
        "(tests/contracts/test_encoders.py); add one so the contract checks it"
    )


@pytest.mark.parametrize("name", NAMES)
def test_registration_and_config(name: str) -> None:
    cls = ENCODERS.get(name)
    assert cls.name == name
    assert ENCODERS.name_of(cls) == name
    parameters = inspect.signature(cls.__init__).parameters
    assert set(cls.config_keys) <= set(parameters), "config_keys must be constructor parameters"
    # a default instance is cheap (no model loaded) and rebuilds from its config
    default = cls()
    config = default.get_config()
    assert set(config) == set(cls.config_keys)
    rebuilt = make_encoder(name, config)
    assert type(rebuilt) is cls
    assert rebuilt.get_config() == config
    if cls.learned:
        assert callable(getattr(cls, "save", None))
        assert inspect.ismethod(getattr(cls, "load", None))


def test_minilm_config_without_loading_the_model() -> None:
    encoder = make_encoder("minilm", {"batch_size": 8, "dtype": "float32"})
    assert isinstance(encoder, MiniLMEncoder)
    assert not MiniLMEncoder.learned
    assert encoder.get_config() == {
        "batch_size": 8,
        "dtype": "float32",
        "num_threads": None,
        "query_threads": 1,
    }
    assert encoder.query_key("  Red   SHOE ") == "red shoe"
    assert encoder._model is None  # nothing was loaded


@pytest.mark.parametrize("name", NAMES)
def test_vectors_are_unit_float32_rows_in_input_order(
    name: str, encoder: Callable[[str], Encoder]
) -> None:
    enc = encoder(name)
    dim = enc.dim
    for encode, texts in ((enc.encode_queries, QUERIES), (enc.encode_items, ITEMS)):
        vectors = encode(texts)
        _check_rows(vectors, len(texts), dim)
        backwards = encode(texts[::-1])
        np.testing.assert_allclose(backwards[::-1], vectors, atol=1e-6)
        for i, text in enumerate(texts):
            np.testing.assert_allclose(encode([text])[0], vectors[i], atol=1e-6)
        _check_rows(encode([]), 0, dim)
    queries = enc.encode_queries(QUERIES)
    np.testing.assert_array_equal(queries[0], queries[-1])  # one text, one vector


@pytest.mark.parametrize("name", NAMES)
def test_encoding_is_deterministic(name: str, encoder: Callable[[str], Encoder]) -> None:
    enc = encoder(name)
    np.testing.assert_array_equal(enc.encode_queries(QUERIES), enc.encode_queries(QUERIES))
    np.testing.assert_array_equal(enc.encode_items(ITEMS), enc.encode_items(ITEMS))
    assert enc.version == enc.version
    seen: list[tuple[int, int]] = []
    enc.encode_items(ITEMS, progress=lambda done, total: seen.append((done, total)))
    assert seen
    assert seen[-1] == (len(ITEMS), len(ITEMS))


@pytest.mark.parametrize("name", NAMES)
def test_queries_with_one_query_key_get_one_vector(
    name: str, encoder: Callable[[str], Encoder]
) -> None:
    """Query-vector caches key on ``query_key``: it may only merge texts that encode alike."""
    enc = encoder(name)
    texts = ["Red Shoe", "red shoe", " red  shoe ", "red shoe!", "RED SHOE"]
    vectors = enc.encode_queries(texts)
    keys = [enc.query_key(text) for text in texts]
    for i, j in itertools.combinations(range(len(texts)), 2):
        if keys[i] == keys[j]:
            np.testing.assert_allclose(vectors[i], vectors[j], atol=1e-6)
    assert keys[1] == enc.query_key(keys[1])  # a key is its own key


@pytest.mark.parametrize("name", NAMES)
def test_learned_encoder_saves_and_loads_to_the_same_vectors(
    name: str, encoder: Callable[[str], Encoder], tmp_path: Path
) -> None:
    if not ENCODERS.get(name).learned:
        pytest.skip(f"{name} is not a learned encoder: it has no weights to save")
    enc = encoder(name)
    cls: Any = type(enc)
    enc.save(tmp_path / name)  # type: ignore[attr-defined]
    loaded = cls.load(tmp_path / name)
    assert loaded.version == enc.version
    assert loaded.dim == enc.dim
    np.testing.assert_array_equal(loaded.encode_queries(QUERIES), enc.encode_queries(QUERIES))
    np.testing.assert_array_equal(loaded.encode_items(ITEMS), enc.encode_items(ITEMS))
    # what a saved dense index does: rebuild the encoder by name from its saved config
    rebuilt = make_encoder(name, enc.get_config())
    assert rebuilt.version == enc.version
    np.testing.assert_array_equal(rebuilt.encode_items(ITEMS), enc.encode_items(ITEMS))
