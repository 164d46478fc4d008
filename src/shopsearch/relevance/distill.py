"""Distillation end to end: the teacher, its stacking, the labels, the student and the gate.

BERT2DNN's recipe on our data (:func:`distill`):

1. The labelled pairs' queries are split: most train the cross-encoder
   (:class:`~.cross_encoder.CrossEncoderTeacher`); ``holdout_share`` of them (at most
   ``holdout_max``) are held out.
2. **Teacher stacking.** On the held-out queries' labelled pairs a linear model combines the
   cross-encoder's score with the caller's other scorers (``side``: e.g. bi-encoder cosine and
   lexical scores, which this layer cannot build itself) into one grade
   (:class:`TeacherStack`). The stack's weights are fitted on queries the cross-encoder never saw.
3. The stacked teacher labels every pair: the labelled ones and the unlabeled ones the caller
   gives (pairs shown in the logs, top retrieval candidates), and the
   :class:`~.student.BERT2DNNStudent` learns from those labels.
4. **The gate** (:class:`RelevanceGate`): on the held-out labelled pairs, an isotonic fit of
   "relevant" (grade at or above ``relevant_at``) on the student's score; the threshold is the
   lowest student score at which a pair is at least as likely relevant as not.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.progress import Say
from shopsearch.relevance.cross_encoder import CrossEncoderTeacher, TeacherConfig
from shopsearch.relevance.student import BERT2DNNStudent, StudentConfig

F32 = npt.NDArray[np.float32]
#: Another scorer of (query, product) pairs for teacher stacking: ``(queries, keys) -> [n]``.
SideScorer = Callable[[Sequence[str], Sequence[ProductKey]], F32]
_GATE = "gate.json"


@dataclass(frozen=True)
class LabelledPairs:
    """(query, product, grade) triples; grades on ``[0, 1]`` (the format's scale rescaled).

    Attributes:
        queries: one query per pair.
        keys: one product per pair.
        grades: the grade of each pair, ``0`` irrelevant to ``1`` the best grade.
        relevant_at: the grade at which a pair counts as relevant.
    """

    queries: list[str]
    keys: list[ProductKey]
    grades: list[float]
    relevant_at: float

    def __post_init__(self) -> None:
        if not (len(self.queries) == len(self.keys) == len(self.grades)) or not self.grades:
            raise InvalidInputError(
                f"{len(self.queries)} queries, {len(self.keys)} products and "
                f"{len(self.grades)} grades: give as many of each, at least one"
            )

    def subset(self, rows: Sequence[int]) -> LabelledPairs:
        """The pairs at ``rows``."""
        return LabelledPairs(
            [self.queries[i] for i in rows],
            [self.keys[i] for i in rows],
            [self.grades[i] for i in rows],
            self.relevant_at,
        )


@dataclass(frozen=True)
class DistillConfig:
    """Settings of :func:`distill`.

    Attributes:
        teacher: the cross-encoder's training.
        student: the student's sizes and training.
        holdout_share: share of the labelled queries held out of the cross-encoder's training
            for the stacking and the gate.
        holdout_max: most held-out queries.
        seed: seed of the hold-out draw.
    """

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    holdout_share: float = 0.2
    holdout_max: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.holdout_share < 1 or self.holdout_max < 1:
            raise InvalidInputError(
                f"holdout_share={self.holdout_share}, holdout_max={self.holdout_max}: use "
                "0 < holdout_share < 1 and holdout_max >= 1"
            )


@dataclass
class TeacherStack:
    """A linear blend of the cross-encoder's score and other scorers' into one grade."""

    names: list[str]
    weights: list[float]
    intercept: float

    @classmethod
    def fit(cls, names: Sequence[str], features: F32, grades: Sequence[float]) -> Self:
        """Least squares of ``grades`` on ``features`` (columns named ``names``)."""
        from sklearn.linear_model import LinearRegression

        model = LinearRegression().fit(features, np.asarray(grades, np.float64))
        return cls(list(names), [float(w) for w in model.coef_], float(model.intercept_))

    def predict(self, features: F32) -> F32:
        """The blended grade, clipped to ``[0, 1]``."""
        blended = features @ np.asarray(self.weights, np.float32) + self.intercept
        return np.asarray(np.clip(blended, 0.0, 1.0), np.float32)


@dataclass
class RelevanceGate:
    """Candidates whose student score is below ``threshold`` count as irrelevant.

    Attributes:
        threshold: the lowest student score at which a pair is at least as likely relevant as
            not (fitted on held-out judgments); ``0``: no pair is gated.
        fitted_on: how many judged pairs the threshold was fitted on.
    """

    threshold: float
    fitted_on: int

    @classmethod
    def fit(cls, scores: npt.ArrayLike, relevant: npt.ArrayLike) -> Self:
        """The threshold where an isotonic fit of ``relevant`` on ``scores`` reaches 0.5."""
        from sklearn.isotonic import IsotonicRegression

        x = np.asarray(scores, np.float64)
        y = np.asarray(relevant, np.float64)
        if not len(x):
            raise InvalidInputError("the gate needs judged pairs to fit its threshold on")
        iso = IsotonicRegression(out_of_bounds="clip").fit(x, y)
        grid = np.unique(x)
        likely = grid[iso.predict(grid) >= 0.5]
        threshold = float(likely.min()) if len(likely) and likely.min() > grid.min() else 0.0
        return cls(threshold, len(x))

    def save(self, path: Path) -> None:
        """``gate.json`` in ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        (path / _GATE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Self:
        """The gate :meth:`save` wrote.

        Raises:
            WorkspaceError: ``path`` holds no gate.
        """
        try:
            body = json.loads((path / _GATE).read_text())
            return cls(float(body["threshold"]), int(body["fitted_on"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WorkspaceError(f"{path} holds no readable relevance gate: {exc}") from exc


@dataclass
class Distilled:
    """What :func:`distill` built, and what it measured on the way (``report``)."""

    teacher: CrossEncoderTeacher
    stack: TeacherStack
    student: BERT2DNNStudent
    gate: RelevanceGate
    holdout: LabelledPairs
    report: dict[str, Any]
    #: The stacked teacher's label of every pair the student learned from.
    labels: dict[tuple[str, ProductKey], float] = field(default_factory=dict)

    def teacher_scores(
        self, queries: Sequence[str], keys: Sequence[ProductKey],
        texts: dict[ProductKey, str], side: Sequence[SideScorer] = (),
    ) -> F32:  # fmt: skip
        """The stacked teacher's grade of each (query, product) pair."""
        return self.stack.predict(_features(self.teacher, queries, keys, texts, side))


def _features(
    teacher: CrossEncoderTeacher,
    queries: Sequence[str],
    keys: Sequence[ProductKey],
    texts: dict[ProductKey, str],
    side: Sequence[SideScorer],
) -> F32:
    columns = [teacher.score(queries, [texts[k] for k in keys], batch_size=256)]
    columns += [np.asarray(scorer(queries, keys), np.float32).reshape(len(keys))
                for scorer in side]  # fmt: skip
    return np.column_stack(columns).astype(np.float32)


def split_queries(
    queries: Sequence[str], share: float, most: int, seed: int
) -> tuple[set[str], set[str]]:
    """The distinct queries split into (training, held out): ``share`` of them (at most
    ``most``, at least one when there are two) held out, drawn with ``seed``."""
    distinct = sorted(set(queries))
    random.Random(seed).shuffle(distinct)
    held = min(most, int(len(distinct) * share)) if len(distinct) > 1 else 0
    held = max(held, 1) if len(distinct) > 1 else 0
    return set(distinct[held:]), set(distinct[:held])


def distill(
    labelled: LabelledPairs,
    texts: dict[ProductKey, str],
    unlabeled: Sequence[tuple[str, ProductKey]] = (),
    side: Sequence[SideScorer] = (),
    side_names: Sequence[str] = (),
    config: DistillConfig | None = None,
    checkpoint_dir: Path | None = None,
    say: Say | None = None,
    teacher_folder: Path | None = None,
) -> Distilled:
    """Train the teacher, stack it, label every pair, train the student and fit the gate.

    ``teacher_folder``: the pretrained encoder the teacher starts from (default: the shipped
    MiniLM).

    Raises:
        InvalidInputError: fewer than two labelled queries, a product without text, or side
            scorers without one name each.
    """
    cfg = config or DistillConfig()
    tell = say or (lambda _message: None)
    if len(side_names) != len(side):
        raise InvalidInputError(f"{len(side)} side scorers but {len(side_names)} names")
    missing = [k for k in labelled.keys if k not in texts][:3]
    missing += [k for _, k in unlabeled if k not in texts][:3]
    if missing:
        raise InvalidInputError(f"products without text: {missing}")
    fit_queries, held = split_queries(
        labelled.queries, cfg.holdout_share, cfg.holdout_max, cfg.seed
    )
    if not held:
        raise InvalidInputError("the relevance model needs judgments of at least two queries")
    fit = labelled.subset([i for i, q in enumerate(labelled.queries) if q in fit_queries])
    holdout = labelled.subset([i for i, q in enumerate(labelled.queries) if q in held])
    tell(f"teacher: fine-tuning MiniLM as a cross-encoder on {len(fit.grades)} judged pairs "
         f"of {len(fit_queries)} queries")  # fmt: skip
    teacher = CrossEncoderTeacher(cfg.teacher, teacher_folder).fit(
        fit.queries, [texts[k] for k in fit.keys], fit.grades, checkpoint_dir=checkpoint_dir
    )
    tell(f"stacking the teacher on {len(holdout.grades)} pairs of {len(held)} held-out queries")
    hold_features = _features(teacher, holdout.queries, holdout.keys, texts, side)
    names = ["cross_encoder", *side_names]
    stack = TeacherStack.fit(names, hold_features, holdout.grades)
    alone = TeacherStack.fit(names[:1], hold_features[:, :1], holdout.grades)
    pairs = list(dict.fromkeys([*zip(labelled.queries, labelled.keys, strict=True), *unlabeled]))
    tell(f"labelling {len(pairs)} pairs with the stacked teacher")
    pair_queries = [q for q, _ in pairs]
    pair_keys = [k for _, k in pairs]
    labels = stack.predict(_features(teacher, pair_queries, pair_keys, texts, side))
    tell(f"student: BERT2DNN on {len(pairs)} teacher-labelled pairs")
    student = BERT2DNNStudent(cfg.student).fit(pair_queries, [texts[k] for k in pair_keys], labels)
    student_hold = student.score(holdout.queries, [texts[k] for k in holdout.keys])
    relevant = np.asarray(holdout.grades) >= labelled.relevant_at - 1e-9
    gate = RelevanceGate.fit(student_hold, relevant)
    grades = np.asarray(holdout.grades)

    def rmse(predicted: npt.ArrayLike) -> float:
        return float(np.sqrt(np.mean((np.asarray(predicted) - grades) ** 2)))

    report = {
        "fit_pairs": len(fit.grades),
        "fit_queries": len(fit_queries),
        "holdout_pairs": len(holdout.grades),
        "holdout_queries": len(held),
        "labelled_pairs": len(pairs),
        "unlabeled_pairs": len(pairs) - len(set(zip(labelled.queries, labelled.keys, strict=True))),
        "stack": asdict(stack),
        "holdout_rmse_01": {
            "cross_encoder_linear": rmse(alone.predict(hold_features[:, :1])),
            "stacked": rmse(stack.predict(hold_features)),
            "mean": rmse(np.full(len(grades), grades.mean())),
        },
        "teacher_steps": [teacher.steps_, teacher.planned_steps_],
        "student_steps": [student.steps_, student.planned_steps_],
        "gate_threshold": gate.threshold,
        "gate_irrelevant_below_share": float(np.mean(student_hold < gate.threshold)),
    }
    labelled_by_teacher = dict(zip(pairs, labels.tolist(), strict=True))
    return Distilled(teacher, stack, student, gate, holdout, report, labelled_by_teacher)


__all__ = [
    "DistillConfig",
    "Distilled",
    "LabelledPairs",
    "RelevanceGate",
    "SideScorer",
    "TeacherStack",
    "distill",
    "split_queries",
]
