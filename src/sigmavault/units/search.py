"""Search over one collection: exact vector search, BM25 text search, and their rank fusion.

Scores (higher is always better):
- ``vector``: cosine similarity in [-1, 1] for cosine collections; the inner product for ``ip``;
  the negated squared L2 distance for ``l2``.
- ``text``: the negated FTS5 BM25 value (positive, unbounded; only comparable within one query).
- ``hybrid``: reciprocal rank fusion, ``sum(1 / (60 + rank))`` over the two lists (rank from 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sigmavault.index import exact_search, hamming_similarity
from sigmavault.types import Hit, State, Vector
from sigmavault.units.catalog import Catalog
from sigmavault.units.filters import compile_where
from sigmavault.units.records import UnitStore

__all__ = ["RRF_K", "SearchEngine", "fuse"]

RRF_K = 60
# NOTE: below this share of the collection a filter is "selective": scoring just the matching
# rows beats scoring everything and masking.
_SELECTIVE = 0.2


class SearchEngine:
    """Turns (query vectors, filters) into hits for one vault's collections."""

    def __init__(self, catalog: Catalog, units: UnitStore) -> None:
        self.catalog = catalog
        self.units = units

    def vector(
        self,
        cid: int,
        queries: Vector,
        k: int,
        *,
        where: Mapping[str, Any] | None = None,
        states: tuple[State, ...] = (State.ACTIVE,),
    ) -> list[list[Hit]]:
        st = self.catalog.state(cid)
        matrix = st.matrix()
        if st.info.metric == "cosine":
            queries = _unit_rows(queries)
        mask = st.mask(states)
        rows = None
        if where:
            sql, params = compile_where(where)
            subset = self.units.rows_matching(cid, sql, params)
            subset = subset[mask[subset]] if len(subset) else subset
            if len(subset) <= _SELECTIVE * max(1, len(mask)):
                rows = subset
            else:
                narrowed = np.zeros_like(mask)
                narrowed[subset] = True
                mask = narrowed
        scores, found = exact_search(matrix, queries, k, metric=st.info.metric, rows=rows, mask=mask)
        return [self._hits(cid, s, r) for s, r in zip(scores, found, strict=True)]

    def _hits(self, cid: int, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        keep = rows >= 0
        rows, scores = rows[keep], scores[keep]
        info = self.units.by_rows(cid, rows.tolist())
        hits = [
            Hit(id=info[r][0], score=float(s), text=info[r][1], metadata=info[r][2])
            for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
            if r in info
        ]
        self.units.touch([h.id for h in hits])
        return hits

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
        found = self.units.text_search(cid, query, k, states, sql, params)
        hits = [Hit(id=i, score=s, text=t, metadata=m) for i, s, t, m in found]
        self.units.touch([h.id for h in hits])
        return hits

    def similar(self, cid: int, probe: int, threshold: float, *, exclude_row: int | None = None) -> list[tuple[int, float]]:
        """Rows of live units whose SimHash similarity to ``probe`` is at least ``threshold``."""
        st = self.catalog.state(cid)
        sims = hamming_similarity(st.hashes[: st.rows], probe)
        ok = (sims >= threshold) & (st.codes[: st.rows] != 0)
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


def _unit_rows(queries: Vector) -> Vector:
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (queries / norms).astype(np.float32)

