"""Unit records: add, get, update, delete, list; lifecycle and batched access statistics.

Writes follow the storage rule of the vault: vectors are written and fsynced into the vector
file first, then one SQLite transaction records the units, their FTS entries and the new
watermark. Either the commit happens and everything is there, or the file holds an
unreferenced tail that the next open cuts.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigmavault.errors import InvalidInput, NotFound, VaultLocked
from sigmavault.index import signatures
from sigmavault.store import Database
from sigmavault.types import State, Unit, Vector
from sigmavault.units.catalog import STATE_CODES, Catalog, RowState

__all__ = ["NewUnits", "UnitStore", "new_ids"]

_UNIT_COLS = (
    "u.uid, c.name, u.text, u.metadata, u.kind, u.state, u.created_at, u.accessed_at, u.access_count, "
    "u.conversation_id, u.parent_id, u.semantic_hash, u.kv_ref, u.vec_row, u.collection_id"
)
_FROM = "FROM units u JOIN collections c ON c.id = u.collection_id"
_ACCESS_FLUSH_COUNT = 2048
_ACCESS_FLUSH_SECONDS = 2.0


def new_ids(n: int) -> list[str]:
    """``n`` fresh 24-hex ids that sort by creation time (11 hex of ms, 5 random, 8 sequence)."""
    ms = int(time.time() * 1000)
    salt = int.from_bytes(os.urandom(3), "little") & 0xFFFFF
    prefix = f"{ms:011x}{salt:05x}"
    return [f"{prefix}{i:08x}" for i in range(n)]


@dataclass(slots=True)
class NewUnits:
    """A validated batch ready to store (built by the facade)."""

    ids: list[str]
    vectors: Vector
    texts: list[str | None]
    metadata: list[dict[str, Any]]
    kinds: list[str]
    conversation_ids: list[str | None]
    parent_ids: list[str | None]
    kv_refs: list[str | None]


def dumps(meta: Mapping[str, Any]) -> str:
    try:
        return json.dumps(meta, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata must be JSON-serialisable (no NaN): {exc}") from None


class UnitStore:
    """All reads and writes of unit records, across collections."""

    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog
        self._pending: dict[str, tuple[int, float]] = {}
        self._pending_since = 0.0
        self._plock = threading.Lock()
        if not db.readonly:
            db.add_write_hook(self._flush_access_in_txn)

    # -- writes -----------------------------------------------------------------------------

    def add(self, cid: int, batch: NewUnits) -> list[str]:
        n = len(batch.ids)
        if len(set(batch.ids)) != n:
            raise InvalidInput("ids must be unique within one add() call")
        now = time.time()
        with self.catalog.guard(cid), self.db.write() as conn:
            st = self.catalog.state(cid)
            vf = self.catalog.ensure_vectors(st, batch.vectors.shape[1])
            self._check_new(conn, batch)
            start = st.info.watermark
            assert st.planes is not None
            sigs = signatures(batch.vectors, st.planes)
            rid0 = int(conn.execute("SELECT COALESCE(MAX(rid), 0) + 1 FROM units").fetchone()[0])
            vf.write_rows(start, batch.vectors)
            rows = [
                (
                    rid0 + i, batch.ids[i], cid, start + i, batch.texts[i], dumps(batch.metadata[i]),
                    batch.kinds[i], now, now, batch.conversation_ids[i], batch.parent_ids[i],
                    int(sigs[i].view(np.int64)), batch.kv_refs[i],
                )
                for i in range(n)
            ]
            conn.executemany(
                "INSERT INTO units (rid, uid, collection_id, vec_row, text, metadata, kind, state, created_at, "
                "accessed_at, conversation_id, parent_id, semantic_hash, kv_ref) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO units_fts (rowid, text) VALUES (?, ?)",
                [(rid0 + i, t) for i, t in enumerate(batch.texts) if t is not None],
            )
            conn.execute("UPDATE collections SET watermark = ? WHERE id = ?", (start + n, cid))
        self.catalog.committed(st, start + n)
        st.codes[start : start + n] = 1
        st.hashes[start : start + n] = sigs
        return list(batch.ids)

    def _check_new(self, conn: sqlite3.Connection, batch: NewUnits) -> None:
        taken = _existing(conn, batch.ids)
        if taken:
            raise InvalidInput(f"id {sorted(taken)[0]!r} already exists; ids are unique across the vault")
        parents = {p for p in batch.parent_ids if p is not None} - set(batch.ids)
        missing = parents - _existing(conn, list(parents))
        if missing:
            raise NotFound(f"parent_id {sorted(missing)[0]!r} is not a unit in this vault")
        for pos, pid in enumerate(batch.parent_ids):
            if pid is not None and pid in batch.ids and batch.ids.index(pid) >= pos:
                raise InvalidInput(f"unit {batch.ids[pos]!r}: its parent must come before it in the batch")

    def update(
        self,
        uid: str,
        *,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        state: State | None = None,
        vector: Vector | None = None,
        kv_ref: str | None = None,
    ) -> None:
        """Change fields of one unit; a new vector is appended and the old row retired."""
        cid = self.cid_of(uid)
        with self.catalog.guard(cid), self.db.write() as conn:
            row = conn.execute(
                "SELECT rid, collection_id, vec_row, text, state FROM units WHERE uid = ?", (uid,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no unit with id {uid!r}")
            rid, cid, vec_row, old_text, old_state = row
            st = self.catalog.state(cid)
            sets: list[str] = []
            params: list[Any] = []
            if metadata is not None:
                sets.append("metadata = ?")
                params.append(dumps(metadata))
            if state is not None:
                sets.append("state = ?")
                params.append(state.value)
            if kv_ref is not None:
                sets.append("kv_ref = ?")
                params.append(kv_ref)
            if text is not None:
                sets.append("text = ?")
                params.append(text)
                if old_text is not None:
                    conn.execute("INSERT INTO units_fts (units_fts, rowid, text) VALUES ('delete', ?, ?)", (rid, old_text))
                conn.execute("INSERT INTO units_fts (rowid, text) VALUES (?, ?)", (rid, text))
            new_row = None
            if vector is not None:
                vf = self.catalog.ensure_vectors(st, vector.shape[1])
                new_row = st.info.watermark
                assert st.planes is not None
                sig = signatures(vector, st.planes)[0]
                vf.write_rows(new_row, vector)
                sets += ["vec_row = ?", "semantic_hash = ?"]
                params += [new_row, int(sig.view(np.int64))]
                conn.execute("UPDATE collections SET watermark = ? WHERE id = ?", (new_row + 1, cid))
            if sets:
                conn.execute(f"UPDATE units SET {', '.join(sets)} WHERE rid = ?", (*params, rid))
        code = STATE_CODES[state] if state is not None else STATE_CODES[State(old_state)]
        if new_row is not None:
            self.catalog.committed(st, new_row + 1)
            if vec_row is not None:
                st.codes[vec_row] = 0
            st.codes[new_row] = code
            st.hashes[new_row] = sig
        elif vec_row is not None:
            st.codes[vec_row] = code

    def delete(self, uids: Sequence[str]) -> list[tuple[int, int | None]]:
        """Remove units (their children are re-attached to the deleted unit's parent).

        Returns ``(collection_id, vec_row)`` of each removed unit. Call inside a write transaction
        that also drops the units' edges.
        """
        removed: list[tuple[int, int | None]] = []
        with self.db.write() as conn:
            for uid in uids:
                row = conn.execute(
                    "SELECT rid, collection_id, vec_row, text, parent_id FROM units WHERE uid = ?", (uid,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"no unit with id {uid!r}")
                rid, cid, vec_row, text, parent = row
                if text is not None:
                    conn.execute("INSERT INTO units_fts (units_fts, rowid, text) VALUES ('delete', ?, ?)", (rid, text))
                conn.execute("UPDATE units SET parent_id = ? WHERE parent_id = ?", (parent, uid))
                conn.execute("DELETE FROM units WHERE rid = ?", (rid,))
                removed.append((cid, vec_row))
        for cid, vec_row in removed:
            if vec_row is not None:
                st = self.catalog.state(cid)
                st.codes[vec_row] = 0
        with self._plock:
            for uid in uids:
                self._pending.pop(uid, None)
        return removed

    # -- reads ------------------------------------------------------------------------------

    def get(self, uid: str, *, vector: bool = True, touch: bool = True) -> Unit:
        row = self.db.one(f"SELECT {_UNIT_COLS} {_FROM} WHERE u.uid = ?", (uid,))
        if row is None:
            raise NotFound(f"no unit with id {uid!r}")
        if touch:
            self.touch([uid])
        return self._unit(row, vector=vector)

    def cid_of(self, uid: str) -> int:
        row = self.db.one("SELECT collection_id FROM units WHERE uid = ?", (uid,))
        if row is None:
            raise NotFound(f"no unit with id {uid!r}")
        return int(row[0])

    def exists(self, uids: Sequence[str]) -> set[str]:
        with self.db.read() as conn:
            return _existing(conn, list(uids))

    def by_rows(self, cid: int, rows: Sequence[int]) -> dict[int, tuple[str, str | None, dict[str, Any]]]:
        """``vec_row -> (id, text, metadata)`` for search hits."""
        if not len(rows):
            return {}
        marks = ",".join("?" * len(rows))
        found = self.db.all(
            f"SELECT vec_row, uid, text, metadata FROM units WHERE collection_id = ? AND vec_row IN ({marks})",
            (cid, *[int(r) for r in rows]),
        )
        return {r[0]: (r[1], r[2], json.loads(r[3])) for r in found}

    def iter_units(
        self, *, cid: int | None = None, where_sql: str = "1", params: Sequence[Any] = (), batch: int = 4096
    ) -> Iterator[Unit]:
        """Every unit (optionally of one collection / matching a compiled filter), in insertion order."""
        last = 0
        scope = "" if cid is None else f"AND u.collection_id = {int(cid)}"
        while True:
            rows = self.db.all(
                f"SELECT {_UNIT_COLS}, u.rid {_FROM} WHERE u.rid > ? {scope} AND {where_sql} "
                f"ORDER BY u.rid LIMIT {batch}",
                (last, *params),
            )
            if not rows:
                return
            for r in rows:
                yield self._unit(r, vector=False)
            last = rows[-1][-1]

    def rows_matching(self, cid: int, where_sql: str, params: Sequence[Any]) -> np.ndarray:
        """Vector rows of the units in ``cid`` that satisfy a compiled ``where``."""
        found = self.db.all(
            f"SELECT vec_row FROM units WHERE collection_id = ? AND vec_row IS NOT NULL AND {where_sql}",
            (cid, *params),
        )
        return np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))

    def text_search(
        self, cid: int, query: str, k: int, states: tuple[State, ...], where_sql: str, params: Sequence[Any]
    ) -> list[tuple[str, float, str | None, dict[str, Any]]]:
        """BM25 over FTS5; returns ``(id, score, text, metadata)`` with score = -bm25 (higher is better)."""
        match = fts_query(query)
        if match is None:
            return []
        marks = ",".join("?" * len(states))
        rows = self.db.all(
            f"SELECT u.uid, -bm25(units_fts) AS score, u.text, u.metadata FROM units_fts "
            f"JOIN units u ON u.rid = units_fts.rowid "
            f"WHERE units_fts MATCH ? AND u.collection_id = ? AND u.state IN ({marks}) AND {where_sql} "
            f"ORDER BY bm25(units_fts) LIMIT ?",
            (match, cid, *[s.value for s in states], *params, k),
        )
        return [(r[0], float(r[1]), r[2], json.loads(r[3])) for r in rows]

    def conversation(self, conversation_id: str) -> list[Unit]:
        rows = self.db.all(f"SELECT {_UNIT_COLS} {_FROM} WHERE u.conversation_id = ? ORDER BY u.rid", (conversation_id,))
        return [self._unit(r, vector=False) for r in rows]

    def parent_of(self, uid: str) -> str | None:
        row = self.db.one("SELECT parent_id FROM units WHERE uid = ?", (uid,))
        if row is None:
            raise NotFound(f"no unit with id {uid!r}")
        return row[0]  # type: ignore[no-any-return]

    def children(self, uid: str) -> list[str]:
        return [r[0] for r in self.db.all("SELECT uid FROM units WHERE parent_id = ? ORDER BY rid", (uid,))]

    def count(self, cid: int | None = None) -> dict[str, int]:
        scope = "" if cid is None else "WHERE collection_id = ?"
        rows = self.db.all(f"SELECT state, COUNT(*) FROM units {scope} GROUP BY state", () if cid is None else (cid,))
        return {r[0]: int(r[1]) for r in rows}

    def _unit(self, r: Sequence[Any], *, vector: bool) -> Unit:
        count, seen = r[8], r[7]
        pending = self._pending.get(r[0])
        if pending is not None:
            count, seen = count + pending[0], max(seen, pending[1])
        vec = None
        if vector and r[13] is not None:
            st = self.catalog.state(r[14])
            vec = np.array(st.matrix()[r[13]])
        return Unit(
            id=r[0], collection=r[1], text=r[2], metadata=json.loads(r[3]), kind=r[4], state=State(r[5]),
            created_at=r[6], accessed_at=seen, access_count=count, conversation_id=r[9], parent_id=r[10],
            semantic_hash=int(np.int64(r[11]).view(np.uint64)), kv_ref=r[12], vector=vec,
        )

    # -- access statistics ------------------------------------------------------------------

    def touch(self, uids: Sequence[str]) -> None:
        """Count an access now; persisted in batches (a crash may lose the last ~2 s of counts)."""
        if self.db.readonly or not uids:
            return
        now = time.time()
        with self._plock:
            if not self._pending:
                self._pending_since = now
            for uid in uids:
                c, _ = self._pending.get(uid, (0, 0.0))
                self._pending[uid] = (c + 1, now)
            due = len(self._pending) >= _ACCESS_FLUSH_COUNT or now - self._pending_since > _ACCESS_FLUSH_SECONDS
        if due:
            self.flush_access(wait=False)

    def flush_access(self, *, wait: bool = True) -> None:
        if not self._pending or self.db.readonly:
            return
        try:
            with self.db.write(wait=wait):
                pass  # the write hook does the work inside the transaction
        except VaultLocked:
            if wait:
                raise

    def _flush_access_in_txn(self) -> None:
        with self._plock:
            pending, self._pending = self._pending, {}
        if pending:
            self.db.conn.executemany(
                "UPDATE units SET access_count = access_count + ?, accessed_at = MAX(accessed_at, ?) WHERE uid = ?",
                [(c, t, uid) for uid, (c, t) in pending.items()],
            )


def _existing(conn: sqlite3.Connection, uids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(uids), 900):
        chunk = uids[i : i + 900]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(f"SELECT uid FROM units WHERE uid IN ({marks})", chunk))
    return found


def fts_query(text: str) -> str | None:
    """Turn free text into a safe FTS5 query: each word quoted, OR-ed (BM25 ranks the overlap)."""
    import re

    words = re.findall(r"\w+", text.lower())
    if not words:
        return None
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
