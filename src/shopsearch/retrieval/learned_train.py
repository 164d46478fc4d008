"""Train the learned retrievers on a workspace and publish them in a new bundle (issue 6).

``shopsearch train --workspace W --stage retrieval [--model two-tower|two-tower-pq|gcn|
sci-two-tower|generative|genrec]``:

1. **Samples** (:func:`workspace_samples`): the MMSE multi-stage samples of the workspace's
   event log — for each logged query, every shown product at the furthest stage it reached
   (purchased 3 > added to cart 2.5 > clicked 2 > shown 1; random catalog items are the lowest
   stage inside the loss). Positives of the retrieval loss are clicked or better
   (``positive_stage`` 2); shown-unclicked products take part in the ranking loss only. A
   workspace with judgments and no events trains on the judgments instead (the grade is the
   stage; positives are grades at or above the middle of the judged range).
2. **Models** (:func:`train_learned`): the MMSE two-tower encoder
   (:class:`~shopsearch.retrieval.mmse.TwoTowerEncoder`) is always trained; ``two-tower``
   serves it with faiss, ``gcn`` enriches it with SearchGCN propagation over the query–product
   graph of the same samples (:class:`~shopsearch.retrieval.search_gcn.SearchGCNEncoder`), and
   ``two-tower-pq`` trains a copy further jointly with a Poeem PQ index
   (:class:`~shopsearch.retrieval.poeem.PoeemIndex`, ``pq_m`` bytes per product), and
   ``sci-two-tower`` trains a second two-tower encoder with the same settings plus SCI's swapped
   retrieval loss (``symmetric_weight`` = ``sci_weight``), served like ``two-tower``.
   ``generative`` generates semantic IDs from the query (:mod:`shopsearch.retrieval.generative`)
   and ``genrec`` from the query and the user's history, trained page-wise on the logged pages
   (:func:`workspace_pages`; events only, not judgments).
3. **Bundle** (:func:`train_retrieval_bundle`): a new bundle copies the current one (lexical
   and dense indexes, the ranking model if any) and adds each learned retriever as a source of
   the hybrid retriever (``[retrieval] learned_use = "add"``), or puts the first one in place of
   the MiniLM ``dense`` source (``"replace-dense"``). With ``[retrieval] fusion = "weighted"``
   the fusion weights are fitted on the latest 10% of logged requests, which the models did not
   train on. The new bundle is loaded and searched once before it is published; a bundle that
   fails is deleted and the current one stays current, so nothing stored is lost.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shopsearch.catalog.candidates import ProductKey
from shopsearch.config import GenRecSettings, RetrievalSettings
from shopsearch.errors import InvalidInputError
from shopsearch.progress import Progress, Say, StepProgress
from shopsearch.retrieval.base import Retriever
from shopsearch.retrieval.consistent_index import LearnedCIRetriever, View
from shopsearch.retrieval.generative.pages import PageSamples
from shopsearch.retrieval.learned import LearnedDenseRetriever, LearnedPQRetriever
from shopsearch.retrieval.mmse import TwoTowerEncoder
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.store.workspace import Workspace
from shopsearch.text.product_text import product_texts

#: Model names ``--model`` accepts; each becomes the source ``name.replace("-", "_")``.
LEARNED_MODELS = ("two-tower", "two-tower-pq", "gcn", "sci-two-tower", "generative", "genrec")
#: The models served over the two-tower encoder (trained once for all of them).
TWO_TOWER_MODELS = ("two-tower", "two-tower-pq", "gcn", "sci-two-tower")
#: Retrieval-loss positives from the event log: clicked, carted or purchased.
EVENT_POSITIVE_STAGE = 2.0
#: Share of the latest requests held out of training to fit weighted fusion.
FUSION_HOLDOUT = 0.1

#: ``progress(step, done, total)``: step is ``"two-tower"``, ``"index two-tower"``, ...


def check_models(models: Sequence[str]) -> list[str]:
    """The model names, deduplicated; a clear error for an unknown or empty choice."""
    unknown = [m for m in models if m not in LEARNED_MODELS]
    if unknown or not models:
        raise InvalidInputError(
            f"unknown learned retrieval model(s) {', '.join(map(repr, unknown)) or '(none)'}; "
            f"use one or more of {', '.join(LEARNED_MODELS)}"
        )
    return list(dict.fromkeys(models))


def source_name(model: str) -> str:
    """The bundle source name of a learned model (``two-tower-pq`` → ``two_tower_pq``)."""
    return model.replace("-", "_")


def catalog_of(workspace: Workspace) -> pa.Table:
    """The workspace's products; a clear error when there are none."""
    products = workspace.table("products")
    if products.num_rows == 0:
        raise InvalidInputError(
            f"workspace {workspace.root} has no products; ingest or simulate some first"
        )
    return products


def item_texts(products: pa.Table) -> dict[ProductKey, str]:
    """Product key → the item text the towers read (the last row of a repeated key wins)."""
    keys = zip(
        products.column("domain").to_pylist(),
        products.column("product_id").to_pylist(),
        strict=True,
    )
    return dict(zip(keys, product_texts(products), strict=True))


@dataclass(frozen=True)
class LogSamples:
    """Staged samples and where they came from.

    Attributes:
        samples: the (query, item, stage) triples.
        source: ``"events"`` or ``"judgments"``.
        positive_stage: the retrieval loss's positive stage for this source.
        requests: logged requests used (0 for judgments).
        pages: the logged pages with user histories (:func:`workspace_pages`), for ``genrec``.
    """

    samples: StagedSamples
    source: str
    positive_stage: float
    requests: int = 0
    pages: PageSamples | None = None


def _keep(table: pa.Table, request_ids: pa.Array | None) -> pa.Table:
    if request_ids is None:
        return table
    return table.filter(pc.is_in(table.column("request_id"), value_set=request_ids))


def workspace_samples(
    workspace: Workspace,
    texts: Mapping[ProductKey, str],
    request_ids: Sequence[str] | None = None,
) -> LogSamples:
    """MMSE staged samples from the event log (only ``request_ids`` if given) or judgments.

    Raises:
        InvalidInputError: the workspace has neither events nor judgments, or none of them
            names a catalog product.
    """
    requests = workspace.table("requests", ["request_id", "domain", "query"])
    if requests.num_rows:
        ids = None if request_ids is None else pa.array(list(request_ids), pa.string())
        requests = _keep(requests, ids)
        impressions = _keep(workspace.table("impressions", ["request_id", "product_id"]), ids)
        interactions = _keep(
            workspace.table("interactions", ["request_id", "product_id", "kind"]), ids
        )
        samples = StagedSamples.from_events(requests, impressions, interactions, texts)
        found = LogSamples(samples, "events", EVENT_POSITIVE_STAGE, requests.num_rows)
    else:
        judged = workspace.table("judgments")
        if judged.num_rows == 0:
            raise InvalidInputError(
                f"workspace {workspace.root} has no search events and no judgments to learn "
                "retrieval from; ingest a search log ('shopsearch ingest events FILE -w W') or "
                "graded judgments ('shopsearch ingest judgments FILE -w W')"
            )
        qrels: dict[str, dict[ProductKey, float]] = {}
        for domain, query, pid, grade in zip(
            judged.column("domain").to_pylist(),
            judged.column("query").to_pylist(),
            judged.column("product_id").to_pylist(),
            judged.column("grade").to_pylist(),
            strict=True,
        ):
            qrels.setdefault(query, {})[(domain, pid)] = float(grade)
        grades = judged.column("grade").to_numpy()
        middle = float(grades.min() + grades.max()) / 2
        samples = StagedSamples.from_judgments(qrels, texts)
        found = LogSamples(samples, "judgments", middle)
    if len(found.samples.stage) == 0:
        raise InvalidInputError(
            f"none of the logged {found.source} of workspace {workspace.root} names a product "
            "of its catalog; ingest the products they refer to"
        )
    if not (found.samples.stage >= found.positive_stage).any():
        raise InvalidInputError(
            f"the {found.source} of workspace {workspace.root} have no positive pair (stage >= "
            f"{found.positive_stage:g}: a click, or a high grade) to learn retrieval from"
        )
    return found


def workspace_pages(
    workspace: Workspace, request_ids: Sequence[str] | None = None, history: int = 20
) -> PageSamples:
    """GenRec's pages of the logged requests (only ``request_ids`` if given, and histories
    only from them), each with its user's earlier history.

    Raises:
        InvalidInputError: the workspace has no logged search events.
    """
    requests = workspace.table(
        "requests", ["request_id", "user_id", "domain", "query", "timestamp"]
    )
    if requests.num_rows == 0:
        raise InvalidInputError(
            f"workspace {workspace.root} has no logged searches; GenRec learns from searches "
            "with their users and interactions ('shopsearch ingest events FILE -w W'), not from "
            "judgments"
        )
    ids = None if request_ids is None else pa.array(list(request_ids), pa.string())
    requests = _keep(requests, ids)
    impressions = _keep(
        workspace.table("impressions", ["request_id", "product_id", "position"]), ids
    )
    interactions = _keep(workspace.table("interactions", ["request_id", "product_id", "kind"]), ids)
    return PageSamples.from_events(requests, impressions, interactions, history_size=history)


@dataclass
class LearnedConfig:
    """How the learned retrievers are trained.

    Attributes:
        models: which of :data:`LEARNED_MODELS` to build.
        two_tower: :class:`TwoTowerEncoder` parameters (``positive_stage`` is set from the
            samples unless given).
        pq_m: Poeem bytes per product.
        sci_weight: ``symmetric_weight`` of the ``sci-two-tower`` encoder.
        poeem_epochs: Poeem joint-training epochs.
        hnsw_threshold: above this many products the learned float indexes are HNSW.
        index: ``hnsw``, ``ci`` or ``ivf``: the index of ``two-tower`` and ``sci-two-tower``.
        nprobe: clusters probed by a ``ci`` or ``ivf`` index.
        generative: :class:`~shopsearch.retrieval.generative.train.GenerativeConfig`
            parameters of the ``generative`` model (its generator's in ``generator``).
        genrec: ``[retrieval.genrec]`` settings of the ``genrec`` model.
        cache_dir: the embedding cache of the MiniLM vectors the generative model's IDs
            quantise (``None``: encode directly).
        seed: seed of every model.
    """

    models: list[str] = field(default_factory=lambda: ["two-tower"])
    two_tower: dict[str, Any] = field(default_factory=dict)
    pq_m: int = 48
    sci_weight: float = 0.5
    poeem_epochs: int = 1
    hnsw_threshold: int = 20_000
    index: str = "hnsw"
    nprobe: int = 16
    generative: dict[str, Any] = field(default_factory=dict)
    genrec: dict[str, Any] = field(default_factory=dict)
    cache_dir: Path | None = None
    seed: int = 0

    @classmethod
    def from_settings(
        cls, settings: RetrievalSettings, models: Sequence[str] = (), cache_dir: Path | None = None
    ) -> LearnedConfig:
        """The config of ``[retrieval]`` (``models`` overrides ``learned``)."""
        gen = settings.generative
        return cls(
            models=check_models(list(models) or list(settings.learned)),
            two_tower={"epochs": settings.learned_epochs, "buckets": settings.learned_buckets},
            pq_m=settings.pq_m,
            sci_weight=settings.learned_sci_weight,
            hnsw_threshold=settings.hnsw_threshold,
            index=settings.learned_index,
            nprobe=settings.learned_nprobe,
            generative={
                "ids": gen.ids,
                "alignment": gen.alignment,
                "levels": gen.levels,
                "codewords": gen.codewords,
                "beam": gen.beam,
                "generator": {"epochs": gen.epochs, "dim": gen.dim, "budget_s": gen.budget_s},
            },
            genrec=settings.genrec.model_dump(),
            cache_dir=cache_dir,
        )


@dataclass
class Learned:
    """What :func:`train_learned` returns.

    Attributes:
        retrievers: model name → indexed retriever, in the order asked for.
        encoder: the two-tower encoder (as trained, before any Poeem fine-tuning); ``None``
            when no model asked for needs it.
        info: per model, training facts for reports and bundle metadata.
    """

    retrievers: dict[str, Retriever]
    encoder: TwoTowerEncoder | None
    info: dict[str, dict[str, Any]]


class TwoTowerBackend(Protocol):
    """Where :func:`train_learned` fits its two-tower encoders (``two-tower``, ``gcn``,
    ``sci-two-tower``, ``two-tower-pq``'s start): on a cluster
    (``shopsearch.training.distributed_train.RayTraining``) instead of in this process."""

    def fit_two_tower(
        self, encoder: TwoTowerEncoder, samples: StagedSamples, progress: Progress | None = None
    ) -> TwoTowerEncoder:
        """``encoder`` (unfitted) trained on ``samples`` as :meth:`TwoTowerEncoder.fit` does."""
        ...


def pq_nbits(items: int) -> int:
    """8-bit codes, fewer on a catalog too small to train 256 codewords per sub-space."""
    return int(min(8, max(1, np.floor(np.log2(max(items, 2))))))


def train_learned(
    log: LogSamples,
    products: pa.Table,
    config: LearnedConfig,
    progress: StepProgress | None = None,
    say: Say | None = None,
    backend: TwoTowerBackend | None = None,
) -> Learned:
    """Train the two-tower model on ``log`` and build each asked-for retriever over ``products``.

    ``backend``: where the two-tower encoders are fitted (default: here). Poeem's joint
    fine-tuning, SearchGCN's propagation and the generative models run here either way.

    Raises:
        InvalidInputError: an unknown model name or impossible settings (e.g. ``pq_m`` not
            dividing the vector length).
    """
    models = check_models(config.models)

    def step(name: str) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(name, done, total)

    def tell(message: str) -> None:
        if say is not None:
            say(message)

    info: dict[str, dict[str, Any]] = {}
    out: dict[str, Retriever] = {}
    if "generative" in models:
        out["generative"], info["generative"] = _generative(log, products, config, step, tell)
    if "genrec" in models:
        out["genrec"], info["genrec"] = _genrec(log, products, config, step, tell)
    if not any(m in TWO_TOWER_MODELS for m in models):
        return Learned({m: out[m] for m in models}, None, info)
    settings = {"positive_stage": log.positive_stage, "seed": config.seed, **config.two_tower}
    samples = log.samples
    tell(
        f"training the two-tower model on {len(samples.queries)} queries, "
        f"{len(samples.stage)} (query, product) pairs from {log.source}"
    )

    def fit(encoder: TwoTowerEncoder, name: str) -> TwoTowerEncoder:
        if backend is None:
            return encoder.fit(samples, step(name))
        return backend.fit_two_tower(encoder, samples, step(name))

    encoder = fit(TwoTowerEncoder(**settings), "two-tower")
    base = {**encoder.get_config(), "loss_per_epoch": encoder.history_}
    base.pop("path", None)
    kwargs = {"hnsw_threshold": config.hnsw_threshold}
    for model in models:
        if model == "two-tower":
            out[model] = _served(encoder, config).index(products, step("index two-tower"))
            info[model] = {"two_tower": base}
        elif model == "gcn":
            from shopsearch.retrieval.search_gcn import SearchGCNEncoder

            tell("SearchGCN: propagating the two-tower vectors over the query-product graph")
            gcn = SearchGCNEncoder().fit(encoder, samples)
            out[model] = LearnedDenseRetriever(gcn, **kwargs).index(products, step("index gcn"))
            info[model] = {"two_tower": base, "layers": gcn.layers, "graph_items": len(gcn.items_)}
        elif model == "sci-two-tower":
            tell(f"SCI: a two-tower model with the swapped loss at weight {config.sci_weight:g}")
            sci = TwoTowerEncoder(**{**settings, "symmetric_weight": config.sci_weight})
            sci = fit(sci, "sci-two-tower")
            out[model] = _served(sci, config).index(products, step("index sci-two-tower"))
            sci_config = {**sci.get_config(), "loss_per_epoch": sci.history_}
            sci_config.pop("path", None)
            info[model] = {"two_tower": sci_config}
        elif model == "two-tower-pq":
            from shopsearch.retrieval.poeem import PoeemIndex

            nbits = pq_nbits(len(samples.items))
            tell(f"Poeem: a PQ index ({config.pq_m} x {nbits}-bit codes) trained with the towers")
            with tempfile.TemporaryDirectory(prefix="shopsearch-poeem-") as tmp:
                encoder.save(Path(tmp))  # a copy: Poeem trains its towers further in place
                joint = TwoTowerEncoder.load(Path(tmp))
                joint.path = None
                poeem = PoeemIndex(
                    m=config.pq_m, nbits=nbits, epochs=config.poeem_epochs, seed=config.seed
                ).fit(joint, samples)
                retriever = LearnedPQRetriever(joint, quantizer=poeem.to_faiss(), **kwargs)
                out[model] = retriever.index(products, step("index two-tower-pq"))
            info[model] = {
                "two_tower": base,
                "pq_m": config.pq_m,
                "nbits": nbits,
                "loss_per_epoch": poeem.history_,
            }
    encoder.path = None
    return Learned({m: out[m] for m in models}, encoder, info)


def _served(encoder: TwoTowerEncoder, config: LearnedConfig) -> LearnedDenseRetriever:
    """The index ``config.index`` asks for over a two-tower encoder."""
    if config.index == "hnsw":
        return LearnedDenseRetriever(encoder, hnsw_threshold=config.hnsw_threshold)
    view: View = "dual" if config.index == "ci" else "item"
    return LearnedCIRetriever(encoder, view=view, nprobe=config.nprobe)


def _loss_progress(
    advance: Callable[[int, int], None] | None,
) -> Callable[[int, int, float], None]:
    """A training loop's ``progress(step, steps, loss)`` reported as ``advance(step, steps)``."""

    def report(done: int, total: int, _loss: float) -> None:
        if advance is not None:
            advance(done, total)

    return report


def _generative(
    log: LogSamples,
    products: pa.Table,
    config: LearnedConfig,
    step: Callable[[str], Callable[[int, int], None] | None],
    tell: Callable[[str], None],
) -> tuple[Retriever, dict[str, Any]]:
    """The generative source: semantic IDs of MiniLM vectors and an SFT generator."""
    from shopsearch.retrieval.generative.model import GeneratorConfig
    from shopsearch.retrieval.generative.retriever import GenerativeRetriever
    from shopsearch.retrieval.generative.train import GenerativeConfig, train_generative
    from shopsearch.text.encoders import MiniLMEncoder

    settings = dict(config.generative)
    beam = int(settings.pop("beam", 100))
    alignment = settings.pop("alignment", "sft")
    generator = GeneratorConfig(**{"seed": config.seed, **settings.pop("generator", {})})
    gen_config = GenerativeConfig(
        **{"positive_stage": log.positive_stage, "seed": config.seed, **settings},
        generator=generator,
    )
    keys = list(item_texts(products))
    sft = _loss_progress(step("generative"))
    model = train_generative(
        log.samples, keys, MiniLMEncoder(), gen_config, config.cache_dir, sft, tell
    )
    if alignment != "sft":
        from shopsearch.retrieval.generative.align_train import align_generative

        model = align_generative(model, log.samples, keys, alignment, gen_config.positive_stage,
                                 cache_dir=config.cache_dir, say=tell)  # fmt: skip
    retriever = GenerativeRetriever(model, beam=beam, cache_dir=config.cache_dir)
    return retriever.index(products, step("index generative")), dict(model.info)


def _genrec(
    log: LogSamples,
    products: pa.Table,
    config: LearnedConfig,
    step: Callable[[str], Callable[[int, int], None] | None],
    tell: Callable[[str], None],
) -> tuple[Retriever, dict[str, Any]]:
    """The GenRec source: rq-fixed IDs of MiniLM vectors and page-wise SFT on the pages."""
    from shopsearch.retrieval.generative.genrec import GenRecConfig
    from shopsearch.retrieval.generative.genrec_retriever import GenRecRetriever
    from shopsearch.retrieval.generative.genrec_train import GenRecTrainConfig, train_genrec
    from shopsearch.retrieval.generative.model import GeneratorConfig
    from shopsearch.text.encoders import MiniLMEncoder

    if log.pages is None:
        raise InvalidInputError(
            "GenRec learns from logged searches with their users (pages); this training run "
            "has none: ingest a search log ('shopsearch ingest events FILE -w W')"
        )
    settings = {**GenRecSettings().model_dump(), **config.genrec}
    generator = GeneratorConfig(dim=int(settings["dim"]), epochs=int(settings["epochs"]),
                                budget_s=float(settings["budget_s"]), batch_size=256,
                                seed=config.seed)  # fmt: skip
    genrec = GenRecConfig(merger=bool(settings["merger"]), history=int(settings["history"]))
    train_config = GenRecTrainConfig(int(settings["levels"]), int(settings["codewords"]),
                                     generator, genrec)  # fmt: skip
    sft = _loss_progress(step("genrec"))
    texts = item_texts(products)
    model = train_genrec(log.pages, list(texts), list(texts.values()), MiniLMEncoder(),
                         train_config, config.cache_dir, sft, tell)  # fmt: skip
    retriever = GenRecRetriever(model, beam=int(settings["beam"]), cache_dir=config.cache_dir)
    return retriever.index(products, step("index genrec")), dict(model.info)


def fit_weighted_fusion(
    hybrid: Any,
    qrels: Mapping[str, Mapping[ProductKey, float]],
    max_queries: int = 1000,
    seed: int = 0,
) -> bool:
    """Fit weighted fusion on logged labels; False (left unchanged) if none is usable."""
    from shopsearch.errors import NotFittedError

    queries = sorted(qrels)
    rng = np.random.default_rng(seed)
    if len(queries) > max_queries:
        queries = [queries[i] for i in sorted(rng.choice(len(queries), max_queries, False))]
    if not queries:
        return False
    try:
        hybrid.fit_fusion(queries, [dict(qrels[q]) for q in queries])
    except NotFittedError:
        return False
    return True


def keyed_qrels(
    samples: StagedSamples, keys: Sequence[ProductKey]
) -> dict[str, dict[ProductKey, float]]:
    """Query → product key → stage; ``keys[i]`` is the product of ``samples.items[i]``."""
    out: dict[str, dict[ProductKey, float]] = {}
    for q, i, s in zip(
        samples.query_index.tolist(),
        samples.item_index.tolist(),
        samples.stage.tolist(),
        strict=True,
    ):
        judged = out.setdefault(samples.queries[q], {})
        judged[keys[i]] = max(judged.get(keys[i], 0.0), float(s))
    return out


__all__ = [
    "LEARNED_MODELS",
    "TWO_TOWER_MODELS",
    "Learned",
    "LearnedConfig",
    "LogSamples",
    "TwoTowerBackend",
    "catalog_of",
    "check_models",
    "fit_weighted_fusion",
    "item_texts",
    "keyed_qrels",
    "pq_nbits",
    "source_name",
    "train_learned",
    "workspace_samples",
]
