"""Evaluation: trec_eval-compatible ranking metrics, AUC/GAUC, bootstrap CIs, and reports.

See :mod:`shopsearch.evaluate.metrics` for the exact definitions (and how they map to
ir-measures) and :mod:`shopsearch.evaluate.report` for the report format.
"""

from __future__ import annotations

from shopsearch.evaluate.metrics import (
    RANKING_METRICS,
    JudgedRun,
    PairedBootstrap,
    UndefinedMetricError,
    auc,
    auc_ci,
    bootstrap_ci,
    gauc,
    gauc_ci,
    group_bootstrap_ci,
    ir_measures_name,
    map_at_k,
    mrr,
    ndcg_at_k,
    paired_bootstrap_diff,
    parse_metric,
    recall_at_k,
    relevant_query_ids,
    rmse,
)
from shopsearch.evaluate.report import (
    CI_KEY,
    SYSTEM_PREFIXES,
    UNDEFINED_KEY,
    Report,
    RunEvaluation,
    evaluate_run,
)

__all__ = [
    "CI_KEY",
    "RANKING_METRICS",
    "SYSTEM_PREFIXES",
    "UNDEFINED_KEY",
    "JudgedRun",
    "PairedBootstrap",
    "Report",
    "RunEvaluation",
    "UndefinedMetricError",
    "auc",
    "auc_ci",
    "bootstrap_ci",
    "evaluate_run",
    "gauc",
    "gauc_ci",
    "group_bootstrap_ci",
    "ir_measures_name",
    "map_at_k",
    "mrr",
    "ndcg_at_k",
    "paired_bootstrap_diff",
    "parse_metric",
    "recall_at_k",
    "relevant_query_ids",
    "rmse",
]
