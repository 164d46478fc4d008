"""Learned candidate sources: dense retrievers whose encoder (and index) were trained here.

Two registered retrievers, both :class:`~shopsearch.retrieval.dense.DenseRetriever` underneath
(same filters, incremental updates and saved files), differing in what they keep inside their
own folder so that a bundle is self-contained and can be copied:

- :class:`LearnedDenseRetriever` (``"learned-dense"``): an MMSE two-tower encoder
  (:class:`~shopsearch.retrieval.mmse.TwoTowerEncoder`) or a SearchGCN encoder
  (:class:`~shopsearch.retrieval.search_gcn.SearchGCNEncoder`) saved in ``encoder/``, served by
  an exact or HNSW faiss index like MiniLM vectors.
- :class:`LearnedPQRetriever` (``"learned-pq"``): the Poeem index
  (:class:`~shopsearch.retrieval.poeem.PoeemIndex`): a faiss
  ``IndexPreTransform(LinearTransform, IndexPQ)`` with the jointly learned rotation and
  codebooks, holding one PQ code per product. faiss' ``IndexPQ`` takes no search-time selector,
  so a filtered search over-fetches from the whole index in proportion to the share of products
  that pass and keeps those that do, widening to the whole index when too few pass.

Saved folder: the dense files (``config.json``, ``index.faiss``, ``rows.parquet``) plus
``encoder/`` (the encoder's own save) and ``encoder.json`` (its name and version; the encoder is
written again only when its version changes, so catalog updates do not rewrite the weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, cast

import faiss
import numpy as np
import orjson

from shopsearch.catalog.candidates import Candidates, Filters
from shopsearch.config import RetrievalSettings
from shopsearch.errors import InvalidInputError, ShopSearchError, WorkspaceError
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.dense_rows import Mask
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.atomic import write_json
from shopsearch.text.encoders import ENCODERS, Encoder, FloatMatrix

ENCODER_DIR = "encoder"
ENCODER_FILE = "encoder.json"


class SavableEncoder(Protocol):
    """An encoder that writes itself to a folder and reads itself back."""

    name: ClassVar[str]

    @property
    def version(self) -> str:
        """Changes whenever a text would get another vector."""
        ...

    def save(self, path: Path) -> None:
        """Write the encoder to the folder ``path``."""
        ...


def save_encoder(encoder: Encoder, path: Path) -> None:
    """Save the encoder into ``path/encoder`` unless that very version is already there."""
    if not encoder.learned:
        learned = [name for name, cls in ENCODERS.items() if cls.learned]
        raise InvalidInputError(
            f"encoder {encoder.name!r} is not a learned encoder; use one of "
            f"{', '.join(learned)} (MiniLM indexes are DenseRetriever)"
        )
    marker = path / ENCODER_FILE
    stamp = {"name": ENCODERS.name_of(encoder), "version": encoder.version}
    if marker.exists() and (path / ENCODER_DIR).is_dir():
        try:
            if orjson.loads(marker.read_bytes()) == stamp:
                return
        except orjson.JSONDecodeError:
            pass
    cast(SavableEncoder, encoder).save(path / ENCODER_DIR)
    write_json(marker, stamp)


def load_encoder(path: Path) -> Encoder:
    """The encoder saved in ``path/encoder``; any failure becomes a :class:`WorkspaceError`."""
    try:
        stamp = orjson.loads((path / ENCODER_FILE).read_bytes())
        cls: Any = ENCODERS.get(stamp["name"])
        encoder: Encoder = cls.load(path / ENCODER_DIR)
        version = encoder.version
    except ShopSearchError as exc:
        raise WorkspaceError(f"learned retriever at {path} does not load: {exc}") from exc
    except Exception as exc:  # corrupt weights, truncated files, unknown names
        raise WorkspaceError(
            f"learned retriever at {path} does not load ({type(exc).__name__}: {exc}); "
            "train it again with 'shopsearch train --stage retrieval'"
        ) from exc
    if version != stamp.get("version"):
        raise WorkspaceError(
            f"learned retriever at {path}: encoder version {version!r} is not the saved "
            f"{stamp.get('version')!r}; the files were changed, train again"
        )
    return encoder


@RETRIEVERS.register()
class LearnedDenseRetriever(DenseRetriever):
    """A :class:`DenseRetriever` over a learned encoder (two-tower or SearchGCN) it carries.

    Args:
        encoder: a fitted :class:`TwoTowerEncoder` or :class:`SearchGCNEncoder`.
        **kwargs: :class:`DenseRetriever` parameters (``hnsw_threshold`` ...).
    """

    name = "learned-dense"

    def __init__(self, encoder: Encoder | None = None, **kwargs: Any) -> None:
        if encoder is None:
            raise InvalidInputError(
                f"{type(self).__name__} needs a fitted learned encoder; train one with "
                "'shopsearch train --stage retrieval'"
            )
        kwargs.pop("cache_dir", None)  # learned vectors are cheap to compute: no disk cache
        super().__init__(encoder=encoder, **kwargs)

    @classmethod
    def for_index(
        cls, folder: Path, settings: RetrievalSettings, cache_dir: Path
    ) -> LearnedDenseRetriever:
        """Learned sources are trained, not indexed."""
        raise InvalidInputError(
            f"the {cls.name!r} source is not built by 'shopsearch index'; train it with "
            "'shopsearch train --stage retrieval'"
        )

    def save(self, path: Path) -> None:
        """The dense files plus the encoder (``encoder/``, written once per version)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_encoder(self.encoder, path)
        super().save(path)

    @classmethod
    def load(
        cls, path: Path, encoder: Encoder | None = None, cache_dir: Path | None = None
    ) -> Self:
        """Read a retriever written by :meth:`save` with the encoder saved beside it.

        Raises:
            WorkspaceError: the folder, the encoder or the index is missing or corrupt.
        """
        path = Path(path)
        if encoder is None:
            encoder = load_encoder(path)
        try:
            return super().load(path, encoder=encoder)
        except ShopSearchError:
            raise
        except Exception as exc:
            raise WorkspaceError(
                f"learned index at {path} does not load ({type(exc).__name__}: {exc}); "
                "train it again with 'shopsearch train --stage retrieval'"
            ) from exc


@RETRIEVERS.register()
class LearnedPQRetriever(LearnedDenseRetriever):
    """The Poeem index served by faiss: one learned PQ code per product.

    Args:
        encoder: the two-tower encoder trained jointly with the index.
        quantizer: an empty, trained faiss index (``PoeemIndex.to_faiss()``) that products are
            added to; :meth:`load` takes it from the saved index.
        **kwargs: :class:`DenseRetriever` parameters.
    """

    name = "learned-pq"

    def __init__(
        self, encoder: Encoder | None = None, quantizer: faiss.Index | None = None, **kwargs: Any
    ) -> None:
        super().__init__(encoder=encoder, **kwargs)
        self.quantizer = quantizer

    def _build_index(self) -> None:
        if self.quantizer is None:
            raise InvalidInputError(
                "LearnedPQRetriever needs a trained quantizer (PoeemIndex(...).to_faiss())"
            )
        if self.quantizer.d != self.vectors_.shape[1]:
            raise InvalidInputError(
                f"the quantizer takes {self.quantizer.d}-d vectors but the encoder gives "
                f"{self.vectors_.shape[1]}-d ones; train them together"
            )
        index = faiss.clone_index(self.quantizer)
        index.reset()
        index.add(self.vectors_)
        self.index_ = self.exact_index_ = index

    def _search(self, queries: FloatMatrix, k: int, filters: Filters | None) -> list[Candidates]:
        n_rows = len(self.rows_)
        mask, allowed = self._filter_mask(filters)
        if allowed == 0:
            return [Candidates.empty() for _ in range(len(queries))]
        k = min(k, allowed)
        fetch = k if mask is None else min(n_rows, -(-2 * k * n_rows // allowed) + k)
        queries = np.ascontiguousarray(queries, np.float32)
        return [
            self._keep(queries[i : i + 1], fetch, k, mask, allowed) for i in range(len(queries))
        ]

    def _keep(
        self, query: FloatMatrix, fetch: int, k: int, mask: Mask | None, allowed: int
    ) -> Candidates:
        """One query: search ``fetch`` deep, keep passing rows, widen to all rows if short."""
        while True:
            scores, ids = self.index_.search(query, fetch)
            found = ids[0][ids[0] >= 0]
            kept = found if mask is None else found[mask[found]]
            if len(kept) >= k or fetch >= len(self.rows_):
                break
            fetch = len(self.rows_)
        order = kept[:k]
        by_id = dict(zip(ids[0].tolist(), scores[0].tolist(), strict=True))
        keys = self.rows_.keys
        return Candidates(
            keys=[keys[i] for i in order.tolist()],
            scores=np.asarray([by_id[i] for i in order.tolist()], np.float32),
            total=allowed,
        )

    @classmethod
    def load(
        cls, path: Path, encoder: Encoder | None = None, cache_dir: Path | None = None
    ) -> Self:
        """Read a retriever written by :meth:`save`; the quantizer is the saved index emptied."""
        retriever = super().load(path, encoder=encoder)
        quantizer = faiss.clone_index(retriever.index_)
        quantizer.reset()
        retriever.quantizer = quantizer
        return retriever


def index_bytes(retriever: DenseRetriever) -> dict[str, float]:
    """Bytes per product of the serialised faiss index (and of PQ codes / float32 vectors)."""
    rows = max(len(retriever.rows_), 1)
    index = retriever.index_
    out = {
        "bytes_per_product": len(faiss.serialize_index(index)) / rows,
        "float32_vector_bytes": 4.0 * retriever.vectors_.shape[1],
    }
    inner = faiss.downcast_index(
        index.index if isinstance(index, faiss.IndexPreTransform) else index
    )
    if isinstance(inner, faiss.IndexPQ):
        out["code_bytes_per_product"] = float(inner.sa_code_size())
    return out


def learned_source_names(names: Sequence[str]) -> list[str]:
    """Source names in a bundle of the learned model names (``two-tower`` → ``two_tower``)."""
    return [name.replace("-", "_") for name in names]
