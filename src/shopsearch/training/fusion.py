"""Fitting a bundle's fusion weights on the workspace's own labels.

``[retrieval] fusion = "weighted"`` (the default) fuses the sources by a weighted sum of their
per-query min-max normalised scores; the weights are fitted (grid search for the best mean
NDCG@10, :class:`~shopsearch.retrieval.fusion.WeightedScoreFusion`) on:

* **logs**: the latest :data:`FUSION_HOLDOUT` share of logged requests by time, gains shown 0,
  clicked 1, carted 1.5, purchased 2 — held out of any training that uses the logs;
* else **judgments**: every graded (query, product) of the workspace, as graded.

With neither, or no usable label, the bundle falls back to reciprocal-rank fusion and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shopsearch.catalog.candidates import ProductKey
from shopsearch.progress import Say
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.learned_train import (
    FUSION_HOLDOUT,
    fit_weighted_fusion,
    keyed_qrels,
    workspace_samples,
)
from shopsearch.store.workspace import Workspace

Qrels = dict[str, dict[ProductKey, float]]


def latest_requests(workspace: Workspace, share: float) -> tuple[list[str], list[str]]:
    """Request ids by time: (the earlier ``1 - share``, the latest ``share``)."""
    con = workspace.connect()
    ids = [r for (r,) in con.execute(
        "SELECT request_id FROM requests ORDER BY timestamp, request_id"
    ).fetchall()]  # fmt: skip
    cut = len(ids) - round(share * len(ids))
    return ids[:cut], ids[cut:]


def logged_qrels(
    workspace: Workspace, texts: Mapping[ProductKey, str], request_ids: Sequence[str]
) -> Qrels:
    """Logged stages of ``request_ids`` as gains, keyed by query and product."""
    log = workspace_samples(workspace, texts, request_ids)
    qrels = keyed_qrels(log.samples, list(texts))
    # stages: shown 1, clicked 2, carted 2.5, purchased 3 → gains 0, 1, 1.5, 2
    return {q: {k: max(s - 1.0, 0.0) for k, s in judged.items()} for q, judged in qrels.items()}


def judged_qrels(workspace: Workspace) -> Qrels:
    """The workspace's judgments, keyed by query and product."""
    judged = workspace.table("judgments", ["domain", "query", "product_id", "grade"])
    qrels: Qrels = {}
    for domain, query, pid, grade in zip(*(c.to_pylist() for c in judged.columns), strict=True):
        qrels.setdefault(str(query), {})[(str(domain), str(pid))] = float(grade)
    return qrels


def fit_workspace_fusion(
    hybrid: HybridRetriever,
    workspace: Workspace,
    texts: Mapping[ProductKey, str],
    holdout: Sequence[str] | None = None,
    say: Say | None = None,
    seed: int = 0,
) -> str:
    """Fit ``hybrid``'s weights on the held-out logged requests, or on the judgments when the
    workspace logs no request; returns the fusion now in use (``weighted`` or ``rrf``).

    Args:
        hybrid: the retriever to fit (its sources must be indexed).
        workspace: whose labels are used.
        texts: product key → text, for the logged samples.
        holdout: the logged requests to fit on (default: the latest :data:`FUSION_HOLDOUT`).
        say: told what was fitted on, or why not.
        seed: seed of the query sample.
    """
    tell = say or (lambda _message: None)
    if len(hybrid.sources) == 1:
        hybrid.fusion = "rrf"
        return "rrf"
    qrels: Qrels = {}
    where = ""
    if workspace.count("requests"):
        ids = holdout if holdout is not None else latest_requests(workspace, FUSION_HOLDOUT)[1]
        qrels, where = logged_qrels(workspace, texts, ids) if ids else {}, "held-out logged clicks"
    elif workspace.count("judgments"):
        qrels, where = judged_qrels(workspace), "judgments"
    if qrels and fit_weighted_fusion(hybrid, qrels, seed=seed):
        weights = ", ".join(f"{n} {w:.2f}" for n, w in hybrid.weighting_.weights_.items())
        tell(f"fusion weights fitted on {where}: {weights}")
        return "weighted"
    hybrid.fusion = "rrf"
    tell("no logged clicks or judgments to fit fusion weights on; using rrf")
    return "rrf"


__all__ = ["fit_workspace_fusion", "judged_qrels", "latest_requests", "logged_qrels"]
