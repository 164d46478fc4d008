"""GRPO-SR: GenRec's preference alignment (Group Relative Policy Optimization with SFT
regularisation).

For each training page of a batch, ``group`` first-slot IDs are drawn by **constrained
ancestral sampling** (token by token from the policy's softmax renormalised over the trie's
allowed children, within the page's market), and each ID becomes one of its products. Each
gets a reward ``r_g`` (the caller's; GenRec's is :func:`~.reward.hybrid_reward`: a logged
reward model times a relevance gate). Advantages are normalised within the group,
``A_g = (r_g - mean r) / (std r + 1e-6)``, and the loss is PPO's clipped surrogate on the
sequence ratio ``rho_g = pi(y_g | x) / pi_old(y_g | x)`` (the constrained policy's
probabilities) plus ``nll_weight`` times the page-wise NLL of the batch's true pages::

    L = -mean_g min(rho_g A_g, clip(rho_g, 1 - eps, 1 + eps) A_g) + lambda_NLL * L_page

``updates`` gradient steps are taken per sampled batch before ``pi_old`` is refreshed (with
one, ``rho = 1`` and the clip never acts). [U4] No KL term (our reading: the NLL term is the
regulariser); the paper's G, clip, lambda and schedule are not public, these are ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from shopsearch.errors import InvalidInputError
from shopsearch.retrieval.generative.genrec import GenRec, GenRecExamples
from shopsearch.retrieval.generative.trie import PrefixTrie

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
#: ``reward(example_rows, product_rows)``: the reward of each sampled product for its example.
Reward = Callable[[I64, I64], npt.NDArray[np.floating]]


@dataclass(frozen=True)
class GrpoConfig:
    """GRPO-SR's settings.

    Attributes:
        group: IDs sampled per page (G).
        pages: pages per batch.
        batches: most sampled batches.
        updates: gradient steps per sampled batch.
        clip: PPO's epsilon.
        nll_weight: weight of the page-wise NLL term.
        lr: AdamW's learning rate.
        budget_s: most seconds.
        seed: seed of page choice and sampling.
    """

    group: int = 8
    pages: int = 32
    batches: int = 300
    updates: int = 2
    clip: float = 0.2
    nll_weight: float = 0.5
    lr: float = 5e-5
    budget_s: float = 900.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.group, self.pages, self.batches, self.updates) < 1 or self.group < 2:
            raise InvalidInputError("GRPO needs group >= 2 and pages, batches, updates >= 1")
        if not 0 < self.clip < 1 or self.nll_weight < 0 or self.lr <= 0:
            raise InvalidInputError("use 0 < clip < 1, nll_weight >= 0 and lr > 0")


def group_advantages(rewards: npt.ArrayLike) -> F64:
    """``[B, G]`` rewards → advantages normalised within each group (mean 0)."""
    r = np.asarray(rewards, np.float64)
    if r.ndim != 2:
        raise InvalidInputError(f"rewards must be [pages, group], not {r.shape}")
    out: F64 = (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-6)
    return out


def clipped_surrogate(
    logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's clipped policy loss (to minimise), averaged over samples."""
    ratio = torch.exp(logp - logp_old)
    bounded = torch.clamp(ratio, 1 - clip, 1 + clip)
    return -torch.minimum(ratio * advantages, bounded * advantages).mean()


def child_table(trie: PrefixTrie, vocab: int) -> I64:
    """``[nodes, vocab]``: the child of each node by token (``-1``: none)."""
    table = np.full((trie.nodes, vocab), -1, np.int64)
    parents = np.repeat(np.arange(trie.nodes), trie.child_count_)
    kids = np.concatenate(
        [np.arange(f, f + c) for f, c in zip(trie.first_child_, trie.child_count_, strict=True)]
        or [np.zeros(0, np.int64)]
    )
    table[parents, trie.token_[kids]] = kids
    return table


@dataclass(frozen=True)
class SampledIds:
    """IDs drawn by constrained ancestral sampling (``R`` of them).

    Attributes:
        tokens: ``[R, depth]`` tokens (0 past the ID's end).
        masks: ``[R, depth, vocab + 1]`` the tokens that were allowed at each step.
        valid: ``[R, depth]`` whether a token was drawn at the step.
        leaves: ``[R]`` trie node reached (a leaf unless nothing was allowed).
        logp: ``[R]`` the sequence's log-probability under the sampling policy.
    """

    tokens: torch.Tensor
    masks: torch.Tensor
    valid: torch.Tensor
    leaves: I64
    logp: torch.Tensor


def sample_ids(
    model: GenRec,
    memory: torch.Tensor,
    pad: torch.Tensor,
    allowed: Bool,
    children: I64,
    generator: torch.Generator,
) -> SampledIds:
    """One ID per prompt row, drawn token by token within ``allowed`` trie nodes
    (``[R, nodes]``, one row of :meth:`~.trie.PrefixTrie.allowed` per prompt)."""
    net = model.net
    rows, depth, vocab = len(memory), net.depth, net.id_vocab
    nodes = np.zeros(rows, np.int64)
    tokens = torch.zeros((rows, depth), dtype=torch.int64)
    masks = torch.zeros((rows, depth, vocab + 1), dtype=torch.bool)
    masks[:, :, 0] = True
    valid = torch.zeros((rows, depth), dtype=torch.bool)
    logp = torch.zeros(rows)
    inputs = torch.full((rows, 1), net.bos, dtype=torch.int64)
    with torch.inference_mode():
        keys = net.cross_keys(memory, pad)
    for t in range(depth):
        kids = children[nodes]
        ok = (kids >= 0) & np.take_along_axis(allowed, np.maximum(kids, 0), axis=1)
        has = ok.any(1)
        if not has.any():
            break
        step_mask = torch.zeros((rows, vocab + 1), dtype=torch.bool)
        step_mask[:, :vocab] = torch.from_numpy(ok)
        step_mask[~torch.from_numpy(has), 0] = True
        with torch.inference_mode():
            positions = torch.arange(t + 1)[None].expand(rows, -1)
            logits = net.last_logits(keys, None, inputs, positions, torch.zeros_like(inputs))
            scores = torch.log_softmax(logits.masked_fill(~step_mask, float("-inf")), -1)
            drawn = torch.multinomial(scores.exp(), 1, generator=generator).squeeze(1)
        live = torch.from_numpy(has)
        drawn = torch.where(live, drawn, torch.zeros_like(drawn))
        logp += scores.gather(1, drawn[:, None]).squeeze(1) * live
        tokens[:, t], masks[:, t], valid[:, t] = drawn, step_mask, live
        chosen = drawn.numpy()
        nodes = np.where(has, kids[np.arange(rows), chosen], nodes)
        inputs = torch.cat([inputs, drawn[:, None]], dim=1)
    return SampledIds(tokens, masks, valid, nodes, logp)


def sequence_logp(
    model: GenRec, memory: torch.Tensor, pad: torch.Tensor, sampled: SampledIds
) -> torch.Tensor:
    """``[R]`` log-probabilities of sampled IDs under the current policy (differentiable)."""
    net = model.net
    rows, depth = sampled.tokens.shape
    inputs = torch.cat(
        [torch.full((rows, 1), net.bos, dtype=torch.int64), sampled.tokens[:, :-1]], dim=1
    )
    positions = torch.arange(depth)[None].expand(rows, -1)
    logits = net.logits(memory, pad, inputs, positions, torch.zeros_like(inputs))
    scores = torch.log_softmax(logits.masked_fill(~sampled.masks, float("-inf")), -1)
    token = scores.gather(2, sampled.tokens[:, :, None]).squeeze(2)
    return (token * sampled.valid).sum(1)


def products_of(
    trie: PrefixTrie, leaves: I64, row_masks: Bool, rng: np.random.Generator
) -> I64:  # fmt: skip
    """One product row per reached leaf (uniform among its rows passing the row's mask;
    ``-1`` for a node that is not a leaf or holds none)."""
    out = np.full(len(leaves), -1, np.int64)
    for i, leaf in enumerate(leaves.tolist()):
        if trie.is_leaf(leaf) and leaf:
            rows = trie.rows(leaf)
            rows = rows[row_masks[i, rows]]
            if rows.size:
                out[i] = int(rows[rng.integers(len(rows))])
    return out


def fit_grpo(
    model: GenRec,
    examples: GenRecExamples,
    reward: Reward,
    row_masks: Mapping[str, Bool] | None = None,
    config: GrpoConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Align ``model`` with GRPO-SR on training ``examples`` (page-wise targets for the NLL
    term); ``row_masks``: per market, the product rows it may sample (default: all).

    Returns:
        What happened: batches run, seconds, mean reward and share of zero rewards over the
        first and last tenth of the batches.

    Raises:
        InvalidInputError: fewer examples than a batch's pages, or a market without a mask.
    """
    cfg = config or GrpoConfig()
    if len(examples) < cfg.pages:
        raise InvalidInputError(f"GRPO needs at least {cfg.pages} pages, got {len(examples)}")
    everything = np.ones(len(model.tokens), bool)
    masks = dict(row_masks) if row_masks is not None else {}
    missing = {d for d in examples.domain if d not in masks} if row_masks is not None else set()
    if missing:
        raise InvalidInputError(f"no row mask for market(s) {sorted(missing)}")
    node_masks = {d: model.trie.allowed(m) for d, m in masks.items()}
    full_nodes = np.ones(model.trie.nodes, bool)
    children = child_table(model.trie, model.net.id_vocab)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimiser = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr)
    rewards_seen: list[F64] = []
    start = time.monotonic()
    g = cfg.group
    model.net.train()
    try:
        for batch in range(cfg.batches):
            picked = rng.choice(len(examples), cfg.pages, replace=False)
            part = examples.subset(picked)
            domains = [d for d in part.domain for _ in range(g)]
            allowed = np.stack([node_masks.get(d, full_nodes) for d in domains])
            row_mask = np.stack([masks.get(d, everything) for d in domains])
            with torch.no_grad():
                memory, pad = model.encode(part)
                sampled = sample_ids(
                    model,
                    memory.repeat_interleave(g, 0),
                    pad.repeat_interleave(g, 0),
                    allowed,
                    children,
                    generator,
                )
            rows = products_of(model.trie, sampled.leaves, row_mask, rng)
            example_rows = np.repeat(picked, g)
            r = np.zeros(len(rows))
            ok = rows >= 0
            if ok.any():
                r[ok] = np.asarray(reward(example_rows[ok], rows[ok]), np.float64)
            rewards_seen.append(r)
            advantages = torch.from_numpy(group_advantages(r.reshape(-1, g)).reshape(-1))
            for _update in range(cfg.updates):
                memory, pad = model.encode(part)
                logp = sequence_logp(
                    model, memory.repeat_interleave(g, 0), pad.repeat_interleave(g, 0), sampled
                )
                loss = clipped_surrogate(logp, sampled.logp, advantages.float(), cfg.clip)
                loss = loss + cfg.nll_weight * model.nll(part)
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
            if progress is not None:
                progress(batch + 1, cfg.batches, float(r.mean()))
            if time.monotonic() - start > cfg.budget_s:
                break
    finally:
        model.net.eval()
    tenth = max(1, len(rewards_seen) // 10)
    first, last = np.concatenate(rewards_seen[:tenth]), np.concatenate(rewards_seen[-tenth:])
    return {
        "batches": len(rewards_seen),
        "seconds": time.monotonic() - start,
        "reward_first": float(first.mean()),
        "reward_last": float(last.mean()),
        "zero_reward_first": float((first == 0).mean()),
        "zero_reward_last": float((last == 0).mean()),
    }


__all__ = [
    "GrpoConfig",
    "Reward",
    "SampledIds",
    "child_table",
    "clipped_surrogate",
    "fit_grpo",
    "group_advantages",
    "products_of",
    "sample_ids",
    "sequence_logp",
]
