"""The generative-retrieval systems of ``eval relevance`` (issue 17).

Trained on the same training queries as the two-tower (the training file minus the fusion
hold-out), from the relevant judgments (grade at or above the suite's threshold, weighted by
grade), over the suite's MiniLM vectors:

- ``baseline/rq-fixed``: SFT generator on fixed-length residual k-means IDs with a collision
  suffix (TIGER-style);
- ``shopsearch/gen-sft``: the same generator on SA²CRQ's traffic-adaptive IDs;
- ``shopsearch/gen-dpo``: gen-sft aligned by plain DPO (+ the global SFT term);
- ``shopsearch/gen-rad-dpo``: gen-sft aligned by RAD-DPO (prefix detachment, similarity
  weighting of pseudo-negatives, multi-label contrastive + global SFT). Both alignments start
  from the same SFT weights, with the judged products below the relevant grade and beam-mined
  IDs as the rejected side;
- ``shopsearch/fused+gen``: lexical + dense + two-tower + the generative source (gen-rad-dpo,
  else the first of gen-dpo, gen-sft, rq-fixed that ran), weighted score fusion fitted on the
  same hold-out as ``shopsearch/fused``.

Every system is scored by the suite (overall, long tail, misspelled, cold start), with its
training times and ID statistics in ``extra``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report
from shopsearch.progress import Say
from shopsearch.retrieval.base import Retriever
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.generative.align_train import align_generative
from shopsearch.retrieval.generative.model import GeneratorConfig
from shopsearch.retrieval.generative.preference import AlignConfig, Mode
from shopsearch.retrieval.generative.retriever import GenerativeRetriever
from shopsearch.retrieval.generative.train import GenerativeConfig, train_generative
from shopsearch.retrieval.generative.trained import GenerativeModel
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.mmse_samples import StagedSamples

#: ``--generative`` names → the report's system names.
GENERATIVE_SYSTEMS = {
    "rq-fixed": "baseline/rq-fixed",
    "gen-sft": "shopsearch/gen-sft",
    "gen-dpo": "shopsearch/gen-dpo",
    "gen-rad-dpo": "shopsearch/gen-rad-dpo",
    "fused+gen": "shopsearch/fused+gen",
}
#: The generator the suite trains (chosen on a by-query split of the training file).
GENERATOR = GeneratorConfig(dim=128, heads=4, layers=2, memory=4, epochs=10, batch_size=256)


def chosen_systems(names: Sequence[str]) -> list[str]:
    """The ``--generative`` names (``all``: every one); a clear error for an unknown name."""
    if not names or tuple(names) == ("all",):
        return list(GENERATIVE_SYSTEMS)
    unknown = [n for n in names if n not in GENERATIVE_SYSTEMS]
    if unknown:
        raise InvalidInputError(
            f"unknown generative system(s) {', '.join(map(repr, unknown))}; use all, none or "
            f"a comma list of {', '.join(GENERATIVE_SYSTEMS)}"
        )
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class LearnedParts:
    """What the learned systems built that the generative ones reuse.

    Attributes:
        two_tower: the two-tower source of ``shopsearch/fused``.
        holdout: the training queries fusion weights are fitted on (no model trains on them).
        fit_qrels: the other training queries' judgments (what the models train on).
        texts: product key → item text, in catalog order.
    """

    two_tower: DenseRetriever
    holdout: list[str]
    fit_qrels: dict[str, dict[ProductKey, float]]
    texts: dict[ProductKey, str]


def generative_systems(
    names: Sequence[str],
    settings: Mapping[str, Any],
    parts: LearnedParts,
    catalog: pa.Table,
    holdout_qrels: Mapping[str, Mapping[ProductKey, float]],
    sources: Mapping[str, Retriever],
    dense: DenseRetriever,
    queries: list[str],
    relevant: float,
    cache_dir: Path,
    report: Report,
    score: Callable[..., None],
    say: Say,
) -> None:
    """Train and score the chosen generative systems (see the module docstring).

    Args:
        names: ``--generative`` names.
        settings: :class:`GenerativeConfig` overrides (``generator``: :class:`GeneratorConfig`
            overrides).
        parts: the learned systems' two-tower, hold-out and training judgments.
        catalog: the suite's products.
        holdout_qrels: judgments of the hold-out queries.
        sources: the sources of ``shopsearch/fused`` (the generative one is added to them).
        dense: the MiniLM source (its encoder makes the IDs' vectors and the query vectors).
        queries: the test queries.
        relevant: the relevant grade (on the suite's gains): the generator's positives.
        cache_dir: the embedding cache.
        report: the report to add to.
        score: the suite's scorer.
        say: progress messages.
    """
    chosen = chosen_systems(names)
    overrides = dict(settings)
    beam = int(overrides.pop("beam", 100))
    align_settings = overrides.pop("align", {})
    generator = replace(GENERATOR, **overrides.pop("generator", {}))
    config = GenerativeConfig(positive_stage=relevant, generator=generator, **overrides)
    samples = StagedSamples.from_judgments(parts.fit_qrels, parts.texts)
    keys = list(parts.texts)
    found: dict[str, GenerativeRetriever] = {}

    def serve(name: str, model: GenerativeModel) -> None:
        with report.timer(f"index/{name}"):
            source = GenerativeRetriever(model, beam=beam).index(catalog)
        report.config[name] = dict(model.info)
        found[name] = source
        start = time.perf_counter()
        results = source.retrieve_many(queries, 100)
        score(GENERATIVE_SYSTEMS[name], results, time.perf_counter() - start,
              extra={"ids": model.info.get("id_stats", {})})  # fmt: skip

    def train(name: str, ids: Literal["rq-fixed", "sa2crq"]) -> GenerativeModel:
        say(f"{name}: {ids} semantic IDs of {len(keys)} products, SFT on the training queries")
        with report.timer(f"fit/{name}"):
            return train_generative(samples, keys, dense.encoder, replace(config, ids=ids),
                                    cache_dir, say=say)  # fmt: skip

    if "rq-fixed" in chosen:
        serve("rq-fixed", train("rq-fixed", "rq-fixed"))
    aligned = [n for n in ("gen-dpo", "gen-rad-dpo") if n in chosen]
    if "gen-sft" in chosen or aligned:
        sft = train("gen-sft", "sa2crq")
        if "gen-sft" in chosen:
            serve("gen-sft", sft)
        for name in aligned:
            mode: Mode = "dpo" if name == "gen-dpo" else "rad-dpo"
            with report.timer(f"fit/{name}"):
                model = align_generative(sft, samples, keys, mode, relevant,
                                         AlignConfig(**align_settings), cache_dir=cache_dir,
                                         say=say)  # fmt: skip
            serve(name, model)
    if "fused+gen" in chosen:
        if not found:
            serve("rq-fixed", train("rq-fixed", "rq-fixed"))
        best = next(n for n in ("gen-rad-dpo", "gen-dpo", "gen-sft", "rq-fixed") if n in found)
        fused = HybridRetriever({**sources, "generative": found[best]})
        with report.timer("fit/fused_gen_fusion"):
            fused.fit_fusion(parts.holdout, [dict(holdout_qrels[q]) for q in parts.holdout])
        report.config["fused_gen"] = {
            "generative": best,
            "weights": dict(fused.weighting_.weights_),
        }
        start = time.perf_counter()
        results = fused.retrieve_many(queries, 100)
        score(GENERATIVE_SYSTEMS["fused+gen"], results, time.perf_counter() - start)


__all__ = ["GENERATIVE_SYSTEMS", "LearnedParts", "chosen_systems", "generative_systems"]
