"""The sessions part: open, recover, update and expire per-conversation state.

Recovery by id (``get``) is the hot path of a serving runtime, so recently used sessions are
kept in memory (:class:`~sigmavault.store.freshness.VersionedCache`); the cache is checked
against SQLite's change counter on every ``get``, so a write by another process is seen at
once. Every write is one durable SQLite transaction.

At rest: metadata is sealed when the vault has a cipher; ids, user id, adapter name, KV
reference, counters, times and the context vector stay plain (SQL filters on them).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, overload

import numpy as np

from sigmavault import validate
from sigmavault.errors import InvalidInput, NotFound, ReadOnly
from sigmavault.index import normalize, top_k
from sigmavault.sessions.model import (
    STATES,
    Row,
    Session,
    check_count,
    check_id,
    check_label,
    check_state,
    check_states,
    check_time,
    context_bytes,
    dump_metadata,
    new_session_id,
)
from sigmavault.sessions.schema import CLOCK, MIGRATIONS, PART, TABLE
from sigmavault.store import Database
from sigmavault.store.freshness import VersionedCache
from sigmavault.store.sealed import open_text, seal_text
from sigmavault.types import CheckReport

__all__ = ["Sessions"]

_COLS = "sid, user_id, state, turn_count, created_at, last_active, active_adapter, kv_ref, metadata, context"
_KEEP: Any = object()  # sentinel: "leave this field as it is", distinct from None ("clear it")
_CHUNK = 900  # ids per IN (...) list, under SQLite's variable limit


class Sessions:
    """``vault.sessions``: the session store of one vault (thread-safe; many processes may share it)."""

    def __init__(self, db: Database, root: Path, *, cache_size: int = 65536) -> None:
        self._db = db
        self.root = root
        present = db.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)) is not None
        if not db.readonly or present:
            db.migrate(PART, MIGRATIONS)
        # NOTE: a read-only vault made before sessions existed has no tables: it reads as empty.
        self._cache: VersionedCache[str, Row] | None = (
            VersionedCache(db, CLOCK, capacity=cache_size) if (present or not db.readonly) else None
        )

    # -- lifecycle --------------------------------------------------------------------------

    @overload
    def close(self) -> None: ...

    @overload
    def close(self, session_id: str) -> Session: ...

    def close(self, session_id: str | None = None) -> Session | None:
        """``close(session_id)`` marks a session closed and returns it; ``close()`` releases the part."""
        if session_id is None:
            if self._cache is not None:
                self._cache.clear()
            return None
        return self._set(check_id(session_id), {"state": "closed"})

    # -- writes -----------------------------------------------------------------------------

    def open(
        self,
        session_id: str | None = None,
        *,
        user_id: str | None = None,
        metadata: Any = None,
        context: Any = None,
        active_adapter: str | None = None,
        kv_ref: str | None = None,
        now: float | None = None,
        exist_ok: bool = False,
    ) -> Session:
        """Start a session (a fresh id unless one is given). ``exist_ok=True`` returns an existing one as is."""
        sid = new_session_id() if session_id is None else check_id(session_id)
        when = time.time() if now is None else check_time(now, "now")
        meta = dump_metadata({} if metadata is None else metadata)
        row: Row = (
            sid,
            check_label(user_id, "user_id"),
            "open",
            0,
            when,
            when,
            check_label(active_adapter, "active_adapter"),
            check_label(kv_ref, "kv_ref"),
            meta,
            context_bytes(context),
        )
        cache = self._writable()
        with cache.write() as (conn, changes):
            found = self._select(conn, sid)
            if found is not None:
                if exist_ok:
                    return Session.from_row(found)
                raise InvalidInput(f"session {sid!r} already exists; use get() to recover it, or open(exist_ok=True)")
            conn.execute(
                f"INSERT INTO sessions ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row[:8], seal_text(self._db, f"sessions/{sid}/metadata", meta), row[9]),
            )
            changes[sid] = row
        return Session.from_row(row)

    def update(
        self,
        session_id: str,
        *,
        user_id: Any = _KEEP,
        metadata: Any = None,
        context: Any = _KEEP,
        active_adapter: Any = _KEEP,
        kv_ref: Any = _KEEP,
        turn_count: int | None = None,
        last_active: float | None = None,
        state: str | None = None,
    ) -> Session:
        """Change fields of a session; ``metadata`` replaces the old mapping, ``None`` clears a field.

        Setting ``state="open"`` reopens a closed or expired session.
        """
        fields: dict[str, Any] = {}
        if user_id is not _KEEP:
            fields["user_id"] = check_label(user_id, "user_id")
        if metadata is not None:
            fields["metadata"] = dump_metadata(metadata)
        if context is not _KEEP:
            fields["context"] = context_bytes(context)
        if active_adapter is not _KEEP:
            fields["active_adapter"] = check_label(active_adapter, "active_adapter")
        if kv_ref is not _KEEP:
            fields["kv_ref"] = check_label(kv_ref, "kv_ref")
        if turn_count is not None:
            fields["turn_count"] = check_count(turn_count, "turn_count")
        if last_active is not None:
            fields["last_active"] = check_time(last_active, "last_active")
        if state is not None:
            fields["state"] = check_state(state)
        return self._set(check_id(session_id), fields)

    def touch(self, session_id: str, *, turns: int = 1, now: float | None = None) -> Session:
        """Record activity on an open session: ``last_active = now`` and ``turns`` more turns."""
        sid = check_id(session_id)
        check_count(turns, "turns")
        when = time.time() if now is None else check_time(now, "now")
        cache = self._writable()
        with cache.write() as (conn, changes):
            old = self._require(conn, sid)
            if old[2] != "open":
                raise InvalidInput(
                    f"session {sid!r} is {old[2]}; open a new one, or reopen it with update(state='open')"
                )
            conn.execute(
                "UPDATE sessions SET turn_count = turn_count + ?, last_active = ? WHERE sid = ?", (turns, when, sid)
            )
            row: Row = (*old[:3], old[3] + turns, old[4], when, *old[6:])
            changes[sid] = row
        return Session.from_row(row)

    def _set(self, sid: str, fields: dict[str, Any]) -> Session:
        cache = self._writable()
        with cache.write() as (conn, changes):
            old = self._require(conn, sid)
            if fields:
                stored = dict(fields)
                if "metadata" in stored:
                    stored["metadata"] = seal_text(self._db, f"sessions/{sid}/metadata", stored["metadata"])
                sets = ", ".join(f"{name} = ?" for name in stored)
                conn.execute(f"UPDATE sessions SET {sets} WHERE sid = ?", (*stored.values(), sid))
            names = _COLS.split(", ")
            row: Row = tuple(fields.get(name, old[i]) for i, name in enumerate(names))  # type: ignore[assignment]
            changes[sid] = row
        return Session.from_row(row)

    def delete(self, session_ids: str | Sequence[str]) -> int:
        """Remove sessions for good; every id must exist (nothing is removed otherwise)."""
        ids = [check_id(s) for s in validate.ids(session_ids, "session_ids")]
        cache = self._writable()
        with cache.write() as (conn, changes):
            missing = set(ids) - self._existing(conn, ids)
            if missing:
                raise NotFound(f"no session with id {sorted(missing)[0]!r}; nothing was deleted")
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                conn.execute(f"DELETE FROM sessions WHERE sid IN ({','.join('?' * len(chunk))})", chunk)
            for sid in ids:
                changes[sid] = None
        return len(set(ids))

    def expire(self, ttl_seconds: float, *, now: float | None = None, delete: bool = False) -> list[str]:
        """Sessions idle longer than ``ttl_seconds`` (``now - last_active > ttl``); returns their ids.

        By default open and closed ones are *marked* ``expired`` (kept, so they can still be read
        and searched); ``delete=True`` *removes* every idle session, already expired ones included.
        """
        validate.flag(delete, "delete")
        ttl = check_time(ttl_seconds, "ttl_seconds")
        if ttl < 0:
            raise InvalidInput(f"ttl_seconds must be >= 0, got {ttl_seconds!r}")
        cutoff = (time.time() if now is None else check_time(now, "now")) - ttl
        cache = self._writable()
        with cache.write() as (conn, changes):
            if delete:
                cur = conn.execute("DELETE FROM sessions WHERE last_active < ? RETURNING sid", (cutoff,))
            else:
                cur = conn.execute(
                    "UPDATE sessions SET state = 'expired' WHERE last_active < ? AND state != 'expired' RETURNING sid",
                    (cutoff,),
                )
            ids = sorted(r[0] for r in cur.fetchall())
            for sid in ids:
                changes[sid] = None
        return ids

    def _writable(self) -> VersionedCache[str, Row]:
        if self._cache is None or self._db.readonly:
            raise ReadOnly("this vault was opened read-only (frozen=True); open it without frozen to write")
        return self._cache

    # -- reads ------------------------------------------------------------------------------

    def get(self, session_id: str) -> Session:
        """The session with this id, whatever its state; the hot path (served from memory when fresh)."""
        if not isinstance(session_id, str):
            check_id(session_id)
        if self._cache is None:
            raise NotFound(f"no session with id {session_id!r}")
        row = self._cache.fetch(session_id, lambda: self._select(None, session_id))
        if row is None:
            raise NotFound(f"no session with id {session_id!r}; open one with vault.sessions.open()")
        return Session.from_row(row)

    def __contains__(self, session_id: object) -> bool:
        try:
            self.get(session_id)  # type: ignore[arg-type]
        except (NotFound, InvalidInput):
            return False
        return True

    def find(
        self,
        *,
        user_id: str | None = None,
        context: Any = None,
        k: int | None = None,
        states: str | Sequence[str] = "open",
        min_score: float | None = None,
    ) -> list[Session]:
        """Sessions of a user and/or most similar to a context embedding.

        With ``context`` the result is ordered by exact cosine similarity (``Session.score``)
        over the stored contexts of the same dimension; otherwise by ``last_active``, newest
        first. ``k=None`` returns every match; ``states`` is one state, several, or ``"all"``.
        """
        wanted = check_states(states)
        user = check_label(user_id, "user_id")
        validate.integer(k, "k", lo=1, optional=True), validate.number(min_score, "min_score", optional=True)
        probe = context_bytes(context)
        if self._cache is None:
            return []
        where = [f"state IN ({','.join('?' * len(wanted))})"]
        params: list[Any] = list(wanted)
        if user is not None:
            where.append("user_id = ?")
            params.append(user)
        if probe is None:
            limit = "" if k is None else f" LIMIT {int(k)}"
            rows = self._db.all(
                f"SELECT {_COLS} FROM sessions WHERE {' AND '.join(where)} ORDER BY last_active DESC, sid{limit}",
                params,
            )
            return [Session.from_row(self._decode(r)) for r in rows]
        return self._similar(probe, where, params, k, min_score)

    def _similar(
        self, probe: bytes, where: list[str], params: list[Any], k: int | None, min_score: float | None
    ) -> list[Session]:
        where = [*where, "context IS NOT NULL", "length(context) = ?"]
        found = self._db.all(f"SELECT sid, context FROM sessions WHERE {' AND '.join(where)}", [*params, len(probe)])
        if not found:
            return []
        dim = len(probe) // 4
        matrix = normalize(np.frombuffer(b"".join(r[1] for r in found), dtype=np.float32).reshape(len(found), dim))
        query = normalize(np.frombuffer(probe, dtype=np.float32).reshape(1, dim))
        scores = (matrix @ query[0]).reshape(1, -1)
        best = top_k(scores, len(found) if k is None else k)[0]
        picked = [(found[i][0], float(scores[0, i])) for i in best]
        if min_score is not None:
            picked = [(sid, s) for sid, s in picked if s >= min_score]
        rows = self._rows([sid for sid, _ in picked])
        return [Session.from_row(rows[sid], score=s) for sid, s in picked if sid in rows]

    def count(self, state: str | None = None) -> int:
        if self._cache is None:
            return 0
        if state is None:
            return int(self._db.one("SELECT COUNT(*) FROM sessions")[0])
        return int(self._db.one("SELECT COUNT(*) FROM sessions WHERE state = ?", (check_state(state),))[0])

    def counts(self) -> dict[str, int]:
        """Sessions per state (every state listed, zeros included)."""
        out: dict[str, int] = dict.fromkeys(STATES, 0)
        if self._cache is not None:
            out.update({r[0]: int(r[1]) for r in self._db.all("SELECT state, COUNT(*) FROM sessions GROUP BY state")})
        return out

    def __len__(self) -> int:
        return self.count()

    # -- rows -------------------------------------------------------------------------------

    def _select(self, conn: sqlite3.Connection | None, sid: str) -> Row | None:
        sql = f"SELECT {_COLS} FROM sessions WHERE sid = ?"
        raw = self._db.one(sql, (sid,)) if conn is None else conn.execute(sql, (sid,)).fetchone()
        return None if raw is None else self._decode(raw)

    def _require(self, conn: sqlite3.Connection, sid: str) -> Row:
        row = self._select(conn, sid)
        if row is None:
            raise NotFound(f"no session with id {sid!r}; open one with vault.sessions.open()")
        return row

    def _decode(self, raw: Sequence[Any]) -> Row:
        meta = open_text(self._db, f"sessions/{raw[0]}/metadata", raw[8])
        ctx = None if raw[9] is None else bytes(raw[9])
        return (raw[0], raw[1], raw[2], int(raw[3]), float(raw[4]), float(raw[5]), raw[6], raw[7], meta, ctx)

    def _rows(self, ids: Sequence[str]) -> dict[str, Row]:
        out: dict[str, Row] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = list(ids[i : i + _CHUNK])
            raws = self._db.all(f"SELECT {_COLS} FROM sessions WHERE sid IN ({','.join('?' * len(chunk))})", chunk)
            out.update((r[0], self._decode(r)) for r in raws)
        return out

    def _existing(self, conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _CHUNK):
            chunk = list(ids[i : i + _CHUNK])
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in conn.execute(f"SELECT sid FROM sessions WHERE sid IN ({marks})", chunk))
        return found

    # -- health -----------------------------------------------------------------------------

    def check(self, report: CheckReport) -> None:
        """Every stored session decodes: metadata is a JSON object, contexts are finite float32 vectors."""
        if self._cache is None:
            return
        clocks = int(self._db.one(f"SELECT COUNT(*) FROM {CLOCK}")[0])
        if clocks != 1:
            report.problems.append(f"sessions: the cache clock table holds {clocks} rows, expected 1")
        bad: list[str] = []
        sealed = 0
        for raw in self._db.all(f"SELECT {_COLS} FROM sessions"):
            if isinstance(raw[8], bytes) and self._db.cipher is None:
                sealed += 1
                continue
            problem = _row_problem(partial(self._decode, raw), raw)
            if problem:
                bad.append(f"sessions: {raw[0]}: {problem}")
        report.problems += bad[:20]
        if len(bad) > 20:
            report.problems.append(f"sessions: {len(bad) - 20} more damaged sessions")
        if sealed:
            report.notes.append(f"sessions: {sealed} sealed metadata fields not verified (no key given)")


def _row_problem(decode: Callable[[], Row], raw: Sequence[Any]) -> str | None:
    try:
        meta = json.loads(decode()[8])
    except Exception as exc:  # NOTE: check reports any damage instead of raising
        return f"metadata does not decode ({type(exc).__name__}: {exc})"
    if not isinstance(meta, dict):
        return "metadata is not a JSON object"
    if raw[2] not in STATES:
        return f"unknown state {raw[2]!r}"
    ctx = raw[9]
    if ctx is not None:
        if not isinstance(ctx, bytes) or len(ctx) == 0 or len(ctx) % 4:
            return "context is not a float32 vector"
        if not np.isfinite(np.frombuffer(ctx, dtype=np.float32)).all():
            return "context holds NaN or infinity"
    return None
