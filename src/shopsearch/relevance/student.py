"""The BERT2DNN student: a small feed-forward network distilled from the cross-encoder teacher.

After JD's "BERT2DNN: BERT Distillation with Massive Unlabeled Data for Online E-Commerce
Search" (built from the paper's description). The student reads hashed n-grams, not tokens
through a transformer:

* **Inputs.** The query and the product text each become a bag of hashed features
  (:class:`~shopsearch.text.hashed.HashedFeaturizer`: words, character trigrams of each word,
  word bigrams) in ``buckets`` rows of one embedding table shared by both sides; a side's
  vector is the mean of its features' embeddings.
* **Network.** ``[q, p, q * p, |q - p|]`` (query vector ``q``, product vector ``p``) through two
  ReLU layers to one logit.
* **Labels.** Every pair is labelled by the teacher, not by people: the teacher's score ``s``
  (its grade scale, about ``[0, 1]``) is read as a probability, turned into a logit and
  softened by the temperature ``T``: ``label = sigmoid(logit(s) / T)``; the student minimises
  the binary cross-entropy against it. The pairs are as many as the logs and the retrieval of
  logged or training queries give ("massive unlabeled data"): judged or not.

**Serving.** The product side does not depend on the query: :meth:`BERT2DNNStudent.product_vectors`
computes it once per product (at fit or load), so scoring ``n`` candidates is one query vector,
a gather and two small matrix products on one thread.

**Simplified from the paper, and why.** The paper's student has separate term and n-gram
embedding tables and learns on billions of pairs; here one hashed table (the same features) and
the pairs our logs and retrieval give. The paper's stacking of several teachers is the
teacher's business (:mod:`.cross_encoder`), not the student's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from shopsearch.errors import InvalidInputError
from shopsearch.relevance.saved import read_model, save_model
from shopsearch.text.hashed import HashedFeaturizer

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_CONFIG = "student.json"
#: Most characters of a text read (a title's start says what it is).
MAX_CHARS = 512


@dataclass(frozen=True)
class StudentConfig:
    """The student's sizes and training.

    Attributes:
        buckets: rows of the hashed feature table.
        dim: width of the embeddings.
        hidden: width of the two hidden layers.
        temperature: the temperature softening the teacher's labels.
        epochs: passes over the labelled pairs.
        batch_size: pairs per step.
        lr: Adam's learning rate.
        budget_s: most seconds of training.
        seed: seed of initialisation and shuffling.
    """

    buckets: int = 2**18
    dim: int = 64
    hidden: int = 128
    temperature: float = 2.0
    epochs: int = 4
    batch_size: int = 256
    lr: float = 2e-3
    budget_s: float = 1800.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.buckets, self.dim, self.hidden, self.epochs, self.batch_size) < 1:
            raise InvalidInputError(
                "student buckets, dim, hidden, epochs and batch_size must be >= 1"
            )
        if self.temperature <= 0 or self.lr <= 0 or self.budget_s <= 0:
            raise InvalidInputError(
                f"student temperature={self.temperature}, lr={self.lr}, budget_s="
                f"{self.budget_s}: each must be > 0"
            )


def features(featurizer: HashedFeaturizer, text: str) -> list[int]:
    """The hashed word, character-trigram and bigram ids of ``text`` (its first
    :data:`MAX_CHARS` characters) as one bag; empty when it has no word."""
    word, char, bigram = featurizer.features(str(text)[:MAX_CHARS])
    return [i for i in (*word, *char, *bigram) if i]


def soft_labels(scores: npt.ArrayLike, temperature: float) -> F32:
    """``sigmoid(logit(s) / T)`` of teacher scores ``s`` (clipped to ``[0.001, 0.999]``)."""
    s = np.clip(np.asarray(scores, np.float64), 1e-3, 1 - 1e-3)
    logit = np.log(s / (1 - s)) / temperature
    return np.asarray(1 / (1 + np.exp(-logit)), np.float32)


class StudentNetwork(nn.Module):
    """The student's network (see the module docstring)."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.table = nn.EmbeddingBag(config.buckets, config.dim, mode="mean", padding_idx=0)
        nn.init.normal_(self.table.weight, std=0.05)
        self.mlp = nn.Sequential(
            nn.Linear(4 * config.dim, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 1),
        )

    def side(self, ids: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` vectors of padded feature ids ``[B, F]``."""
        out: torch.Tensor = self.table(ids)
        return out

    def logits(self, query: torch.Tensor, product: torch.Tensor) -> torch.Tensor:
        """``[B]`` logits of query vectors and product vectors."""
        both = torch.cat([query, product, query * product, (query - product).abs()], dim=-1)
        out: torch.Tensor = self.mlp(both).squeeze(-1)
        return out


def _padded(rows: Sequence[list[int]]) -> torch.Tensor:
    width = max((len(r) for r in rows), default=1) or 1
    out = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.from_numpy(out)


class BERT2DNNStudent:
    """The distilled student (see the module docstring).

    Args:
        config: sizes and training.
    """

    def __init__(self, config: StudentConfig | None = None) -> None:
        self.config = config or StudentConfig()
        self.featurizer = HashedFeaturizer(self.config.buckets)

    def fit(
        self,
        queries: Sequence[str],
        texts: Sequence[str],
        teacher_scores: npt.ArrayLike,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> Self:
        """Learn from (query, text) pairs labelled by the teacher's scores.

        Raises:
            InvalidInputError: no pairs, or lengths that differ.
        """
        scores = np.asarray(teacher_scores, np.float64)
        if not (len(queries) == len(texts) == len(scores)) or not len(scores):
            raise InvalidInputError(
                f"student: {len(queries)} queries, {len(texts)} texts, {len(scores)} scores; "
                "give as many of each, at least one"
            )
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.network_ = StudentNetwork(cfg)
        labels = torch.from_numpy(soft_labels(scores, cfg.temperature))
        query_ids = {q: features(self.featurizer, q) for q in dict.fromkeys(queries)}
        text_ids = {t: features(self.featurizer, t) for t in dict.fromkeys(texts)}
        optimiser = torch.optim.Adam(self.network_.parameters(), lr=cfg.lr)
        generator = np.random.default_rng(cfg.seed)
        n = len(scores)
        steps = cfg.epochs * -(-n // cfg.batch_size)
        step, start = 0, time.monotonic()
        self.network_.train()
        for _epoch in range(cfg.epochs):
            order = generator.permutation(n)
            for at in range(0, n, cfg.batch_size):
                rows = order[at : at + cfg.batch_size]
                q = self.network_.side(_padded([query_ids[queries[i]] for i in rows]))
                p = self.network_.side(_padded([text_ids[texts[i]] for i in rows]))
                loss = nn.functional.binary_cross_entropy_with_logits(
                    self.network_.logits(q, p), labels[torch.from_numpy(rows)]
                )
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                step += 1
                if progress is not None:
                    progress(step, steps, loss.item())
                if time.monotonic() - start > cfg.budget_s:
                    break
            else:
                continue
            break
        self.steps_, self.planned_steps_ = step, steps
        self.network_.eval()
        return self

    def product_vectors(self, texts: Sequence[str]) -> F32:
        """``[len(texts), dim]``: the product side, computed once per product."""
        with torch.inference_mode():
            rows = [features(self.featurizer, t) for t in texts]
            out = np.zeros((len(rows), self.config.dim), np.float32)
            for i in range(0, len(rows), 4096):
                out[i : i + 4096] = self.network_.side(_padded(rows[i : i + 4096])).numpy()
            return out

    def query_vector(self, query: str) -> F32:
        """``[1, dim]``: the query side of ``query``."""
        with torch.inference_mode():
            return np.asarray(
                self.network_.side(_padded([features(self.featurizer, query)])).numpy(),
                np.float32,
            )

    def score_vectors(self, query: str, products: F32) -> F32:
        """The student's probability of relevance of ``query`` to products given by their
        :meth:`product_vectors`."""
        with torch.inference_mode():
            q = torch.from_numpy(self.query_vector(query))
            p = torch.from_numpy(products)
            logits = self.network_.logits(q.expand(len(p), -1), p)
            return np.asarray(torch.sigmoid(logits).numpy(), np.float32)

    def score(self, queries: Sequence[str], texts: Sequence[str]) -> F32:
        """The probability of relevance of each (query, text) pair."""
        if len(queries) != len(texts):
            raise InvalidInputError(
                f"student: {len(queries)} queries and {len(texts)} texts; give one text per query"
            )
        if not len(queries):
            return np.zeros(0, np.float32)
        with torch.inference_mode():
            q = self.network_.side(_padded([features(self.featurizer, x) for x in queries]))
            p = torch.from_numpy(self.product_vectors(texts))
            return np.asarray(torch.sigmoid(self.network_.logits(q, p)).numpy(), np.float32)

    def save(self, path: Path) -> None:
        """``student.json`` (settings, steps) and ``weights.safetensors``."""
        settings = {"config": asdict(self.config), "steps": self.steps_,
                    "planned_steps": self.planned_steps_}  # fmt: skip
        save_model(path, _CONFIG, settings, self.network_)

    @classmethod
    def load(cls, path: Path) -> Self:
        """The student :meth:`save` wrote.

        Raises:
            WorkspaceError: ``path`` holds no student.
        """
        body, weights = read_model(path, _CONFIG, "student")
        student = cls(StudentConfig(**body["config"]))
        student.network_ = StudentNetwork(student.config)
        student.network_.load_state_dict(weights)
        student.network_.eval()
        student.steps_, student.planned_steps_ = int(body["steps"]), int(body["planned_steps"])
        return student


__all__ = ["BERT2DNNStudent", "StudentConfig", "StudentNetwork", "features", "soft_labels"]
