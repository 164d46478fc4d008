"""Inference fast paths of the ranking models compute what the reference computation does.

The serving speed-ups (issue 5: 200 candidates in at most 2 ms) must not change the scores:

* :class:`~shopsearch.ranking.models.layers.InputFold` (first layers folded into the
  embedding tables, used in eval mode without autograd) against the plain layers (the same
  model with autograd on, which takes the reference path);
* a behaviour sequence shared by every row (one row expanded, as at serving) against the same
  sequence materialised per row;
* SEQ+MD's hand-written GRU steps against ``nn.GRU``, CDAN-W's one-matmul dense fields against
  one projection per group, CDAN-W's folded fields (every group's projection in one
  :class:`~shopsearch.ranking.models.layers.InputFold`) against the per-group projections,
  :func:`fast_tanh` against ``torch.tanh``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from shopsearch.ranking.base import TASKS, FeatureSpec, RankingBatch, RankingModel, TaskOutputs
from shopsearch.ranking.models.layers import fast_tanh
from shopsearch.ranking.models.seq_md import SeqMD
from shopsearch.ranking.registry import torch_model_class
from shopsearch.transfer.cdan_w import CDANW

L = 12
FAST_MODELS = [
    "dnn",
    "esmm",
    "mmoe",
    "ple",
    "seq-md",
    "aw-moe",
    "kfatt",
    "cdan-w",
    "pgtl",
    "shared-bottom",
    "star",
    "mmoe-domain",
]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_spec(use_sparse: bool = True) -> FeatureSpec:
    return FeatureSpec(
        dense_names=("bm25", "log_price", "ctr_prior", "user_history", "extra"),
        sparse_names=("domain", "brand", "leaf") if use_sparse else (),
        sparse_cardinalities=(3, 9, 11) if use_sparse else (),
        n_items=40,
        n_categories=11,
        category_depth=2,
        n_domains=3,
        seq_len=L,
        market_driven=("log_price", "ctr_prior"),
    )


def make_batch(size: int, spec: FeatureSpec, seed: int = 0) -> RankingBatch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, L + 1, (size,), generator=g)
    mask = torch.arange(L).unsqueeze(0) < lengths.unsqueeze(1)
    seq_items = torch.randint(1, 40, (size, L), generator=g) * mask
    n_sparse = len(spec.sparse_names)
    sparse = (
        torch.stack(
            [torch.randint(0, c, (size,), generator=g) for c in spec.sparse_cardinalities], dim=1
        )
        if n_sparse
        else torch.zeros(size, 0, dtype=torch.long)
    )
    zeros = torch.zeros(size)
    return RankingBatch(
        dense=torch.randn(size, len(spec.dense_names), generator=g),
        sparse=sparse,
        item=torch.randint(1, 40, (size,), generator=g),
        item_category=torch.randint(1, 11, (size, 2), generator=g),
        query_category=torch.randint(0, 11, (size, 2), generator=g),
        domain=torch.randint(0, 3, (size,), generator=g),
        position=torch.zeros(size, dtype=torch.long),
        seq_items=seq_items,
        seq_categories=(seq_items % 10 + 1) * mask,
        seq_kinds=torch.randint(1, 4, (size, L), generator=g) * mask,
        seq_age=torch.rand(size, L, generator=g) * mask,
        group=torch.zeros(size, dtype=torch.long),
        click=zeros,
        cart=zeros,
        purchase=zeros,
        weight=torch.ones(size),
    )


def shared_sequence(batch: RankingBatch, row: int = 0) -> RankingBatch:
    """``batch`` with every row's sequence row ``row``'s, expanded (stride 0) as at serving."""
    names = ("seq_items", "seq_categories", "seq_kinds", "seq_age")
    size = len(batch)
    return replace(batch, **{n: getattr(batch, n)[row : row + 1].expand(size, -1) for n in names})


def materialised(batch: RankingBatch) -> RankingBatch:
    names = ("seq_items", "seq_categories", "seq_kinds", "seq_age")
    return replace(batch, **{n: getattr(batch, n).contiguous() for n in names})


def perturbed(name: str, spec: FeatureSpec) -> RankingModel:
    """The model with every parameter moved off its initial value (zero-init parts too)."""
    torch.manual_seed(0)
    model = torch_model_class(name)(spec).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def max_difference(a: TaskOutputs, b: TaskOutputs) -> float:
    return max(float((a.of(t) - b.of(t)).abs().max()) for t in TASKS)


def reference(model: RankingModel, batch: RankingBatch) -> TaskOutputs:
    """The reference computation: with autograd on, no inference fast path applies."""
    with torch.enable_grad():
        out = model(materialised(batch))
    return TaskOutputs(
        p_click=out.p_click.detach(), p_cart=out.p_cart.detach(), p_purchase=out.p_purchase.detach()
    )


@pytest.mark.parametrize("use_sparse", [True, False], ids=["sparse", "no-sparse"])
@pytest.mark.parametrize("name", FAST_MODELS)
def test_fast_path_matches_reference(name: str, use_sparse: bool) -> None:
    spec = make_spec(use_sparse)
    model = perturbed(name, spec)
    batch = make_batch(48, spec)
    expected = reference(model, batch)
    with torch.inference_mode():
        fast = model(batch)
    assert max_difference(fast, expected) < 1e-5


@pytest.mark.parametrize("name", FAST_MODELS)
def test_shared_sequence_matches_materialised(name: str) -> None:
    spec = make_spec()
    model = perturbed(name, spec)
    batch = shared_sequence(make_batch(48, spec), row=5)
    expected = reference(model, batch)
    with torch.no_grad():
        fast = model(batch)
    assert max_difference(fast, expected) < 1e-5


@pytest.mark.parametrize("name", ["mmoe", "ple"])
def test_fold_cache_follows_weight_updates(name: str) -> None:
    """The folded tables and stacked weights are rebuilt when a weight changes (no stale
    scores after training)."""
    spec = make_spec()
    model = perturbed(name, spec)
    batch = make_batch(32, spec)
    with torch.no_grad():
        before = model(batch)
        for p in model.parameters():
            p.mul_(1.1)
        after = model(batch)
    assert max_difference(before, after) > 1e-4
    assert max_difference(after, reference(model, batch)) < 1e-5


@pytest.mark.parametrize(("levels", "n_specific"), [(1, 1), (3, 2)])
def test_ple_fast_path_at_other_depths(levels: int, n_specific: int) -> None:
    """One CGC level (no shared gate anywhere) and a middle level with a shared gate and
    several experts per task take the same inference path as the default two levels."""
    spec = make_spec()
    torch.manual_seed(0)
    model = torch_model_class("ple")(spec, levels=levels, n_specific=n_specific).eval()  # type: ignore[call-arg]
    batch = make_batch(40, spec)
    with torch.no_grad():
        fast = model(batch)
    assert max_difference(fast, reference(model, batch)) < 1e-5


def test_seq_md_task_states_are_the_gru() -> None:
    spec = make_spec()
    model = perturbed("seq-md", spec)
    assert isinstance(model, SeqMD)
    shared = torch.randn(20, model.hidden)
    steps = torch.cat(
        [
            shared.unsqueeze(1).expand(20, len(TASKS), model.hidden),
            model.task_embeddings.detach().unsqueeze(0).expand(20, -1, -1),
        ],
        dim=-1,
    )
    with torch.no_grad():
        expected, _ = model.gru(steps)
        states = model.task_states(shared)
    for index, state in enumerate(states):
        assert torch.allclose(state, expected[:, index], atol=1e-6)


def test_cdan_w_dense_fields_are_the_group_projections() -> None:
    spec = make_spec()
    model = perturbed("cdan-w", spec)
    assert isinstance(model, CDANW)
    dense = torch.randn(16, len(spec.dense_names))
    with torch.no_grad():
        fields = model.dense_fields(dense)
        for index, (proj, (_, cols)) in enumerate(
            zip(model.dense_proj, model.dense_groups, strict=True)
        ):
            assert torch.allclose(fields[:, index], proj(dense[:, cols]), atol=1e-6)


@pytest.mark.parametrize("use_sparse", [True, False])
def test_cdan_w_folded_fields_are_the_group_projections(use_sparse: bool) -> None:
    spec = make_spec(use_sparse)
    model = perturbed("cdan-w", spec)
    assert isinstance(model, CDANW)
    batch = make_batch(32, spec)
    with torch.enable_grad():  # the reference path: one projection per group
        expected = model.fields(batch).detach()
    with torch.no_grad():
        folded = model.fields(batch)
        assert torch.allclose(folded, expected, atol=1e-5)
        for proj in model.embedded_proj:  # the fold's tables follow weight updates
            proj.weight.add_(0.5)
    with torch.enable_grad():
        expected = model.fields(batch).detach()
    with torch.no_grad():
        assert torch.allclose(model.fields(batch), expected, atol=1e-5)


def test_fast_tanh_is_tanh() -> None:
    x = torch.linspace(-30, 30, 10_001)
    assert torch.allclose(fast_tanh(x), torch.tanh(x), atol=1e-6)
    y = torch.randn(64, requires_grad=True)
    fast_tanh(y).sum().backward()  # differentiable (no in-place op on a saved tensor)
    assert y.grad is not None
    assert torch.allclose(y.grad, 1 - torch.tanh(y.detach()) ** 2, atol=1e-5)
