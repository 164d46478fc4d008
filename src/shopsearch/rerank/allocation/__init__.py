"""Traffic allocation after ranking: MODRL-TA and its fixed-weight baselines.

* :mod:`.features`: what the allocator knows of an item (new or not, its logged impressions,
  clicks and sales so far) and of a position (examination, on the page or not);
* :mod:`.q_ensemble`: one bootstrap ensemble of ridge Q-functions per objective;
* :mod:`.cem`: the cross-entropy method that fuses the objectives' Q-values;
* :mod:`.modrl_ta`: :class:`MODRLTA`, the three parts together with progressive data
  augmentation (simulated interactions from the logs first, then live ones);
* :mod:`.blends`: the fixed-weight blends of ranking and new-item exposure (the baselines).
"""

from __future__ import annotations

from shopsearch.rerank.allocation.blends import blend_order
from shopsearch.rerank.allocation.features import OBJECTIVES, ItemStats, PositionModel
from shopsearch.rerank.allocation.modrl_ta import MODRLTA, Allocation, Transitions
from shopsearch.rerank.allocation.q_ensemble import QEnsemble

__all__ = [
    "MODRLTA",
    "OBJECTIVES",
    "Allocation",
    "ItemStats",
    "PositionModel",
    "QEnsemble",
    "Transitions",
    "blend_order",
]
