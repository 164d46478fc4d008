"""SCI's consistent dual-view indexing (CI) for a learned two-tower source: ``learned-ci``.

H. Wang et al. (JD.com), "A Simple and Effective Framework for Symmetric Consistent Indexing in
Large-Scale Dense Retrieval", arXiv:2512.13074, 2025, module CI ("consistent indexing with
dual-tower synergy"). A coarse-to-fine index (IVF) routes a query to a few clusters and scores
only their products. The usual IVF clusters the *item* vectors ``f_i(I)`` and routes the *query*
vector ``f_q(Q)`` to the nearest centroids, comparing vectors of two towers whose spaces need not
agree, so the routing misses relevant clusters. CI clusters in the query tower's view: every
product's text also goes through the query tower (``f_q(I)``); k-means over those vectors gives
the centroids and each product's cluster, so routing compares ``f_q(Q)`` with ``f_q(I)``, one
tower's space. The fine level is unchanged: ``f_q(Q) · f_i(I)`` over the probed clusters' items.
It pays off when the towers are aligned (SCI's swapped loss, ``sci-two-tower``).

``view="item"`` builds the usual IVF over the same vectors (the baseline); ``view="dual"`` is CI.
Simplified: the fine level scores the float item vectors exactly (the paper's residual PQ
codes would add a quantization error on both sides alike). Filters that leave fewer than ``k``
products in the probed clusters fall back to an exact search over the products that pass, so
``k`` results come back whenever ``k`` pass. New products are routed to the nearest existing
centroid (no refit); :meth:`~shopsearch.retrieval.dense.DenseRetriever.index` refits.

Saved beside the dense files: ``coarse.npz`` (centroids and each row's routing vector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import faiss
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.progress import Progress
from shopsearch.retrieval.learned import LearnedDenseRetriever
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.atomic import atomic_path
from shopsearch.text.encoders import Encoder, FloatMatrix
from shopsearch.text.product_text import product_texts

I64 = npt.NDArray[np.int64]
#: Whose view clusters and routes: ``dual`` (CI, the query tower) or ``item``.
View = Literal["dual", "item"]
_COARSE = "coarse.npz"


def default_nlist(products: int) -> int:
    """Clusters for ``products`` rows: about ``sqrt(n)`` (each list then holds ``sqrt(n)``)."""
    return int(max(1, min(products, round(np.sqrt(products)))))


@RETRIEVERS.register()
class LearnedCIRetriever(LearnedDenseRetriever):
    """A learned source searched through a coarse-to-fine index (see the module docstring).

    Args:
        encoder: the fitted two-tower encoder.
        view: ``dual`` (CI: cluster and route in the query tower's view) or ``item`` (the usual
            IVF over item vectors).
        nlist: clusters (``0``: :func:`default_nlist` of the catalog).
        nprobe: clusters a query probes.
        seed: k-means seed.
        **kwargs: :class:`~shopsearch.retrieval.dense.DenseRetriever` parameters.
    """

    name = "learned-ci"
    config_keys: ClassVar[list[str]] = [
        *LearnedDenseRetriever.config_keys,
        "view",
        "nlist",
        "nprobe",
        "seed",
    ]

    def __init__(
        self,
        encoder: Encoder | None = None,
        view: View = "dual",
        nlist: int = 0,
        nprobe: int = 16,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(encoder=encoder, **kwargs)
        if view not in ("dual", "item") or nlist < 0 or nprobe < 1:
            raise InvalidInputError(
                f"view={view!r}, nlist={nlist}, nprobe={nprobe}: use view 'dual' or 'item', "
                "nlist >= 0 (0: about sqrt(products)) and nprobe >= 1"
            )
        self.view: View = view
        self.nlist, self.nprobe, self.seed = nlist, nprobe, seed
        self.centroids_: FloatMatrix | None = None
        self.route_: FloatMatrix = np.zeros((0, 0), np.float32)
        self._pending: dict[ProductKey, npt.NDArray[np.float32]] = {}
        self._route_of: dict[ProductKey, npt.NDArray[np.float32]] = {}

    # -- building ------------------------------------------------------------------------------
    def _encode_items(self, products: pa.Table, progress: Progress | None = None) -> FloatMatrix:
        """Item vectors; each product's routing vector is kept for :meth:`_build_index`."""
        vectors = super()._encode_items(products, progress)
        route = (
            np.asarray(self.encoder.encode_queries(product_texts(products)), np.float32)
            if self.view == "dual"
            else vectors
        )
        keys = zip(
            products.column("domain").to_pylist(),
            products.column("product_id").to_pylist(),
            strict=True,
        )
        self._pending = dict(zip(keys, route, strict=True))
        return vectors

    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Encode, cluster (k-means over the routing vectors) and index ``products``."""
        self.centroids_ = None
        return super().index(products, progress)

    def _build_index(self) -> None:
        """The exact index over the item vectors, and the clusters of every row."""
        self.index_ = self.exact_index_ = faiss.IndexFlatIP(self.vectors_.shape[1])
        self.index_.add(self.vectors_)
        self.route_ = self._routes(self.rows_.keys)
        if self.centroids_ is None:
            self._fit_centroids()
        self._assign()

    def _routes(self, keys: list[ProductKey]) -> FloatMatrix:
        """Routing vectors of ``keys`` (just encoded, else stored); forgets every other key."""
        self._route_of.update(self._pending)
        self._pending = {}
        if not keys:
            return np.zeros((0, self.vectors_.shape[1]), np.float32)
        out = np.ascontiguousarray(np.stack([self._route_of[k] for k in keys]), np.float32)
        self._route_of = dict(zip(keys, out, strict=True))
        return out

    def _fit_centroids(self) -> None:
        n, dim = self.route_.shape
        nlist = min(self.nlist or default_nlist(n), n)
        kmeans = faiss.Kmeans(dim, nlist, niter=20, seed=self.seed, spherical=True,
                              min_points_per_centroid=1)  # fmt: skip
        kmeans.train(self.route_)
        self.centroids_ = np.ascontiguousarray(kmeans.centroids, np.float32)

    def _assign(self) -> None:
        """Each row's cluster (nearest centroid by inner product) as sorted lists."""
        assert self.centroids_ is not None
        cluster = np.argmax(self.route_ @ self.centroids_.T, axis=1)
        self.order_ = np.argsort(cluster, kind="stable")
        self.starts_ = np.searchsorted(cluster[self.order_], np.arange(len(self.centroids_) + 1))

    def _maintain(self) -> None:
        """Compact deleted rows and route new ones, keeping the centroids."""
        dead = len(self.rows_) - self.rows_.n_alive
        if dead:
            self.vectors_ = self.vectors_[self.rows_.compact()]
        self._build_index()

    # -- searching -----------------------------------------------------------------------------
    def _search(self, queries: FloatMatrix, k: int, filters: Filters | None) -> list[Candidates]:
        mask, allowed = self._filter_mask(filters)
        if allowed == 0:
            return [Candidates.empty() for _ in range(len(queries))]
        assert self.centroids_ is not None
        k = min(k, allowed)
        nprobe = min(self.nprobe, len(self.centroids_))
        near = np.argpartition(-(queries @ self.centroids_.T), nprobe - 1, axis=1)[:, :nprobe]
        keys = self.rows_.keys
        out = []
        for q, lists in enumerate(near):
            rows = np.concatenate([self.order_[self.starts_[c] : self.starts_[c + 1]]
                                   for c in lists.tolist()])  # fmt: skip
            if mask is not None:
                rows = rows[mask[rows]]
            if len(rows) < k:  # the probed clusters hold too few that pass: search them all
                out.append(super()._search(queries[q : q + 1], k, filters)[0])
                continue
            scores = self.vectors_[rows] @ queries[q]
            top = np.argpartition(-scores, k - 1)[:k] if len(rows) > k else np.arange(len(rows))
            top = top[np.lexsort((rows[top], -scores[top]))]
            found = [keys[r] for r in rows[top].tolist()]
            out.append(Candidates(found, scores[top].astype(np.float32), total=allowed))
        return out

    # -- saving --------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """The learned dense files plus ``coarse.npz`` (centroids, routing vectors)."""
        super().save(path)
        assert self.centroids_ is not None  # fitted: checked by the dense save
        with atomic_path(Path(path) / _COARSE) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, centroids=self.centroids_, route=self.route_)

    @classmethod
    def load(
        cls, path: Path, encoder: Encoder | None = None, cache_dir: Path | None = None
    ) -> Self:
        """Read a retriever :meth:`save` wrote.

        Raises:
            WorkspaceError: a missing or inconsistent ``coarse.npz`` (or dense files).
        """
        retriever = super().load(path, encoder, cache_dir)
        try:
            with np.load(Path(path) / _COARSE, allow_pickle=False) as saved:
                centroids, route = saved["centroids"], saved["route"]
        except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
            raise WorkspaceError(f"no coarse index at {path} ({exc}); train it again") from exc
        if len(route) != len(retriever.rows_):
            raise WorkspaceError(
                f"{path}: {len(route)} routing vectors for {len(retriever.rows_)} rows; the save "
                "was interrupted: train again"
            )
        retriever.centroids_ = np.ascontiguousarray(centroids, np.float32)
        retriever._route_of = dict(zip(retriever.rows_.keys, route, strict=True))
        retriever.route_ = retriever._routes(retriever.rows_.keys)
        retriever._assign()
        return retriever


__all__ = ["LearnedCIRetriever", "View", "default_nlist"]
