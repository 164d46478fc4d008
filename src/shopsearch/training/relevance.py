"""Distil the relevance model from a workspace's judgments (or logs) and publish a bundle that
serves it (``shopsearch train --stage relevance``).

**Labelled pairs** (:func:`labelled_pairs`): the workspace's judgments when it has any (grades
rescaled to ``[0, 1]`` over the judged scale; relevant from the middle of the scale, as query
understanding reads judgments), else the graded outcome of every (query, product) the log
shows: purchase 1.0, add-to-cart 0.67, click 0.33, shown and not clicked 0 (the furthest any
showing of the pair reached); relevant from a click (0.33).

**Unlabeled pairs** (:func:`unlabeled_pairs`): every shown pair of the log, then the top
:data:`TOP_K` candidates of the current bundle's retrieval for each labelled or logged query,
until ``[relevance] max_pairs`` pairs in all (labelled ones included, at most half of them).

**The gate** is fitted on held-out judgments only. A model distilled from logs gets threshold
0 (nothing gated; :data:`UNFITTED` says why) unless ``[relevance] threshold`` sets one: the
student's score still reaches the ranking model and ``--explain``.

**Side scorers** for the teacher's stacking: the cosine of the query and the product under the
bundle's ``dense`` source (MiniLM, or what replaced it) when it has one. The lexical score is
not a side scorer: BM25 of a pair outside a search's result list is not something the lexical
index answers, and a re-implementation would not be the score the engine uses.

Then :func:`~shopsearch.relevance.distill.distill` (the teacher checkpoints into
``W/relevance-checkpoint/``, so a stopped job given the same data resumes; the folder is
removed after a successful run), and the new bundle — a copy of the current one — gets
``relevance/`` (student, gate, ``report.json``) and is published only if it loads and searches.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import Filters, ProductKey
from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.engine import RETRIEVAL_DIR
from shopsearch.pipeline.stages.relevance import RELEVANCE_DIR
from shopsearch.progress import Say
from shopsearch.relevance.cross_encoder import TeacherConfig
from shopsearch.relevance.distill import (
    DistillConfig,
    LabelledPairs,
    RelevanceGate,
    SideScorer,
    distill,
)
from shopsearch.relevance.serving import RelevanceModel, row_text
from shopsearch.relevance.student import StudentConfig
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.store.atomic import write_json
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.publish import publish_stage
from shopsearch.training.ranking import bundle_similarity

#: Retrieval candidates per query added as unlabeled pairs.
TOP_K = 20
#: The graded outcome of a shown pair, by the furthest interaction.
LOG_GRADES = {"purchase": 1.0, "add_to_cart": 0.67, "click": 0.33}
#: The folder of the teacher's checkpoints inside the workspace.
CHECKPOINT_DIR = "relevance-checkpoint"

Pair = tuple[str, ProductKey]
#: Why a model distilled from logs has no fitted gate.
UNFITTED = (
    "trained on logs, where a shown product nobody clicked is not a judgment of irrelevance "
    "(most shown products are not clicked, so a threshold fitted on clicks gates nearly every "
    "candidate); threshold 0: nothing is gated unless relevance.threshold is set; ingest "
    "judgments to fit one"
)


def labelled_pairs(workspace: Workspace, known: set[ProductKey], most: int) -> tuple[
    LabelledPairs, str
]:  # fmt: skip
    """The judged pairs (or the log's graded shown pairs) of products in ``known``, at most
    about ``most`` (whole queries drawn at random beyond that); and ``"judgments"`` or
    ``"events"``.

    Raises:
        InvalidInputError: neither judgments nor logged impressions, or judgments all of one
            grade.
    """
    judged = workspace.table("judgments").to_pandas()
    if not judged.empty:
        grades = judged["grade"].to_numpy(np.float64)
        low, high = float(grades.min()), float(grades.max())
        if high <= low:
            raise InvalidInputError(
                f"every judgment has grade {low}; the relevance model needs at least two grades"
            )
        rows = [(str(r.query), (str(r.domain), str(r.product_id)), (float(r.grade) - low)
                 / (high - low)) for r in judged.itertuples(index=False)]  # fmt: skip
        relevant_at, source = 0.5, "judgments"
    else:
        con = workspace.connect()
        kinds = " ".join(f"WHEN '{k}' THEN {g}" for k, g in LOG_GRADES.items())
        logged = con.execute(
            f"SELECT r.query, r.domain, i.product_id, max(CASE x.kind {kinds} ELSE 0.0 END) "
            "FROM impressions i JOIN requests r USING (request_id) LEFT JOIN interactions x "
            "ON x.request_id = i.request_id AND x.product_id = i.product_id "
            "GROUP BY r.query, r.domain, i.product_id ORDER BY 1, 2, 3"
        ).fetchall()
        if not logged:
            raise InvalidInputError(
                f"workspace {workspace.root} has no judgments and no logged impressions to "
                "learn relevance from; ingest judgments ('shopsearch ingest judgments FILE -w "
                "W') or events ('shopsearch ingest events FILE -w W')"
            )
        rows = [(str(q), (str(d), str(p)), float(g)) for q, d, p, g in logged]
        relevant_at, source = LOG_GRADES["click"], "events"
    rows = [row for row in rows if row[1] in known]
    if not rows:
        raise InvalidInputError(f"no {source} pair names a product of the catalog")
    rows = _cap(rows, most)
    return LabelledPairs([q for q, _, _ in rows], [k for _, k, _ in rows],
                         [g for _, _, g in rows], relevant_at), source  # fmt: skip


def _cap(
    rows: list[tuple[str, ProductKey, float]], most: int
) -> list[tuple[str, ProductKey, float]]:
    """Whole queries, drawn at random (seed 0), until ``most`` rows."""
    if len(rows) <= most:
        return rows
    queries = sorted({q for q, _, _ in rows})
    random.Random(0).shuffle(queries)
    count: dict[str, int] = {}
    for q, _, _ in rows:
        count[q] = count.get(q, 0) + 1
    chosen, total = set(), 0
    for q in queries:
        if total and total + count[q] > most:
            break
        chosen.add(q)
        total += count[q]
    return [row for row in rows if row[0] in chosen]


def unlabeled_pairs(
    workspace: Workspace,
    retrieval: HybridRetriever | None,
    queries: Sequence[tuple[str, str]],
    known: set[ProductKey],
    most: int,
    say: Say,
    labelled: set[Pair] | None = None,
) -> list[Pair]:
    """Every shown pair of the log, then the top :data:`TOP_K` candidates of ``retrieval``
    for each ``(query, domain)``, until ``most`` pairs (only products in ``known``, none of
    the ``labelled`` pairs)."""
    con = workspace.connect()
    shown = con.execute(
        "SELECT DISTINCT r.query, r.domain, i.product_id FROM impressions i "
        "JOIN requests r USING (request_id) ORDER BY 1, 2, 3"
    ).fetchall()
    skip = labelled or set()
    candidates = ((str(q), (str(d), str(p))) for q, d, p in shown)
    pairs = dict.fromkeys(pair for pair in candidates if pair[1] in known and pair not in skip)
    pairs = dict.fromkeys(list(pairs)[:most])
    say(f"{len(pairs)} shown (query, product) pairs from the log besides the labelled ones")
    if retrieval is None:
        return list(pairs)
    for searched, (query, domain) in enumerate(queries, 1):
        if len(pairs) >= most:
            say(f"stopped at {most} pairs (relevance.max_pairs)")
            break
        hits = retrieval.search(query, TOP_K, Filters(domain=domain or None))
        for key in hits.candidates.keys:
            if key in known and (query, key) not in skip:
                pairs[(query, key)] = None
        if searched % 500 == 0:
            say(f"retrieved the top {TOP_K} of {searched}/{len(queries)} queries: {len(pairs)} "
                "pairs")  # fmt: skip
    return list(pairs)[:most]


def dense_side(bundle: Path) -> tuple[list[SideScorer], list[str]]:
    """The dense cosine of the bundle's ``dense`` source as a side scorer (none without)."""
    similarity = bundle_similarity(bundle)
    if similarity is None:
        return [], []

    def cosine(queries: Sequence[str], keys: Sequence[ProductKey]) -> npt.NDArray[np.float32]:
        scores = similarity.scores_many(
            np.asarray(list(queries), dtype=object),
            np.asarray([k[0] for k in keys], dtype=object),
            np.asarray([k[1] for k in keys], dtype=object),
        )
        return scores.astype(np.float32)

    return [cosine], [f"dense_cosine:{similarity.space}"]


def distill_config(settings: Settings) -> DistillConfig:
    """The distillation settings of ``[relevance]``."""
    relevance = settings.relevance
    return DistillConfig(
        teacher=TeacherConfig(epochs=relevance.teacher_epochs, budget_s=relevance.teacher_budget_s),
        student=StudentConfig(epochs=relevance.student_epochs),
    )


def train_relevance_bundle(
    workspace: Workspace,
    settings: Settings,
    say: Say | None = None,
    config: DistillConfig | None = None,
) -> Path:
    """Distil the relevance model (teacher → student → gate) and publish a bundle with it.

    Args:
        workspace: whose judgments or logs are learned from.
        settings: ``[relevance]`` (budget, epochs, pair cap) and the check of the new bundle.
        say: progress messages.
        config: the distillation's settings (default: :func:`distill_config` of ``settings``).

    Raises:
        InvalidInputError: no products, or neither judgments nor logs, or judgments of fewer
            than two queries.
        WorkspaceError: no current bundle, a checkpoint of other data, or a new bundle that
            does not load.
    """
    tell = say or (lambda _message: None)
    old = current_bundle(workspace)
    compact_event_log(workspace)
    products = ProductLookup(workspace.table("products"))
    if not len(products):
        raise InvalidInputError(f"workspace {workspace.root} has no products; ingest some first")
    texts = {key: row_text(row) for key, row in products.items()}
    known = set(texts)
    most = settings.relevance.max_pairs
    labelled, source = labelled_pairs(workspace, known, most // 2)
    tell(f"{len(labelled.grades)} labelled pairs of {len(set(labelled.queries))} queries "
         f"({source})")  # fmt: skip
    queries = _queries(workspace, labelled)
    retrieval = HybridRetriever.load(old / RETRIEVAL_DIR)
    room = max(most - len(labelled.grades), 0)
    done = set(zip(labelled.queries, labelled.keys, strict=True))
    unlabeled = unlabeled_pairs(workspace, retrieval, queries, known, room, tell, done)
    side, side_names = dense_side(old)
    tell(f"side scorers for stacking: {', '.join(side_names) or 'none'}")
    checkpoint = workspace.root / CHECKPOINT_DIR
    distilled = distill(
        labelled, texts, unlabeled, side, side_names,
        config or distill_config(settings), checkpoint_dir=checkpoint, say=tell,
    )  # fmt: skip
    report = {**distilled.report, "trained_on": source, "side": side_names}
    gate = distilled.gate
    if source == "events":
        gate = RelevanceGate(0.0, 0)
        report["gate"] = UNFITTED
        tell(f"gate not fitted: {UNFITTED}")
    else:
        tell(f"gate threshold {gate.threshold:.3f} (fitted on {gate.fitted_on} held-out "
             "judged pairs)")  # fmt: skip

    def save(folder: Path) -> None:
        RelevanceModel(distilled.student, gate).save(folder)
        write_json(folder / "report.json", report)

    meta = {
        "relevance": {
            "trained_on": source,
            "labelled_pairs": report["labelled_pairs"],
            "gate_threshold": gate.threshold,
            "side": side_names,
        },
    }
    bundle = publish_stage(workspace, settings, old, RELEVANCE_DIR, save, meta, labelled.queries[0])
    shutil.rmtree(checkpoint, ignore_errors=True)
    return bundle


def _queries(workspace: Workspace, labelled: LabelledPairs) -> list[tuple[str, str]]:
    """Distinct ``(query, domain)`` of the labelled pairs, then of the log."""
    found = dict.fromkeys((q, k[0]) for q, k in zip(labelled.queries, labelled.keys, strict=True))
    logged = (
        workspace.connect()
        .execute("SELECT DISTINCT query, domain FROM requests ORDER BY 1, 2")
        .fetchall()
    )
    found.update(dict.fromkeys((str(q), str(d)) for q, d in logged))
    return list(found)


__all__ = [
    "LOG_GRADES",
    "TOP_K",
    "UNFITTED",
    "dense_side",
    "distill_config",
    "labelled_pairs",
    "train_relevance_bundle",
    "unlabeled_pairs",
]
