"""Search over one collection: exact or approximate vector search, BM25 text search, and their fusion.

Vector search is exact below a size threshold and approximate above it (see ``units.indexes``
for the choice and ``index.ann`` for the mechanism); approximate results are refined exactly,
so a score means the same whichever path produced it.

Scores (higher is always better):
- ``vector``: cosine similarity in [-1, 1] for cosine collections; the inner product for ``ip``;
  the negated squared L2 distance for ``l2``.
- ``text``: the negated FTS5 BM25 value (positive, unbounded; only comparable within one query).
- ``hybrid``: reciprocal rank fusion, ``sum(1 / (60 + rank))`` over the two lists (rank from 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from sigmavault.index import exact_search, hamming_similarity
from sigmavault.index.ann import (
    FEW_QUERIES,
    ONE_THREAD_ROWS,
    Eligible,
    MaskEligible,
    exact_rows,
    search,
    threads_for,
)
from sigmavault.types import Hit, State, Vector
from sigmavault.units.catalog import STATE_CODES, Catalog, RowState
from sigmavault.units.filters import compile_where
from sigmavault.units.indexes import IndexManager, Loaded
from sigmavault.units.records import UnitStore

__all__ = ["RRF_K", "SearchEngine", "fuse"]

RRF_K = 60
# NOTE: below this share of the collection a filter is "selective": scoring just the matching
# rows beats scoring everything and masking.
_SELECTIVE = 0.2
# NOTE: with an ANN index, a filter matching at most this many rows (or this share) is searched
# exactly on the matching rows: cheap there, and an ID selector loses recall when few rows pass.
_EXACT_ROWS = 10_000
_EXACT_SHARE = 0.05
# NOTE: SQLite binds at most 32766 parameters per statement; hydrate hits in chunks below that.
_LOOKUP_CHUNK = 30_000
# SQLite binds a LIMIT as a signed 64-bit integer; no text search returns more rows than this anyway.
_TEXT_LIMIT = 1 << 31


class SearchEngine:
    """Turns (query vectors, filters) into hits for one vault's collections."""

    def __init__(self, catalog: Catalog, units: UnitStore, indexes: IndexManager | None = None) -> None:
        self.catalog = catalog
        self.units = units
        self.indexes = indexes

    def vector(
        self,
        cid: int,
        queries: Vector,
        k: int,
        *,
        where: Mapping[str, Any] | None = None,
        states: tuple[State, ...] = (State.ACTIVE,),
        ef: int | None = None,
        nprobe: int | None = None,
        rerank: int | None = None,
        touch: bool = True,
    ) -> list[list[Hit]]:
        """The ``k`` best units for each query row; ``ef``/``nprobe``/``rerank`` tune an ANN index.

        ``touch`` counts every hit as an access (``access_count``, ``accessed_at``).
        """
        st = self.catalog.state(cid)
        scores, found, matrix = self._rows(st, queries, k, where, states, (ef, nprobe, rerank))
        if st.info.metric == "cosine":
            # NOTE: float32 rounding lets a self-match score 1.0000001; cosine is documented in [-1, 1]
            np.clip(scores, -1.0, 1.0, out=scores)
        return self._hits(cid, scores, found, touch=touch, matrix=matrix)

    def vector_rows(
        self,
        cid: int,
        queries: Vector,
        k: int,
        *,
        where: Mapping[str, Any] | None = None,
        states: tuple[State, ...] = (State.ACTIVE,),
        ef: int | None = None,
        nprobe: int | None = None,
        rerank: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of shape (queries, k'), best first; row -1 where fewer than ``k'`` qualify.

        ``k' = min(k, rows in the collection)``: the cost follows the collection, never the request.
        """
        scores, rows, _ = self._rows(self.catalog.state(cid), queries, k, where, states, (ef, nprobe, rerank))
        return scores, rows

    def _rows(
        self,
        st: RowState,
        queries: Vector,
        k: int,
        where: Mapping[str, Any] | None,
        states: tuple[State, ...],
        knobs: tuple[int | None, int | None, int | None],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``vector_rows`` plus the matrix the rows index (the snapshot the search scored)."""
        handle = self.indexes.prepare(st) if self.indexes is not None else None
        if st.info.metric == "cosine":
            queries = _unit_rows(queries)
        if handle is not None and handle.ann.params.kind == "hnsw":
            # NOTE: FAISS's HNSW search, the refine and exact_rows open no OpenMP region for fewer
            # than FEW_QUERIES queries, so threads_for's two calls into OpenMP (about 30 us on a
            # cold cache, issue 14) would buy nothing; larger batches use every thread anyway.
            return self._approximate(st, handle, queries, k, where, states, knobs)
        with threads_for(len(queries)):
            if handle is not None:
                return self._approximate(st, handle, queries, k, where, states, knobs)
            return self._exact(st, queries, k, where, states)

    def _exact(
        self, st: RowState, queries: Vector, k: int, where: Mapping[str, Any] | None, states: tuple[State, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        snap = st.snapshot()
        k = _bounded(k, len(snap))
        matrix = snap.matrix
        mask = snap.mask(states)
        rows = None
        if where:
            sql, params = compile_where(where)
            subset = snap.covered(self.units.rows_matching(st.info.id, sql, params))
            subset = subset[mask[subset]]
            if len(subset) <= _SELECTIVE * max(1, len(mask)):
                rows = subset
            else:
                narrowed = np.zeros_like(mask)
                narrowed[subset] = True
                mask = narrowed
        if rows is None and len(queries) < FEW_QUERIES and len(mask) <= ONE_THREAD_ROWS:
            # NOTE: a few queries over a small collection are scored in FAISS's one-thread loop
            # (see ONE_THREAD_ROWS in index.ann for the measured limit).
            rows = np.flatnonzero(mask)
        if rows is not None:
            return (*exact_rows(matrix, queries, rows, k, metric=st.info.metric), matrix)
        return (*exact_search(matrix, queries, k, metric=st.info.metric, mask=mask), matrix)

    def _approximate(
        self,
        st: RowState,
        handle: Loaded,
        queries: Vector,
        k: int,
        where: Mapping[str, Any] | None,
        states: tuple[State, ...],
        knobs: tuple[int | None, int | None, int | None],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # NOTE: taken after prepare() so the map covers every row the index may return; one
        # snapshot, so the codes and the matrix describe the same rows whatever writers do meanwhile.
        snap = st.snapshot()
        matrix = snap.matrix
        n = len(snap)
        k = _bounded(k, n)
        metric = st.info.metric
        assert self.indexes is not None
        q = self.indexes.config(st).query(ef=knobs[0], nprobe=knobs[1], rerank=knobs[2])
        eligible: Eligible = _CodeEligible(snap.codes, [STATE_CODES[s] for s in states])
        selector = False
        if where or states != (State.ACTIVE,):
            mask = snap.mask(states)
            if where:
                sql, params = compile_where(where)
                subset = snap.covered(self.units.rows_matching(st.info.id, sql, params))
                subset = subset[mask[subset]]
            else:
                subset = np.flatnonzero(mask)
            if len(subset) <= max(_EXACT_ROWS, _EXACT_SHARE * n):
                return (*exact_rows(matrix, queries, subset, k, metric=metric), matrix)
            allowed = np.zeros(n, dtype=bool)
            allowed[subset] = True
            eligible = MaskEligible(allowed)
            # NOTE: fewer rows pass, so the nearest ones that do lie farther out: widen the search.
            boost = int(min(8, max(1, round(0.25 * n / len(subset)))))
            nprobe = handle.ann.nprobe_for(q) * boost if handle.ann.nlist else q.nprobe
            q = replace(q, ef=handle.ann.ef_for(q) * boost, nprobe=nprobe)
            selector = True
        scores, rows = search(
            handle.ann,
            matrix,
            queries,
            k,
            metric=metric,
            q=q,
            covers=min(handle.covers, n),
            eligible=eligible,
            selector=selector,
        )
        return scores, rows, matrix

    def _hits(
        self, cid: int, scores: np.ndarray, rows: np.ndarray, *, touch: bool = True, matrix: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """Hits for every query, with one lookup per chunk of rows (not one per query).

        ``matrix`` is the snapshot the rows were scored in (each hit's vector is checked against
        its CRC there); without it the collection's current matrix is read.
        """
        if matrix is None:
            matrix = self.catalog.state(cid).matrix()
        row_lists = rows.tolist()
        one = len(row_lists) == 1
        wanted = [r for r in row_lists[0] if r >= 0] if one else np.unique(rows[rows >= 0]).tolist()
        info: dict[int, tuple[str, str | None, dict[str, Any]]] = {}
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            info.update(self.units.by_rows(cid, wanted[start : start + _LOOKUP_CHUNK], matrix=matrix))
        out: list[list[Hit]] = []
        touched: list[str] = []
        get = info.get
        # NOTE: by_rows decodes a new metadata dict per row; a row that is a hit of several
        # queries gets a copy from its second time on, so no two hits share a dict.
        seen: set[int] | None = None if one else set()
        for s_row, r_row in zip(scores.tolist(), row_lists, strict=True):
            hits = []
            for r, s in zip(r_row, s_row, strict=True):
                found = get(r)
                if found is None:
                    continue
                meta = found[2]
                if seen is not None:
                    if r in seen:
                        meta = dict(meta)
                    else:
                        seen.add(r)
                hits.append(Hit(found[0], s, found[1], meta))
                touched.append(found[0])
            out.append(hits)
        if touch:
            self.units.touch(touched)
        return out

    def text(
        self,
        cid: int,
        query: str,
        k: int,
        *,
        where: Mapping[str, Any] | None = None,
        states: tuple[State, ...] = (State.ACTIVE,),
    ) -> list[Hit]:
        sql, params = compile_where(where, column="u.metadata")
        found = self.units.text_search(cid, query, _bounded(k, _TEXT_LIMIT), states, sql, params)
        hits = [Hit(id=i, score=s, text=t, metadata=m) for i, s, t, m in found]
        self.units.touch([h.id for h in hits])
        return hits

    def similar(
        self, cid: int, probe: int, threshold: float, *, exclude_row: int | None = None
    ) -> list[tuple[int, float]]:
        """Rows of live units whose SimHash similarity to ``probe`` is at least ``threshold``."""
        snap = self.catalog.state(cid).snapshot()
        sims = hamming_similarity(snap.hashes, probe)
        ok = (sims >= threshold) & (snap.codes != 0)
        if exclude_row is not None and 0 <= exclude_row < len(ok):
            ok[exclude_row] = False
        rows = np.flatnonzero(ok)
        order = np.argsort(-sims[rows], kind="stable")
        return [(int(rows[i]), float(sims[rows[i]])) for i in order]


def fuse(lists: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """Reciprocal rank fusion of ranked hit lists (Cormack et al., 2009), best first."""
    score: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for hits in lists:
        for rank, hit in enumerate(hits, start=1):
            score[hit.id] = score.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(hit.id, hit)
    best = sorted(score, key=lambda i: -score[i])[:k]
    return [Hit(id=i, score=score[i], text=first[i].text, metadata=first[i].metadata) for i in best]


def _bounded(k: int, rows: int) -> int:
    """``k`` cut to what a collection of ``rows`` rows can return (at least 1, so shapes stay valid)."""
    return max(1, min(int(k), rows))


def _unit_rows(queries: Vector) -> Vector:
    if len(queries) == 1:
        # NOTE: one query (every search()): one dot product, not linalg.norm's several numpy calls
        norm = float(np.sqrt(np.dot(queries[0], queries[0])))
        one: Vector = np.divide(queries, norm or 1.0, dtype=np.float32)
        return one
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vector = np.divide(queries, norms, dtype=np.float32)
    return out


class _CodeEligible:
    """Rows whose lifecycle code is one of ``codes`` (0 = deleted or replaced: never eligible)."""

    def __init__(self, row_codes: np.ndarray, codes: list[int]) -> None:
        self._row_codes = row_codes
        self._codes = codes

    def of(self, rows: np.ndarray) -> np.ndarray:
        return self._match(self._row_codes[rows])

    def mask(self, start: int, stop: int) -> np.ndarray:
        return self._match(self._row_codes[start:stop])

    def _match(self, found: np.ndarray) -> np.ndarray:
        return found == self._codes[0] if len(self._codes) == 1 else np.isin(found, self._codes)
