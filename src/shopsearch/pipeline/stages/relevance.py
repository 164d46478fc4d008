"""The ``relevance`` stage: the distilled relevance student scores every retrieval candidate,
and its gate keeps irrelevant ones out of the top.

Loads the bundle's ``relevance/`` folder (:class:`~shopsearch.relevance.serving.RelevanceModel`:
the BERT2DNN student and its fitted gate) and computes the student's product vectors of the
whole catalog once, when the engine loads (a few seconds per hundred thousand products; not
saved in the bundle because the catalog changes under a running engine — a product added or
edited since gets its vector computed on its first search). Per search: one query vector, a
gather of the candidates' rows, two small matrix products.

Adds the column ``relevance`` (the student's probability of relevance) per candidate, which
``--explain`` shows and the ranking model reads as its feature ``relevance`` when it was trained
with it. The gate (``[relevance] gate``) with the bundle's threshold (or ``[relevance]
threshold``): ``demote`` puts the candidates below it after every other candidate (each group
keeps its order; later stages re-order only the first group; their scores are set below the
lowest kept one, ``retrieve.fused`` keeps retrieval's; when every candidate is below, none is
demoted), ``drop`` removes them (``total`` no longer counts them; facets still count the
matched set), ``off`` only scores. Without a ``relevance/`` folder, or with ``[relevance]
enabled = false``, the candidates pass unscored (``identity``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import RelevanceSettings
from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState
from shopsearch.ranking.feature_names import RELEVANCE
from shopsearch.relevance.gate import gate_order

if TYPE_CHECKING:  # torch: imported only when a bundle has a relevance model
    from shopsearch.relevance.serving import ProductScorer, RelevanceModel

#: The bundle folder of the relevance model.
RELEVANCE_DIR = "relevance"


class _Loaded:
    """A loaded model with its product vectors."""

    def __init__(self, model: RelevanceModel, products: ProductLookup) -> None:
        from shopsearch.relevance.serving import ProductScorer, row_text

        self.model = model
        self.products = products
        self.text = row_text
        self.scorer: ProductScorer = ProductScorer(
            model.student, ((key, row_text(row)) for key, row in products.items())
        )


@STAGES.register()
class RelevanceStage(Stage):
    """Score the candidates with the relevance student and gate them (or pass them on).

    Args:
        loaded: the model with its product vectors (``None``: the identity).
        settings: the gate's mode and threshold.
        why: the note of the identity (why there is no model).
    """

    name = "relevance"

    def __init__(
        self,
        loaded: _Loaded | None = None,
        settings: RelevanceSettings | None = None,
        why: str = "no relevance model in this bundle (train one: shopsearch train --stage "
        "relevance): candidates not scored",
    ) -> None:
        self.loaded = loaded
        self.settings = settings or RelevanceSettings()
        self.why = why

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The bundle's relevance model; the identity when it has none or it is switched off.

        Raises:
            WorkspaceError: the folder holds no readable student or gate.
        """
        settings = context.settings.relevance
        if not settings.enabled:
            return cls(None, settings, "[relevance] enabled = false: candidates not scored")
        folder = None if context.bundle is None else context.bundle / RELEVANCE_DIR
        if folder is None or not folder.is_dir():
            return cls(None, settings)
        from shopsearch.relevance.serving import RelevanceModel

        return cls(_Loaded(RelevanceModel.load(folder), context.products), settings)

    @property
    def threshold(self) -> float:
        """The threshold the gate uses: ``[relevance] threshold``, else the fitted one."""
        if self.settings.threshold is not None or self.loaded is None:
            return self.settings.threshold or 0.0
        return self.loaded.model.gate.threshold

    def run(self, state: SearchState) -> Outcome:
        """Add the ``relevance`` column and apply the gate."""
        loaded = self.loaded
        if loaded is None:
            return Outcome("identity", self.why)
        n = len(state.candidates)
        state.gated_from = None  # this run's gate decides
        if not n:
            return Outcome("ran", "no candidates")
        keys = state.candidates.keys
        texts = [loaded.text(row) for row in loaded.products.many(keys)]
        scores = loaded.scorer.score(state.query.text, keys, texts)
        state.add_column(RELEVANCE, scores)
        mode, threshold = self.settings.gate, self.threshold
        fitted = loaded.model.gate
        if self.settings.threshold is not None:
            source = "set in [relevance] threshold"
        elif fitted.fitted_on:
            source = f"fitted on {fitted.fitted_on} judged pairs"
        else:
            source = "not fitted: no judgments; set [relevance] threshold"
        order, below = gate_order(scores, threshold, mode)
        head = f"student scored {n}; gate {mode} at {threshold:.3f} ({source}): "
        if mode == "off":
            return Outcome("ran", head + f"{below} below, not moved")
        if not below:
            return Outcome("ran", head + "none below")
        kept = n - below
        old = state.candidates.scores
        if mode == "drop":
            state.reorder(order, old[order])
            state.total = max(state.total - below, kept)
            return Outcome("ran", head + f"{below} dropped, {kept} kept")
        if not kept:
            return Outcome("ran", head + f"all {n} below: none demoted, order kept")
        floor = float(old[order[:kept]].min())
        demoted = floor - 1.0 - np.arange(below, dtype=np.float32)
        state.reorder(order, np.concatenate([old[order[:kept]], demoted]))
        state.gated_from = kept
        return Outcome("ran", head + f"{below} demoted below the other {kept}")
