"""The cross-encoder teacher on a tiny BERT written here (the shipped MiniLM's tokenizer, random
weights): it learns graded relevance, resumes from its checkpoints, saves and loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.relevance.cross_encoder import CrossEncoderTeacher, TeacherConfig

#: Queries and texts scored after training: relevant, irrelevant, relevant.
PROBE = (["lamp", "lamp", "drill"], ["grey lamp made of oak", "grey rug made of oak", "grey drill"])
WORDS = ["sofa", "lamp", "kettle", "drill", "chair", "table", "rug", "fan"]


def _pairs(n: int = 160) -> tuple[list[str], list[str], list[float]]:
    """Graded pairs: 3 when the text names the query's product, 1 otherwise."""
    rng = np.random.default_rng(0)
    queries, texts, grades = [], [], []
    for i in range(n):
        query = WORDS[i % len(WORDS)]
        other = WORDS[(i + 1 + int(rng.integers(len(WORDS) - 1))) % len(WORDS)]
        relevant = bool(rng.random() < 0.5)  # whatever the query
        texts.append(f"grey {query if relevant else other} made of oak")
        queries.append(query)
        grades.append(3.0 if relevant else 1.0)
    return queries, texts, grades


FAST = TeacherConfig(max_length=16, batch_size=16, epochs=30, lr=3e-3, warmup=0.1, dropout=0.0,
                     checkpoint_every=5, threads=1)  # fmt: skip


def test_the_teacher_learns_graded_relevance(tiny_bert: Path, tmp_path: Path) -> None:
    queries, texts, grades = _pairs(96)
    steps: list[int] = []
    teacher = CrossEncoderTeacher(FAST, tiny_bert).fit(
        queries, texts, grades, progress=lambda done, total, loss: steps.append(done)
    )
    assert steps == list(range(1, 181))  # 30 epochs of 6 batches
    assert (teacher.low_, teacher.high_) == (1.0, 3.0)
    scores = teacher.score(*PROBE)
    assert scores[0] > scores[1] + 0.3
    assert scores[2] > scores[1]
    assert teacher.score([], []).shape == (0,)
    teacher.save(tmp_path / "teacher")
    loaded = CrossEncoderTeacher.load(tmp_path / "teacher")
    again = loaded.score(*PROBE)
    np.testing.assert_allclose(scores, again, atol=1e-5)


def test_a_stopped_job_resumes_where_it_stopped(tiny_bert: Path, tmp_path: Path) -> None:
    queries, texts, grades = _pairs(64)
    config = TeacherConfig(**{**FAST.__dict__, "epochs": 3, "dropout": 0.1})
    whole = CrossEncoderTeacher(config, tiny_bert).fit(queries, texts, grades)
    stopped = TeacherConfig(**{**config.__dict__, "budget_s": 1e-9})
    first = CrossEncoderTeacher(stopped, tiny_bert).fit(queries, texts, grades, tmp_path / "ck")
    assert first.steps_ == 1  # the budget stopped it after one step, with a checkpoint
    assert (tmp_path / "ck" / "checkpoint.pt").exists()
    done: list[int] = []
    resumed = CrossEncoderTeacher(config, tiny_bert).fit(
        queries, texts, grades, tmp_path / "ck", lambda d, t, loss: done.append(d)
    )
    assert done[0] == 2  # went on from step 2
    assert resumed.steps_ == whole.steps_ == 12
    probe = (["sofa", "fan"], ["grey sofa made of oak", "grey rug"])
    np.testing.assert_allclose(resumed.score(*probe), whole.score(*probe), atol=1e-5)
    other = TeacherConfig(**{**config.__dict__, "lr": 1e-3})
    with pytest.raises(WorkspaceError, match="checkpoint of other judgments or settings"):
        CrossEncoderTeacher(other, tiny_bert).fit(queries, texts, grades, tmp_path / "ck")


def test_bad_inputs_are_refused(tiny_bert: Path, tmp_path: Path) -> None:
    teacher = CrossEncoderTeacher(FAST, tiny_bert)
    with pytest.raises(InvalidInputError, match="at least one"):
        teacher.fit([], [], [])
    with pytest.raises(InvalidInputError, match="give as many"):
        teacher.fit(["a"], ["b", "c"], [1.0])
    with pytest.raises(InvalidInputError, match="nothing to learn"):
        teacher.fit(["a", "b"], ["c", "d"], [2.0, 2.0])
    with pytest.raises(InvalidInputError, match="finite"):
        teacher.fit(["a", "b"], ["c", "d"], [1.0, float("nan")])
    with pytest.raises(InvalidInputError, match="max_length >= 8"):
        TeacherConfig(max_length=4)
    with pytest.raises(WorkspaceError, match="train --stage relevance"):
        CrossEncoderTeacher.load(tmp_path / "nothing")
    long_query = "sofa " * 2000  # cut to max_length tokens, not refused
    one = TeacherConfig(**{**FAST.__dict__, "epochs": 1})
    fitted = CrossEncoderTeacher(one, tiny_bert).fit(*_pairs(32))
    assert np.isfinite(fitted.score([long_query, "диван"], ["grey sofa", "沙发"])).all()
