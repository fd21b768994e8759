"""Clustering and near-duplicate detection over embedding rows (numpy only, seeded).

Knows vectors and row numbers, nothing of policies. Rows given here are unit-normalised, so
Euclidean k-means on them groups by cosine similarity (spherical k-means).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["greedy_dedupe", "kmeans"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

_BLOCK = 8192  # rows per distance block: bounds the (rows x k) temporary


def _nearest(x: F32, centers: F32) -> tuple[I64, F32]:
    """Index of and squared distance to the nearest center, for every row."""
    labels = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float32)
    c2 = np.einsum("ij,ij->i", centers, centers)
    for start in range(0, len(x), _BLOCK):
        block = x[start : start + _BLOCK]
        d = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * (block @ centers.T) + c2[None, :]
        labels[start : start + len(block)] = d.argmin(axis=1)
        dist[start : start + len(block)] = np.maximum(d.min(axis=1), 0.0)
    return labels, dist


def _seed(x: F32, k: int, rng: np.random.Generator) -> F32:
    """k-means++: each next center drawn with probability proportional to squared distance."""
    n = len(x)
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    centers[0] = x[rng.integers(n)]
    _, d2 = _nearest(x, centers[:1])
    for j in range(1, k):
        total = float(d2.sum(dtype=np.float64))
        # NOTE: when every row already coincides with a center, any row will do.
        pick = int(rng.integers(n)) if total <= 0.0 else int(rng.choice(n, p=d2.astype(np.float64) / total))
        centers[j] = x[pick]
        d2 = np.minimum(d2, _nearest(x, centers[j : j + 1])[1])
    return centers


def _fill_empty(x: F32, labels: I64, dist: F32, centers: F32) -> None:
    """Give every empty cluster the row farthest from its center, taken from a cluster of two or more."""
    k = len(centers)
    sizes = np.bincount(labels, minlength=k)
    for j in np.flatnonzero(sizes == 0):
        movable = sizes[labels] > 1
        far = int(np.argmax(np.where(movable, dist, -1.0)))
        sizes[labels[far]] -= 1
        labels[far] = j
        sizes[j] = 1
        dist[far] = 0.0
        centers[j] = x[far]


def kmeans(x: F32, k: int, *, seed: int = 0, iterations: int = 100) -> tuple[I64, F32]:
    """Lloyd's k-means with k-means++ seeding; returns ``(labels, centers)``.

    Requires ``1 <= k <= len(x)``. Every cluster ends non-empty, so exactly ``k`` labels occur.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    centers = _seed(x, k, rng)
    labels = np.full(len(x), -1, dtype=np.int64)
    for _ in range(max(1, iterations)):
        new_labels, dist = _nearest(x, centers)
        _fill_empty(x, new_labels, dist, centers)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        centers = (sums / np.bincount(labels, minlength=k)[:, None]).astype(np.float32)
    return labels, centers


def greedy_dedupe(x: F32, order: I64, threshold: float) -> I64:
    """For each row, the row that absorbs it (itself when kept).

    Rows are visited in ``order`` (best first); a row is kept unless a kept row before it has
    cosine similarity ``>= threshold`` with it, in which case the first such kept row absorbs it.
    """
    n = len(x)
    owner = np.arange(n, dtype=np.int64)
    if n == 0:
        return owner
    ranked = np.ascontiguousarray(x[order], dtype=np.float32)
    taken = np.zeros(n, dtype=bool)
    for start in range(0, n, _BLOCK):
        sims = ranked[start : start + _BLOCK] @ ranked.T
        for i in range(start, min(n, start + _BLOCK)):
            if taken[i]:
                continue
            row = sims[i - start]
            hit = (row >= threshold) & ~taken
            hit[: i + 1] = False
            victims = np.flatnonzero(hit)
            taken[victims] = True
            owner[order[victims]] = order[i]
    return owner
