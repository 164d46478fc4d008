"""MMSE two-tower retrieval embeddings: hashed n-gram towers, a MiniLM head, or both fused.

Paper: B. Wang, M. Li, Z. Zeng, J. Zhuo, S. Wang, S. Xu, B. Long, W. Yan (JD.com), "Learning
Multi-Stage Multi-Grained Semantic Embeddings for E-Commerce Search" (MMSE), arXiv:2303.11009,
2023.

What is implemented:

- **Two towers.** A query tower and an item tower (item text = title, brand, category leaf and
  short attributes, :func:`~shopsearch.text.product_text.product_text`). Selectable inputs
  (``backbone``):

  - ``"hashed"``: trained from scratch on hashed word, character 3-gram and word-bigram features
    (:mod:`shopsearch.text.hashed`) through mean-pooled ``EmbeddingBag`` tables; the table is
    shared by the towers (a query word and a title word get the same first-layer vector), each
    tower has its own heads;
  - ``"minilm"``: initialised from MiniLM: the frozen all-MiniLM-L6-v2 sentence vector under a
    trainable residual head per tower (``v + Linear(v)``, starting at zero, so training starts
    from plain MiniLM); item vectors come from the shared embedding cache;
  - ``"hashed+minilm"``: both, post-fused (below).
- **Post-fusion of several embedding heads.** Each tower has one head per feature grain
  (words, characters, phrases: ``bag + Linear(bag)``, L2-normalised), plus the MiniLM head. The
  query–item similarity is ``Σ_k w_k cos(q_k, i_k)`` with learned ``w = softmax(logits)``.
  Because the weights are a softmax, the served vector ``concat_k(√w_k · q_k)`` has unit norm and
  its inner product with the item vector is exactly the fused similarity, so plain faiss serves
  it (the network: :mod:`shopsearch.retrieval.mmse_net`).
- **Multi-stage samples.** Training pairs carry a *stage*: higher is better (events: purchased 3 >
  clicked 2 > shown-unclicked 1; graded judgments: the grade). Random catalog items are the
  lowest stage (:class:`~shopsearch.retrieval.mmse_samples.StagedSamples`).
- **Multi-grained objective.** ``loss = retrieval + rank_weight · ranking``: the retrieval loss is
  a softmax (InfoNCE) with temperature over in-batch and random negatives for pairs at or above
  the positive stage (global comparison); the ranking loss is a margin hinge on pairs of the
  same query whose stages differ (local comparison); both and the training loop are in
  :mod:`shopsearch.retrieval.mmse_train`.

Optional, from a second paper: H. Wang, Y. Qiu, X. Yao, Z. Chen, G. Tang, S. Wang, S. Xu, M. Li
(JD.com), "A Simple and Effective Framework for Symmetric Consistent Indexing in Large-Scale
Dense Retrieval" (SCI), arXiv:2512.13074, 2025. Its symmetric representation alignment
(SymmAligner) is ``symmetric_weight``: the retrieval loss is applied a second time to *swapped
inputs* — the batch's queries through the item tower, its candidate items through the query
tower, same positives, exclusions and temperature — and added with that weight, so the two
towers' spaces align; no parameter is added. A text's features do not depend on the tower that
reads it (an item text is one string, title + brand + category + attributes, featurized like a
query), so each text keeps its own hashed features and its own frozen MiniLM vector and only the
towers' heads are exchanged (the shared table and the fusion weights are the same on both
sides; MiniLM encodes queries and items alike). The heads start equal (zero residuals) and, at
weight 1, the total loss is unchanged by exchanging them, so apart from the ranking loss's
push the towers stay equal: weight 1 is close to one shared tower. Our choices: the swapped
loss is InfoNCE (the paper's is a triplet hinge), the ranking hinge is not swapped, and the
weight is picked on validation queries: on a by-query split of the Home Depot training judgments
(``hashed+minilm``, MiniLM head frozen, one epoch), validation NDCG@10 was 0.338 without the
swapped loss and 0.342 / 0.340 / 0.338 at weight 0.5 / 1 / 2 (long-tail queries: 0.337, then
0.338 / 0.338 / 0.336), differences well inside the bootstrap intervals (about ±0.015); 0.5 is
the evaluation's and the ``[retrieval]`` default. On the Home Depot test queries (trained on the
whole training file) weight 0.5 against none: NDCG@10 0.3395 vs 0.3393, long-tail queries 0.343
vs 0.341; paired differences +0.000 [-0.004, +0.004] and +0.002 [-0.004, +0.008]: a tie, not
the paper's gain (our towers already share the hashed table and the frozen MiniLM vectors).
SCI's dual-view indexing is not implemented (served vectors are unchanged).

This module holds :class:`TwoTowerEncoder`, the registered encoder: its settings, fitting,
encoding and persistence.

Simplified against the paper: no user or personalisation features; the MiniLM transformer
itself stays frozen (only the head over its sentence vector trains: fine-tuning the transformer
on this 2-core CPU would take far longer than the few minutes the evaluation allows); one shared
first-layer table; the heads are per feature grain rather than the paper's exact multi-head
layout; the ranking loss is a hinge with one margin for every pair of stages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.progress import Progress
from shopsearch.replicas import Replicas
from shopsearch.retrieval.mmse_net import two_tower_net
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.retrieval.mmse_train import (
    Featurized,
    TrainSettings,
    Transform,
    positive_rows,
    train,
)
from shopsearch.store.atomic import write_bytes, write_json
from shopsearch.text.encoders import ENCODERS, Encoder, FloatMatrix, MiniLMEncoder
from shopsearch.text.hashed import GRAINS, HashedFeaturizer

if TYPE_CHECKING:
    import torch

_FORMAT = "shopsearch-mmse"
_FORMAT_VERSION = 1

#: The ``backbone`` choices of :class:`TwoTowerEncoder`.
BACKBONES = ("hashed", "minilm", "hashed+minilm")


@ENCODERS.register()
class TwoTowerEncoder(Encoder):
    """MMSE two-tower encoder: fit on staged samples, then serve through ``DenseRetriever``.

    A ``DenseRetriever`` saves its encoder's config, which for this encoder is the folder of
    its weights: :meth:`save` the encoder before saving a retriever that uses it, so that
    ``DenseRetriever.load`` finds the weights again.

    Args:
        path: a folder written by :meth:`save`; weights are read from it on first use.
        buckets: hash buckets of the shared feature table.
        head_dim: vector length of each head (served vectors have ``3 * head_dim``).
        temperature: softmax temperature of the retrieval loss.
        margin: margin of the ranking loss.
        rank_weight: weight of the ranking loss.
        positive_stage: pairs at or above this stage are positives of the retrieval loss.
        random_negatives: random catalog items added to each batch as negatives.
        batch_size: positive pairs (and ranking pairs) per step.
        epochs: passes over the positive pairs. One is the default: on a by-query split of the
            Home Depot training judgments, validation NDCG@10 fell with more epochs (0.308 after
            1, 0.280 after 5: the hashed table memorises the training queries).
        lr: learning rate (Adam; sparse Adam for the feature table).
        seed: random seed of initialisation and sampling.
        num_threads: torch threads while training and encoding (set and restored around each
            call); on a shared machine one thread is several times faster than two that wait
            for each other.
        backbone: the towers' inputs: ``"hashed"`` (trained from scratch on hashed n-grams),
            ``"minilm"`` (frozen all-MiniLM-L6-v2 sentence vectors under a trainable residual
            head per tower, starting as plain MiniLM) or ``"hashed+minilm"`` (both, post-fused:
            the MiniLM head is one more fused head).
        dense_cache: embedding-cache root for the frozen MiniLM item vectors (shared with the
            plain MiniLM dense retriever: same encoder, same cache keys); ``None``: no cache.
        train_dense_head: train the residual head over the MiniLM vectors; False keeps the
            MiniLM vectors as they are (only the fusion weight of that head is learned). On a
            by-query validation split of the Home Depot training judgments, ``hashed+minilm``
            reached NDCG@10 0.346 with the head trained and 0.357 with it frozen (plain MiniLM
            0.315; MiniLM alone under a trained head 0.306: the head over-fits the training
            queries).
        symmetric_weight: weight of SCI's swapped retrieval loss (queries through the item
            tower, items through the query tower; see the module docstring); 0, the default,
            trains exactly as without it.
        dense_encoder: the frozen sentence encoder of the ``minilm`` head (default: a
            :class:`~shopsearch.text.encoders.MiniLMEncoder`); not saved, so pass it again to
            :meth:`load` when it is not the default.

    Attributes:
        net_: the trained torch module.
        history_: mean training loss per epoch.
    """

    name = "mmse"
    learned = True
    config_keys: ClassVar[list[str]] = [
        "path",
        "buckets",
        "head_dim",
        "temperature",
        "margin",
        "rank_weight",
        "positive_stage",
        "random_negatives",
        "batch_size",
        "epochs",
        "lr",
        "seed",
        "num_threads",
        "backbone",
        "dense_cache",
        "train_dense_head",
        "symmetric_weight",
    ]
    net_: torch.nn.Module
    history_: list[float]

    def __init__(
        self,
        path: str | None = None,
        buckets: int = 2**18,
        head_dim: int = 64,
        temperature: float = 0.05,
        margin: float = 0.1,
        rank_weight: float = 1.0,
        positive_stage: float = 1.0,
        random_negatives: int = 256,
        batch_size: int = 256,
        epochs: int = 1,
        lr: float = 0.003,
        seed: int = 0,
        num_threads: int = 1,
        backbone: str = "hashed",
        dense_cache: str | None = None,
        train_dense_head: bool = True,
        symmetric_weight: float = 0.0,
        dense_encoder: Encoder | None = None,
    ) -> None:
        if backbone not in BACKBONES:
            raise InvalidInputError(
                f"backbone={backbone!r} is not allowed; use one of {', '.join(BACKBONES)}"
            )
        for key, value in (
            ("head_dim", head_dim),
            ("batch_size", batch_size),
            ("epochs", epochs),
            ("num_threads", num_threads),
        ):
            if value < 1:
                raise InvalidInputError(f"{key}={value} is not allowed; use {key} >= 1")
        if (
            temperature <= 0
            or lr <= 0
            or min(margin, rank_weight, random_negatives, symmetric_weight) < 0
        ):
            raise InvalidInputError(
                f"temperature={temperature} and lr={lr} must be > 0; margin={margin}, "
                f"rank_weight={rank_weight}, random_negatives={random_negatives} and "
                f"symmetric_weight={symmetric_weight} must be >= 0"
            )
        self.path = path
        self.buckets = buckets
        self.head_dim = head_dim
        self.temperature = temperature
        self.margin = margin
        self.rank_weight = rank_weight
        self.positive_stage = positive_stage
        self.random_negatives = random_negatives
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.seed = seed
        self.num_threads = num_threads
        self.backbone = backbone
        self.dense_cache = dense_cache
        self.train_dense_head = train_dense_head
        self.symmetric_weight = symmetric_weight
        self._minilm = dense_encoder
        self._featurizer = HashedFeaturizer(buckets)
        self._version = ""
        self._lock = threading.Lock()

    # -- Encoder -----------------------------------------------------------------------------
    @property
    def _hashed(self) -> bool:
        return "hashed" in self.backbone.split("+")

    @property
    def _dense(self) -> Encoder | None:
        """The frozen MiniLM encoder of the ``minilm`` head, or None without one."""
        if "minilm" not in self.backbone.split("+"):
            return None
        if self._minilm is None:
            self._minilm = MiniLMEncoder()
        return self._minilm

    @property
    def dim(self) -> int:
        """Length of the served (fused) vectors: ``3 * head_dim`` per hashed tower plus 384
        with the MiniLM head."""
        dense = self._dense
        return (len(GRAINS) * self.head_dim if self._hashed else 0) + (
            dense.dim if dense is not None else 0
        )

    def _dense_vectors(
        self, texts: Sequence[str], side: str, progress: Progress | None = None
    ) -> FloatMatrix | None:
        """Frozen MiniLM vectors of ``texts`` (items through the embedding cache), or None."""
        dense = self._dense
        if dense is None:
            return None
        if side == "query":
            return dense.encode_queries(texts)
        if self.dense_cache is None:
            return dense.encode_items(texts, progress)
        from shopsearch.text.embedding_cache import EmbeddingCache

        return EmbeddingCache(Path(self.dense_cache), dense).encode_items(texts, progress)

    def _load_dense(self) -> None:
        """Load the frozen encoder now (MiniLM sets torch's process-wide thread count on load,
        which must happen before training sets its own)."""
        dense = self._dense
        if dense is not None:
            _ = dense.dim

    def _freeze_dense_head(self, net: Any) -> None:
        """Stop gradients into the MiniLM head unless ``train_dense_head``."""
        if not self.train_dense_head and hasattr(net, "query_dense"):
            net.query_dense.requires_grad_(False)
            net.item_dense.requires_grad_(False)

    def _net(self) -> torch.nn.Module:
        dense = self._dense
        return two_tower_net(
            self.buckets, self.head_dim, self._hashed, dense.dim if dense is not None else 0
        )

    def _digest(self, net: torch.nn.Module) -> str:
        dense = self._dense
        return _digest(net) + (f"+{dense.version}" if dense is not None else "")

    def _ensure(self) -> None:
        if hasattr(self, "net_"):
            return
        if self.path is None:
            raise NotFittedError(
                "TwoTowerEncoder is not trained; call fit(samples) or TwoTowerEncoder.load(path)"
            )
        with self._lock:
            if not hasattr(self, "net_"):
                self._read_weights(Path(self.path))

    @property
    def version(self) -> str:
        """A digest of the trained weights (so embedding caches never mix two trainings)."""
        self._ensure()
        return self._version

    def _encode(
        self, texts: Sequence[str], side: str, progress: Progress | None = None
    ) -> FloatMatrix:
        self._ensure()
        dense = self._dense_vectors(texts, side, progress)
        out = np.empty((len(texts), self.dim), np.float32)
        net: Any = self.net_
        with torch_threads(self.num_threads):
            self._forward(net, texts, dense, side, out)
        return out

    def _forward(
        self,
        net: Any,
        texts: Sequence[str],
        dense: FloatMatrix | None,
        side: str,
        out: FloatMatrix,
    ) -> None:
        import torch

        with torch.inference_mode():
            for start in range(0, len(texts), 4096):
                batch = texts[start : start + 4096]
                rows = None if dense is None else dense[start : start + len(batch)]
                heads = net.tower(self._featurizer.featurize(batch), rows, side)
                out[start : start + len(batch)] = net.fused(heads).numpy()

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        """Unit query vectors ``[len(texts), dim]``."""
        return self._encode(texts, "query")

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        """Unit item vectors ``[len(texts), dim]``."""
        vectors = self._encode(texts, "item", progress)
        if progress is not None:
            progress(len(texts), len(texts))
        return vectors

    # -- training ----------------------------------------------------------------------------
    def fit(
        self,
        samples: StagedSamples,
        progress: Progress | None = None,
        replicas: Replicas | None = None,
    ) -> Self:
        """Train both towers on staged samples (retrieval + ranking loss); returns ``self``.
        With ``replicas``, as one data-parallel replica (see :func:`.mmse_train.train`).

        Raises:
            InvalidInputError: no pair reaches ``positive_stage``.
        """
        import torch

        positives = positive_rows(samples, self.positive_stage)
        self._load_dense()
        with torch_threads(self.num_threads):
            torch.manual_seed(self.seed)
            net: Any = self._net()
            self._freeze_dense_head(net)
            queries, items = self._featurized(samples)
            self.history_ = train(
                net,
                samples,
                queries,
                items,
                positives,
                self.epochs,
                self._settings(),
                progress=progress,
                replicas=replicas,
            )
            net.eval()
        self.net_ = net
        self._version = self._digest(net)
        return self

    def fine_tune(
        self,
        samples: StagedSamples,
        transform: Transform,
        parameters: Sequence[torch.nn.Parameter],
        epochs: int,
        train_towers: bool = True,
        lr: float | None = None,
        tower_lr: float | None = None,
    ) -> list[float]:
        """Train the fitted towers further *with* a transform of their vectors (joint training).

        The losses are computed on ``transform(vectors, side)`` instead of the vectors (Poeem
        passes its rotation and quantisation), and ``parameters`` (the transform's own) are
        optimised together with the towers, or alone when ``train_towers`` is False. With
        ``symmetric_weight > 0`` the swapped loss is part of it, the transform applied to each
        tower's output (queries through the item tower get the item side's). ``lr`` is
        the learning rate of ``parameters`` and ``tower_lr`` that of the towers (``None``: the
        encoder's ``lr`` for both).

        Returns:
            The mean loss of each epoch.
        """
        self._ensure()
        positives = positive_rows(samples, self.positive_stage)
        self._load_dense()
        with torch_threads(self.num_threads):
            net: Any = self.net_
            net.train()
            net.requires_grad_(train_towers)
            self._freeze_dense_head(net)
            try:
                queries, items = self._featurized(samples)
                history = train(
                    net,
                    samples,
                    queries,
                    items,
                    positives,
                    epochs,
                    self._settings(),
                    extra=parameters,
                    transform=transform,
                    extra_lr=lr,
                    tower_lr=tower_lr,
                )
            finally:
                net.requires_grad_(True)
                net.eval()
        self._version = self._digest(net)
        return history

    def _settings(self) -> TrainSettings:
        return TrainSettings(
            temperature=self.temperature,
            margin=self.margin,
            rank_weight=self.rank_weight,
            random_negatives=self.random_negatives,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
            symmetric_weight=self.symmetric_weight,
        )

    def _featurized(self, samples: StagedSamples) -> tuple[Featurized, Featurized]:
        """The features of the samples' queries and items."""
        return (
            Featurized(
                self._featurizer, samples.queries, self._dense_vectors(samples.queries, "query")
            ),
            Featurized(self._featurizer, samples.items, self._dense_vectors(samples.items, "item")),
        )

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write ``weights.safetensors`` and ``config.json`` to ``path``; sets :attr:`path`."""
        from safetensors.torch import save

        self._ensure()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net_.state_dict().items()}
        write_bytes(path / "weights.safetensors", save(state))
        self.path = str(path)
        write_json(
            path / "config.json",
            {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "encoder": self.name,
                "config": self.get_config(),
                "version": self._version,
                "history": getattr(self, "history_", []),
            },
        )

    @classmethod
    def load(cls, path: Path, dense_encoder: Encoder | None = None) -> Self:
        """Read an encoder written by :meth:`save` (weights are read at once).

        Raises:
            WorkspaceError: the folder is missing or holds something else.
        """
        path = Path(path)
        try:
            saved = json.loads((path / "config.json").read_text())
        except FileNotFoundError:
            raise WorkspaceError(
                f"no two-tower encoder at {path} (missing config.json); write one with "
                "TwoTowerEncoder.save(path)"
            ) from None
        if saved.get("format") != _FORMAT or saved.get("format_version") != _FORMAT_VERSION:
            raise WorkspaceError(
                f"{path} holds {saved.get('format')!r} version {saved.get('format_version')}, "
                f"not {_FORMAT!r} version {_FORMAT_VERSION}; train and save again"
            )
        encoder = cls(**{**saved["config"], "path": str(path)}, dense_encoder=dense_encoder)
        encoder._ensure()
        return encoder

    def _read_weights(self, path: Path) -> None:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path / "weights.safetensors"))
        except FileNotFoundError:
            raise WorkspaceError(
                f"no weights.safetensors in {path}; save the trained encoder there again"
            ) from None
        net = self._net()
        net.load_state_dict(state)
        net.eval()
        self._version = self._digest(net)
        self.net_ = net


def _digest(net: torch.nn.Module) -> str:
    """``mmse-`` and a short SHA-256 of the weights."""
    sha = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().numpy().tobytes())
    return f"mmse-{sha.hexdigest()[:16]}"


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
