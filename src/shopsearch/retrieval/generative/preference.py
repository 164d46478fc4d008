"""Preference alignment of the ID generator after SFT: plain DPO and RAD-DPO.

Paper: Z. Chen et al. (JD.com), "RAD-DPO: Robust Adaptive Denoising Direct Preference
Optimization for Generative Retrieval in E-commerce", arXiv 2602.23964. Only its abstract and
introduction were readable; the three fixes below follow them, and their exact formulas are our
reconstruction (flag [U3] of the issue-17 design note).

Every log-probability is of a whole ID (its leaf path): ``l(y) = sum_t log p(y_t | x, y_<t)``,
from :meth:`.IdGenerator.token_logprobs` (per token, 0 past an ID's length, so variable-length
IDs work). A preference pair is (query, chosen ID ``y_w``, rejected ID ``y_l``).

- **DPO** (:func:`dpo_loss`): ``-log sigmoid(beta * ((l(y_w) - l_ref(y_w)) - (l(y_l) -
  l_ref(y_l))))`` against a frozen reference copy of the SFT model.
- **Token-level prefix detachment** (:func:`shared_prefix`, ``prefix`` of :func:`rad_dpo_loss`):
  the tokens ``y_l`` shares with ``y_w`` from the start are stop-gradient in the rejected term,
  so only ``y_l``'s diverging suffix is pushed down. In unweighted DPO the shared-prefix terms of
  the two branches cancel in the margin (no net push on the prefix); with detachment the chosen
  branch still raises the shared prefix (it leads to a positive), and with a weight below 1 on
  the rejected side (next item) the rejected branch could otherwise pull it down.
- **Similarity-based dynamic reward weighting** (:func:`similarity_weight`): a pseudo-negative
  whose item vector is close to the chosen one is probably a false negative, so its weight
  ``w = max(w_min, sigmoid((s0 - cos(e_w, e_l)) / T_w))`` is small. It multiplies the rejected
  side of the margin (``weight_on="rejected"``, default) or the whole pair loss
  (``weight_on="pair"``, the other reading).
- **Multi-label global contrastive** (:func:`multilabel_contrastive`): each positive of a query
  against that query's negatives plus the other queries' positives in the batch (global
  negatives), never against the query's other positives, so positives do not "squeeze" each
  other; scores are length-normalised ID log-probabilities over a temperature. Together with
  the **global SFT** loss (:func:`sft_loss`: mean length-normalised NLL of all positives).

:func:`align` trains a generator in place: ``mode="dpo"`` is plain DPO plus the same SFT term,
``mode="rad-dpo"`` the RAD margin plus ``lambda_c`` MLC plus ``lambda_s`` SFT, so only the RAD
parts differ between the two. The pairs come from :mod:`.pairs` (:func:`.build_pairs` from
judged data, :func:`.mine_negatives` for the SFT model's top IDs that hold no positive).

Our choices where the paper could not be read [U3]: the weight's form and its starting values
(``s0=0.85, T_w=0.05, w_min=0.05``) and where it enters; ``stop-gradient`` (not removal) of the
prefix; the MLC's global negatives are a sample of other queries' positives in the batch; the
MLC temperature (1.0) and the loss weights (``lambda_c=0.5, lambda_s=1``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.model import IdGenerator
from shopsearch.retrieval.generative.pairs import PreferencePairs

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
Mode = Literal["dpo", "rad-dpo"]


# --------------------------------------------------------------------------------- losses


def _sequence(logprobs: torch.Tensor) -> torch.Tensor:
    """``[B]`` ID log-probabilities from ``[B, depth]`` per-token ones (or ``[B]`` as given)."""
    return logprobs.sum(dim=-1) if logprobs.ndim == 2 else logprobs


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """``[B]`` plain DPO loss of each pair.

    Args:
        chosen, rejected: the policy's log-probabilities, ``[B, depth]`` per token (summed) or
            ``[B]`` per ID.
        ref_chosen, ref_rejected: the same under the frozen reference.
        beta: the inverse temperature of the implicit reward.
    """
    margin = (_sequence(chosen) - _sequence(ref_chosen)) - (
        _sequence(rejected) - _sequence(ref_rejected)
    )
    return -functional.logsigmoid(beta * margin)


def shared_prefix(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B]`` how many leading tokens each chosen and rejected ID (``[B, depth]``) share,
    within the shorter ID's length."""
    depth = chosen.shape[1]
    full = torch.full((len(chosen),), depth)
    shorter = torch.minimum(
        full if chosen_lengths is None else chosen_lengths,
        full if rejected_lengths is None else rejected_lengths,
    )
    same = (chosen == rejected) & (torch.arange(depth)[None, :] < shorter[:, None])
    return same.to(torch.int64).cumprod(dim=1).sum(dim=1)


def detach_prefix(logprobs: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """``[B, depth]`` per-token log-probabilities with the first ``prefix[i]`` tokens of row
    ``i`` cut from the graph (same values, no gradient)."""
    mask = torch.arange(logprobs.shape[1])[None, :] < prefix[:, None]
    return torch.where(mask, logprobs.detach(), logprobs)


def similarity_weight(
    similarity: torch.Tensor, s0: float = 0.85, temperature: float = 0.05, w_min: float = 0.05
) -> torch.Tensor:
    """The weight of a pseudo-negative: ``max(w_min, sigmoid((s0 - cos) / temperature))``,
    in ``[w_min, 1]``, falling as the negative's item vector nears the chosen one's."""
    return torch.sigmoid((s0 - similarity) / temperature).clamp_min(w_min)


def rad_dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    prefix: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    beta: float = 0.1,
    weight_on: Literal["rejected", "pair"] = "rejected",
) -> torch.Tensor:
    """``[B]`` RAD-DPO loss of each pair (see the module docstring).

    Args:
        chosen, rejected: the policy's per-token log-probabilities, ``[B, depth]``.
        ref_chosen, ref_rejected: the reference's, per token or per ID.
        prefix: shared prefix lengths (:func:`shared_prefix`) whose rejected tokens get no
            gradient; ``None``: no detachment.
        weight: each pair's :func:`similarity_weight`; ``None``: 1.
        beta: the inverse temperature of the implicit reward.
        weight_on: ``"rejected"``: ``w`` scales the rejected side of the margin;
            ``"pair"``: ``w`` scales the pair's loss.
    """
    if chosen.ndim != 2 or rejected.ndim != 2:
        raise InvalidInputError("rad_dpo_loss needs per-token log-probabilities [B, depth]")
    if weight_on not in ("rejected", "pair"):
        raise InvalidInputError(f"weight_on={weight_on!r}: use 'rejected' or 'pair'")
    rejected_tokens = rejected if prefix is None else detach_prefix(rejected, prefix)
    won = _sequence(chosen) - _sequence(ref_chosen)
    lost = rejected_tokens.sum(dim=1) - _sequence(ref_rejected)
    w = torch.ones_like(won) if weight is None else weight
    if weight_on == "rejected":
        return -functional.logsigmoid(beta * (won - w * lost))
    return -w * functional.logsigmoid(beta * (won - lost))


def multilabel_contrastive(
    scores: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The multi-label global contrastive loss: for every positive ``p`` of a query,
    ``-log(e^(s_p/t) / (e^(s_p/t) + sum_n e^(s_n/t)))`` over that query's negatives ``n`` only
    (its other positives are not in the denominator); the mean over each query's positives,
    then over the queries that have one.

    Args:
        scores: ``[Q, C]`` length-normalised ID log-probabilities of each query's candidates.
        positive, negative: ``[Q, C]`` which candidates are positives / negatives (neither:
            padding, ignored).
        temperature: ``t``.
    """
    if scores.shape != positive.shape or scores.shape != negative.shape:
        raise InvalidInputError("scores, positive and negative must have the same [Q, C] shape")
    if bool((positive & negative).any()):
        raise InvalidInputError("a candidate cannot be both a positive and a negative")
    logits = scores / temperature
    negatives = torch.logsumexp(logits.masked_fill(~negative, -torch.inf), dim=1, keepdim=True)
    # -log(e^a / (e^a + e^b)) = softplus(b - a); no negative (b = -inf) gives 0
    per = functional.softplus(negatives - logits).masked_fill(~positive, 0.0)
    count = positive.sum(dim=1)
    has = count > 0
    if not bool(has.any()):
        return scores.sum() * 0.0
    return (per.sum(dim=1)[has] / count[has]).mean()


def sft_loss(
    logprobs: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The global SFT loss: the (weighted) mean length-normalised NLL of ``[B, depth]``
    per-token log-probabilities of positive IDs."""
    nll = -logprobs.sum(dim=1) / lengths
    if weights is None:
        return nll.mean()
    return (nll * weights).sum() / weights.sum()


# ------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class AlignConfig:
    """Alignment settings (our starting values, [U3]).

    Attributes:
        beta: DPO's inverse temperature.
        lambda_c: weight of the multi-label contrastive loss (``rad-dpo``).
        lambda_s: weight of the global SFT loss (both modes).
        temperature: the contrastive temperature.
        s0, weight_temperature, w_min: the similarity weight (:func:`similarity_weight`).
        weight_on: where the weight enters (``"rejected"`` side of the margin, or ``"pair"``).
        detach: prefix detachment on (``rad-dpo``; for ablations).
        weighting: similarity weighting on (``rad-dpo``; for ablations).
        contrastive: the contrastive term on (``rad-dpo``; for ablations).
        global_negatives: other queries' positives sampled per query for the contrastive term.
        max_labels: most positives and most negatives per query in the contrastive and SFT
            terms (a seeded sample per step).
        epochs: passes over the queries.
        batch_size: queries per step.
        lr: AdamW's learning rate.
        budget_s: most seconds of training.
        seed: seed of shuffling and sampling.
    """

    beta: float = 0.1
    lambda_c: float = 0.5
    lambda_s: float = 1.0
    temperature: float = 1.0
    s0: float = 0.85
    weight_temperature: float = 0.05
    w_min: float = 0.05
    weight_on: Literal["rejected", "pair"] = "rejected"
    detach: bool = True
    weighting: bool = True
    contrastive: bool = True
    global_negatives: int = 32
    max_labels: int = 8
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-4
    budget_s: float = 1800.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.beta, self.temperature, self.weight_temperature, self.lr) <= 0:
            raise InvalidInputError("beta, temperature, weight_temperature and lr must be > 0")
        if min(self.lambda_c, self.lambda_s, self.global_negatives) < 0:
            raise InvalidInputError("lambda_c, lambda_s and global_negatives must be >= 0")
        if not 0 <= self.w_min <= 1:
            raise InvalidInputError(f"w_min={self.w_min} must be in [0, 1]")
        if min(self.epochs, self.batch_size, self.max_labels) < 1:
            raise InvalidInputError("epochs, batch_size and max_labels must be >= 1")
        if self.weight_on not in ("rejected", "pair"):
            raise InvalidInputError(f"weight_on={self.weight_on!r}: use 'rejected' or 'pair'")


@dataclass
class AlignHistory:
    """What :func:`align` did: per step, the total loss and its parts; the wall time."""

    loss: list[float] = field(default_factory=list)
    preference: list[float] = field(default_factory=list)
    contrastive: list[float] = field(default_factory=list)
    sft: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False


def _contrastive_batch(
    pairs: PreferencePairs, batch: I64, config: AlignConfig, rng: np.random.Generator
) -> tuple[I64, I64, Bool, Bool, int]:
    """Candidates of the contrastive term for the queries ``batch``: ``[Q, C]`` label indices
    (padding -1), query row per row of the grid, positive and negative masks, width ``C``.

    A query's candidates: its positives, its negatives and up to ``global_negatives`` positives
    of the other queries in the batch whose ID is none of its positive IDs."""
    by_query = {int(qi): np.flatnonzero(pairs.label_query == qi) for qi in batch.tolist()}
    pos_all = np.concatenate([idx[pairs.label_positive[idx]] for idx in by_query.values()])
    rows: list[tuple[list[int], list[int]]] = []
    for qi, idx in by_query.items():
        own_pos = idx[pairs.label_positive[idx]]
        own_neg = idx[~pairs.label_positive[idx]]
        if len(own_pos) > config.max_labels:
            own_pos = rng.choice(own_pos, config.max_labels, replace=False)
        if len(own_neg) > config.max_labels:
            own_neg = rng.choice(own_neg, config.max_labels, replace=False)
        keys = set(pairs.label_key[idx[pairs.label_positive[idx]]].tolist())
        other = pos_all[pairs.label_query[pos_all] != qi]
        other = other[[int(k) not in keys for k in pairs.label_key[other].tolist()]]
        _, first = np.unique(pairs.label_key[other], return_index=True)
        other = other[np.sort(first)]
        if len(other) > config.global_negatives:
            other = rng.choice(other, config.global_negatives, replace=False)
        rows.append((own_pos.tolist(), [*own_neg.tolist(), *other.tolist()]))
    width = max((len(p) + len(n) for p, n in rows), default=0)
    index = np.full((len(rows), width), -1, np.int64)
    positive = np.zeros((len(rows), width), bool)
    for r, (pos, neg) in enumerate(rows):
        index[r, : len(pos) + len(neg)] = pos + neg
        positive[r, : len(pos)] = True
    negative = (index >= 0) & ~positive
    query = np.repeat(np.asarray(list(by_query), np.int64)[:, None], width, axis=1)
    return index, query, positive, negative, width


def _reference_logprobs(
    reference: IdGenerator, q: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """``[n]`` ID log-probabilities under the frozen reference, in chunks."""
    out = []
    with torch.inference_mode():
        for at in range(0, len(ids), 4096):
            part = slice(at, at + 4096)
            out.append(reference.token_logprobs(q[part], ids[part], lengths[part]).sum(dim=1))
    return torch.cat(out) if out else torch.zeros(0)


def preference_margins(generator: IdGenerator, pairs: PreferencePairs) -> F32:
    """``[n]`` ``l(y_w) - l(y_l)`` of every pair under ``generator`` (how much more likely the
    chosen ID is than the rejected one, in nats)."""
    q = torch.as_tensor(pairs.queries[pairs.pair_query])
    won = _reference_logprobs(
        generator, q, torch.as_tensor(pairs.chosen), torch.as_tensor(pairs.chosen_lengths)
    )
    lost = _reference_logprobs(
        generator, q, torch.as_tensor(pairs.rejected), torch.as_tensor(pairs.rejected_lengths)
    )
    return np.asarray((won - lost).numpy(), np.float32)


def align(
    generator: IdGenerator,
    pairs: PreferencePairs,
    mode: Mode = "rad-dpo",
    config: AlignConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> AlignHistory:
    """Align ``generator`` (trained by SFT) with ``pairs``, in place, against a frozen copy of
    itself as the reference.

    ``mode="dpo"``: plain DPO + ``lambda_s`` * global SFT. ``mode="rad-dpo"``: the RAD margin
    (prefix detachment and similarity weighting, each switchable in ``config`` for ablations) +
    ``lambda_c`` * multi-label contrastive + ``lambda_s`` * global SFT. Each step takes
    ``batch_size`` queries with all their pairs and labels.

    Raises:
        InvalidInputError: an unknown mode, or pairs that do not fit the generator.
    """
    cfg = config or AlignConfig()
    if mode not in ("dpo", "rad-dpo"):
        raise InvalidInputError(f"mode={mode!r}: use 'dpo' or 'rad-dpo'")
    if pairs.depth != generator.depth or pairs.queries.shape[1] != generator.query.in_features:
        raise InvalidInputError(
            f"pairs of {pairs.depth}-token IDs and {pairs.queries.shape[1]}-d queries do not "
            f"fit a generator of {generator.depth} tokens and {generator.query.in_features}-d "
            "queries"
        )
    q_all = torch.as_tensor(pairs.queries)
    won_q, won, won_n = generator.check_ids(
        pairs.queries[pairs.pair_query], pairs.chosen, pairs.chosen_lengths
    )
    _, lost, lost_n = generator.check_ids(
        pairs.queries[pairs.pair_query], pairs.rejected, pairs.rejected_lengths
    )
    _, label_ids, label_n = generator.check_ids(
        pairs.queries[pairs.label_query], pairs.label_ids, pairs.label_lengths
    )
    rad = mode == "rad-dpo"
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    reference = copy.deepcopy(generator).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    ref_won = _reference_logprobs(reference, won_q, won, won_n)
    ref_lost = _reference_logprobs(reference, won_q, lost, lost_n)
    prefix = shared_prefix(won, lost, won_n, lost_n)
    weight = similarity_weight(
        torch.as_tensor(pairs.similarity), cfg.s0, cfg.weight_temperature, cfg.w_min
    )
    weight_t = torch.as_tensor(pairs.label_weight)
    pair_query = torch.as_tensor(pairs.pair_query)
    queries = np.unique(pairs.label_query)
    steps = cfg.epochs * -(-len(queries) // cfg.batch_size)
    optimiser = torch.optim.AdamW(generator.parameters(), lr=cfg.lr)
    history = AlignHistory()
    start = time.monotonic()
    generator.train()
    for _epoch in range(cfg.epochs):
        order = rng.permutation(queries)
        for at in range(0, len(order), cfg.batch_size):
            batch = np.sort(order[at : at + cfg.batch_size])
            chosen_pairs = torch.from_numpy(np.flatnonzero(np.isin(pairs.pair_query, batch)))
            grid, grid_q, positive, negative, width = _contrastive_batch(pairs, batch, cfg, rng)
            if not (rad and cfg.contrastive):  # only the positives, for the SFT term
                grid = np.where(positive, grid, -1)
            flat = torch.from_numpy(grid.reshape(-1))
            used = flat >= 0
            cand = flat[used]
            # one forward over pairs' chosen, pairs' rejected and the labelled candidates
            seq_q = torch.cat(
                [
                    q_all[pair_query[chosen_pairs]],
                    q_all[pair_query[chosen_pairs]],
                    q_all[torch.from_numpy(grid_q.reshape(-1))[used]],
                ]
            )
            seq = torch.cat([won[chosen_pairs], lost[chosen_pairs], label_ids[cand]])
            seq_n = torch.cat([won_n[chosen_pairs], lost_n[chosen_pairs], label_n[cand]])
            lp = generator.token_logprobs(seq_q, seq, seq_n)
            n_pairs = len(chosen_pairs)
            lp_won, lp_lost, lp_cand = lp[:n_pairs], lp[n_pairs : 2 * n_pairs], lp[2 * n_pairs :]
            zero = lp.sum() * 0.0
            if not n_pairs:
                pref = zero
            elif rad:
                pref = rad_dpo_loss(
                    lp_won,
                    lp_lost,
                    ref_won[chosen_pairs],
                    ref_lost[chosen_pairs],
                    prefix=prefix[chosen_pairs] if cfg.detach else None,
                    weight=weight[chosen_pairs] if cfg.weighting else None,
                    beta=cfg.beta,
                    weight_on=cfg.weight_on,
                ).mean()
            else:
                pref = dpo_loss(
                    lp_won, lp_lost, ref_won[chosen_pairs], ref_lost[chosen_pairs], cfg.beta
                ).mean()
            is_pos = torch.from_numpy(positive.reshape(-1))[used]
            pos_lp = lp_cand[is_pos]
            sft = zero
            if len(pos_lp):
                sft = sft_loss(pos_lp, label_n[cand][is_pos].float(), weight_t[cand][is_pos])
            mlc = zero
            if rad and cfg.contrastive and width:
                scores = torch.zeros(len(flat))
                scores[used] = lp_cand.sum(dim=1) / label_n[cand].float()
                scores = scores.view(len(batch), width)
                mlc = multilabel_contrastive(
                    scores, torch.from_numpy(positive), torch.from_numpy(negative), cfg.temperature
                )
            loss = pref + cfg.lambda_c * mlc + cfg.lambda_s * sft
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            history.steps += 1
            history.loss.append(float(loss.item()))
            history.preference.append(float(pref.item()))
            history.contrastive.append(float(mlc.item()))
            history.sft.append(float(sft.item()))
            if progress is not None:
                progress(history.steps, steps, history.loss[-1])
            if time.monotonic() - start > cfg.budget_s:
                history.stopped_by_budget = True
                break
        if history.stopped_by_budget:
            break
    generator.eval()
    history.seconds = time.monotonic() - start
    return history


__all__ = [
    "AlignConfig",
    "AlignHistory",
    "align",
    "detach_prefix",
    "dpo_loss",
    "multilabel_contrastive",
    "preference_margins",
    "rad_dpo_loss",
    "sft_loss",
    "shared_prefix",
    "similarity_weight",
]
