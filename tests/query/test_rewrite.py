"""Query rewriting by cycle-consistent translation (``rewrite``, ``rewrite-forward``), the RM3
baseline (``rm3``) and the word postings that tell when a query needs a rewrite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from shopsearch.query import rewrite as rewrite_module
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis
from shopsearch.query.data import QueryData
from shopsearch.query.models import QueryModels
from shopsearch.query.postings import WordPostings, fold, words
from shopsearch.query.rewrite import CycleRewrite, ForwardRewrite
from shopsearch.query.rm3 import RM3Expansion
from shopsearch.query.translation import (
    EOS,
    ModelShape,
    Translator,
    Vocabulary,
    cycle_losses,
    pad_batch,
)

from .logs import query_data

PRODUCTS = [
    ("us", "k1", "Acme Stainless Steel Kettle", "Acme", "Kitchen > Kettles"),
    ("us", "k2", "Bolt Stainless Steel Kettle", "Bolt", "Kitchen > Kettles"),
    ("us", "s1", "Acme Bluetooth Speaker", "Acme", "Audio > Speakers"),
    ("us", "s2", "Bolt Bluetooth Speaker", "Bolt", "Audio > Speakers"),
    ("us", "e1", "Acme Wireless Earbuds", "Acme", "Audio > Earbuds"),
    ("us", "c1", "Bolt Cotton Sofa", "Bolt", "Furniture > Sofas"),
    ("gb", "g1", "Acme Grey Cotton Sofa", "Acme", "Furniture > Sofas"),
    ("gb", "g2", "Bolt Velvet Armchair", "Bolt", "Furniture > Chairs"),
]
#: (market, query, clicked products, times typed)
LOG = [
    ("us", "ss kettle", ["k1", "k2"], 3),
    ("us", "stainless steel kettle", ["k1"], 2),
    ("us", "bt speaker", ["s1", "s2"], 3),
    ("us", "bluetooth speaker", ["s2"], 2),
    ("us", "wless earbuds", ["e1"], 2),
    ("us", "couch", ["c1"], 2),
    ("gb", "sofa", ["g1"], 2),
    ("gb", "velvet armchair", ["g2"], 1),
]
SMALL = {"dim": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "steps": 120,
         "batch_size": 16, "learning_rate": 5e-3, "min_count": 1, "min_weight": 0.05,
         "budget_ms": 1000.0}  # fmt: skip


def _data() -> QueryData:
    return query_data(PRODUCTS, LOG)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted(one_thread: None) -> CycleRewrite:
    return CycleRewrite(**SMALL).fit(_data())  # type: ignore[arg-type]


def _analyze(component: CycleRewrite | RM3Expansion, query: str, domain: str | None = "us"
             ) -> QueryAnalysis:  # fmt: skip
    analysis = QueryAnalysis(original=query, text=query, domain=domain)
    component.apply(analysis)
    return analysis


def test_postings_count_products_with_every_word() -> None:
    postings = WordPostings.from_catalog(_data().catalog)
    assert postings.count(["stainless", "kettle"], "us") == 2
    assert postings.count(["Kettles".lower()], "us") == 2  # the plural folded like the title's
    assert postings.count(["ss", "kettle"], "us") == 0
    assert postings.count(["sofa"], "us") == 1
    assert postings.count(["sofa"]) == 2
    assert postings.count(["sofa"], "fr") == 0
    assert postings.count([]) == 0
    assert (fold("boots"), fold("glass"), fold("bus")) == ("boot", "glass", "bus")
    assert words("Ünïcode 2-Door, wi_fi") == ["ünïcode", "2", "door", "wi", "fi"]


def test_a_query_is_rewritten_into_a_title_like_phrase(fitted: CycleRewrite) -> None:
    head = _analyze(fitted, "ss kettle")
    assert head.rewrites, head.notes
    text, weight = head.rewrites[0]
    assert "stainless steel kettle" in text
    assert "acme" not in text
    assert "bolt" not in text
    assert 0 < weight <= 1
    assert "precomputed" in head.notes["rewrite"]
    online = _analyze(fitted, "bt")  # never logged: decoded online
    assert "decoded online" in online.notes["rewrite"]
    assert any("bluetooth speaker" in t for t, _ in online.rewrites)


def test_queries_with_their_own_matches_are_not_rewritten(fitted: CycleRewrite) -> None:
    plain = _analyze(fitted, "stainless steel kettle")
    assert plain.rewrites == []
    assert "2 product(s) contain every word" in plain.notes["rewrite"]
    assert _analyze(fitted, "couch", "us").rewrites  # no US title says couch
    unknown = _analyze(fitted, "zzz qqq")
    assert unknown.rewrites == []
    assert "knows none of its words" in unknown.notes["rewrite"]


def test_head_queries_are_looked_up_not_decoded(
    fitted: CycleRewrite, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded a head query")

    monkeypatch.setattr(rewrite_module, "rewrite_batch", no_decoding)
    analysis = _analyze(fitted, "bt speaker")
    assert analysis.rewrites
    assert any("bluetooth" in text for text, _ in analysis.rewrites)
    assert set(fitted.head_["us"]) >= {"ss kettle", "bt speaker", "wless earbuds", "couch"}
    assert "velvet armchair" not in fitted.head_.get("gb", {})  # typed once, and it matches


def test_online_decoding_respects_its_budget(fitted: CycleRewrite) -> None:
    budget = fitted.budget_ms
    try:
        fitted.budget_ms = 1e-6
        late = _analyze(fitted, "bt")
        assert late.rewrites == []
        assert "skipped" in late.notes["rewrite"]
        fitted.budget_ms = 0
        off = _analyze(fitted, "bt")
        assert off.rewrites == []
        assert "online decoding is off" in off.notes["rewrite"]
        assert _analyze(fitted, "ss kettle").rewrites  # precomputed ones need no budget
    finally:
        fitted.budget_ms = budget


def test_save_and_load_give_identical_rewrites(fitted: CycleRewrite, tmp_path: Path) -> None:
    models = QueryModels([fitted])
    models.save(tmp_path / "query")
    loaded = QueryModels.load(tmp_path / "query")
    assert loaded.names == ["rewrite"]
    for query in ("ss kettle", "bt", "ss", "bt speaker", "wless earbuds", "stainless kettle"):
        assert loaded.analyze(query, "us").rewrites == models.analyze(query, "us").rewrites
    again = loaded.components[0]
    assert isinstance(again, CycleRewrite)
    assert again.head_ == fitted.head_
    assert again.history_ == fitted.history_
    assert not list(tmp_path.rglob("*.pkl"))


def test_the_cycle_term_is_part_of_the_loss(one_thread: None) -> None:
    torch.manual_seed(0)
    shape = ModelShape(20, dim=16, heads=2, encoder_layers=1, decoder_layers=1, max_len=6,
                       dropout=0.0)  # fmt: skip
    forward, backward = Translator(shape), Translator(shape)
    queries = pad_batch([[5, 6, EOS], [7, EOS], [8, 9, EOS], [5, EOS]])
    titles = pad_batch([[10, 11, 12, EOS], [13, 14, EOS], [15, 16, EOS], [10, 17, EOS]])
    markets = torch.tensor([4, 4, 4, 4])

    def losses_and_grads(weight: float) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        for model in (forward, backward):
            model.zero_grad()
        generator = torch.Generator().manual_seed(1)
        losses = cycle_losses(forward, backward, queries, titles, markets, weight, 2, generator)
        losses["total"].backward()  # type: ignore[no-untyped-call]
        return losses, [p.grad.clone() for p in forward.parameters() if p.grad is not None]

    with_cycle, grads_cycle = losses_and_grads(0.5)
    without, grads_plain = losses_and_grads(0.0)
    assert "cycle" in with_cycle
    assert "cycle" not in without
    value = {name: float(loss.detach()) for name, loss in with_cycle.items()}
    plain = {name: float(loss.detach()) for name, loss in without.items()}
    assert value["cycle"] > 0
    assert value["forward"] == pytest.approx(plain["forward"])
    assert value["total"] != pytest.approx(plain["total"])
    # the cycle term also trains the forward model (through its sampled titles)
    assert any(not torch.allclose(a, b) for a, b in zip(grads_cycle, grads_plain, strict=True))


def test_the_forward_ablation_trains_without_the_cycle_term(
    fitted: CycleRewrite, one_thread: None
) -> None:
    ablation = ForwardRewrite(**{**SMALL, "steps": 40}).fit(_data())  # type: ignore[arg-type]
    assert QUERY_COMPONENTS.get("rewrite-forward") is ForwardRewrite
    assert ablation.cycle_weight == 0
    assert fitted.cycle_weight > 0
    assert all(np.isnan(ablation.history_["cycle"]))
    assert fitted.history_["step"] == [50, 100, 120]
    assert np.isfinite(fitted.history_["cycle"]).all()  # on from step 36 (30%)


@pytest.mark.parametrize(
    "query", ["", "   ", "x" * 10_000, "ss kettle " * 2_000, "日本語のクエリ", "🙂🙂", "\x00\n\t"]
)
def test_bad_input_never_crashes(fitted: CycleRewrite, rm3: RM3Expansion, query: str) -> None:
    for domain in ("us", None, "nowhere"):
        for component in (fitted, rm3):
            analysis = _analyze(component, query, domain)
            assert component.name in analysis.notes
            assert all(isinstance(t, str) and w > 0 for t, w in analysis.rewrites)


@pytest.fixture(scope="module")
def rm3() -> RM3Expansion:
    return RM3Expansion(fb_docs=3, fb_terms=4).fit(_data())


def test_rm3_expands_with_catalog_terms(rm3: RM3Expansion, tmp_path: Path) -> None:
    analysis = _analyze(rm3, "kettle")
    assert len(analysis.rewrites) == 1
    text, weight = analysis.rewrites[0]
    expansion = text.split()
    assert 0 < len(expansion) <= 4
    assert "kettle" not in expansion
    assert set(expansion) <= {"stainless", "steel", "acme", "bolt", "kitchen", "kettles", "made"}
    assert 0 < weight < 1
    gb = _analyze(rm3, "sofa", "gb")  # only the market's own products give feedback
    assert "grey" in gb.rewrites[0][0].split()
    assert "grey" not in _analyze(rm3, "sofa", "us").rewrites[0][0].split()
    assert _analyze(rm3, "the").rewrites == []  # stop words alone are not searched
    rm3.save(tmp_path / "rm3")
    loaded = RM3Expansion.load(tmp_path / "rm3")
    for query in ("kettle", "bluetooth speaker", "cotton sofa"):
        assert _analyze(loaded, query).rewrites == _analyze(rm3, query).rewrites


def test_vocabulary_round_trip() -> None:
    vocabulary = Vocabulary.build([["a", "b"], ["a"]], min_count=2, max_size=10, tokens=["<us>"])
    assert vocabulary.words[4:] == ["<us>", "a"]
    ids = vocabulary.encode(["a", "b", "a"], max_len=2)
    assert ids == [5, 3, EOS]
    assert vocabulary.decode(ids) == ["a"]
