"""Align a trained generator with preferences: ``gen-dpo`` and ``gen-rad-dpo``.

From the same staged samples SFT learned from: per query, its positives (stage at or above the
positive stage) are chosen, its judged or shown-unclicked products below it are rejected, and
so are up to ``mine`` IDs the SFT generator itself ranks highest that hold no positive
(pseudo-negatives: unlabelled). :func:`~.preference.align` then trains a copy of the generator
against the frozen SFT model (:mod:`.preference`); the IDs and the quantizer are shared, so the
aligned model serves the same catalog.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.model import IdGenerator
from shopsearch.retrieval.generative.pairs import build_pairs, mine_negatives
from shopsearch.retrieval.generative.preference import AlignConfig, Mode, align
from shopsearch.retrieval.generative.trained import GenerativeModel, item_vectors
from shopsearch.retrieval.generative.trie import PrefixTrie
from shopsearch.retrieval.mmse import torch_threads
from shopsearch.retrieval.mmse_samples import StagedSamples


def align_generative(
    model: GenerativeModel,
    samples: StagedSamples,
    keys: Sequence[ProductKey],
    mode: Mode,
    positive_stage: float,
    config: AlignConfig | None = None,
    mine: int = 4,
    cache_dir: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> GenerativeModel:
    """A copy of ``model`` whose generator is aligned by ``mode`` (``dpo`` or ``rad-dpo``).

    Args:
        model: the SFT model, trained on ``samples`` over ``keys`` (:func:`.train_generative`).
        samples: the staged (query, product, stage) samples.
        keys: ``keys[i]`` is the key of ``samples.items[i]`` (the model's ID rows).
        mode: the alignment.
        positive_stage: pairs at this stage or above are chosen, below it rejected.
        config: the alignment's settings.
        mine: beam-mined pseudo-negatives per query (0: none).
        cache_dir: the embedding cache of the item vectors.
        say: progress messages.

    Raises:
        InvalidInputError: keys that are not the model's ID rows, or a GenRec model (aligned by
            GRPO-SR, not DPO).
    """
    generator = model.generator
    if not isinstance(generator, IdGenerator):
        raise InvalidInputError("DPO alignment is for the query-only generator, not GenRec")
    ids = model.ids
    if list(ids.keys[: len(keys)]) != [tuple(k) for k in keys]:
        raise InvalidInputError("align with the samples and keys the model was trained on")
    start = time.monotonic()
    queries = np.asarray(model.encoder.encode_queries(samples.queries), np.float32)
    vectors = item_vectors(model.encoder, samples.items, cache_dir)
    positives: list[list[int]] = [[] for _ in samples.queries]
    weights: list[list[float]] = [[] for _ in samples.queries]
    negatives: list[list[int]] = [[] for _ in samples.queries]
    for q, item, stage in zip(samples.query_index.tolist(), samples.item_index.tolist(),
                              samples.stage.tolist(), strict=True):  # fmt: skip
        if stage >= positive_stage:
            positives[q].append(item)
            weights[q].append(float(stage))
        else:
            negatives[q].append(item)
    keep = [i for i, rows in enumerate(positives) if rows]
    tokens = np.minimum(ids.tokens[: len(keys)], generator.vocab - 1)
    lengths = ids.lengths[: len(keys)]
    mined = None
    if mine:
        trie = PrefixTrie(tokens, lengths)
        with torch_threads(1):
            mined = mine_negatives(generator, trie, queries[keep],
                                   [positives[i] for i in keep], count=mine)  # fmt: skip
    pairs = build_pairs(
        queries[keep],
        [positives[i] for i in keep],
        [negatives[i] for i in keep],
        tokens,
        vectors,
        lengths=lengths,
        positive_weights=[weights[i] for i in keep],
        mined=mined,
    )
    prepare_s = time.monotonic() - start
    if say is not None:
        say(f"{mode}: {len(pairs)} preference pairs of {len(keep)} queries "
            f"({int(pairs.mined.sum())} with a beam-mined negative)")  # fmt: skip
    generator = copy.deepcopy(generator)
    cfg = config or AlignConfig()
    with torch_threads(1):
        history = align(generator, pairs, mode, cfg)
    generator.eval()
    info = {
        **model.info,
        "alignment": {
            "mode": mode,
            "pairs": len(pairs),
            "mined_pairs": int(pairs.mined.sum()),
            "queries": len(keep),
            "prepare_s": prepare_s,
            "align_s": history.seconds,
            "steps": history.steps,
            "stopped_by_budget": history.stopped_by_budget,
            "config": asdict(cfg),
        },
    }
    return GenerativeModel(model.encoder, model.quantizer, ids, generator,
                           model.in_bucket_temperature, info)  # fmt: skip


__all__ = ["align_generative"]
