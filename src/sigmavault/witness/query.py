"""Finding entries: SQL filters over the plain columns, and exact cosine search over embeddings.

Similarity is exact (every candidate embedding is scored in numpy, streamed in chunks so memory
stays bounded): the witness log is searched by postmortems and dashboards, where a missed
neighbour costs more than a few milliseconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sigmavault import validate
from sigmavault.errors import InvalidInput
from sigmavault.types import Vector
from sigmavault.witness.entry import to_ms
from sigmavault.witness.records import SELECT_STORED, StoredRow

__all__ = ["Filters", "Order", "nearest", "select"]

Order = Literal["newest", "oldest"]
_ORDERS = {"newest": "e.ts_ms DESC, e.seq DESC", "oldest": "e.ts_ms, e.seq"}
_VECTOR_COLUMNS = {"query": "b.query_vec", "response": "b.response_vec"}
_CHUNK = 8192


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """What every witness query can be narrowed by; ``since`` is inclusive, ``until`` exclusive."""

    since: Any = None
    until: Any = None
    session_id: str | None = None
    model: str | None = None
    quality_below: float | None = None
    quality_above: float | None = None
    errors_only: bool = False
    error_type: str | None = None
    request_id: str | None = None

    def sql(self) -> tuple[str, list[Any]]:
        """A WHERE clause over ``witness_entries e`` (``"1"`` when nothing is asked) and its params."""
        terms: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            terms.append("e.ts_ms >= ?")
            params.append(to_ms(self.since, "since"))
        if self.until is not None:
            terms.append("e.ts_ms < ?")
            params.append(to_ms(self.until, "until"))
        for column, text in (("session_id", self.session_id), ("request_id", self.request_id)):
            if text is not None:
                terms.append(f"e.{column} = ?")
                params.append(_text(text, column))
        if self.model is not None:
            terms.append("e.model_id = (SELECT id FROM witness_models WHERE name = ?)")
            params.append(_text(self.model, "model"))
        for op, value, what in (("<", self.quality_below, "quality_below"), (">", self.quality_above, "quality_above")):
            if value is not None:
                validate.number(value, what)
                terms.append(f"e.quality {op} ?")
                params.append(float(value))
        if validate.flag(self.errors_only, "errors_only") or self.error_type is not None:
            terms.append("e.failed = 1")
        if self.error_type is not None:
            terms.append("e.error_type = ?")
            params.append(_text(self.error_type, "error_type"))
        return (" AND ".join(terms) or "1"), params


def _text(value: Any, what: str) -> str:
    return validate.ident(value, what)  # type: ignore[no-any-return]


def select(
    conn: sqlite3.Connection, filters: Filters, *, order: Order = "newest", limit: int | None = 100, offset: int = 0
) -> list[StoredRow]:
    """Stored rows matching ``filters`` in time order."""
    validate.choice(order, "order", _ORDERS)
    validate.integer(limit, "limit", lo=0, optional=True), validate.integer(offset, "offset", lo=0)
    where, params = filters.sql()
    sql = f"{SELECT_STORED} WHERE {where} ORDER BY {_ORDERS[order]} LIMIT ? OFFSET ?"
    return conn.execute(sql, [*params, -1 if limit is None else limit, offset]).fetchall()


def rows_by_seq(conn: sqlite3.Connection, seqs: Sequence[int]) -> dict[int, StoredRow]:
    out: dict[int, StoredRow] = {}
    for start in range(0, len(seqs), 500):
        part = list(seqs[start : start + 500])
        marks = ", ".join("?" * len(part))
        for row in conn.execute(f"{SELECT_STORED} WHERE e.seq IN ({marks})", part):
            out[int(row[0])] = row
    return out


def nearest(
    conn: sqlite3.Connection,
    probe: Vector,
    filters: Filters,
    *,
    on: Literal["query", "response"],
    k: int,
    exclude: int | None = None,
) -> list[tuple[int, float]]:
    """The ``k`` (seq, cosine) pairs whose ``on`` embedding is closest to ``probe``, best first.

    Entries whose embedding has another dimension than the probe are not candidates.
    """
    if on not in _VECTOR_COLUMNS:
        raise InvalidInput(f"on must be 'query' or 'response', got {on!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"k must be a positive integer, got {k!r}")
    q = np.asarray(probe, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(q))
    if norm == 0.0:
        raise InvalidInput("the probe vector is all zeros; cosine similarity is undefined for it")
    q = q / norm
    column = _VECTOR_COLUMNS[on]
    where, params = filters.sql()
    sql = (
        f"SELECT e.seq, {column} FROM witness_entries e JOIN witness_blobs b ON b.seq = e.seq "
        f"WHERE {column} IS NOT NULL AND length({column}) = ? AND {where}"
    )
    cursor = conn.execute(sql, [4 * q.size, *params])
    best_seq = np.empty(0, dtype=np.int64)
    best_score = np.empty(0, dtype=np.float32)
    while rows := cursor.fetchmany(_CHUNK):
        seqs = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), q.size)
        norms = np.linalg.norm(mat, axis=1)
        norms[norms == 0] = np.inf  # NOTE: a zero embedding scores 0, never NaN.
        scores = (mat @ q) / norms
        if exclude is not None:
            scores[seqs == exclude] = -np.inf
        best_seq = np.concatenate([best_seq, seqs])
        best_score = np.concatenate([best_score, scores.astype(np.float32)])
        if best_seq.size > k:
            keep = np.argpartition(-best_score, k - 1)[:k]
            best_seq, best_score = best_seq[keep], best_score[keep]
    order = np.lexsort((best_seq, -best_score))
    return [(int(best_seq[i]), float(best_score[i])) for i in order if np.isfinite(best_score[i])]
