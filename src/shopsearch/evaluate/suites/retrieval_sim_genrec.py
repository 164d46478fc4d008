"""GenRec systems of ``shopsearch eval retrieval --dataset sim --genrec all`` (issue 17).

Every system generates semantic IDs (``baseline/rq-fixed`` IDs: 3 residual k-means codes of the
MiniLM product vector, then a collision suffix) with a small transformer, constrained to the
trie of the request's market, top ``GENREC_DEPTH``. They are trained on the pages of the suite's
training requests (:class:`~shopsearch.retrieval.generative.pages.PageSamples`; histories only
from requests logged before each page) and retrieve **per test request**, with the history its
user had then (every logged request strictly before it, as production would know):

* ``shopsearch/genrec``: page-wise SFT + GRPO-SR, Token Merger on;
* ``shopsearch/genrec-nomerge``: the same without the merger (one prompt token per ID token);
* ``shopsearch/genrec-sft``: page-wise SFT with the merger, no GRPO (the RL ablation);
* ``shopsearch/genrec-nohist``: page-wise SFT without history (separates the page-wise claim
  from the history claim);
* ``baseline/gen-pointwise``: point-wise SFT, same IDs, no history (TIGER-style);
* ``baseline/dense-minilm``: the suite's MiniLM dense index scored the same way (MRR and the
  ``active_users`` slice, which the suite's own systems lack).

GRPO-SR's reward is the logged reward model (logistic regression of "clicked or better" on the
training impressions over MiniLM cosine, query-word overlap and past clicks) times a relevance
gate (cosine >= the dense index's calibrated noise level). The simulator's truth is only used to
score. Extra per system: ``active_users`` (test requests whose user has >= 3 history items),
``long_tail``, ``by_domain``, mean prompt tokens, and per-request latency (prompt encoding +
constrained beam, query vector given, one thread), p50/p99 over the scored test requests.
Every GenRec system (and the reference) retrieves the top ``GENREC_DEPTH`` = 100, so recall@500
is not reported for them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shopsearch.catalog.candidates import Filters, ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.progress import Say
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.generative.genrec import (
    GenRec,
    GenRecConfig,
    GenRecExamples,
    history_rows,
)
from shopsearch.retrieval.generative.grpo import GrpoConfig, fit_grpo
from shopsearch.retrieval.generative.ids import FixedSemanticIds
from shopsearch.retrieval.generative.model import GeneratorConfig
from shopsearch.retrieval.generative.pages import Page, PageSamples, timestamps_us
from shopsearch.retrieval.generative.quantize import ResidualKMeans
from shopsearch.retrieval.generative.reward import (
    LoggedRewardModel,
    PastClicks,
    hybrid_reward,
    reward_features,
    word_overlaps,
)
from shopsearch.retrieval.mmse import torch_threads
from shopsearch.store.workspace import Workspace

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
GENREC_SYSTEMS = (
    "shopsearch/genrec",
    "shopsearch/genrec-nomerge",
    "shopsearch/genrec-sft",
    "shopsearch/genrec-nohist",
    "baseline/gen-pointwise",
)
#: The MiniLM dense index scored per request like the generators (MRR, ``active_users``).
REFERENCE = "baseline/dense-minilm"
METRICS = ("ndcg@10", "recall@100", "mrr")
#: Candidates retrieved per request (the suite's other systems go to 500; recall@100, NDCG@10
#: and MRR@100 need 100, and a beam of 500 costs 5x the decoding).
GENREC_DEPTH = 100
#: A user with at least this many history items is active.
ACTIVE_HISTORY = 3


class SimTest(Protocol):
    """The suite's scored test requests (``retrieval_sim._Test``)."""

    query: dict[str, str]
    domain: dict[str, str]
    qrels: dict[str, dict[ProductKey, float]]
    scored: list[str]
    long_tail: list[str]


@dataclass(frozen=True)
class GenRecSimSettings:
    """How the GenRec systems are built (one setting for all, so only the ablated part
    differs between them)."""

    levels: int = 3
    codewords: int = 64
    generator: GeneratorConfig = field(
        default_factory=lambda: GeneratorConfig(
            dim=64, heads=4, layers=2, memory=4, epochs=8, batch_size=256, lr=2e-3, budget_s=900
        )
    )
    history: int = 20
    grpo: GrpoConfig = field(
        default_factory=lambda: GrpoConfig(group=8, pages=32, batches=300, budget_s=600)
    )
    depth: int = GENREC_DEPTH
    beam: int = GENREC_DEPTH
    reward_impressions: int = 200_000


def genrec_systems(choice: Sequence[str]) -> list[str]:
    """``all``, ``none`` or names of :data:`GENREC_SYSTEMS` → the systems to run.

    Raises:
        InvalidInputError: an unknown name.
    """
    names = [c for c in choice if c]
    if not names or names == ["none"]:
        return []
    if names == ["all"]:
        return list(GENREC_SYSTEMS)
    unknown = [n for n in names if n not in GENREC_SYSTEMS]
    if unknown:
        raise InvalidInputError(
            f"unknown GenRec system(s) {unknown}; use all, none or {', '.join(GENREC_SYSTEMS)}"
        )
    return list(dict.fromkeys(names))


@dataclass
class _Data:
    """Everything the systems share."""

    keys: list[ProductKey]
    row_of: dict[ProductKey, int]
    vectors: F32
    texts: list[str]
    domain_mask: dict[str, npt.NDArray[np.bool_]]
    ids: FixedSemanticIds
    samples: PageSamples
    train_pages: list[Page]
    query_vector: dict[str, F32]
    clicks: PastClicks


def _tables(workspace: Workspace) -> tuple[pa.Table, pa.Table, pa.Table]:
    requests = workspace.table(
        "requests", ["request_id", "user_id", "domain", "query", "timestamp"]
    )
    impressions = workspace.table("impressions", ["request_id", "product_id", "position"])
    interactions = workspace.table("interactions", ["request_id", "product_id", "kind"])
    return requests, impressions, interactions


def _prepare(
    workspace: Workspace,
    products: pa.Table,
    dense: DenseRetriever,
    texts: Mapping[ProductKey, str],
    train_ids: Sequence[str],
    test: SimTest,
    settings: GenRecSimSettings,
    say: Say,
) -> _Data:
    keys = list(
        zip(
            products.column("domain").to_pylist(),
            products.column("product_id").to_pylist(),
            strict=True,
        )
    )
    keys = list(dict.fromkeys(keys))
    rows = dense.rows_of(keys)
    if (rows < 0).any():
        raise InvalidInputError("the dense index lacks some catalog products")
    vectors = np.asarray(dense.vectors_[rows], np.float32)
    row_of = {k: i for i, k in enumerate(keys)}
    domains = np.array([d for d, _ in keys])
    domain_mask = {d: domains == d for d in sorted(set(domains.tolist()))}
    say(f"GenRec: semantic IDs of {len(keys)} products (rq-fixed, {settings.levels} levels)")
    quantizer = ResidualKMeans(settings.levels, settings.codewords, seed=0).fit(vectors)
    ids = FixedSemanticIds(keys, quantizer.encode(vectors), settings.levels)
    requests, impressions, interactions = _tables(workspace)
    samples = PageSamples.from_events(
        requests, impressions, interactions, request_ids=train_ids, history_size=settings.history
    )
    queries = sorted({p.query for p in samples.pages} | {test.query[r] for r in test.scored})
    say(f"GenRec: {len(samples.pages)} training pages; MiniLM vectors of {len(queries)} queries")
    found = dense.query_vectors(queries)
    query_vector = {q: np.asarray(v, np.float32) for q, v in zip(queries, found, strict=True)}
    time_of = dict(
        zip(
            requests.column("request_id").to_pylist(),
            timestamps_us(requests.column("timestamp")).tolist(),
            strict=True,
        )
    )
    domain_of = dict(
        zip(
            requests.column("request_id").to_pylist(),
            requests.column("domain").to_pylist(),
            strict=True,
        )
    )
    click_rows, click_times = [], []
    for rid, items in samples.histories.interacted.items():
        for pid, _stage in items:
            row = row_of.get((domain_of.get(rid, ""), pid))
            if row is not None:
                click_rows.append(row)
                click_times.append(time_of[rid])
    return _Data(
        keys,
        row_of,
        vectors,
        [texts.get(k, "") for k in keys],
        domain_mask,
        ids,
        samples,
        samples.pages,
        query_vector,
        PastClicks(click_rows, click_times),
    )


def _examples(data: _Data, history: int, point_wise: bool = False) -> GenRecExamples:
    pages = data.train_pages
    vectors = np.stack([data.query_vector[p.query] for p in pages])
    return GenRecExamples.from_pages(pages, vectors, data.row_of, history, point_wise)


def _reward_model(
    data: _Data, workspace: Workspace, train_ids: Sequence[str], settings: GenRecSimSettings
) -> tuple[LoggedRewardModel, dict[str, Any]]:
    """The logged reward model, fitted on (a seeded sample of) the training impressions."""
    requests, impressions, _ = _tables(workspace)
    train = set(train_ids)
    info = {
        rid: (domain, query, ts)
        for rid, domain, query, ts in zip(
            requests.column("request_id").to_pylist(),
            requests.column("domain").to_pylist(),
            requests.column("query").to_pylist(),
            timestamps_us(requests.column("timestamp")).tolist(),
            strict=True,
        )
        if rid in train
    }
    clicked = {
        (rid, pid) for rid, items in data.samples.histories.interacted.items() for pid, _ in items
    }
    rids = impressions.column("request_id").to_pylist()
    pids = impressions.column("product_id").to_pylist()
    picked = [i for i, rid in enumerate(rids) if rid in info]
    rng = np.random.default_rng(0)
    if len(picked) > settings.reward_impressions:
        picked = sorted(rng.choice(picked, settings.reward_impressions, replace=False).tolist())
    rows, queries, times, labels = [], [], [], []
    for i in picked:
        domain, query, ts = info[rids[i]]
        row = data.row_of.get((domain, pids[i]))
        if row is None:
            continue
        rows.append(row)
        queries.append(query)
        times.append(ts)
        labels.append((rids[i], pids[i]) in clicked)
    r = np.array(rows, np.int64)
    features = _features(data, queries, r, np.array(times, np.int64))
    model = LoggedRewardModel().fit(features, np.array(labels))
    y = np.array(labels, float)
    return model, {
        "impressions": len(r),
        "click_rate": float(y.mean()),
        "coefficients": model.coefficients(),
    }


def _features(data: _Data, queries: Sequence[str], rows: I64, times: I64) -> npt.NDArray[Any]:
    q = np.stack(
        [data.query_vector.get(t, np.zeros(data.vectors.shape[1], np.float32)) for t in queries]
    )
    cos = (q * data.vectors[rows]).sum(1)
    overlap = word_overlaps(queries, [data.texts[r] for r in rows.tolist()])
    return reward_features(cos, overlap, data.clicks.before(rows, times))


def _train(
    name: str,
    data: _Data,
    settings: GenRecSimSettings,
    trained: dict[str, tuple[GenRec, dict[str, Any]]],
    reward: Callable[[GenRecExamples], Callable[[I64, I64], npt.NDArray[Any]]],
    say: Say,
) -> tuple[GenRec, dict[str, Any]]:
    """Train system ``name`` (reusing the SFT model of ``genrec-sft`` for ``genrec``)."""
    if name in trained:
        return trained[name]
    tokens, lengths = data.ids.tokens, data.ids.lengths
    dim = data.vectors.shape[1]
    merger = name != "shopsearch/genrec-nomerge"
    no_history = name in {"shopsearch/genrec-nohist", "baseline/gen-pointwise"}
    history = 0 if no_history else settings.history
    point_wise = name == "baseline/gen-pointwise"
    rl = name in {"shopsearch/genrec", "shopsearch/genrec-nomerge"}
    info: dict[str, Any] = {
        "merger": merger,
        "history": history,
        "page_wise": not point_wise,
        "grpo": rl,
    }
    if name == "shopsearch/genrec":
        sft, sft_info = _train("shopsearch/genrec-sft", data, settings, trained, reward, say)
        model = copy.deepcopy(sft)
        info["sft_s"] = sft_info["sft_s"]
    else:
        config = GenRecConfig(merger=merger, history=history, page_wise=not point_wise)
        examples = _examples(data, history, point_wise)
        model = GenRec(tokens, lengths, dim, settings.generator, config)
        say(f"{name}: SFT on {len(examples)} {'point' if point_wise else 'page'} examples")
        start = time.perf_counter()
        model.fit(examples)
        info["sft_s"] = time.perf_counter() - start
        info["examples"] = len(examples)
    if rl:
        examples = _examples(data, history)
        say(f"{name}: GRPO-SR on {len(examples)} pages")
        info["grpo_info"] = fit_grpo(
            model, examples, reward(examples), data.domain_mask, settings.grpo
        )
    trained[name] = (model, info)
    return model, info


def _market_collisions(data: _Data) -> float:
    """Share of products whose codes (suffix left out) another product of its market shares
    (the same product carried in several markets has the same text, so the same codes)."""
    codes = data.ids.codes[:, : data.ids.levels]
    groups: dict[tuple[str, bytes], int] = {}
    keys = [(d, codes[i].tobytes()) for i, (d, _) in enumerate(data.keys)]
    for key in keys:
        groups[key] = groups.get(key, 0) + 1
    return float(np.mean([groups[k] > 1 for k in keys])) if keys else 0.0


def _percentiles(times: Sequence[float]) -> dict[str, float]:
    if not times:
        return {}
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def run_genrec_systems(
    report: Report,
    workspace: Workspace,
    products: pa.Table,
    dense: DenseRetriever,
    texts: Mapping[ProductKey, str],
    train_ids: Sequence[str],
    test: SimTest,
    systems: Sequence[str],
    *,
    rel_threshold: float,
    n_resamples: int,
    seed: int,
    say: Say,
    settings: GenRecSimSettings | None = None,
) -> None:
    """Train, retrieve with and score the GenRec ``systems`` (and ``baseline/dense-minilm``)
    on the suite's split; results are added to ``report``."""
    cfg = settings or GenRecSimSettings()
    with torch_threads(1):  # small matrices: a second thread costs more than it gives
        depth = cfg.depth
        with report.timer("genrec/prepare"):
            data = _prepare(workspace, products, dense, texts, train_ids, test, cfg, say)
        requests, _, _ = _tables(workspace)
        meta = {
            rid: (user, int(ts))
            for rid, user, ts in zip(
                requests.column("request_id").to_pylist(),
                requests.column("user_id").to_pylist(),
                timestamps_us(requests.column("timestamp")).tolist(),
                strict=True,
            )
        }
        hist_keys = [data.samples.histories.before(*meta[r], cfg.history) for r in test.scored]
        hist, hist_stage = history_rows(
            [h for h, _ in hist_keys], [s for _, s in hist_keys], data.row_of, cfg.history
        )
        active = [
            r for r, h in zip(test.scored, hist, strict=True) if (h >= 0).sum() >= ACTIVE_HISTORY
        ]
        report.config["genrec"] = {
            "ids": {
                "kind": "rq-fixed",
                "levels": cfg.levels,
                "codewords": cfg.codewords,
                "collision_rate": data.ids.collision_rate(),
                "collision_rate_within_market": _market_collisions(data),
                "max_suffix": int(data.ids.suffix.max()),
            },
            "generator": asdict(cfg.generator),
            "grpo": asdict(cfg.grpo),
            "history": cfg.history,
            "beam": cfg.beam,
            "training_pages": len(data.train_pages),
            "active_users_requests": len(active),
            "mean_history_items": float((hist >= 0).sum(1).mean()) if len(hist) else 0.0,
        }
        say(
            f"GenRec: {len(test.scored)} scored test requests, {len(active)} with >= "
            f"{ACTIVE_HISTORY} history items"
        )

        def metrics_of(run: Mapping[str, list[ProductKey]], ids: list[str], boot: int) -> Any:
            return evaluate_run(
                run,
                test.qrels,
                metrics=METRICS,
                rel_threshold=rel_threshold,
                query_ids=ids,
                n_resamples=boot,
                seed=seed,
            )

        def add(name: str, run: Mapping[str, list[ProductKey]], extra: dict[str, Any]) -> None:
            evaluation = metrics_of(run, test.scored, n_resamples)
            for slice_name, ids in (("long_tail", test.long_tail), ("active_users", active)):
                if ids:
                    part = metrics_of(run, ids, n_resamples)
                    extra[slice_name] = {
                        **part.metrics,
                        "requests": len(ids),
                        "ci95": {k: list(v) for k, v in part.ci.items()},
                    }
            extra["by_domain"] = {
                d: metrics_of(run, [r for r in test.scored if test.domain[r] == d], 0).metrics
                for d in sorted({test.domain[r] for r in test.scored})
            }
            report.add_evaluation(name, evaluation, extra=extra)
            m = evaluation.metrics
            say(
                f"{name}: ndcg@10={m['ndcg@10']:.4f} recall@100={m['recall@100']:.4f} "
                f"mrr={m['mrr']:.4f}"
            )

        # the MiniLM dense index, scored per request like the generators
        start = time.perf_counter()
        found: dict[tuple[str, str], list[ProductKey]] = {}
        for d in sorted({test.domain[r] for r in test.scored}):
            texts_d = sorted({test.query[r] for r in test.scored if test.domain[r] == d})
            results = dense.retrieve_many(texts_d, depth, Filters(domain=d))
            for q, c in zip(texts_d, results, strict=True):
                found[(d, q)] = list(c.keys)
        dense_run = {r: found[(test.domain[r], test.query[r])] for r in test.scored}
        seconds = (time.perf_counter() - start) / max(len(found), 1)
        add(REFERENCE, dense_run, {"latency": {"ms_per_query": 1000 * seconds}})

        with report.timer("genrec/reward_model"):
            reward_model, reward_info = _reward_model(data, workspace, train_ids, cfg)
            threshold = dense.calibrate()
        report.config["genrec"]["reward"] = {**reward_info, "gate_threshold": threshold}

        def reward(examples: GenRecExamples) -> Callable[[I64, I64], npt.NDArray[Any]]:
            pages = data.train_pages

            def score(example_rows: I64, rows: I64) -> npt.NDArray[Any]:
                page = [pages[int(examples.page[e])] for e in example_rows.tolist()]
                features = _features(
                    data,
                    [p.query for p in page],
                    rows,
                    np.array([p.timestamp for p in page], np.int64),
                )
                return hybrid_reward(reward_model, features, threshold)

            return score

        trained: dict[str, tuple[GenRec, dict[str, Any]]] = {}
        nodes: dict[tuple[int, str], npt.NDArray[np.bool_]] = {}
        queries = np.stack([data.query_vector[test.query[r]] for r in test.scored])
        for name in systems:
            with report.timer(f"genrec/train/{name}"):
                model, info = _train(name, data, cfg, trained, reward, say)
            run: dict[str, list[ProductKey]] = {}
            times: list[float] = []
            for i, rid in enumerate(test.scored):
                key = (id(model), test.domain[rid])
                if key not in nodes:
                    nodes[key] = model.trie.allowed(data.domain_mask[test.domain[rid]])
                begin = time.perf_counter()
                rows, _ = model.retrieve(
                    queries[i], hist[i], hist_stage[i], depth, cfg.beam, nodes[key]
                )
                times.append(1000 * (time.perf_counter() - begin))
                run[rid] = [data.keys[r] for r in rows.tolist()]
            prompt = model.prompt_tokens(hist)
            is_active = (hist >= 0).sum(1) >= ACTIVE_HISTORY
            add(
                name,
                run,
                {
                    "latency": {
                        **_percentiles(times),
                        "note": f"per request, top {depth}, beam {cfg.beam}: prompt encoding + "
                        "constrained beam, query vector given, 1 thread",
                    },
                    "prompt": {
                        "tokens_mean": float(prompt.mean()),
                        "tokens_active_users_mean": float(prompt[is_active].mean())
                        if is_active.any()
                        else None,
                    },
                    "train": info,
                },
            )


__all__ = [
    "GENREC_SYSTEMS",
    "REFERENCE",
    "GenRecSimSettings",
    "SimTest",
    "genrec_systems",
    "run_genrec_systems",
]
