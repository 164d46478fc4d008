"""The BERT2DNN student on tiny data: hashed features, soft labels, distillation from scores,
the precomputed product side, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.relevance.student import BERT2DNNStudent, StudentConfig, features, soft_labels
from shopsearch.text.hashed import HashedFeaturizer

WORDS = ["sofa", "lamp", "kettle", "drill", "chair", "table", "rug", "fan", "desk", "bed"]
SMALL = StudentConfig(buckets=2**12, dim=16, hidden=32, epochs=40, batch_size=32, lr=1e-2)


def _pairs() -> tuple[list[str], list[str], list[float]]:
    """Every (query, title) of the words, scored by a stand-in teacher: 0.95 when the title
    names the query's product, 0.05 when it does not."""
    queries, texts, scores = [], [], []
    for q in WORDS:
        for t in WORDS:
            queries.append(f"{q}")
            texts.append(f"oak {t} by acme")
            scores.append(0.95 if q == t else 0.05)
    return queries, texts, scores


def test_features_and_soft_labels() -> None:
    featurizer = HashedFeaturizer(2**12)
    assert features(featurizer, "Grey Sofa") == features(featurizer, "grey  sofa!")
    assert features(featurizer, "Диван sofa") == features(featurizer, "sofa")
    assert features(featurizer, "") == []
    assert len(features(featurizer, "sofa " * 2000)) < 1000  # the first 512 characters
    labels = soft_labels([0.0, 0.5, 0.9, 1.0], temperature=2.0)
    assert labels[1] == pytest.approx(0.5)
    assert 0.5 < labels[2] < 0.9  # softened towards 0.5
    assert np.isfinite(labels).all()
    assert soft_labels([0.9], 1.0)[0] == pytest.approx(0.9, abs=1e-6)


@pytest.fixture(scope="module")
def student() -> BERT2DNNStudent:
    return BERT2DNNStudent(SMALL).fit(*_pairs())


def test_the_student_learns_the_teachers_ranking(student: BERT2DNNStudent) -> None:
    scores = student.score(["lamp", "lamp", "desk"], ["oak lamp by acme", "oak rug by acme",
                                                      "oak desk by acme"])  # fmt: skip
    assert scores[0] > scores[1] + 0.3
    assert scores[2] > scores[1] + 0.3
    assert student.steps_ == student.planned_steps_ == 40 * 4
    assert student.score([], []).shape == (0,)


def test_the_product_side_is_computed_once(student: BERT2DNNStudent, tmp_path: Path) -> None:
    titles = [f"oak {w} by acme" for w in WORDS]
    vectors = student.product_vectors(titles)
    assert vectors.shape == (len(WORDS), SMALL.dim)
    by_vectors = student.score_vectors("kettle", vectors)
    np.testing.assert_allclose(by_vectors, student.score(["kettle"] * len(WORDS), titles),
                               atol=1e-6)  # fmt: skip
    assert WORDS[int(by_vectors.argmax())] == "kettle"
    # Query and product share one side: the query's vector is the text's product vector.
    np.testing.assert_allclose(student.query_vector("oak kettle by acme"),
                               vectors[[WORDS.index("kettle")]], atol=1e-6)  # fmt: skip
    student.save(tmp_path / "student")
    loaded = BERT2DNNStudent.load(tmp_path / "student")
    np.testing.assert_allclose(loaded.score_vectors("kettle", vectors), by_vectors, atol=1e-6)


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="at least one"):
        BERT2DNNStudent(SMALL).fit([], [], [])
    with pytest.raises(InvalidInputError, match="give as many"):
        BERT2DNNStudent(SMALL).fit(["a"], ["b"], [0.1, 0.2])
    with pytest.raises(InvalidInputError, match="must be > 0"):
        StudentConfig(temperature=0)
    with pytest.raises(WorkspaceError, match="train --stage relevance"):
        BERT2DNNStudent.load(tmp_path / "none")
