"""The papers' ranking models (SEQ+MD, AW-MoE, category MoE, KFAtt) on a tiny random batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.base import FeatureSpec, RankingBatch, RankingModel
from shopsearch.ranking.models.category_moe import deepest_known
from shopsearch.ranking.models.paper import (
    AWMoE,
    CategoryMoE,
    KFAtt,
    MarketMask,
    SeqMD,
    adversarial_disagreement,
    descending_probability_penalty,
    hierarchy_soft_constraint,
    info_nce,
    merge_duplicates,
    random_sequence_mask,
    sample_adversary,
    with_market_mask,
)
from shopsearch.ranking.registry import RANKING_MODELS

B, L, DEPTH = 64, 20, 3


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and do not fight other jobs for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Category tree, ids: roots 1-2, mid levels 3-6 (parent (id - 3) // 2 + 1), leaves 7-14
# (parent (id - 7) // 2 + 3).
N_CATEGORIES = 15


def make_spec() -> FeatureSpec:
    return FeatureSpec(
        dense_names=("bm25", "price", "price_rel", "ctr_prior", "dense_sim"),
        sparse_names=("brand", "shop"),
        sparse_cardinalities=(7, 5),
        n_items=50,
        n_categories=N_CATEGORIES,
        category_depth=DEPTH,
        n_domains=2,
        seq_len=L,
        market_driven=("price", "ctr_prior"),
    )


def category_paths(leaves: torch.Tensor) -> torch.Tensor:
    mids = (leaves - 7) // 2 + 3
    roots = (mids - 3) // 2 + 1
    return torch.stack([roots, mids, leaves], dim=1)


def make_batch(size: int = B, seed: int = 0) -> RankingBatch:
    g = torch.Generator().manual_seed(seed)
    item = torch.randint(1, 50, (size,), generator=g)
    item_leaf = (item % 8) + 7
    query_leaf = torch.randint(7, 15, (size,), generator=g)
    lengths = torch.randint(0, L + 1, (size,), generator=g)
    lengths[:4] = 0  # a few users with no history at all
    seq_mask = torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1)
    seq_items = torch.randint(1, 50, (size, L), generator=g) * seq_mask
    seq_kinds = torch.randint(1, 4, (size, L), generator=g) * seq_mask
    seq_categories = ((seq_items % 8) + 7) * seq_mask
    dense = torch.randn(size, 5, generator=g)
    score = dense[:, 0] + (item_leaf == query_leaf).float() * 1.5
    click = (torch.rand(size, generator=g) < torch.sigmoid(score - 0.5)).float()
    cart = click * (torch.rand(size, generator=g) < 0.4).float()
    purchase = cart * (torch.rand(size, generator=g) < 0.5).float()
    return RankingBatch(
        dense=dense,
        sparse=torch.stack(
            [torch.randint(0, 7, (size,), generator=g), torch.randint(0, 5, (size,), generator=g)],
            dim=1,
        ),
        item=item,
        item_category=category_paths(item_leaf),
        query_category=category_paths(query_leaf),
        domain=torch.randint(0, 2, (size,), generator=g),
        position=torch.randint(1, 11, (size,), generator=g),
        seq_items=seq_items,
        seq_categories=seq_categories,
        seq_kinds=seq_kinds,
        seq_age=torch.rand(size, L, generator=g) * 5 * seq_mask,
        group=torch.arange(size) // 8,
        click=click,
        cart=cart,
        purchase=purchase,
        weight=torch.ones(size),
    )


def value(tensor: torch.Tensor) -> float:
    return float(tensor.detach())


MODELS: list[type[RankingModel]] = [SeqMD, AWMoE, CategoryMoE, KFAtt]


def test_registry_names() -> None:
    for model_class in (SeqMD, AWMoE, CategoryMoE, KFAtt):
        assert RANKING_MODELS.get(model_class.name) is model_class


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.name)
def test_forward_shapes_and_probabilities(model_class: type[RankingModel]) -> None:
    torch.manual_seed(0)
    model = model_class(make_spec())
    batch = make_batch()
    for training in (True, False):
        model.train(training)
        outputs = model(batch)
        for task in ("click", "cart", "purchase"):
            p = outputs.of(task)
            assert p.shape == (B,)
            assert torch.isfinite(p).all()
            assert ((p >= 0) & (p <= 1)).all()
    if model_class is not SeqMD:  # the funnel chain enforces the order by construction
        assert (outputs.p_cart <= outputs.p_click + 1e-7).all()
        assert (outputs.p_purchase <= outputs.p_cart + 1e-7).all()
    with_position = model_class(make_spec(), use_position=True)  # type: ignore[call-arg]
    assert with_position(batch).p_click.shape == (B,)
    config = model.get_config()
    assert set(config) == set(model_class.config_keys)
    assert isinstance(model_class(make_spec(), **config), model_class)  # type: ignore[arg-type]


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.name)
def test_loss_finite_and_decreasing(model_class: type[RankingModel]) -> None:
    torch.manual_seed(0)
    model = model_class(make_spec())
    batch = make_batch()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    weights = {"click": 1.0, "cart": 1.0, "purchase": 1.0}
    losses = []
    model.train()
    for _ in range(30):
        optimiser.zero_grad()
        loss = model.loss(batch, model(batch), weights)
        assert torch.isfinite(loss)
        loss.backward()
        optimiser.step()
        losses.append(value(loss))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


@pytest.mark.parametrize("model_class", [*MODELS, with_market_mask(AWMoE)], ids=lambda c: c.name)
def test_weights_and_config_round_trip(model_class: type[RankingModel]) -> None:
    torch.manual_seed(0)
    model = model_class(make_spec(), embed_dim=8, hidden=32).eval()  # type: ignore[call-arg]
    torch.manual_seed(1)
    copy = model_class(make_spec(), **model.get_config()).eval()  # type: ignore[arg-type]
    copy.load_state_dict(model.state_dict())
    batch = make_batch()
    with torch.no_grad():
        assert torch.equal(model(batch).p_purchase, copy(batch).p_purchase)


# --- SEQ+MD -------------------------------------------------------------------------------


def test_descending_probability_penalty() -> None:
    ordered = descending_probability_penalty(
        torch.tensor([0.5, 0.3]), torch.tensor([0.2, 0.3]), torch.tensor([0.1, 0.0])
    )
    assert value(ordered) == 0.0
    violated = descending_probability_penalty(
        torch.tensor([0.2, 0.3]), torch.tensor([0.5, 0.3]), torch.tensor([0.1, 0.4])
    )
    # (0.3 + 0) and (0 + 0.1) averaged over the two impressions
    assert value(violated) == pytest.approx(0.2)


def test_seq_md_learns_the_funnel_order() -> None:
    torch.manual_seed(0)
    model = SeqMD(make_spec(), dpr_weight=10.0)
    batch = make_batch()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimiser.zero_grad()
        model.loss(batch, model(batch), {}).backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        outputs = model(batch)
    penalty = descending_probability_penalty(outputs.p_click, outputs.p_cart, outputs.p_purchase)
    assert value(penalty) < 1e-3
    assert value(model.extra_loss(batch, outputs)) == pytest.approx(10 * value(penalty))


def test_market_mask_is_identity_when_fresh_and_masks_per_domain() -> None:
    spec = make_spec()
    mask = MarketMask(spec)
    dense = torch.randn(6, 5)
    domain = torch.tensor([0, 0, 0, 1, 1, 1])
    assert torch.equal(mask(dense, domain), dense)
    with torch.no_grad():
        mask.domain_logits[0] = torch.tensor([-20.0, -20.0])  # domain 0: drop both
        mask.domain_logits[1] = torch.tensor([20.0, 0.0])  # domain 1: x2, keep
    masked = mask(dense, domain)
    invariant = [0, 2, 4]  # bm25, price_rel, dense_sim
    assert torch.equal(masked[:, invariant], dense[:, invariant])
    assert torch.allclose(masked[:3, [1, 3]], torch.zeros(3, 2), atol=1e-6)
    assert torch.allclose(masked[3:, 1], 2 * dense[3:, 1], atol=1e-5)
    assert torch.allclose(masked[3:, 3], dense[3:, 3])


def test_market_mask_rejects_unknown_feature() -> None:
    spec = replace(make_spec(), market_driven=("price", "no_such_feature"))
    with pytest.raises(InvalidInputError, match="no_such_feature"):
        MarketMask(spec)


def baseline_models() -> list[type[RankingModel]]:
    from shopsearch.ranking.models.baselines import DNN, ESMM, PLE, MMoE

    return [DNN, ESMM, MMoE, PLE]


@pytest.mark.parametrize("model_class", [KFAtt, *baseline_models()], ids=lambda c: c.name)
def test_with_market_mask_plugs_into_any_model(model_class: type[RankingModel]) -> None:
    masked_class = with_market_mask(model_class)
    assert masked_class.name == f"{model_class.name}+md"
    assert issubclass(masked_class, model_class)
    torch.manual_seed(0)
    model = masked_class(make_spec()).eval()
    mask = model.market_mask
    assert isinstance(mask, MarketMask)
    batch = make_batch()
    with torch.no_grad():
        before = model(batch).p_click
        mask.domain_logits.fill_(-20.0)  # every market drops its market-driven features
        after = model(batch).p_click
        reference = model(replace(batch, dense=batch.dense * torch.tensor([1, 0, 1, 0, 1.0])))
    assert not torch.allclose(before, after)
    assert torch.allclose(after, reference.p_click, atol=1e-6)


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.name)
def test_minimal_spec(model_class: type[RankingModel]) -> None:
    """No categorical features, no market-driven features, one domain: still works."""
    spec = replace(
        make_spec(), sparse_names=(), sparse_cardinalities=(), market_driven=(), n_domains=1
    )
    batch = make_batch(8)
    batch = replace(batch, sparse=batch.sparse[:, :0], domain=torch.zeros_like(batch.domain))
    torch.manual_seed(0)
    model = model_class(spec)
    outputs = model(batch)
    loss = model.loss(batch, outputs, {})
    assert torch.isfinite(loss)
    assert outputs.p_click.shape == (8,)


# --- AW-MoE -------------------------------------------------------------------------------


def test_info_nce_lower_for_identical_views() -> None:
    g = torch.Generator().manual_seed(0)
    views = torch.randn(32, 4, generator=g)
    unrelated = torch.randn(32, 4, generator=g)
    assert value(info_nce(views, views, 0.2)) < value(info_nce(views, unrelated, 0.2))


def test_random_sequence_mask_masks() -> None:
    batch = make_batch()
    mask = batch.seq_mask
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_sequence_mask(mask, 0.0, g), mask)
    assert not random_sequence_mask(mask, 1.0, g).any()
    half = random_sequence_mask(mask, 0.5, g)
    assert not (half & ~mask).any()  # padding never becomes a behaviour
    kept = half.sum() / mask.sum()
    assert 0.35 < value(kept) < 0.65
    view = AWMoE(make_spec()).masked_view(batch, g)
    assert int(view.seq_mask.sum()) < int(mask.sum())
    assert not (view.seq_mask & ~mask).any()


def test_aw_moe_contrastive_only_in_training() -> None:
    torch.manual_seed(0)
    model = AWMoE(make_spec())
    batch = make_batch()
    outputs = model.train()(batch)
    assert {"gate_logits", "masked_gate_logits"} <= set(outputs.extras)
    assert value(model.extra_loss(batch, outputs)) > 0
    assert not torch.equal(outputs.extras["gate_logits"], outputs.extras["masked_gate_logits"])
    eval_outputs = model.eval()(batch)
    assert "masked_gate_logits" not in eval_outputs.extras
    assert value(model.extra_loss(batch, eval_outputs)) == 0.0
    gate = eval_outputs.extras["gate"]
    assert torch.allclose(gate.sum(-1), torch.ones(B))
    # users without behaviour share the bias gate; users with behaviour get their own
    assert torch.allclose(gate[0], gate[1])


# --- Category MoE -------------------------------------------------------------------------


def test_deepest_known_category() -> None:
    paths = torch.tensor([[1, 3, 7], [1, 3, 0], [0, 0, 0], [2, 0, 0]])
    assert deepest_known(paths).tolist() == [7, 3, 0, 2]


def test_hierarchy_constraint_zero_when_siblings_share_gates() -> None:
    torch.manual_seed(0)
    model = CategoryMoE(make_spec())
    batch = make_batch()
    assert value(model.hierarchy_penalty(batch)) > 0
    with torch.no_grad():
        # every leaf gets its root's gate: siblings (and cousins under one root) share gates,
        # and the top-level gate says the same
        model.parent_gate_net.load_state_dict(model.gate_net.state_dict())
        for leaf in range(7, 15):
            root = ((leaf - 7) // 2 + 3 - 3) // 2 + 1
            model.gate_embedding.weight[leaf] = model.gate_embedding.weight[root]
            model.parent_gate_embedding.weight[root] = model.gate_embedding.weight[root]
    assert value(model.hierarchy_penalty(batch)) == pytest.approx(0.0, abs=1e-12)
    gates = torch.softmax(torch.randn(4, 4), dim=-1)
    nothing_known = torch.zeros(4, dtype=torch.bool)
    assert value(hierarchy_soft_constraint(gates, gates.flip(0), nothing_known)) == 0.0
    assert value(hierarchy_soft_constraint(gates, gates.flip(0), ~nothing_known)) > 0


def test_adversarial_disagreement() -> None:
    selected = torch.tensor([[True, True, False, False]])
    adversary = torch.tensor([[False, False, True, False]])
    same = torch.full((1, 4, 3), 0.3)
    assert value(adversarial_disagreement(same, selected, adversary)) == 0.0
    differing = same.clone()
    differing[0, 2] = 0.9  # the adversary disagrees with both activated experts
    assert value(adversarial_disagreement(differing, selected, adversary)) == pytest.approx(0.36)
    other = same.clone()
    other[0, 3] = 0.9  # an unselected expert that was not drawn does not count
    assert value(adversarial_disagreement(other, selected, adversary)) == 0.0


def test_sample_adversary_draws_one_unselected_expert() -> None:
    g = torch.Generator().manual_seed(0)
    selected = torch.zeros(500, 4, dtype=torch.bool)
    selected[:, :2] = True
    adversary = sample_adversary(selected, g)
    assert (adversary.sum(-1) == 1).all()
    assert not (adversary & selected).any()
    counts = adversary.sum(0)
    assert counts[2] > 150  # both unselected experts get drawn
    assert counts[3] > 150
    assert not sample_adversary(torch.ones(3, 4, dtype=torch.bool), g).any()


def test_category_gate_reads_only_the_query_category() -> None:
    torch.manual_seed(0)
    model = CategoryMoE(make_spec()).eval()
    batch = make_batch()
    weights, selected = model.gate(batch)
    assert (selected.sum(-1) == model.top_k).all()
    assert torch.allclose(weights.sum(-1), torch.ones(B))
    assert (weights[~selected] == 0).all()
    other = replace(batch, dense=torch.randn(B, 5), seq_items=torch.zeros_like(batch.seq_items))
    assert torch.equal(model.gate(other)[0], weights)
    same_query = (batch.query_category == batch.query_category[0]).all(-1)
    assert torch.allclose(weights[same_query], weights[0].expand(int(same_query.sum()), -1))


# --- KFAtt --------------------------------------------------------------------------------


@pytest.mark.parametrize("freq_cap", [True, False])
def test_kfatt_without_behaviours_returns_the_global_prior(freq_cap: bool) -> None:
    torch.manual_seed(0)
    model = KFAtt(make_spec(), freq_cap=freq_cap).eval()
    batch = make_batch()
    empty = replace(batch, seq_kinds=torch.zeros_like(batch.seq_kinds))
    with torch.no_grad():
        estimate, prior = model.interest(empty)
        assert torch.allclose(estimate, prior, atol=1e-6)
        with_history, _ = model.interest(batch)
    has_history = batch.seq_mask.any(-1)
    assert not torch.allclose(with_history[has_history], prior[has_history])


def test_merge_duplicates() -> None:
    sensors = torch.tensor([[5, 7, 5, 5, 0]])
    mask = sensors > 0
    average, counts, first = merge_duplicates(sensors, mask)
    assert counts.tolist() == [[3, 1, 3, 3, 0]]
    assert first.tolist() == [[True, True, False, False, False]]
    values = torch.tensor([[[1.0], [10.0], [2.0], [3.0], [99.0]]])
    assert (average @ values)[0, :4, 0].tolist() == [2.0, 10.0, 2.0, 2.0]


def with_unique_first_behaviour(batch: RankingBatch, row: int) -> RankingBatch:
    """``batch`` where the first behaviour of ``row`` is the only one of its item and category."""
    items, categories = batch.seq_items.clone(), batch.seq_categories.clone()
    length = int(batch.seq_mask[row].sum())
    items[row, :length] = torch.arange(1, length + 1)
    categories[row, :length] = 8 + torch.arange(length) % 7
    categories[row, 0] = 7
    return replace(batch, seq_items=items, seq_categories=categories)


def duplicated(batch: RankingBatch, row: int, copies: int = 1) -> RankingBatch:
    """``batch`` with the first behaviour of ``row`` copied into its next padding slots."""
    length = int(batch.seq_mask[row].sum())
    fields = {}
    for name in ("seq_items", "seq_categories", "seq_kinds", "seq_age"):
        tensor = getattr(batch, name).clone()
        tensor[row, length : length + copies] = tensor[row, 0]
        fields[name] = tensor
    return replace(batch, **fields)


def history_row(batch: RankingBatch, max_length: int) -> int:
    lengths = batch.seq_mask.sum(-1)
    return int(((lengths > 1) & (lengths <= max_length)).nonzero()[0])


@pytest.mark.parametrize("freq_key", ["category", "item"])
def test_kfatt_frequency_capping_merges_repeats(freq_key: str) -> None:
    batch = make_batch()
    row = history_row(batch, L - 1)
    batch = with_unique_first_behaviour(batch, row)
    copy = duplicated(batch, row)
    torch.manual_seed(0)
    capped = KFAtt(make_spec(), freq_cap=True, freq_key=freq_key).eval()
    torch.manual_seed(0)
    base = KFAtt(make_spec(), freq_cap=False).eval()
    with torch.no_grad():
        # no random error: a sensor's weight is its systematic precision whatever its count
        last = capped.attention.random_log_var[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.fill_(-30.0)
        capped_change = (capped.interest(copy)[0] - capped.interest(batch)[0])[row].abs().max()
        base_change = (base.interest(copy)[0] - base.interest(batch)[0])[row].abs().max()
    assert value(capped_change) < 1e-5
    assert value(base_change) > 1e-4


def test_kfatt_frequency_capping_bounds_a_frequent_behaviour() -> None:
    batch = make_batch()
    row = history_row(batch, L - 12)
    batch = with_unique_first_behaviour(batch, row)
    frequent = duplicated(batch, row, copies=11)
    changes = {}
    for freq_cap in (True, False):
        torch.manual_seed(0)  # same initial weights for both
        model = KFAtt(make_spec(), freq_cap=freq_cap).eval()
        with torch.no_grad():
            change = model.interest(frequent)[0][row] - model.interest(batch)[0][row]
        changes[freq_cap] = value(change.norm())
    # 12 repeats weigh 12x in KFAtt-base but at most (sigma^2 + sigma'^2) / sigma^2 in KFAtt-freq
    assert 0 < changes[True] < changes[False]


def test_kfatt_rejects_unknown_freq_key() -> None:
    with pytest.raises(InvalidInputError, match="freq_key"):
        KFAtt(make_spec(), freq_key="brand")


@pytest.mark.parametrize("model_class", MODELS, ids=lambda c: c.name)
def test_scores_200_candidates_each_on_its_own(model_class: type[RankingModel]) -> None:
    """A served request's 200 candidates in one batch: one probability per candidate, and a
    candidate's score does not depend on which others share its batch (speed: ``shopsearch bench
    ranking``)."""
    torch.manual_seed(0)
    model = model_class(make_spec()).eval()
    batch = make_batch(200, seed=1)
    with torch.no_grad():
        whole = model(batch)
        chunks = [model(batch.index(rows)) for rows in torch.arange(200).split(64)]
    for task in ("click", "cart", "purchase"):
        p = whole.of(task)
        assert p.shape == (200,)
        assert torch.isfinite(p).all()
        assert ((p >= 0) & (p <= 1)).all()
        assert torch.allclose(torch.cat([c.of(task) for c in chunks]), p, atol=1e-6)
