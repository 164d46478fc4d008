"""``shopsearch index``: index the workspace's products into a new current bundle.

The bundle's ``retrieval/`` holds one folder per source of ``[retrieval] sources``, each built by
its registered class's ``for_index`` (``lexical``: tantivy; ``dense``: vectors of ``[retrieval]
dense_encoder``, model2vec or MiniLM, in faiss,
with product embeddings cached by content hash in ``W/cache/embeddings``), and the hybrid
retriever's fusion settings.
"""

from __future__ import annotations

import shutil

from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.engine import RETRIEVAL_DIR, Engine
from shopsearch.progress import Progress, Say, StepProgress
from shopsearch.retrieval.base import Retriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.learned_train import item_texts
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.bundles import new_bundle_dir
from shopsearch.store.workspace import Workspace
from shopsearch.training.fusion import fit_workspace_fusion
from shopsearch.training.publish import publish_checked


def build_index(
    workspace: Workspace,
    settings: Settings,
    progress: StepProgress | None = None,
    say: Say | None = None,
) -> Engine:
    """Index the workspace's products into a new bundle, publish it, return its engine.

    With ``[retrieval] fusion = "weighted"`` the fusion weights are fitted on the workspace's
    held-out logged clicks or its judgments (:mod:`.fusion`); without either, fusion is rrf.

    Args:
        workspace: the workspace whose products are indexed.
        settings: ``[retrieval]`` names the sources and the fusion.
        progress: reports ``("indexing <source>", done, total)`` per source, over every
            product (those whose vectors were cached count as done); each source reports
            ``(0, total)`` before it starts and ``(total, total)`` when it is built.
        say: tells the user what happens besides indexing (fitting fusion weights).

    Raises:
        InvalidInputError: the workspace has no products.
    """
    products = workspace.table("products")
    if products.num_rows == 0:
        raise InvalidInputError(
            f"workspace {workspace.root} has no products; ingest or simulate some first"
        )
    bundle = new_bundle_dir(workspace)
    retrieval_dir = bundle / RETRIEVAL_DIR
    cache_dir = workspace.dir("cache") / "embeddings"
    sources: dict[str, Retriever] = {}
    try:
        for entry in dict.fromkeys(settings.retrieval.sources):
            cls = RETRIEVERS.get(entry)  # a registered name or an outside class's dotted path
            source = cls.for_index(retrieval_dir / cls.name, settings.retrieval, cache_dir)
            step = _step(progress, f"indexing {cls.name}")
            if step is not None:
                step(0, products.num_rows)
            sources[cls.name] = source.index(products, step)
            source.fit_matches()  # kept in the bundle: no search pays for it
            if step is not None:
                step(products.num_rows, products.num_rows)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    hybrid = HybridRetriever(sources, settings.retrieval.fusion, settings.retrieval.per_source_k)
    if settings.retrieval.fusion == "weighted":
        compact_event_log(workspace)
        fit_workspace_fusion(hybrid, workspace, item_texts(products), say=say)
    hybrid.save(retrieval_dir)
    meta: dict[str, object] = {
        "stages": {"retrieval": RETRIEVAL_DIR},
        "products": products.num_rows,
        "fusion": hybrid.fusion,
        "weights": hybrid.weighting_.weights_ if hybrid.fusion == "weighted" else None,
    }
    return publish_checked(workspace, settings, bundle, meta)


def warm_embeddings(
    workspace: Workspace,
    settings: Settings,
    address: str | None,
    workers: int,
    progress: StepProgress | None = None,
) -> int:
    """Encode on a Ray cluster the product texts the workspace's embedding cache lacks for the
    ``dense`` source (:func:`~shopsearch.training.distributed.encode_catalog`), so that
    :func:`build_index` then only reads them. Returns how many products were looked up
    (0 without a ``dense`` source).

    Raises:
        InvalidInputError: the workspace has no products, or Ray is not installed.
    """
    from shopsearch.retrieval.dense import DenseRetriever
    from shopsearch.text.product_text import product_texts
    from shopsearch.training.distributed import encode_catalog

    products = workspace.table("products")
    if products.num_rows == 0:
        raise InvalidInputError(
            f"workspace {workspace.root} has no products; ingest or simulate some first"
        )
    if "dense" not in settings.retrieval.sources:
        return 0
    cache_dir = workspace.dir("cache") / "embeddings"
    encoder = DenseRetriever.for_index(cache_dir, settings.retrieval, cache_dir).encoder
    latest, _ = DenseRetriever.latest(products)
    texts = product_texts(latest)
    encode_catalog(texts, encoder, cache_dir, address, workers, _step(progress, "encoding on Ray"))
    return len(texts)


def _step(progress: StepProgress | None, step: str) -> Progress | None:
    """``progress`` of one named step."""
    if progress is None:
        return None
    return lambda done, total: progress(step, done, total)


__all__ = ["build_index", "warm_embeddings"]
