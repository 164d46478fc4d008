"""The SFT generator learns to emit the semantic ID of the product a query is about; decoding
constrained to the trie recovers it for unseen noisy queries."""

from __future__ import annotations

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.decode import beam_search
from shopsearch.retrieval.generative.ids import FixedSemanticIds
from shopsearch.retrieval.generative.incremental import CachedSteps
from shopsearch.retrieval.generative.model import GeneratorConfig, IdGenerator
from shopsearch.retrieval.generative.quantize import ResidualKMeans
from shopsearch.retrieval.generative.trie import PrefixTrie


def test_sft_then_constrained_decoding_finds_the_product() -> None:
    rng = np.random.default_rng(0)
    products = rng.normal(size=(24, 8)).astype(np.float32)
    rq = ResidualKMeans(levels=2, codewords=4, seed=0).fit(products)
    ids = FixedSemanticIds([("us", str(i)) for i in range(24)], rq.encode(products), levels=2)
    tokens = ids.tokens
    vocab = int(tokens.max()) + 1

    def queries(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        noise = np.random.default_rng(seed)
        rows = np.repeat(np.arange(24), n)
        return (products[rows] + 0.1 * noise.normal(size=(len(rows), 8))).astype(np.float32), rows

    train_q, train_rows = queries(12, 1)
    config = GeneratorConfig(dim=32, heads=2, layers=1, memory=2, epochs=40, batch_size=64)
    model = IdGenerator(8, vocab, tokens.shape[1], config).fit(train_q, tokens[train_rows])
    trie = PrefixTrie(tokens)
    test_q, test_rows = queries(2, 2)
    hits = 0
    for query, row in zip(test_q, test_rows.tolist(), strict=True):
        found, _ = beam_search(trie, CachedSteps(model, query), k=1, beam=4).rows(trie)
        hits += int(found[0] == row)
    assert hits / len(test_rows) > 0.8


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="multiple of heads"):
        GeneratorConfig(dim=10, heads=4)
    model = IdGenerator(4, 3, 2, GeneratorConfig(dim=8, heads=2, layers=1, epochs=1))
    with pytest.raises(InvalidInputError, match="one ID of 2 tokens"):
        model.fit(np.zeros((3, 4)), np.zeros((3, 3), np.int64))
    with pytest.raises(InvalidInputError, match=r"0\.\.2"):
        model.fit(np.zeros((2, 4)), np.full((2, 2), 5))


def test_tokens_past_an_ids_length_are_not_learned() -> None:
    import torch

    model = IdGenerator(4, 5, 3, GeneratorConfig(dim=8, heads=2, layers=1, epochs=1))
    q = torch.zeros((2, 4))
    ids = torch.tensor([[1, 2, 4], [1, 3, 0]])
    scores = model.token_logprobs(q, ids, torch.tensor([3, 2]))
    assert scores[1, 2].item() == 0.0
    assert scores[0, 2].item() < 0.0
    with pytest.raises(InvalidInputError, match=r"length in 1\.\.3"):
        model.fit(np.zeros((2, 4)), ids.numpy(), lengths=[3, 4])


def test_cached_incremental_decoding_equals_the_full_forward() -> None:
    import torch

    from shopsearch.retrieval.generative.decode import prefix_scorer

    torch.manual_seed(3)
    config = GeneratorConfig(dim=16, heads=4, layers=2, memory=3, epochs=1)
    model = IdGenerator(6, 7, 4, config).eval()
    query = np.random.default_rng(4).normal(size=6).astype(np.float32)

    def full(prefixes: list[list[int]]) -> np.ndarray:
        rows = torch.tensor([[model.vocab, *p] for p in prefixes]).view(len(prefixes), -1)
        with torch.inference_mode():
            logits = model(torch.as_tensor(query)[None].expand(len(rows), -1), rows)
            return torch.log_softmax(logits[:, -1], -1).numpy()

    cached, reference = CachedSteps(model, query), prefix_scorer(full)
    np.testing.assert_allclose(cached(None, None), reference(None, None), atol=1e-5)
    parents, tokens = np.array([0, 0, 0]), np.array([2, 5, 1])
    np.testing.assert_allclose(cached(parents, tokens), reference(parents, tokens), atol=1e-5)
    parents, tokens = np.array([2, 0, 2, 1]), np.array([0, 6, 3, 3])  # reordered, repeated
    np.testing.assert_allclose(cached(parents, tokens), reference(parents, tokens), atol=1e-5)
    parents, tokens = np.array([3, 1]), np.array([4, 4])
    np.testing.assert_allclose(cached(parents, tokens), reference(parents, tokens), atol=1e-5)
    # a new search on the same scorer starts again from the empty prefix
    np.testing.assert_allclose(cached(None, None), reference(None, None), atol=1e-5)

    ids = np.unique(np.random.default_rng(5).integers(0, 7, size=(60, 4)), axis=0)
    trie = PrefixTrie(ids)
    fast = beam_search(trie, CachedSteps(model, query), k=10, beam=12)
    slow = beam_search(trie, prefix_scorer(full), k=10, beam=12)
    np.testing.assert_array_equal(fast.leaves, slow.leaves)
    np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-5)
