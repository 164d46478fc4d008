"""Residual k-means: the codebooks that turn a product vector into a sequence of codes.

Level ``l`` quantizes what the levels before it left over: ``r_0 = x``, ``c_l = argmin_k
||r_{l-1} - C_l[k]||``, ``r_l = r_{l-1} - C_l[c_l]``; the reconstruction is ``sum_l C_l[c_l]``.
Each codebook is k-means (k-means++ seeding, Lloyd iterations, seeded) on its level's
residuals. Codes of a product added later come from the fitted codebooks alone, so new
products get codes without refitting anything.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


def _nearest(points: F32, centers: F32) -> I64:
    """Index of the nearest center of every point (squared Euclidean)."""
    out = np.empty(len(points), np.int64)
    norms = (centers * centers).sum(axis=1)
    for at in range(0, len(points), 8192):
        block = points[at : at + 8192]
        out[at : at + 8192] = np.argmin(norms[None, :] - 2.0 * block @ centers.T, axis=1)
    return out


def kmeans(points: F32, k: int, iterations: int, rng: np.random.Generator) -> F32:
    """``k`` centers of ``points`` by k-means++ seeding and Lloyd iterations; an empty
    cluster is re-seeded on the point farthest from its center."""
    n = len(points)
    k = min(k, n)
    centers = np.empty((k, points.shape[1]), np.float32)
    centers[0] = points[rng.integers(n)]
    closest = ((points - centers[0]) ** 2).sum(axis=1)
    for i in range(1, k):
        total = float(closest.sum())
        pick = rng.integers(n) if total <= 0 else rng.choice(n, p=closest / total)
        centers[i] = points[pick]
        closest = np.minimum(closest, ((points - centers[i]) ** 2).sum(axis=1))
    for _ in range(iterations):
        assign = _nearest(points, centers)
        counts = np.bincount(assign, minlength=k)
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, points)
        empty = counts == 0
        centers[~empty] = sums[~empty] / counts[~empty, None]
        if empty.any():
            error = ((points - centers[assign]) ** 2).sum(axis=1)
            far = np.argsort(-error)[: int(empty.sum())]
            centers[np.flatnonzero(empty)] = points[far]
    return centers


class ResidualKMeans:
    """Residual quantization into ``levels`` codes of ``codewords`` values each.

    Args:
        levels: codes per product.
        codewords: values per code (at most 256: codes are stored as bytes).
        iterations: Lloyd iterations per level.
        seed: seed of the seeding.
    """

    def __init__(self, levels: int = 5, codewords: int = 64, iterations: int = 20,
                 seed: int = 0) -> None:  # fmt: skip
        if not 1 <= levels <= 16 or not 2 <= codewords <= 256 or iterations < 1:
            raise InvalidInputError(
                f"levels={levels}, codewords={codewords}, iterations={iterations}: use "
                "1 <= levels <= 16, 2 <= codewords <= 256, iterations >= 1"
            )
        self.levels = levels
        self.codewords = codewords
        self.iterations = iterations
        self.seed = seed

    def fit(self, vectors: npt.ArrayLike) -> Self:
        """Fit every level's codebook on its residuals.

        Raises:
            InvalidInputError: fewer than 2 vectors, or not a 2-d array.
        """
        x = np.asarray(vectors, np.float32)
        if x.ndim != 2 or len(x) < 2:
            raise InvalidInputError(
                f"residual quantization needs a 2-d array of at least 2 vectors, not {x.shape}"
            )
        rng = np.random.default_rng(self.seed)
        residual = x.copy()
        books = []
        for _ in range(self.levels):
            book = kmeans(residual, self.codewords, self.iterations, rng)
            residual -= book[_nearest(residual, book)]
            books.append(book)
        self.codebooks_ = books
        return self

    def encode(self, vectors: npt.ArrayLike) -> U8:
        """``[n, levels]`` codes of vectors (fitted codebooks only: works for new products)."""
        residual = np.asarray(vectors, np.float32).copy()
        codes = np.empty((len(residual), len(self.codebooks_)), np.uint8)
        for level, book in enumerate(self.codebooks_):
            codes[:, level] = _nearest(residual, book)
            residual -= book[codes[:, level].astype(np.int64)]
        return codes

    def reconstruct(self, codes: U8, levels: int | None = None) -> F32:
        """The sum of the first ``levels`` (default: all) codewords of each row of codes."""
        depth = len(self.codebooks_) if levels is None else levels
        out = np.zeros((len(codes), self.codebooks_[0].shape[1]), np.float32)
        for level in range(depth):
            out += self.codebooks_[level][codes[:, level].astype(np.int64)]
        return out


__all__ = ["ResidualKMeans", "kmeans"]
