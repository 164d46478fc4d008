"""Diversity re-rankers on tiny lists: facet similarity, MMR, DPP and PODM-MI."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.rerank.diversity import RERANKERS, facet_similarity, load_reranker
from shopsearch.rerank.diversity.base import FACETS, blend
from shopsearch.rerank.diversity.dpp import DPPReranker
from shopsearch.rerank.diversity.mmr import MMRReranker
from shopsearch.rerank.diversity.podm_mi import PODMMIReranker
from shopsearch.rerank.diversity.samples import N_CONTROLS, LoggedLists, redundancy_above


def _row(brand: str, color: str, category: str = "Home > Sofas") -> dict[str, object]:
    return {
        "category": category.split(" > "),
        "brand": brand,
        "attributes": f'{{"color": "{color}", "size": "L"}}',
    }


#: Three near-duplicates (same brand and colour) first, then two different products.
ROWS = [
    _row("acme", "grey"),
    _row("acme", "grey"),
    _row("acme", "grey"),
    _row("bolt", "blue"),
    _row("cove", "red", "Home > Chairs"),
]
SCORES = np.array([5.0, 4.9, 4.8, 4.0, 3.0])


def test_facet_similarity_is_per_facet_and_positive_semidefinite() -> None:
    sim = facet_similarity([*ROWS, None])
    assert sim.shape == (len(FACETS), 6, 6)
    category, brand, attributes = sim
    assert category[0, 3] == 1
    assert category[0, 4] == 0
    assert brand[0, 1] == 1
    assert brand[0, 3] == 0
    assert attributes[0, 1] == 1
    assert attributes[0, 3] == 0.5
    assert not sim[:, 5].any()  # an unknown product is like nothing
    assert np.linalg.eigvalsh(blend(sim)).min() > -1e-9


def test_mmr_keeps_the_ranked_order_at_lambda_one_and_diversifies_below() -> None:
    sim = facet_similarity(ROWS)
    assert MMRReranker(1.0).rerank(SCORES, sim).order.tolist() == [0, 1, 2, 3, 4]
    order = MMRReranker(0.5).rerank(SCORES, sim).order.tolist()
    assert order[:2] == [0, 3]  # the other brand before the duplicates
    with pytest.raises(InvalidInputError, match="lam=2"):
        MMRReranker(2.0)


def test_dpp_greedy_gains_are_the_log_determinants_of_the_chosen_prefixes() -> None:
    sim = facet_similarity(ROWS)
    dpp = DPPReranker(theta=0.6)
    result = dpp.rerank(SCORES, sim)
    kernel = dpp.kernel(SCORES, sim)
    order = result.order.tolist()
    assert sorted(order) == [0, 1, 2, 3, 4]
    picked = np.isfinite(result.utility).sum()
    for size in range(1, picked + 1):
        chosen = order[:size]
        logdet = np.linalg.slogdet(kernel[np.ix_(chosen, chosen)])[1]
        assert logdet == pytest.approx(result.utility[:size].sum(), abs=1e-6)
    # each greedy step is the best single addition (checked by brute force)
    for size in range(1, picked):
        prefix = order[:size]
        best = max(
            (i for i in range(5) if i not in prefix),
            key=lambda i: np.linalg.slogdet(kernel[np.ix_([*prefix, i], [*prefix, i])])[1],
        )
        assert order[size] == best
    assert set(order[:3]) >= {3, 4}  # the duplicates do not fill the top


def test_depth_leaves_the_rest_in_ranked_order() -> None:
    sim = facet_similarity(ROWS)
    order = MMRReranker(0.0).rerank(SCORES, sim, depth=2).order.tolist()
    assert order[2:] == sorted(order[2:])
    assert len(order) == 5


def _synthetic_lists(seed: int = 0, lists: int = 600, k: int = 10) -> LoggedLists:
    """Two kinds of users: 'b*' users' clicks fall with redundancy (brand), 'f*' users' do not."""
    rng = np.random.default_rng(seed)
    users = [f"b{i}" for i in range(4)] + [f"f{i}" for i in range(4)]
    user = rng.integers(0, len(users), lists)
    brands = rng.integers(0, 3, (lists, k))
    category = np.zeros((lists, k), np.int64)
    attrs = rng.integers(0, 4, (lists, k, 1))
    from shopsearch.rerank.diversity.base import similarity_of_codes

    mask = np.ones((lists, k), dtype=bool)
    red = redundancy_above(similarity_of_codes(category, brands, attrs), mask)
    position = np.tile(np.arange(k), (lists, 1))
    browsing = np.array([u.startswith("b") for u in users])[user]
    logit = 0.5 - 0.3 * position - np.where(browsing[:, None], 3.0, 0.0) * red[..., 1]
    click = (rng.random((lists, k)) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return LoggedLists(
        users=users,
        user=user.astype(np.int64),
        position=position,
        base_rank=position + 1.0,
        redundancy=red.astype(np.float32),
        control=np.zeros((lists, k, N_CONTROLS), np.float32),
        click=click,
        mask=mask,
    )


def test_podm_mi_learns_who_tires_of_sameness_and_round_trips(tmp_path: Path) -> None:
    lists = _synthetic_lists()
    losses: list[float] = []
    model = PODMMIReranker(dims=2, epochs=25, batch_lists=64, confounded=())
    assert model.fit(lists, progress=lambda _e, _n, loss: losses.append(loss)) is model
    assert len(losses) == 25
    assert losses[-1] < losses[0]
    strength = {u: model.preference(u)[0] for u in lists.users}
    assert min(strength[f"b{i}"] for i in range(4)) > max(strength[f"f{i}"] for i in range(4))
    brand_weight = model.preference("b0")[1][FACETS.index("brand")]
    assert brand_weight > 0.5  # it is the brand these users tire of

    rows = [_row("acme", "grey"), _row("acme", "blue"), _row("acme", "red"), _row("bolt", "grey")]
    sim = facet_similarity(rows)
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    browsing = model.rerank(scores, sim, "b0").order.tolist()
    assert browsing.index(3) < 3  # the other brand is lifted for a browsing user
    assert model.utility_matrix(sim, "b0").shape == (len(FACETS), 4, 4)

    folder = model.save(tmp_path / "rerank")
    loaded = load_reranker(folder)
    assert isinstance(loaded, PODMMIReranker)
    for user in ("b0", "f0", "someone-new", None):
        assert loaded.rerank(scores, sim, user).order.tolist() == (
            model.rerank(scores, sim, user).order.tolist()
        )
    assert not list(folder.glob("*.pkl"))


def test_an_unfitted_podm_mi_says_so() -> None:
    with pytest.raises(NotFittedError, match="train --stage rerank"):
        PODMMIReranker().rerank(SCORES, facet_similarity(ROWS), "u1")
    with pytest.raises(InvalidInputError, match="confounded"):
        PODMMIReranker(confounded=("colour",))


@pytest.mark.parametrize("name", ["mmr", "dpp", "podm-mi"])
def test_every_reranker_returns_a_permutation_and_is_registered(name: str) -> None:
    cls = RERANKERS.get(name)
    model = cls()
    if isinstance(model, PODMMIReranker):
        model.fit(_synthetic_lists(lists=40), progress=None)
    for n in (0, 1, 5):
        order = model.rerank(SCORES[:n], facet_similarity(ROWS[:n]), "b0").order.tolist()
        assert sorted(order) == list(range(n))
    assert list(itertools.islice(RERANKERS.names(), 3))
