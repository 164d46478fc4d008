"""GenRec: pages and histories from the log (no leakage), the Token Merger, page-wise NTP,
GRPO-SR's advantages, sampling and update, and the hybrid reward's gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.genrec import GenRec, GenRecConfig, GenRecExamples
from shopsearch.retrieval.generative.grpo import (
    GrpoConfig,
    child_table,
    clipped_surrogate,
    fit_grpo,
    group_advantages,
    products_of,
    sample_ids,
)
from shopsearch.retrieval.generative.model import GeneratorConfig
from shopsearch.retrieval.generative.pages import PageSamples, timestamps_us
from shopsearch.retrieval.generative.reward import (
    LoggedRewardModel,
    PastClicks,
    hybrid_reward,
    relevance_gate,
    reward_features,
    word_overlaps,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: these tiny models run many times faster than with contended ones."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _log() -> tuple[pa.Table, pa.Table, pa.Table]:
    """User a: r1 (t=10) clicks p1, r2 (t=20) purchases p3 and clicks p2, r3 (t=20, same time
    as r2) clicks p4, r4 (t=30) shows only; user b: r5 (t=5) clicks p9."""
    requests = pa.table(
        {
            "request_id": ["r1", "r2", "r3", "r4", "r5"],
            "user_id": ["a", "a", "a", "a", "b"],
            "domain": ["us"] * 5,
            "query": ["shoes", "boots", "boots red", "hat", "sock"],
            "timestamp": pa.array([10, 20, 20, 30, 5], pa.int64()),
        }
    )
    impressions = pa.table(
        {
            "request_id": ["r1", "r1", "r2", "r2", "r2", "r3", "r4", "r5"],
            "product_id": ["p0", "p1", "p2", "p5", "p3", "p4", "p6", "p9"],
            "position": [1, 2, 1, 2, 3, 1, 1, 1],
        }
    )
    interactions = pa.table(
        {
            "request_id": ["r1", "r2", "r2", "r2", "r3", "r5"],
            "product_id": ["p1", "p2", "p3", "p3", "p4", "p9"],
            "kind": ["click", "click", "click", "purchase", "click", "click"],
        }
    )
    return requests, impressions, interactions


def test_pages_and_histories_use_only_earlier_requests() -> None:
    samples = PageSamples.from_events(*_log())
    pages = {p.request_id: p for p in samples.pages}
    assert set(pages) == {"r1", "r2", "r3", "r5"}  # r4 has no interaction
    # purchase before click; a page's own items never in its history
    assert pages["r2"].items == (("us", "p3"), ("us", "p2"))
    assert pages["r2"].stages == (3.0, 2.0)
    assert pages["r1"].history == ()
    assert pages["r2"].history == (("us", "p1"),)
    assert pages["r3"].history == (("us", "p1"),)  # r2 has the same time: not before
    assert pages["r5"].history == ()  # another user's clicks never leak in
    # a later request sees the most recent first, each product once, at most `size`
    keys, stages = samples.histories.before("a", 31)
    assert keys[0] in {("us", "p3"), ("us", "p4")}
    assert keys[-1] == ("us", "p1")
    assert len(keys) == 4
    assert stages[keys.index(("us", "p3"))] == 3.0
    assert samples.histories.before("a", 31, size=2)[0] == keys[:2]
    assert samples.histories.before("nobody", 99) == ((), ())
    only = PageSamples.from_events(*_log(), request_ids=["r3"])
    assert [p.request_id for p in only.pages] == ["r3"]


def test_timestamps_may_be_arrow_timestamps() -> None:
    requests, impressions, interactions = _log()
    stamped = requests.set_column(
        4, "timestamp", requests.column("timestamp").cast(pa.timestamp("us", tz="UTC"))
    )
    assert timestamps_us(stamped.column("timestamp")).tolist() == [10, 20, 20, 30, 5]
    pages = PageSamples.from_events(stamped, impressions, interactions).pages
    assert [p.history for p in pages] == [
        p.history for p in PageSamples.from_events(requests, impressions, interactions).pages
    ]
    with pytest.raises(InvalidInputError, match="timestamp or integer"):
        timestamps_us(pa.array(["x"]))


def test_pages_need_the_log_columns() -> None:
    requests, impressions, interactions = _log()
    with pytest.raises(InvalidInputError, match="user_id"):
        PageSamples.from_events(requests.drop(["user_id"]), impressions, interactions)


def _ids(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.stack([np.arange(n) // 4, np.arange(n) % 4, np.zeros(n, np.int64)], axis=1)
    return tokens, np.full(n, 3)


def _config(epochs: int = 1) -> GeneratorConfig:
    return GeneratorConfig(dim=16, heads=2, layers=1, memory=2, epochs=epochs, batch_size=16,
                           lr=5e-3)  # fmt: skip


def test_token_merger_divides_history_tokens_by_the_id_length() -> None:
    tokens, lengths = _ids()
    history = np.array([[0, 5, 7, -1], [3, -1, -1, -1]])
    stages = np.zeros_like(history)
    merged = GenRec(tokens, lengths, 4, _config(), GenRecConfig(history=4, merger=True))
    plain = GenRec(tokens, lengths, 4, _config(), GenRecConfig(history=4, merger=False))
    memory = 2
    np.testing.assert_array_equal(merged.prompt_tokens(history), [memory + 3, memory + 1])
    np.testing.assert_array_equal(plain.prompt_tokens(history), [memory + 9, memory + 3])
    queries = torch.zeros((2, 4))
    for model, width in ((merged, 4), (plain, 12)):
        out, pad = model.net.encode(queries, *model.history_tensors(history, stages))
        assert out.shape[1] == memory + width
        assert int((~pad).sum()) == int(model.prompt_tokens(history).sum())


@pytest.mark.parametrize("merger", [True, False])
def test_cached_cross_attention_scores_equal_the_full_decoder(merger: bool) -> None:
    tokens, lengths = _ids()
    model = GenRec(tokens, lengths, 4, _config(), GenRecConfig(history=4, merger=merger))
    history = np.array([[0, 5, -1, -1], [3, 2, 1, -1]])
    with torch.no_grad():
        memory, pad = model.net.encode(
            torch.randn(2, 4), *model.history_tensors(history, np.zeros_like(history))
        )
        inputs = torch.tensor([[5, 1, 2], [5, 0, 3], [5, 2, 2]])
        positions = torch.arange(3)[None].expand(3, -1)
        slots = torch.zeros_like(inputs)
        prompt = torch.tensor([1, 0, 1])
        full = model.net.logits(memory[prompt], pad[prompt], inputs, positions, slots)[:, -1]
        keys = model.net.cross_keys(memory, pad)
        fast = model.net.last_logits(keys, prompt, inputs, positions, slots)
        one = model.net.last_logits(model.net.cross_keys(memory[:1], pad[:1]), None, inputs,
                                    positions, slots)  # fmt: skip
        alone = model.net.logits(memory[:1].expand(3, -1, -1), pad[:1].expand(3, -1), inputs,
                                 positions, slots)[:, -1]  # fmt: skip
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one, alone, atol=1e-5, rtol=1e-5)


def _examples(n: int, history: int) -> GenRecExamples:
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(n, 4)).astype(np.float32)
    items = [np.array([i, (i + 5) % n]) for i in range(n)]
    hist = np.full((n, history), -1)
    hist[:, 0] = (np.arange(n) + 1) % n
    return GenRecExamples(queries, items, hist, np.zeros_like(hist), ["us"] * n, np.arange(n))


def test_page_wise_training_learns_the_first_item_and_survives_save_load(tmp_path: Path) -> None:
    tokens, lengths = _ids()
    examples = _examples(12, 3)
    model = GenRec(tokens, lengths, 4, _config(80), GenRecConfig(history=3)).fit(examples)

    def first(i: int) -> int:
        q, h, s = examples.queries[i], examples.history[i], examples.history_stage[i]
        return int(model.retrieve(q, h, s, k=1, beam=4)[0][0])

    hits = [first(i) == i for i in range(12)]
    assert np.mean(hits) >= 0.9
    target = model.targets(examples.items[:1])  # two IDs of 3 tokens, then EOP
    assert target.targets[0].tolist() == [*tokens[0], *tokens[5], model.net.eop]
    assert target.slots[0].tolist() == [0, 0, 0, 1, 1, 1, 2]
    model.save(tmp_path / "g")
    again = GenRec.load(tmp_path / "g")
    step_a = model.step_scores(examples.queries[0], examples.history[0])
    step_b = again.step_scores(examples.queries[0], examples.history[0])
    np.testing.assert_allclose(step_a(None, None), step_b(None, None), atol=1e-6)
    first = (np.array([0, 0]), np.array([0, 1]))
    np.testing.assert_allclose(step_a(*first), step_b(*first), atol=1e-6)


def test_point_wise_examples_have_one_item_each() -> None:
    samples = PageSamples.from_events(*_log())
    row_of = {("us", f"p{i}"): i for i in range(10)}
    vectors = np.zeros((len(samples.pages), 4), np.float32)
    pages = GenRecExamples.from_pages(samples.pages, vectors, row_of, history=2)
    points = GenRecExamples.from_pages(samples.pages, vectors, row_of, history=2, point_wise=True)
    assert len(pages) == 4
    assert len(points) == 5
    assert all(len(i) == 1 for i in points.items)
    r3 = [p.request_id for p in samples.pages].index("r3")
    assert pages.history[list(pages.page).index(r3)].tolist() == [1, -1]
    tokens, lengths = _ids()
    model = GenRec(tokens, lengths, 4, _config(), GenRecConfig(page_wise=False))
    assert model.targets(points.items[:1]).targets.shape == (1, 3)  # no EOP


def test_grpo_advantages_have_mean_zero_per_group() -> None:
    rewards = np.array([[0.0, 1.0, 0.5, 0.2], [3.0, 3.0, 3.0, 3.0], [1.0, 0.0, 0.0, 0.0]])
    advantages = group_advantages(rewards)
    np.testing.assert_allclose(advantages.mean(1), 0.0, atol=1e-9)
    assert (advantages[1] == 0).all()
    assert advantages[0].argmax() == 1
    # the clip stops a ratio far above 1 + eps from being rewarded further
    logp_old = torch.zeros(2)
    a = torch.tensor([1.0, -1.0])
    assert clipped_surrogate(torch.log(torch.tensor([2.0, 2.0])), logp_old, a, 0.2).item() == (
        pytest.approx(-(1.2 - 2.0) / 2)
    )


def test_the_relevance_gate_zeroes_the_reward() -> None:
    rng = np.random.default_rng(0)
    cos = rng.uniform(0, 1, 2000)
    overlap = rng.uniform(0, 1, 2000)
    past = rng.integers(0, 20, 2000)
    features = reward_features(cos, overlap, past)
    clicked = rng.uniform(size=2000) < 1 / (1 + np.exp(-(4 * cos - 2)))
    model = LoggedRewardModel().fit(features, clicked)
    assert model.coefficients()["cos"] > 0
    reward = hybrid_reward(model, features, threshold=0.5)
    assert (reward[cos < 0.5] == 0).all()
    assert (reward[cos >= 0.5] > 0).all()
    assert relevance_gate([0.2, 0.7], 0.5).tolist() == [0.0, 1.0]
    assert word_overlaps(["red boots", ""], ["Boots, red!", "x"]).tolist() == [1.0, 0.0]
    clicks = PastClicks([1, 1, 2], [10, 20, 5])
    assert clicks.before([1, 1, 2, 3], [20, 21, 5, 99]).tolist() == [1, 2, 0, 0]


def test_sampling_stays_in_the_allowed_ids_and_grpo_raises_the_reward() -> None:
    tokens, lengths = _ids()
    examples = _examples(12, 2)
    model = GenRec(tokens, lengths, 4, _config(), GenRecConfig(history=2))
    mask = np.arange(12) < 6
    allowed = np.tile(model.trie.allowed(mask), (50, 1))
    memory, pad = model.encode(examples.subset(np.zeros(50, np.int64)))
    generator = torch.Generator().manual_seed(0)
    sampled = sample_ids(model, memory, pad, allowed, child_table(model.trie, 4), generator)
    rows = products_of(model.trie, sampled.leaves, np.tile(mask, (50, 1)),
                       np.random.default_rng(0))  # fmt: skip
    assert (rows >= 0).all()
    assert mask[rows].all()
    assert len(set(rows.tolist())) > 1

    def reward(example_rows: np.ndarray, product_rows: np.ndarray) -> np.ndarray:
        return np.asarray(product_rows % 4 == 1, np.float64)  # prefer one second token

    config = GrpoConfig(group=6, pages=6, batches=40, lr=1e-2, nll_weight=0.0)
    info = fit_grpo(model, examples, reward, {"us": np.ones(12, bool)}, config)
    assert info["batches"] == 40
    assert info["reward_last"] > info["reward_first"]
    with pytest.raises(InvalidInputError, match="no row mask"):
        fit_grpo(model, examples, reward, {"gb": np.ones(12, bool)}, config)
