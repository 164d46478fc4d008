"""Preference pairs for aligning the ID generator (:mod:`.preference`): per query, its
positive IDs, its negative IDs and (chosen, rejected) pairs of them.

Negatives are explicit (e.g. judged below the relevant threshold; shown and not clicked) or
mined: the SFT model's best IDs under the constrained beam that hold no positive
(:func:`mine_negatives`), unlabelled and so pseudo-negatives. IDs may be shared by several
products (adaptive, shortened IDs; equal codes), so everything is kept per distinct ID: a pair
never has equal chosen and rejected IDs, and a negative whose ID is one of the query's
positive IDs is dropped. Each pair carries the cosine of its chosen and rejected item vectors
for RAD-DPO's similarity weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.decode import beam_search
from shopsearch.retrieval.generative.incremental import CachedSteps
from shopsearch.retrieval.generative.model import IdGenerator
from shopsearch.retrieval.generative.trie import PrefixTrie

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PreferencePairs:
    """Preference pairs and the labelled IDs behind them (see :func:`build_pairs`).

    Attributes:
        queries: ``[nq, dim]`` query vectors.
        pair_query: ``[n]`` each pair's query row.
        chosen, rejected: ``[n, depth]`` ID tokens of each pair (padded past the length).
        chosen_lengths, rejected_lengths: ``[n]`` ID lengths.
        similarity: ``[n]`` cosine of the chosen and the rejected item vectors.
        mined: ``[n]`` whether the rejected ID was mined from the beam.
        label_query: ``[m]`` each labelled ID's query row (positives and negatives).
        label_ids, label_lengths: its tokens and length.
        label_key: ``[m]`` an integer per distinct ID (equal keys = equal IDs).
        label_positive: ``[m]`` whether it is a positive.
        label_weight: ``[m]`` the SFT weight of a positive (1 for negatives).
    """

    queries: F32
    pair_query: I64
    chosen: I64
    chosen_lengths: I64
    rejected: I64
    rejected_lengths: I64
    similarity: F32
    mined: Bool
    label_query: I64
    label_ids: I64
    label_lengths: I64
    label_key: I64
    label_positive: Bool
    label_weight: F32

    def __len__(self) -> int:
        return len(self.pair_query)

    @property
    def depth(self) -> int:
        """The padded ID length."""
        return int(self.label_ids.shape[1])


def _unit(vectors: F32) -> F32:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: F32 = vectors / np.maximum(norms, 1e-12)
    return out


def build_pairs(
    queries: npt.ArrayLike,
    positives: Sequence[Sequence[int]],
    negatives: Sequence[Sequence[int]],
    tokens: npt.ArrayLike,
    vectors: npt.ArrayLike,
    *,
    lengths: npt.ArrayLike | None = None,
    positive_weights: Sequence[Sequence[float]] | None = None,
    mined: Sequence[Sequence[int]] | None = None,
    max_pairs: int = 16,
    seed: int = 0,
) -> PreferencePairs:
    """Pairs (query, a positive's ID, a negative's ID) from per-query product rows.

    IDs may be shared (several products in one leaf), so labels are kept per distinct ID: a
    query's positives with one ID count once (the largest weight), a negative whose ID is one
    of the query's positive IDs is dropped (pushing it down would push a positive down), and so
    no pair has equal chosen and rejected IDs. Each query keeps at most ``max_pairs`` of its
    positive x negative pairs (a seeded sample).

    Args:
        queries: ``[nq, dim]`` query vectors.
        positives: per query, its relevant product rows.
        negatives: per query, its explicit negative rows (e.g. judged below the threshold).
        tokens: ``[rows, depth]`` every product's ID tokens.
        vectors: ``[rows, d]`` every product's item vector (for the similarity weight).
        lengths: every product's ID length (default: ``depth``).
        positive_weights: per query, a weight per positive (default 1).
        mined: per query, more negative rows (:func:`mine_negatives`; pseudo-negatives).
        max_pairs: most pairs per query.
        seed: seed of the pair sample.

    Raises:
        InvalidInputError: lists whose lengths do not match the queries, or rows out of range.
    """
    q = np.asarray(queries, np.float32)
    ids = np.asarray(tokens, np.int64)
    vec = _unit(np.asarray(vectors, np.float32))
    n_rows, depth = ids.shape
    size = np.full(n_rows, depth, np.int64) if lengths is None else np.asarray(lengths, np.int64)
    mined_rows: Sequence[Sequence[int]] = mined if mined is not None else [[]] * len(q)
    if not len(positives) == len(negatives) == len(mined_rows) == len(q):
        raise InvalidInputError(
            f"{len(q)} queries but {len(positives)} positive, {len(negatives)} negative and "
            f"{len(mined_rows)} mined lists: give one list per query"
        )
    if len(vec) != n_rows or len(size) != n_rows:
        raise InvalidInputError(f"give one vector and one length per row of tokens ({n_rows})")
    if max_pairs < 1:
        raise InvalidInputError(f"max_pairs={max_pairs} must be >= 1")
    padded = np.where(np.arange(depth)[None, :] < size[:, None], ids, -1)
    _, row_key = np.unique(padded, axis=0, return_inverse=True)
    row_key = row_key.reshape(-1)
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, int, int, bool]] = []
    labels: list[tuple[int, int, bool, float]] = []
    for qi in range(len(q)):
        weights = [1.0] * len(positives[qi]) if positive_weights is None else positive_weights[qi]
        every = [*positives[qi], *negatives[qi], *mined_rows[qi]]
        if every and (min(every) < 0 or max(every) >= n_rows):
            raise InvalidInputError(f"query {qi}: product rows must be in 0..{n_rows - 1}")
        if len(weights) != len(positives[qi]):
            raise InvalidInputError(f"query {qi}: give one weight per positive")
        best: dict[int, tuple[int, float]] = {}
        for row, weight in zip(positives[qi], weights, strict=True):
            key = int(row_key[row])
            if key not in best or weight > best[key][1]:
                best[key] = (int(row), float(weight))
        rejected: dict[int, tuple[int, bool]] = {}
        for rows, is_mined in ((negatives[qi], False), (mined_rows[qi], True)):
            for row in rows:
                key = int(row_key[row])
                if key not in best and key not in rejected:
                    rejected[key] = (int(row), is_mined)
        labels += [(qi, row, True, w) for row, w in best.values()]
        labels += [(qi, row, False, 1.0) for row, _ in rejected.values()]
        cross = [(qi, w, r, m) for w, _ in best.values() for r, m in rejected.values()]
        if len(cross) > max_pairs:
            cross = [cross[i] for i in sorted(rng.choice(len(cross), max_pairs, replace=False))]
        pairs += cross
    pair = np.array([p[:3] for p in pairs], np.int64).reshape(-1, 3)
    label = np.array([lab[:2] for lab in labels], np.int64).reshape(-1, 2)
    win, lose = pair[:, 1], pair[:, 2]
    return PreferencePairs(
        queries=q,
        pair_query=pair[:, 0],
        chosen=ids[win],
        chosen_lengths=size[win],
        rejected=ids[lose],
        rejected_lengths=size[lose],
        similarity=(vec[win] * vec[lose]).sum(axis=1).astype(np.float32),
        mined=np.array([p[3] for p in pairs], bool),
        label_query=label[:, 0],
        label_ids=ids[label[:, 1]],
        label_lengths=size[label[:, 1]],
        label_key=row_key[label[:, 1]].astype(np.int64),
        label_positive=np.array([lab[2] for lab in labels], bool),
        label_weight=np.array([lab[3] for lab in labels], np.float32),
    )


def mine_negatives(
    generator: IdGenerator,
    trie: PrefixTrie,
    queries: npt.ArrayLike,
    positives: Sequence[Sequence[int]],
    count: int = 4,
    beam: int = 16,
) -> list[list[int]]:
    """Per query, the generator's ``count`` best IDs (constrained beam) holding no positive
    row, each as the first product row of its leaf: unlabelled, so pseudo-negatives."""
    q = np.asarray(queries, np.float32)
    if len(positives) != len(q):
        raise InvalidInputError(f"{len(q)} queries but {len(positives)} positive lists")
    if count < 1 or beam < 1:
        raise InvalidInputError(f"count={count}, beam={beam}: both must be >= 1")
    generator.eval()
    out: list[list[int]] = []
    for query, rows in zip(q, positives, strict=True):
        k = count + len(rows)
        found = beam_search(trie, CachedSteps(generator, query), k=k, beam=max(beam, k))
        wanted = set(int(r) for r in rows)
        picked: list[int] = []
        for leaf in found.leaves.tolist():
            held = trie.rows(int(leaf))
            if not wanted.intersection(held.tolist()):
                picked.append(int(held[0]))
            if len(picked) == count:
                break
        out.append(picked)
    return out


__all__ = ["PreferencePairs", "build_pairs", "mine_negatives"]
