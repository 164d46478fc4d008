"""Query intent classification: the targets learned from the logs, MMAN (``intent``) and its
baselines (``query-majority``, ``intent-linear``, ``minilm-nearest``), saved and loaded, on
tiny data written here and a stand-in sentence encoder (words → vectors, with synonyms)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from shopsearch.errors import NotFittedError, WorkspaceError
from shopsearch.progress import Progress
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis
from shopsearch.query.data import QueryData
from shopsearch.query.intent_baselines import (
    LinearIntent,
    MiniLMNearestIntent,
    QueryMajorityIntent,
    leaf_name,
)
from shopsearch.query.intents import (
    MAX_WORDS,
    char_ngrams,
    intent_examples,
    query_key,
    query_words,
)
from shopsearch.query.mman import CHANNELS, CategoryMatcher, MMANConfig, MMANIntent, leaf_levels
from shopsearch.text.encoders import Encoder, FloatMatrix

from .logs import Search, query_data

SOFAS = "Furniture > Living Room > Sofas"
CHAIRS = "Furniture > Living Room > Armchairs"
KETTLES = "Kitchen > Appliances > Kettles"
SPEAKERS = "Electronics > Audio > Speakers"
DRILLS = "Tools > Power Tools > Drills"
PRODUCTS = [
    ("us", "s1", "Grey Cotton Sofa", "Acme", SOFAS),
    ("us", "s2", "Leather Sofa Bed", "Bolt", SOFAS),
    ("us", "a1", "Velvet Armchair", "Acme", CHAIRS),
    ("us", "k1", "Stainless Steel Kettle", "Acme", KETTLES),
    ("us", "k2", "Glass Electric Kettle", "Bolt", KETTLES),
    ("us", "b1", "Bluetooth Speaker", "Bolt", SPEAKERS),
    ("gb", "g1", "Cordless Drill Driver", "Acme", DRILLS),
    ("gb", "g2", "Grey Velvet Sofa", "Bolt", SOFAS),
]
#: (market, query, clicked products, times typed)
LOG = [
    ("us", "grey sofa", ["s1"], 6),
    ("us", "leather sofa", ["s2"], 5),
    ("us", "sofa bed", ["s2"], 4),
    ("us", "velvet armchair", ["a1"], 5),
    ("us", "armchair", ["a1"], 4),
    ("us", "steel kettle", ["k1"], 6),
    ("us", "electric kettle", ["k2"], 5),
    ("us", "kettle", ["k1", "k2"], 4),
    ("us", "bluetooth speaker", ["b1"], 6),
    ("us", "speaker", ["b1"], 4),
    ("gb", "cordless drill", ["g1"], 6),
    ("gb", "drill", ["g1"], 4),
    ("gb", "velvet sofa", ["g2"], 5),
    ("us", "grey", ["s1", "a1"], 2),  # one query, two leaves: shares of its requests
]
#: Words the stand-in encoder maps to one vector (what MiniLM does for near-synonyms).
SYNONYMS = {"couch": "sofas", "sofa": "sofas", "settee": "sofas", "boiler": "kettles"}


class SynonymEncoder(Encoder):
    """A sentence encoder stand-in: hashed words, synonyms sharing one vector."""

    name = "test-synonyms"
    config_keys: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.calls = 0

    @property
    def dim(self) -> int:
        return 48

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                word = SYNONYMS.get(word, word)
                h = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
                out[row, h % self.dim] += 1.0 if h & (1 << 31) else -1.0
            out[row, 0] += 0.01
        unit: FloatMatrix = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        return self._encode(texts)


def _data(log: Sequence[Search] = LOG) -> QueryData:
    return query_data(PRODUCTS, log)


SMALL = MMANConfig(
    dim=32, buckets=2**10, hidden=16, epochs=60, batch_size=16, lr=2e-2, word_dropout=0.3
)


@pytest.fixture(scope="module")
def mman() -> Iterator[MMANIntent]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield MMANIntent(SMALL, encoder=SynonymEncoder()).fit(_data())
    finally:
        torch.set_num_threads(threads)


def _top(component: MMANIntent | QueryMajorityIntent | LinearIntent | MiniLMNearestIntent,
         query: str, domain: str | None = "us") -> str | None:  # fmt: skip
    found = component.predict(query, domain)
    return found[0][0] if found else None


def test_query_words_fold_case_cut_length_and_keep_any_script() -> None:
    assert query_words("Grey  SOFA-bed, 2x") == ["grey", "sofa", "bed", "2x"]
    assert query_words("Диван серый") == ["диван", "серый"]
    assert query_words("") == []
    assert query_words("!!! ---") == []
    assert len(query_words("sofa " * 5000)) == MAX_WORDS
    assert query_words("x" * 10_000) == ["x" * 32]
    assert query_key(" Grey   Sofa ") == "grey sofa"
    assert char_ngrams("ab") == ["<a", "ab", "b>", "<ab", "ab>", "<ab>"]


def test_examples_are_shares_of_the_acting_requests_per_market_and_query() -> None:
    examples = intent_examples(_data())
    assert examples.leaves == sorted({p[4] for p in PRODUCTS})
    assert set(examples.markets) == {"us", "gb"}
    assert examples.leaves.index(DRILLS) in examples.markets["gb"]
    assert examples.leaves.index(DRILLS) not in examples.markets["us"]
    grey = examples.keys.index("grey")
    row = examples.targets[grey]
    assert row[examples.leaves.index(SOFAS)] == pytest.approx(1.0)
    assert row[examples.leaves.index(CHAIRS)] == pytest.approx(1.0)
    assert examples.requests[grey] == 2
    kettle = examples.keys.index("kettle")
    assert examples.targets[kettle].sum() == pytest.approx(1.0)  # both clicks in one leaf
    assert examples.leaves[examples.top()[examples.keys.index("drill")]] == DRILLS


def test_query_majority_knows_only_the_exact_logged_query() -> None:
    majority = QueryMajorityIntent().fit(_data())
    assert _top(majority, "Grey Sofa") == SOFAS
    assert _top(majority, "cordless drill", "gb") == DRILLS
    assert majority.predict("grey sofas") == []  # one letter off: never seen
    assert majority.predict("") == []


def test_linear_baseline_reads_character_ngrams() -> None:
    linear = LinearIntent().fit(_data())
    assert _top(linear, "steel kettle") == KETTLES
    assert _top(linear, "bluetoth speakers") == SPEAKERS  # unseen, misspelled
    found = linear.predict("velvet armchair")
    assert sum(p for _, p in found) <= 1.0 + 1e-6  # a softmax


def test_minilm_nearest_picks_the_closest_category_name() -> None:
    nearest = MiniLMNearestIntent(SynonymEncoder()).fit(_data())
    assert nearest.temperature_ in MiniLMNearestIntent.temperatures
    assert _top(nearest, "couch") == SOFAS  # the encoder's synonym of "Sofas"
    assert leaf_name(SOFAS) == "Furniture Living Room Sofas"


def test_leaf_levels_and_the_category_matcher() -> None:
    assert leaf_levels(DRILLS) == (["drills"], ["tools", "power"])
    leaves = [SOFAS, DRILLS]
    matcher = CategoryMatcher(leaves, {}, 4)
    match = matcher.match(["sofas", "drils", "zzz"], np.zeros((3, 4), np.float32))
    assert match.shape == (3, 2, len(CHANNELS))
    assert match[0, 0, 0] == pytest.approx(1.0)  # "sofas" is the leaf's own word
    assert match[1, 1, 0] > 0.5 > match[1, 0, 0]  # "drils" is close to "drills"
    assert match[2].max() == 0.0
    assert (match[:, :, 2:] == 0).all()  # no vectors: no semantic similarity


def test_mman_learns_logged_queries_and_generalises_by_characters_and_meaning(
    mman: MMANIntent,
) -> None:
    for _, query, clicked, _ in LOG[:-1]:
        domain = "gb" if query in ("cordless drill", "drill", "velvet sofa") else "us"
        expected = {p[4] for p in PRODUCTS if p[1] in clicked}
        assert _top(mman, query, domain) in expected, query
    assert _top(mman, "blutooth speakers") == SPEAKERS  # unseen, misspelled: char n-grams
    assert _top(mman, "cordles drills", "gb") == DRILLS
    assert _top(mman, "grey couch") == SOFAS  # "couch" never logged: semantic matching


def test_mman_keeps_to_the_searched_market(mman: MMANIntent) -> None:
    assert all(leaf in (DRILLS, SOFAS) for leaf, _ in mman.predict("kettle", "gb"))
    anywhere = mman.predict("cordless drill", None)
    assert anywhere
    assert anywhere[0][0] == DRILLS
    assert all(p >= MMANIntent.floor for _, p in anywhere)
    assert len(anywhere) <= MMANIntent.top_k


def test_mman_outputs_every_module(mman: MMANIntent) -> None:
    out = mman.forward([["grey", "sofa"], ["kettle"]], ["us", "us"])
    leaves = len(mman.leaves_)
    assert out["logits"].shape == (2, leaves)
    assert out["char"].shape == out["semantic"].shape == (2, leaves, 2, len(SMALL.kernels) + 1)
    assert out["sentence"].shape == (2, leaves)
    alpha = out["alpha"]
    assert torch.allclose(alpha.sum(1), torch.ones(2))
    assert alpha[1, 1] == 0.0  # padding gets no weight


def test_mman_answers_any_input_without_crashing(mman: MMANIntent) -> None:
    assert mman.predict("") == []
    assert mman.predict("   ?!  ") == []
    assert _top(mman, "sofa " * 2000) == SOFAS  # 10,000 characters
    found = mman.predict("диван 沙发 أريكة")  # no word of it known
    assert all(0.0 <= p <= 1.0 for _, p in found)
    assert _top(mman, "kettle", "nowhere") == KETTLES  # unknown market: every leaf


def test_components_round_trip_through_their_folders(mman: MMANIntent, tmp_path: Path) -> None:
    data = _data()
    fitted = [mman, QueryMajorityIntent().fit(data), LinearIntent().fit(data),
              MiniLMNearestIntent(SynonymEncoder()).fit(data)]  # fmt: skip
    queries = ["grey sofa", "blutooth speakers", "drill", "zzz"]
    for component in fitted:
        folder = tmp_path / component.name
        component.save(folder)
        loaded = QUERY_COMPONENTS.get(component.name).load(folder)
        if isinstance(loaded, MiniLMNearestIntent):
            loaded.encoder = SynonymEncoder()
        for query in queries:
            before, after = component.predict(query, "us"), loaded.predict(query, "us")  # type: ignore[attr-defined]
            assert [c for c, _ in before] == [c for c, _ in after], (component.name, query)
            assert np.allclose([p for _, p in before], [p for _, p in after], atol=1e-5)


def test_apply_fills_the_analysis_and_its_note(mman: MMANIntent) -> None:
    analysis = QueryAnalysis(original="Grey Sofa", text="grey sofa", domain="us")
    mman.apply(analysis)
    assert analysis.intents[0][0] == SOFAS
    assert analysis.notes["intent"].startswith(f"{SOFAS} (")


def test_unfitted_and_missing_components_say_so(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        MMANIntent(encoder=SynonymEncoder()).predict("sofa")
    for name in ("intent", "query-majority", "intent-linear", "minilm-nearest"):
        with pytest.raises(WorkspaceError, match="train --stage query"):
            QUERY_COMPONENTS.get(name).load(tmp_path / "empty")


def test_a_log_without_categories_predicts_nothing() -> None:
    data = _data()
    data.catalog["category"] = ""
    data.outcomes["category"] = ""
    component = MMANIntent(SMALL, encoder=SynonymEncoder()).fit(data)
    assert component.predict("grey sofa", "us") == []
    assert QueryMajorityIntent().fit(data).predict("grey sofa") == []
    assert LinearIntent().fit(data).predict("grey sofa") == []


def test_only_mman_is_trained_by_default() -> None:
    assert not QUERY_COMPONENTS.get("intent").baseline
    for name in ("query-majority", "intent-linear", "minilm-nearest"):
        assert QUERY_COMPONENTS.get(name).baseline


def test_a_repeated_query_is_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    majority = QueryMajorityIntent().fit(_data())
    calls: list[tuple[str, ...]] = []
    original = majority.probabilities

    def counted(words: Sequence[str], domain: str | None) -> object:
        calls.append(tuple(words))
        return original(words, domain)

    monkeypatch.setattr(majority, "probabilities", counted)
    first = majority.predict("Grey Sofa", "us")
    again = majority.predict("grey   sofa!", "us")  # the same words
    assert first == again
    assert calls == [("grey", "sofa")]
    majority.predict("grey sofa", "gb")  # another market is another question
    assert len(calls) == 2
