"""Exact (brute-force) top-k over a float32 matrix: perfect recall, fast up to ~100k rows.

Knows vectors and integer row numbers only. Scores are "higher is better" for every metric:
``cosine`` and ``ip`` return the inner product (rows are unit-normalised for cosine), ``l2``
returns the negated squared Euclidean distance.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["METRICS", "exact_search", "normalize", "top_k"]

METRICS = ("cosine", "ip", "l2")

_BLOCK = 65536  # rows scored per matmul block: bounds temporary memory for large matrices


def normalize(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Scale rows to unit length; zero rows stay zero (callers reject them before this)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: npt.NDArray[np.float32] = np.divide(vectors, norms, dtype=np.float32)
    return out


def top_k(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` largest entries of each row, best first; -inf entries excluded later."""
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        return np.empty((scores.shape[0], 0), dtype=np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1, kind="stable")[:, ::-1]
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def _score(block: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], metric: str) -> npt.NDArray[np.float32]:
    scores = queries @ block.T
    if metric == "l2":
        scores = (
            2.0 * scores
            - np.einsum("ij,ij->i", block, block)[None, :]
            - np.einsum("ij,ij->i", queries, queries)[:, None]
        )
    return scores.astype(np.float32, copy=False)


def exact_search(
    matrix: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    k: int,
    *,
    metric: str = "cosine",
    rows: npt.NDArray[np.int64] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Top-``k`` rows of ``matrix`` for each query.

    ``rows`` restricts the search to those row numbers (a selective filter); ``mask`` marks the
    eligible rows of the whole matrix. Returns ``(scores, rows)`` of shape (m, k'); slots with
    fewer than ``k`` eligible rows hold row -1 and score -inf.
    """
    queries = np.atleast_2d(queries).astype(np.float32, copy=False)
    m = queries.shape[0]
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        block = matrix[rows] if len(rows) else np.empty((0, matrix.shape[1]), np.float32)
        scores = _score(block, queries, metric)
        idx = top_k(scores, k)
        best = np.take_along_axis(scores, idx, axis=1)
        return _pad(best, rows[idx] if len(rows) else idx, k)
    n = matrix.shape[0]
    best_s = np.full((m, 0), -np.inf, dtype=np.float32)
    best_r = np.empty((m, 0), dtype=np.int64)
    for start in range(0, n, _BLOCK):
        block = np.asarray(matrix[start : start + _BLOCK])
        scores = _score(block, queries, metric)
        if mask is not None:
            scores[:, ~mask[start : start + _BLOCK]] = -np.inf
        idx = top_k(scores, k)
        best_s = np.concatenate([best_s, np.take_along_axis(scores, idx, axis=1)], axis=1)
        best_r = np.concatenate([best_r, idx + start], axis=1)
        if best_s.shape[1] > k:
            keep = top_k(best_s, k)
            best_s = np.take_along_axis(best_s, keep, axis=1)
            best_r = np.take_along_axis(best_r, keep, axis=1)
    return _pad(best_s, best_r, k)


def _pad(
    scores: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    rows = rows.copy()
    rows[~np.isfinite(scores)] = -1
    if scores.shape[1] < k:
        extra = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, extra)), constant_values=-1)
    return scores, rows
