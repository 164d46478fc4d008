"""The papers' ranking models, re-exported from their modules.

=====================  ================  ==================================================
class                  ``name``          paper
=====================  ================  ==================================================
:class:`SeqMD`         ``seq-md``        SEQ+MD, Wang et al. (Etsy), arXiv 2408.13357
:class:`AWMoE`         ``aw-moe``        AW-MoE, Gong et al. (JD.com), arXiv 2306.05011
:class:`CategoryMoE`   ``category-moe``  Adversarial MoE with category hierarchy soft
                                         constraint, Xiao et al. (JD.com), arXiv 2007.12349
:class:`KFAtt`         ``kfatt``         KFAtt, Liu et al. (JD.com), NeurIPS 2020
=====================  ================  ==================================================

Each module's docstring says exactly what is implemented and where it simplifies the paper.
:class:`MarketMask` / :func:`with_market_mask` are SEQ+MD's MD module as a plug-in for any
:class:`~shopsearch.ranking.base.RankingModel` (e.g. the baselines).
"""

from __future__ import annotations

from shopsearch.ranking.models.aw_moe import AWMoE, info_nce, random_sequence_mask
from shopsearch.ranking.models.category_moe import (
    CategoryMoE,
    adversarial_disagreement,
    hierarchy_soft_constraint,
    sample_adversary,
)
from shopsearch.ranking.models.kfatt import KalmanFilteringAttention, KFAtt, merge_duplicates
from shopsearch.ranking.models.market_mask import MarketMask, with_market_mask
from shopsearch.ranking.models.seq_md import SeqMD, descending_probability_penalty

__all__ = [
    "AWMoE",
    "CategoryMoE",
    "KFAtt",
    "KalmanFilteringAttention",
    "MarketMask",
    "SeqMD",
    "adversarial_disagreement",
    "descending_probability_penalty",
    "hierarchy_soft_constraint",
    "info_nce",
    "merge_duplicates",
    "random_sequence_mask",
    "sample_adversary",
    "with_market_mask",
]
