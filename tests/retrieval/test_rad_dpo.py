"""DPO and RAD-DPO on semantic IDs: the losses against hand-computed numbers, prefix
detachment, the similarity weight, the multi-label contrastive denominator, the pair builder
and a tiny end-to-end alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.model import GeneratorConfig, IdGenerator
from shopsearch.retrieval.generative.pairs import build_pairs, mine_negatives
from shopsearch.retrieval.generative.preference import (
    AlignConfig,
    align,
    dpo_loss,
    multilabel_contrastive,
    preference_margins,
    rad_dpo_loss,
    sft_loss,
    shared_prefix,
    similarity_weight,
)
from shopsearch.retrieval.generative.trie import PrefixTrie


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_dpo_loss_matches_hand_computed_numbers() -> None:
    chosen = torch.tensor([[-1.0, -0.5], [-2.0, -1.0]])  # sums -1.5, -3.0
    rejected = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]])  # sums -3.0, -1.0
    ref_chosen = torch.tensor([-2.0, -2.5])
    ref_rejected = torch.tensor([-2.5, -1.5])
    loss = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    # margins: (-1.5 + 2.0) - (-3.0 + 2.5) = 1.0 ; (-3.0 + 2.5) - (-1.0 + 1.5) = -1.0
    expected = [-math.log(_sigmoid(0.5)), -math.log(_sigmoid(-0.5))]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)
    # the same with no weight and no detachment
    plain = rad_dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    assert plain.tolist() == pytest.approx(expected, rel=1e-6)


def test_rad_margin_weights_the_rejected_side_or_the_pair() -> None:
    chosen, rejected = torch.tensor([[-1.0, -1.0]]), torch.tensor([[-1.0, -3.0]])
    ref_c, ref_r = torch.tensor([-2.5]), torch.tensor([-3.0])
    w = torch.tensor([0.25])
    side = rad_dpo_loss(chosen, rejected, ref_c, ref_r, weight=w, beta=1.0)
    assert side.item() == pytest.approx(-math.log(_sigmoid(0.5 - 0.25 * -1.0)), rel=1e-6)
    pair = rad_dpo_loss(chosen, rejected, ref_c, ref_r, weight=w, beta=1.0, weight_on="pair")
    assert pair.item() == pytest.approx(-0.25 * math.log(_sigmoid(1.5)), rel=1e-6)


def test_shared_prefix_respects_lengths() -> None:
    won = torch.tensor([[1, 2, 3, 0], [1, 2, 3, 4], [5, 0, 0, 0]])
    lost = torch.tensor([[1, 2, 4, 0], [1, 2, 0, 0], [6, 0, 0, 0]])
    prefix = shared_prefix(won, lost, torch.tensor([3, 4, 1]), torch.tensor([3, 2, 1]))
    assert prefix.tolist() == [2, 2, 0]


def test_detachment_stops_the_gradient_on_the_rejected_shared_prefix() -> None:
    chosen = torch.tensor([[-0.2, -0.3, -0.4]], requires_grad=True)
    ref_c, ref_r = torch.tensor([-1.0]), torch.tensor([-2.0])
    prefix = shared_prefix(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 2, 0]]))
    assert prefix.tolist() == [2]
    weight = torch.tensor([0.3])
    grads = {}
    for detach in (True, False):
        rejected = torch.tensor([[-0.2, -0.3, -1.5]], requires_grad=True)
        loss = rad_dpo_loss(chosen, rejected, ref_c, ref_r, weight=weight,
                            prefix=prefix if detach else None)  # fmt: skip
        loss.sum().backward()
        assert rejected.grad is not None
        grads[detach] = rejected.grad[0].clone()
    assert grads[True][:2].tolist() == [0.0, 0.0]
    assert grads[True][2].item() > 0  # the diverging token is still pushed down
    assert (grads[False][:2] > 0).all()  # without detachment the weighted prefix is pushed too


def test_similarity_weight_is_monotone_and_bounded() -> None:
    cos = torch.linspace(-1.0, 1.0, 201)
    for s0, temperature, w_min in ((0.85, 0.05, 0.05), (0.5, 0.2, 0.0), (0.9, 0.01, 0.3)):
        w = similarity_weight(cos, s0, temperature, w_min)
        assert (w >= w_min).all()
        assert (w <= 1.0).all()
        assert (w[1:] <= w[:-1]).all()  # more similar to the chosen item: never more weight
    w = similarity_weight(torch.tensor([0.2, 0.85, 1.0]))  # s0=0.85, T=0.05, w_min=0.05
    assert w.tolist() == pytest.approx([_sigmoid(13.0), 0.5, 0.05])


def test_multilabel_contrastive_leaves_the_other_positives_out_of_the_denominator() -> None:
    scores = torch.tensor([[-1.0, -2.0, -1.5, -3.0, 0.0]], requires_grad=True)
    positive = torch.tensor([[True, True, False, False, False]])
    negative = torch.tensor([[False, False, True, True, False]])  # column 4 is padding
    loss = multilabel_contrastive(scores, positive, negative, temperature=0.5)
    negs = math.exp(-1.5 / 0.5) + math.exp(-3.0 / 0.5)
    expected = [math.log(1 + negs / math.exp(s / 0.5)) for s in (-1.0, -2.0)]
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-6)
    loss.backward()
    assert scores.grad is not None
    # raising one positive never hurts another (it is not in their denominator)
    assert (scores.grad[0, :2] < 0).all()
    assert (scores.grad[0, 2:4] > 0).all()
    assert scores.grad[0, 4].item() == 0.0
    # a softmax over all candidates (positives squeezing each other) would differ
    squeezed = -torch.log_softmax(scores.detach()[0, :4] / 0.5, 0)[:2].mean()
    assert loss.item() < squeezed.item()
    with pytest.raises(InvalidInputError, match="both"):
        multilabel_contrastive(scores, positive, positive, 1.0)


def test_sft_loss_is_the_weighted_length_normalised_nll() -> None:
    lp = torch.tensor([[-1.0, -1.0, 0.0], [-0.5, -0.5, -2.0]])
    loss = sft_loss(lp, torch.tensor([2.0, 3.0]), torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx((1.0 * 1.0 + 3.0 * 1.0) / 4.0)


def _toy(depth_lengths: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """12 products in a 2-level tree (3 x 4) with noisy queries; the last three rows have a
    shorter, shared ID when ``depth_lengths``."""
    tokens = np.array([[a, b] for a in range(3) for b in range(4)], np.int64)
    lengths = np.full(12, 2, np.int64)
    if depth_lengths:
        tokens[8:] = [[2, 0]] * 4
        lengths[8:] = 1
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 6)).astype(np.float32)
    return tokens, lengths, vectors, rng.normal(size=(6, 6)).astype(np.float32)


def test_build_pairs_drops_equal_ids_and_negatives_sharing_a_positive_id() -> None:
    tokens, lengths, vectors, _ = _toy(depth_lengths=True)
    queries = np.zeros((2, 3), np.float32)
    pairs = build_pairs(
        queries,
        positives=[[0, 8], [1]],
        negatives=[[9, 2, 2], [0]],  # 9 shares the ID of positive 8; 2 is listed twice
        tokens=tokens,
        vectors=vectors,
        lengths=lengths,
        positive_weights=[[1.0, 2.0], [0.5]],
        mined=[[3], []],
    )
    assert pairs.pair_query.tolist() == [0, 0, 0, 0, 1]
    assert {tuple(r) for r in pairs.rejected[:4].tolist()} == {(0, 2), (0, 3)}
    assert pairs.mined.tolist() == [False, True, False, True, False]
    for w, lost, n_w, n_l in zip(pairs.chosen, pairs.rejected, pairs.chosen_lengths,
                                 pairs.rejected_lengths, strict=True):  # fmt: skip
        assert n_w != n_l or not np.array_equal(w[:n_w], lost[:n_l])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert pairs.similarity[0] == pytest.approx(float(unit[0] @ unit[2]), rel=1e-5)
    assert pairs.label_positive.tolist() == [True, True, False, False, True, False]
    assert pairs.label_weight.tolist() == [1.0, 2.0, 1.0, 1.0, 0.5, 1.0]
    assert pairs.label_lengths.tolist() == [2, 1, 2, 2, 2, 2]
    with pytest.raises(InvalidInputError, match="one list per query"):
        build_pairs(queries, [[0]], [[1], [2]], tokens, vectors)
    with pytest.raises(InvalidInputError, match=r"0\.\.11"):
        build_pairs(queries, [[0], [12]], [[1], [2]], tokens, vectors)


def test_mined_negatives_hold_no_positive() -> None:
    tokens, lengths, _, _ = _toy(depth_lengths=True)
    trie = PrefixTrie(tokens, lengths)
    model = IdGenerator(4, 4, 2, GeneratorConfig(dim=8, heads=2, layers=1, epochs=1))
    mined = mine_negatives(model, trie, np.zeros((2, 4)), [[0, 1, 8], []], count=3)
    assert [len(m) for m in mined] == [3, 3]
    assert not {0, 1, 8, 9, 10, 11} & set(mined[0])
    assert len({tuple(tokens[r]) for r in mined[1]}) == 3


@pytest.mark.parametrize("mode", ["dpo", "rad-dpo"])
def test_align_raises_the_chosen_over_rejected_margin(mode: str) -> None:
    tokens, lengths, vectors, _ = _toy(depth_lengths=True)
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(8, 5)).astype(np.float32)
    positives = [[i % 8, (i + 3) % 8] for i in range(8)]
    negatives = [[(i + 1) % 8, 8 + i % 4] for i in range(8)]
    pairs = build_pairs(queries, positives, negatives, tokens, vectors, lengths=lengths)
    config = GeneratorConfig(dim=16, heads=2, layers=1, memory=2, epochs=5, batch_size=16)
    torch.manual_seed(0)  # the initial weights
    model = IdGenerator(5, 4, 2, config)
    rows = np.array([r for p in positives for r in p])
    model.fit(queries[np.repeat(np.arange(8), 2)], tokens[rows], lengths=lengths[rows])
    before = preference_margins(model, pairs)
    steps: list[int] = []
    history = align(
        model,
        pairs,
        mode,  # type: ignore[arg-type]
        AlignConfig(epochs=10, batch_size=4, lr=3e-3, beta=0.5, global_negatives=4, s0=0.99),
        progress=lambda step, total, loss: steps.append(step),
    )
    after = preference_margins(model, pairs)
    assert history.steps == 20 == len(steps) == len(history.loss)
    assert after.mean() > before.mean() + 0.5
    assert all(math.isfinite(v) for v in history.loss)
    if mode == "dpo":
        assert history.contrastive == [0.0] * 20
    else:
        assert max(history.contrastive) > 0.0


def test_align_rejects_pairs_that_do_not_fit() -> None:
    tokens, _, vectors, _ = _toy()
    pairs = build_pairs(np.zeros((1, 5), np.float32), [[0]], [[1]], tokens, vectors)
    model = IdGenerator(4, 4, 2, GeneratorConfig(dim=8, heads=2, layers=1, epochs=1))
    with pytest.raises(InvalidInputError, match="do not fit"):
        align(model, pairs)
    with pytest.raises(InvalidInputError, match="mode"):
        align(IdGenerator(5, 4, 2, model.config), pairs, "ppo")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="w_min"):
        AlignConfig(w_min=2.0)
