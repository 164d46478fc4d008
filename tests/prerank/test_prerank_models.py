"""The light pre-ranker: each objective learns from tiny logged lists, the Margin InfoNCE loss
against its formula, save/load, products added after training, and the pipeline stage."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.prerank.base import PrerankConfig
from shopsearch.prerank.hccp import LightPreranker
from shopsearch.prerank.network import listnet, margin_infonce
from shopsearch.prerank.samples import StreamList, upstream_features

COLOURS = ("red", "blue", "green", "black")
ITEMS = ("shoe", "hat", "sock", "scarf", "glove")


def _catalog() -> pd.DataFrame:
    rows = [
        ("us", f"{c}-{i}-{v}", f"{c} {i} model {v}", "acme", ["Apparel", i])
        for c, i, v in itertools.product(COLOURS, ITEMS, range(3))
    ]
    return pd.DataFrame(rows, columns=["domain", "product_id", "title", "brand", "category"])


def _lists(seed: int, pairs: list[tuple[str, str]], ranked: bool = True) -> list[StreamList]:
    """Requests for ``colour item``: the matching products clicked or bought, others of the
    item shown, the rest retrieved only; retrieval scores carry no signal."""
    rng = np.random.default_rng(seed)
    ids = _catalog()["product_id"].tolist()
    out = []
    for n, (colour, item) in enumerate(pairs * 3):
        order = rng.permutation(len(ids))
        pids = [ids[i] for i in order]
        levels = np.array(
            [
                (5 if p.endswith("-0") else 3) if p.startswith(f"{colour}-{item}-")
                else (2 if f"-{item}-" in p else int(rng.random() < 0.2))
                for p in pids
            ],
            np.int8,
        )  # fmt: skip
        value = np.where(levels >= 3, 1.0, np.where(levels == 2, 0.3, 0.0))
        ranker = np.where(levels >= 1, value + rng.normal(0, 0.05, len(pids)), np.nan)
        up = upstream_features(rng.random(len(pids)), np.arange(1, len(pids) + 1), len(pids))
        out.append(
            StreamList(
                f"r{n}", f"{colour} {item}", "us", pids, levels, up,
                (ranker if ranked else np.full(len(pids), np.nan)).astype(np.float32),
            )
        )  # fmt: skip
    return out


TRAIN = [(c, i) for c, i in itertools.product(COLOURS, ITEMS) if (c, i) != ("green", "hat")]


def _held_out_gap(model: LightPreranker) -> float:
    """Mean score of ``green hat`` products minus the others', for the unseen query."""
    catalog = _catalog()
    keys = list(zip(catalog["domain"], catalog["product_id"], strict=True))
    rows = model.rows_of(keys, lambda i: keys[i][1])
    scores = model.score("green hat", rows, np.zeros((len(keys), 2), np.float32))
    match = catalog["product_id"].str.startswith("green-hat-").to_numpy()
    return float(scores[match].mean() - scores[~match].mean())


def _fit(objective: str, epochs: int = 20) -> LightPreranker:
    config = PrerankConfig(
        objective=objective,  # type: ignore[arg-type]
        buckets=4096, dim=16, epochs=epochs, batch_requests=8, lr=1e-2, level0_sample=20,
        random_negatives=8, seed=1,
    )  # fmt: skip
    return LightPreranker(config).fit(_lists(0, TRAIN), _catalog())


@pytest.mark.parametrize("objective", ["hccp", "exposed"])
def test_hccp_and_exposed_learn_the_text_match_of_an_unseen_query(objective: str) -> None:
    model = _fit(objective)
    assert model.steps_ == model.planned_steps_
    assert _held_out_gap(model) > 0.3


def test_distill_imitates_the_ranker() -> None:
    model = _fit("distill")
    (one,) = _lists(7, [("red", "shoe")])[:1]
    ranked = np.flatnonzero(np.isfinite(one.ranker))
    keys = [("us", one.product_ids[i]) for i in ranked]
    rows = model.rows_of(keys, lambda i: keys[i][1])
    scores = model.score(one.query, rows, one.upstream[ranked])
    agreement = pd.Series(scores).corr(pd.Series(one.ranker[ranked]), method="spearman")
    assert agreement > 0.5


def test_save_load_scores_the_same_and_new_products_get_rows(tmp_path) -> None:
    config = PrerankConfig(buckets=4096, dim=16, epochs=2)
    model = LightPreranker(config).fit(_lists(0, TRAIN), _catalog())
    model.save(tmp_path / "prerank")
    loaded = LightPreranker.load(tmp_path / "prerank")
    keys = [("us", "red-shoe-0"), ("us", "new-1")]
    texts = {1: "red shoe brand new"}
    up = np.zeros((2, 2), np.float32)
    a = model.score("red shoe", model.rows_of(keys, texts.__getitem__), up)
    b = loaded.score("red shoe", loaded.rows_of(keys, texts.__getitem__), up)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert ("us", "new-1") in loaded.index_
    with pytest.raises(WorkspaceError, match="train one"):
        LightPreranker.load(tmp_path / "nothing")


def test_what_an_objective_cannot_learn_from_is_a_clear_error() -> None:
    unranked = _lists(0, TRAIN[:2], ranked=False)
    with pytest.raises(InvalidInputError, match="'rank' stream"):
        LightPreranker(PrerankConfig(objective="distill")).fit(unranked, _catalog())
    with pytest.raises(InvalidInputError, match="objective"):
        PrerankConfig(objective="nope")  # type: ignore[arg-type]


def test_margin_infonce_is_its_formula() -> None:
    scores = torch.tensor([2.0, 1.0, 0.5, -1.0])
    levels = np.array([3, 1, 1, 0], np.int8)
    m, t = 0.2, 0.5
    got = margin_infonce(scores, levels, m, t).item()
    s = scores.numpy() / t

    def term(i: int, lower: list[int]) -> float:
        pos = s[i] - m / t
        return -(pos - math.log(math.exp(pos) + sum(math.exp(s[j]) for j in lower)))

    level3 = term(0, [1, 2, 3])
    level1 = (term(1, [3]) + term(2, [3])) / 2
    assert got == pytest.approx(level3 + level1, rel=1e-5)


def test_listnet_is_zero_gradient_when_the_model_agrees() -> None:
    ranker = np.array([1.0, -1.0, np.nan], np.float32)  # standardised: +1, -1
    agree = torch.tensor([1.0, -1.0, 5.0], requires_grad=True)
    loss = listnet(agree, ranker, 1.0)
    loss.backward()
    assert agree.grad is not None
    np.testing.assert_allclose(agree.grad.numpy(), [0.0, 0.0, 0.0], atol=1e-6)
