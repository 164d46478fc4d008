"""The ``allocate`` stage: traffic allocation after re-ranking (MODRL-TA).

Present when the bundle has an ``allocation/`` folder (``shopsearch train --stage allocation``)
and ``[allocation] enabled`` is true; otherwise skipped, and ``--explain`` says why. It moves
items of the first ``window`` re-orderable positions by at most ``max_shift`` places (never
above the candidates the relevance gate demoted: they are outside the re-orderable part), to
trade clicks, purchases and new items' exposure as the model's fused Q-values say
(:class:`~shopsearch.rerank.allocation.MODRLTA`); with ``[allocation] blend_weight`` it serves
that fixed-weight blend instead (a baseline). Adds ``allocate.shift`` per candidate: places
moved up (negative: down; 0 outside the window).
"""

from __future__ import annotations

import numpy as np

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState
from shopsearch.rerank.allocation import MODRLTA, OBJECTIVES, blend_order

#: The bundle folder of the allocation model.
ALLOCATION_DIR = "allocation"


@STAGES.register()
class AllocateStage(Stage):
    """Re-allocate positions of the ranked window with MODRL-TA.

    Args:
        model: the fitted allocator.
        blend_weight: serve the fixed-weight blend with this weight instead (``None``: the
            model's allocation).
    """

    name = "allocate"

    def __init__(self, model: MODRLTA, blend_weight: float | None = None) -> None:
        self.model = model
        self.blend_weight = blend_weight

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The bundle's allocation model, or why there is none.

        Raises:
            WorkspaceError: an ``allocation/`` folder that does not hold a model.
        """
        if not context.settings.allocation.enabled:
            return Absent("[allocation] enabled = false")
        folder = None if context.bundle is None else context.bundle / ALLOCATION_DIR
        if folder is None or not folder.is_dir():
            return Absent(
                "no allocation model in this bundle (train one: shopsearch train --stage "
                "allocation)"
            )
        try:
            return cls(MODRLTA.load(folder), context.settings.allocation.blend_weight)
        except (InvalidInputError, OSError, KeyError, ValueError) as exc:
            raise WorkspaceError(f"bundle {context.bundle}: allocation model: {exc}") from exc

    def run(self, state: SearchState) -> Outcome:
        """Move items of the window; the rest keep their places."""
        n = min(state.reorderable(), self.model.window, len(state.candidates))
        if n < 2:
            state.add_column("allocate.shift", np.zeros(len(state.candidates)))
            return Outcome("ran", "nothing to allocate")
        x = self.model.state(state.candidates.keys[:n])
        new = x[:, 1] > 0
        if self.blend_weight is None:
            window = self.model.allocate(x).order
        else:
            window = blend_order(new, self.blend_weight)
        placed = np.empty(n, dtype=np.int64)
        placed[window] = np.arange(n)
        moved_up = np.arange(n) - placed
        shift = np.zeros(len(state.candidates))
        shift[:n] = moved_up
        state.add_column("allocate.shift", shift)
        order = np.concatenate([window, np.arange(n, len(state.candidates))])
        state.reorder(order.astype(np.intp), state.candidates.scores[order])
        moved = int((moved_up != 0).sum())
        lifted = int(((moved_up > 0) & new).sum())
        if self.blend_weight is not None:
            how = f"blend w={self.blend_weight:g}"
        else:
            weights = self.model.weights_ if self.model.weights_ is not None else np.zeros(3)
            how = "weights " + ", ".join(
                f"{k} {w:.2f}" for k, w in zip(OBJECTIVES, weights, strict=True)
            )
        name = "modrl-ta" if self.blend_weight is None else "blend"
        return Outcome(
            "ran",
            f"{name} moved {moved} of {n} ({int(new.sum())} new, {lifted} of them lifted; {how})",
        )
