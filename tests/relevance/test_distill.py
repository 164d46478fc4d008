"""Distillation end to end on tiny data: the teacher (a tiny BERT), stacking with a side scorer
on held-out queries, teacher labels for unlabeled pairs, the student, and the fitted gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.relevance.cross_encoder import TeacherConfig
from shopsearch.relevance.distill import (
    DistillConfig,
    LabelledPairs,
    RelevanceGate,
    TeacherStack,
    distill,
    split_queries,
)
from shopsearch.relevance.student import StudentConfig

WORDS = ["sofa", "lamp", "kettle", "drill", "chair", "table", "rug", "fan"]
TEXTS = {("d", w): f"grey {w} made of oak" for w in WORDS}


def _labelled() -> LabelledPairs:
    """Every query word judged on every product: grade 1 when the title names it, else 0."""
    queries, keys, grades = [], [], []
    for q in WORDS:
        for k in TEXTS:
            queries.append(q)
            keys.append(k)
            grades.append(1.0 if k[1] == q else 0.0)
    return LabelledPairs(queries, keys, grades, relevant_at=0.5)


def _names_the_query(queries: list[str], keys: list[tuple[str, str]]) -> np.ndarray:
    """A side scorer: 1 when the product's title holds the query's word."""
    return np.array([float(q in TEXTS[k]) for q, k in zip(queries, keys, strict=True)])


def test_distill_trains_stacks_labels_and_gates(tiny_bert: Path, tmp_path: Path) -> None:
    config = DistillConfig(
        teacher=TeacherConfig(max_length=16, batch_size=16, epochs=3, lr=3e-3, threads=1),
        student=StudentConfig(buckets=2**12, dim=16, hidden=32, epochs=60, batch_size=16, lr=1e-2),
        holdout_share=0.25,
    )
    unlabeled = [("grey sofa", ("d", "sofa")), ("grey sofa", ("d", "rug"))]
    done = distill(_labelled(), TEXTS, unlabeled, [_names_the_query], ["names_query"], config,
                   checkpoint_dir=tmp_path / "ckpt", teacher_folder=tiny_bert)  # fmt: skip
    report = done.report
    assert report["holdout_queries"] == 2
    assert report["fit_queries"] == 6
    assert report["labelled_pairs"] == 64 + 2
    assert report["unlabeled_pairs"] == 2
    assert done.stack.names == ["cross_encoder", "names_query"]
    # the side scorer is the truth here: the stack leans on it and fits the held-out grades
    assert done.stack.weights[1] > 0.5
    assert report["holdout_rmse_01"]["stacked"] < 0.1 < report["holdout_rmse_01"]["mean"]
    scores = done.student.score(["fan", "fan"], [TEXTS[("d", "fan")], TEXTS[("d", "sofa")]])
    assert scores[0] > scores[1]
    assert 0 < done.gate.threshold <= scores[0]
    assert done.gate.fitted_on == len(done.holdout.grades) == 16
    labels = done.teacher_scores(["fan"], [("d", "fan")], TEXTS, [_names_the_query])
    assert 0.5 < labels[0] <= 1.0


def test_gate_fit_save_and_load(tmp_path: Path) -> None:
    gate = RelevanceGate.fit([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0, 0, 0, 1, 1, 1])
    assert gate.threshold == pytest.approx(0.7)
    assert RelevanceGate.fit([0.1, 0.9], [1, 1]).threshold == 0.0  # nothing looks irrelevant
    gate.save(tmp_path)
    assert RelevanceGate.load(tmp_path) == gate
    with pytest.raises(WorkspaceError):
        RelevanceGate.load(tmp_path / "none")
    with pytest.raises(InvalidInputError):
        RelevanceGate.fit([], [])


def test_stack_split_and_bad_input() -> None:
    stack = TeacherStack.fit(["a", "b"], np.array([[0, 1], [1, 0], [1, 1.0]], np.float32),
                             [0.5, 0.25, 0.75])  # fmt: skip
    predicted = stack.predict(np.array([[0, 0], [9, 9]], np.float32)).tolist()
    assert predicted == pytest.approx([0.0, 1.0], abs=1e-6)
    fit, held = split_queries([f"q{i}" for i in range(10)] * 2, 0.2, 1, seed=0)
    assert len(held) == 1
    assert len(fit) == 9
    assert not fit & held
    with pytest.raises(InvalidInputError):
        LabelledPairs(["q"], [], [1.0], 0.5)
    with pytest.raises(InvalidInputError):
        DistillConfig(holdout_share=1.0)
    one_query = LabelledPairs(["q"], [("d", "sofa")], [1.0], 0.5)
    with pytest.raises(InvalidInputError, match="two queries"):
        distill(one_query, TEXTS)
    with pytest.raises(InvalidInputError, match="without text"):
        distill(_labelled(), TEXTS, [("q", ("d", "nope"))])
