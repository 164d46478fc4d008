"""One typed configuration for the CLI, the HTTP app and training.

Values come from, highest priority first: environment variables (``SHOPSEARCH_`` prefix, ``__``
between section and key, e.g. ``SHOPSEARCH_SERVE__PORT=9000``), then a TOML file (the
``--config`` file, else ``WORKSPACE/shopsearch.toml`` when present), then the defaults below.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shopsearch.errors import InvalidInputError


class GenerativeSettings(BaseModel):
    """The generative retrieval source (``train --stage retrieval --model generative``)."""

    model_config = ConfigDict(extra="forbid")

    #: ``rq-fixed``: ``levels`` codes and a collision suffix (the default: on the Home Depot
    #: test queries its SFT generator scored NDCG@10 0.049 against SA²CRQ's 0.037);
    #: ``sa2crq``: traffic-adaptive ID lengths (head products long and distinct, tail and new
    #: products share shorter IDs).
    ids: Literal["sa2crq", "rq-fixed"] = "rq-fixed"
    #: After SFT: ``rad-dpo`` (RAD-DPO), ``dpo`` (plain DPO) or ``sft`` (none); the rejected
    #: side is shown-unclicked products (judged irrelevant ones) and beam-mined IDs.
    alignment: Literal["rad-dpo", "dpo", "sft"] = "rad-dpo"
    #: Codes in an ``rq-fixed`` ID before its collision suffix.
    levels: int = Field(3, ge=1, le=8)
    #: Values per code (residual k-means centroids per level).
    codewords: int = Field(64, ge=2, le=256)
    #: Passes of the generator over the (query, product) pairs.
    epochs: int = Field(10, ge=1, le=200)
    #: Width of the generator (a small transformer decoder).
    dim: int = Field(128, ge=8, le=1024)
    #: Most seconds of the generator's training.
    budget_s: float = Field(2700.0, gt=0.0)
    #: Open prefixes the constrained beam keeps per ID token.
    beam: int = Field(100, ge=1, le=10_000)


class GenRecSettings(BaseModel):
    """The GenRec source (``train --stage retrieval --model genrec``): semantic IDs generated
    from the query and the searching user's history, trained page-wise on the logged searches."""

    model_config = ConfigDict(extra="forbid")

    #: Most products of the user's history in the prompt (most recent first).
    history: int = Field(20, ge=0, le=200)
    #: One prompt token per history product (the Token Merger); false: one per ID token.
    merger: bool = True
    #: Codes in an ID before its collision suffix.
    levels: int = Field(3, ge=1, le=8)
    #: Values per code.
    codewords: int = Field(64, ge=2, le=256)
    #: Passes over the logged pages.
    epochs: int = Field(8, ge=1, le=200)
    #: Width of the network.
    dim: int = Field(64, ge=8, le=1024)
    #: Most seconds of training.
    budget_s: float = Field(2700.0, gt=0.0)
    #: Open prefixes the constrained beam keeps per ID token.
    beam: int = Field(100, ge=1, le=10_000)


class RetrievalSettings(BaseModel):
    """Candidate generation."""

    model_config = ConfigDict(extra="forbid")

    #: Sources ``shopsearch index`` builds, by registry name (``lexical``: tantivy BM25;
    #: ``dense``: ``dense_encoder`` + faiss); learned sources come from ``train --stage retrieval``.
    sources: list[str] = Field(["lexical", "dense"], min_length=1)
    #: Encoder of the ``dense`` source: ``minilm`` (all-MiniLM-L6-v2, a transformer per query)
    #: or ``model2vec`` (static token vectors distilled from that MiniLM once into
    #: the machine's encoder cache (``$SHOPSEARCH_ENCODER_DIR``, else
    #: ``~/.cache/shopsearch/encoders``), a table lookup per query;
    #: :mod:`shopsearch.text.static_encoder`).
    #: The default: on Home Depot its hybrid scored NDCG@10 0.980x MiniLM's for ~1/370 of the
    #: CPU per query encoding (RESULTS.md, issue 20).
    dense_encoder: Literal["minilm", "model2vec"] = "model2vec"
    #: Vector length of the ``model2vec`` encoder (PCA of MiniLM's 384).
    model2vec_dims: int = Field(256, ge=8, le=384)
    #: ``weighted``: weighted score fusion whose weights ``shopsearch index`` and ``train
    #: --stage retrieval`` fit on the workspace's held-out logged clicks or judgments (rrf when
    #: there are none); ``rrf``: reciprocal-rank fusion, nothing fitted.
    fusion: Literal["rrf", "weighted"] = "weighted"
    per_source_k: int = Field(200, ge=1, le=10_000)
    #: Fused candidates retrieval hands to the later stages (at least a page's worth).
    candidates: int = Field(200, ge=1, le=10_000)
    #: A product a vector source (dense, learned) found is a match only this close (cosine) to
    #: the query; products with the query's words always match. Default: each source's own
    #: fitted level (the closest any product comes to random letter strings, measured when
    #: the source is indexed), so a query that matches nothing gets no results.
    min_similarity: float | None = Field(None, ge=-1.0, le=1.0)
    hnsw_threshold: int = Field(20_000, ge=0)
    #: Query vectors of dense sources kept in memory per process (least recently used
    #: dropped; 1.5 KB each for MiniLM); 0 turns the cache off. Overrides the bundle's value.
    query_cache_size: int = Field(8192, ge=0, le=10_000_000)
    #: Lexical results (candidates and facets) of recent searches kept per process, by query,
    #: filters and depth, until the next catalog write; 0 turns the cache off.
    result_cache_size: int = Field(4096, ge=0, le=10_000_000)
    #: Most queries of concurrent searches encoded in one forward pass; 1: one at a time.
    query_batch: int = Field(16, ge=1, le=1024)
    #: Learned sources ``shopsearch train --stage retrieval`` fits (issue 6).
    learned: list[
        Literal["two-tower", "two-tower-pq", "gcn", "sci-two-tower", "generative", "genrec"]
    ] = ["two-tower"]
    #: ``add``: each learned retriever is one more fused source; ``replace-dense``: the first
    #: learned model takes the place of the MiniLM ``dense`` source.
    learned_use: Literal["add", "replace-dense"] = "add"
    #: Epochs of the two-tower model (on logs; see ``shopsearch.retrieval.learned_train``).
    learned_epochs: int = Field(3, ge=1, le=100)
    #: Hash buckets of the two-tower feature table (its weights: buckets x 64 x 4 bytes).
    learned_buckets: int = Field(2**18, ge=64, le=2**24)
    #: Weight of SCI's swapped retrieval loss in the ``sci-two-tower`` model (queries through the
    #: item tower, items through the query tower; ``shopsearch.retrieval.mmse``); 0.5 scored
    #: best of 0.5, 1 and 2 on Home Depot validation queries.
    learned_sci_weight: float = Field(0.5, ge=0.0, le=100.0)
    #: Index of the ``two-tower`` and ``sci-two-tower`` sources: ``hnsw`` (exact up to
    #: ``hnsw_threshold`` products, HNSW above), ``ci`` (SCI's consistent dual-view IVF:
    #: clusters and routing in the query tower's view) or ``ivf`` (the usual IVF over item
    #: vectors); see ``shopsearch.retrieval.consistent_index``.
    learned_index: Literal["hnsw", "ci", "ivf"] = "hnsw"
    #: Clusters a query probes in a ``ci`` or ``ivf`` index (of about sqrt(products)).
    learned_nprobe: int = Field(16, ge=1, le=100_000)
    #: Bytes per product of the Poeem PQ codes (must divide the two-tower vector length).
    pq_m: int = Field(48, ge=1, le=512)
    #: The generative source's IDs, generator and beam.
    generative: GenerativeSettings = Field(default_factory=GenerativeSettings)
    #: The GenRec source's history, IDs, network and beam.
    genrec: GenRecSettings = Field(default_factory=GenRecSettings)


class QuerySettings(BaseModel):
    """Query understanding at serving (the components themselves come from the bundle)."""

    model_config = ConfigDict(extra="forbid")

    #: Run the bundle's query components (``false``: search every query as typed).
    enabled: bool = True
    #: Score added (times its probability) to products in a predicted category.
    intent_boost: float = Field(1.0, ge=0.0, le=100.0)
    #: Least probability of a predicted category that boosts retrieval.
    intent_min_probability: float = Field(0.3, ge=0.0, le=1.0)


class RankingSettings(BaseModel):
    """The ranking stage: which model ``shopsearch train --stage ranking`` fits, how it serves."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    model: str = "dnn"
    position_bias: Literal["none", "feature", "ipw"] = "feature"
    epochs: int = Field(3, ge=1, le=100)
    value: Literal["ctr", "gmv", "linear"] = "linear"
    w_click: float = 1.0
    w_cart: float = 2.0
    w_purchase: float = 4.0
    #: What scores a torch model at serving: ``onnx`` (ONNX Runtime on the graph exported
    #: with the model; torch when a model cannot be exported) or ``torch``.
    runtime: Literal["onnx", "torch"] = "onnx"


class RelevanceSettings(BaseModel):
    """The relevance stage (the distilled BERT2DNN student and its gate) and ``shopsearch
    train --stage relevance``."""

    model_config = ConfigDict(extra="forbid")

    #: Run the bundle's relevance model (``false``: candidates pass unscored).
    enabled: bool = True
    #: What the gate does to candidates the student scores below the threshold: ``demote``
    #: puts them after every other candidate (each group keeps its order; later stages
    #: re-order only the ones above), ``drop`` removes them, ``off`` scores without gating.
    gate: Literal["demote", "drop", "off"] = "demote"
    #: The student score below which a candidate is gated; default: the bundle's fitted one.
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    #: Most seconds of the cross-encoder teacher's training (a stopped job resumes).
    teacher_budget_s: float = Field(2400.0, gt=0.0)
    #: Passes of the teacher over its judged pairs (``train --epochs`` sets it).
    teacher_epochs: int = Field(2, ge=1, le=100)
    #: Passes of the student over the teacher-labelled pairs.
    student_epochs: int = Field(4, ge=1, le=100)
    #: Most (query, product) pairs the teacher labels for the student (judged and unlabeled).
    max_pairs: int = Field(300_000, ge=100, le=100_000_000)


class PrerankSettings(BaseModel):
    """The pre-ranking stage (the light model of :mod:`shopsearch.prerank`) and ``shopsearch
    train --stage prerank``. How many candidates it scores is ``[retrieval] candidates``; how
    many it keeps for ranking is ``[pipeline] prerank_keep``."""

    model_config = ConfigDict(extra="forbid")

    #: Run the bundle's pre-ranking model (``false``: the first ``prerank_keep`` in retrieval's
    #: order go to ranking).
    enabled: bool = True
    #: How the model learns from the logged stream: ``hccp`` (hybrid samples, Margin InfoNCE
    #: and consistency with ranking), ``distill`` (imitate the ranker), ``exposed`` (clicks on
    #: shown products only).
    objective: Literal["hccp", "distill", "exposed"] = "hccp"
    #: Passes over the logged requests.
    epochs: int = Field(4, ge=1, le=100)
    #: Most seconds of training.
    budget_s: float = Field(900.0, gt=0.0)


class RerankSettings(BaseModel):
    """The re-ranking stage's diversity re-ranker (issue 16) and ``shopsearch train --stage
    rerank``."""

    model_config = ConfigDict(extra="forbid")

    #: Run the re-ranker (``false``: the ranked order is shown).
    enabled: bool = True
    #: ``podm-mi``: the bundle's trained PODM-MI model (``train --stage rerank``); ``mmr`` and
    #: ``dpp``: the baselines (nothing trained; need no model in the bundle); ``none``: off.
    method: Literal["podm-mi", "mmr", "dpp", "none"] = "podm-mi"
    #: Candidates (from the top, never past those the relevance gate demoted) re-ordered.
    depth: int = Field(50, ge=2, le=1000)
    #: MMR's weight of relevance against redundancy (1: the ranked order).
    mmr_lambda: float = Field(0.7, ge=0.0, le=1.0)
    #: DPP's relevance/diversity trade-off theta (Chen et al. 2018; larger: more relevance).
    dpp_theta: float = Field(0.7, ge=0.0, lt=1.0)
    #: Dimensions of a user's diversity preference (PODM-MI).
    dims: int = Field(4, ge=1, le=64)
    #: Passes of PODM-MI training over the logged lists.
    epochs: int = Field(10, ge=1, le=1000)
    #: Most recent logged requests PODM-MI learns from.
    max_lists: int = Field(200_000, ge=100, le=100_000_000)


class PipelineSettings(BaseModel):
    """The search pipeline (:mod:`shopsearch.pipeline`): its stages in order, and how many
    candidates reach the ranking model."""

    model_config = ConfigDict(extra="forbid")

    #: Stage names of :data:`shopsearch.pipeline.stage.STAGES` (or ``"package.module:Class"``
    #: for an outside stage), run in this order; ``retrieve`` is required. A stage whose model
    #: is not in the bundle is skipped (``--explain`` says so).
    stages: list[str] = ["query", "retrieve", "relevance", "prerank", "rank", "rerank", "allocate"]
    #: Candidates the pre-ranking stage keeps for the ranking model to re-score; the rest
    #: follow them in pre-ranking order.
    prerank_keep: int = Field(200, ge=1, le=10_000)
    #: Share of searches whose stream (the candidates each stage passed on, with the stage's
    #: scores) is logged into the ``stream`` table: what pre-ranking learns from. About 2,600
    #: rows per logged search (retrieve 2,000 + 200 per later stage); see the README.
    stream_sample: float = Field(0.01, ge=0.0, le=1.0)
    #: Most candidates of one stage a logged stream keeps.
    stream_depth: int = Field(2000, ge=1, le=10_000)

    @field_validator("stages")
    @classmethod
    def _needs_retrieve(cls, stages: list[str]) -> list[str]:
        if "retrieve" not in stages:
            raise ValueError("the stages must include 'retrieve'")
        if len(set(stages)) != len(stages):
            raise ValueError("a stage is listed twice")
        return stages


class SearchSettings(BaseModel):
    """Request limits and defaults."""

    model_config = ConfigDict(extra="forbid")

    default_size: int = Field(10, ge=1)
    #: The market a user's search without ``domain`` searches: a domain id, or ``"*"`` for
    #: every market (a product sold in several is then one result per market); default: the
    #: workspace's first declared domain.
    default_domain: str | None = None
    max_size: int = Field(100, ge=1)
    max_page: int = Field(100, ge=1)
    max_query_chars: int = Field(512, ge=1)
    #: Answers of recent anonymous searches kept (by query, market, filters, page and size)
    #: until the next catalog write or reload; 0 turns the cache off. A search with a user id
    #: is always computed (ranking reads the user's behaviour), and so is one whose stream
    #: is recorded.
    response_cache_size: int = Field(4096, ge=0, le=1_000_000)


#: The HTTP servers ``shopsearch serve`` can run the app under.
HttpServer = Literal["uvicorn", "granian"]


class ServeSettings(BaseModel):
    """The HTTP server."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65_535)
    workers: int = Field(1, ge=1, le=64)
    #: The HTTP server running the app's workers (``shopsearch serve --server``).
    server: HttpServer = "uvicorn"
    #: Searches in progress at once per worker; more wait their turn (first come, first
    #: served). A worker's searches share one GIL: with many in progress each slows the
    #: others and a new request waits behind all of them. 4 at a time (still enough for a
    #: cached answer to pass a long search) gave about half the p99 of 32 at 300 and 500
    #: req/s offered (RESULTS.md, issue 20). More may pay with an encoder that batches
    #: concurrent queries (MiniLM; ``[retrieval] query_batch``).
    search_concurrency: int = Field(4, ge=1, le=256)
    #: Run each search on the worker's event loop instead of handing it to a thread: no
    #: thread hop, and the worker's threads no longer take the GIL from each other mid-search.
    #: The loop answers nothing else while a search computes (the next requests wait for
    #: it), a search that would wait for a catalog write still goes to a thread, and
    #: ``search_concurrency`` and the batching of concurrent queries (``[retrieval]
    #: query_batch``) no longer apply: one search at a time. Unset: on the loop when
    #: ``workers`` > 1 (a worker per core, no catalog writes); with one worker, threads (its
    #: concurrent searches overlap their native work). true is refused with ``--shards``.
    #: At 300 req/s on 2 workers: lower CPU per request and p99 (RESULTS.md, issue 20).
    search_on_event_loop: bool | None = None
    #: With several workers, each worker's new cached answers (``[search]
    #: response_cache_size``) also reach the other workers' caches, through journal files in
    #: the workspace's ``serve/`` folder read every 0.1 s: a repeated search then misses once
    #: per server instead of once per worker.
    share_answers: bool = True
    #: Threads of each worker's compute libraries (torch intra-op, faiss and BLAS OpenMP,
    #: tokenizers); concurrent searches are the parallelism, more threads oversubscribe the
    #: cores. 0 leaves the libraries' defaults (every core).
    compute_threads: int = Field(1, ge=0, le=256)
    #: After an engine loads, collect once and freeze the heap (``gc.freeze``): the engine's
    #: hundreds of thousands of long-lived objects leave the cyclic collector's sight, so a
    #: full collection no longer stalls every search in the worker for ~170 ms (50k
    #: products; :mod:`shopsearch.serve.heap`).
    freeze_heap: bool = True
    #: With ``freeze_heap``: every so many seconds, collect the objects created since the
    #: last freeze and freeze the survivors (the caches' entries, kept for minutes), so a
    #: full collection never walks more than this many seconds of objects; 0: freeze only
    #: after a load. Each pause is about proportional to the searches since the last one:
    #: every 10 s it was ~50 ms at 150 searches/s per worker, every 1 s ~4 ms (RESULTS.md).
    freeze_every_s: float = Field(1.0, ge=0.0, le=86_400.0)
    #: Answer a well-formed ``GET /search`` without FastAPI's routing and per-parameter
    #: handling: its query is validated in one pass against the route's own parameter
    #: declarations, and anything refused (or any other request) goes through FastAPI as
    #: before (:mod:`shopsearch.serve.search_fast_path`). false: every request through FastAPI.
    search_fast_path: bool = True
    #: Seconds between compactions of the event log into the workspace tables while serving.
    #: Each worker runs them in a helper process of its own at low CPU priority
    #: (:mod:`shopsearch.serve.background`; on a thread of the worker, reading the log held the
    #: GIL and stopped its searches for 200-500 ms a round); the log is compacted at shutdown
    #: and by any command that reads the tables anyway.
    compact_every_s: float = Field(30.0, gt=0.0, le=86_400.0)
    #: How long a worker's thread may hold the GIL while another waits for it
    #: (``sys.setswitchinterval``, microseconds). A search gives the GIL up at every call
    #: into tantivy, faiss or ONNX Runtime and must win it back from whichever thread took
    #: it; Python's default is 5,000.
    gil_switch_interval_us: int = Field(5000, ge=50, le=100_000)
    #: Largest request body accepted (bytes); a larger one is answered 413 before it is read
    #: (from its Content-Length, or counted as it streams). 2 MiB holds the largest batch of
    #: events (1,000, every id at its 256-character limit).
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=1 << 30)
    #: Longest a search's event log line waits for company before it is written and fsync'd
    #: (seconds): searches served meanwhile share that write and fsync. Posted events do not
    #: wait (they are answered once fsync'd, and take the waiting lines along), and a clean
    #: shutdown writes every waiting line; a crash loses at most this much of searches.
    log_linger_s: float = Field(0.05, ge=0.0, le=1.0)
    #: How far an event's timestamp may lie before its search, or after the server's clock
    #: (seconds; clients' clocks drift).
    event_time_tolerance_s: float = Field(300.0, ge=0.0, le=86_400.0)
    admin_token: SecretStr | None = None


class AllocationSettings(BaseModel):
    """Traffic allocation after re-ranking: the ``allocate`` stage and ``shopsearch train
    --stage allocation`` (MODRL-TA, :mod:`shopsearch.rerank.allocation`)."""

    model_config = ConfigDict(extra="forbid")

    #: Serve the bundle's allocation model (when it has one).
    enabled: bool = True
    #: A product created less than this many days before the first logged request is new.
    new_days: int = Field(30, ge=0, le=36_500)
    #: Ranked positions the allocator may re-order.
    window: int = Field(50, ge=2, le=1000)
    #: Most places an item moves up or down.
    max_shift: int = Field(10, ge=1, le=1000)
    #: Discount of an item's next appearance in the Q-functions.
    gamma: float = Field(0.8, ge=0.0, lt=1.0)
    #: Q-ensemble members per objective.
    members: int = Field(5, ge=1, le=100)
    #: Weight of each objective's relative gain when fusing: clicks, purchases, exposure.
    priorities: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: Estimated purchase loss (share of the ranked order's) the fusion may accept.
    purchase_tolerance: float = Field(0.02, ge=0.0, le=1.0)
    #: Days of live logs after which no simulated interaction is trained on.
    ramp_days: float = Field(5.0, gt=0.0, le=3650.0)
    #: Serve the fixed-weight blend ``(1 - w) / log2(2 + rank) + w * new`` with this weight
    #: instead of MODRL-TA (a baseline, e.g. for ``eval online``; new products as the bundle's
    #: allocation model knows them). ``None``: MODRL-TA.
    blend_weight: float | None = Field(None, ge=0.0, le=1.0)


class Settings(BaseSettings):
    """All settings. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPSEARCH_", env_nested_delimiter="__", extra="forbid"
    )

    retrieval: RetrievalSettings = RetrievalSettings()
    pipeline: PipelineSettings = PipelineSettings()
    query: QuerySettings = QuerySettings()
    ranking: RankingSettings = RankingSettings()
    relevance: RelevanceSettings = RelevanceSettings()
    prerank: PrerankSettings = PrerankSettings()
    rerank: RerankSettings = RerankSettings()
    search: SearchSettings = SearchSettings()
    serve: ServeSettings = ServeSettings()
    allocation: AllocationSettings = AllocationSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)


def load_settings(workspace: Path | None = None, config_file: Path | None = None) -> Settings:
    """Settings from env, then ``config_file`` (or ``workspace/shopsearch.toml``), then defaults."""
    path = config_file
    if path is None and workspace is not None and (workspace / "shopsearch.toml").exists():
        path = workspace / "shopsearch.toml"
    if path is not None and not path.exists():
        raise InvalidInputError(f"config file {path} does not exist")
    try:
        values = tomllib.loads(path.read_text()) if path is not None else {}
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"config file {path} is not valid TOML: {exc}") from exc
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        source = path or "environment"
        raise InvalidInputError(f"invalid configuration ({source}): {problems}") from exc
