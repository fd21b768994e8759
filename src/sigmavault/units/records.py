"""Unit records: add, get, update, delete, list; lifecycle (access counts: :mod:`sigmavault.units.access`).

Writes follow the storage rule of the vault: vectors are written and fsynced into the vector
file first, then one SQLite transaction records the units, their FTS entries and the new
watermark. Either the commit happens and everything is there, or the file holds an
unreferenced tail that the next open cuts.

At rest, when the vault has a cipher (``sigmavault.open(path, key=...)``), ``text`` and
``metadata`` are AES-GCM BLOBs bound to ``units/<id>/text`` and ``units/<id>/metadata``; ids,
kind, state, times, counts, conversation/parent ids, kv_ref and vectors stay plain because
queries and search need them. The FTS index would hold the words in plain text, so an
encrypted vault keeps it empty and refuses text and hybrid search; ``where`` filters open
metadata inside SQLite through the ``sv_meta`` function and never write it back.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from sigmavault.errors import Corrupted, EncryptionError, InvalidInput, NotFound, VaultError
from sigmavault.index import signatures
from sigmavault.store import Database
from sigmavault.store.vectors import row_crcs
from sigmavault.types import CheckReport, State, Unit, Vector, build_unit
from sigmavault.units import integrity, read, textquery
from sigmavault.units.access import AccessCounts, Background
from sigmavault.units.catalog import STATE_CODES, Catalog
from sigmavault.units.check import check_units
from sigmavault.units.encode import dumps, dumps_all
from sigmavault.units.vectorwrite import BlockQueue, write_vectors

__all__ = ["NewUnits", "UnitStore", "dumps", "dumps_all", "new_ids"]

# NOTE: the first ten columns are the fields rec_crc covers, in integrity.FIELDS order, so that a
# row's checksum is the CRC of the repr of ``row[:10]`` (a whole batch is checked by C iterators).
_UNIT_COLS = (
    "u.uid, u.collection_id, u.text, u.metadata, u.kind, u.state, u.created_at, u.conversation_id, "
    "u.parent_id, u.kv_ref, c.name, u.accessed_at, u.access_count, u.semantic_hash, u.vec_row, c.watermark, "
    "u.vec_crc, u.rec_crc"
)
# A listing's rows (no vectors): the checksummed fields, then accessed_at, access_count,
# semantic_hash, rec_crc (and, across collections, c.name at 14). Each column read costs every row
# about 0.1 us in the sqlite3 module, so a listing reads only these.
_LIST_COLS = (
    "u.uid, u.collection_id, u.text, u.metadata, u.kind, u.state, u.created_at, u.conversation_id, "
    "u.parent_id, u.kv_ref, u.accessed_at, u.access_count, u.semantic_hash, u.rec_crc"
)
_REC_CRC = itemgetter(13)
_NAME = itemgetter(14)
_TEXT = itemgetter(2)
_META = itemgetter(3)
_PLAIN_TEXT = frozenset({str, type(None)})
_PLAIN_META = frozenset({str})
_FROM = "FROM units u JOIN collections c ON c.id = u.collection_id"


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
    # True: ``vectors`` are checked rows (finite, none all zero) of any float dtype, scaled to unit
    # length (float32) block by block as they are written: no normalised copy of the whole batch.
    normalise: bool = False


# An add at least this large writes its vectors on a second thread while SQLite inserts the rows.
_PARALLEL_ROWS = 4096
_STATES = {s.value: s for s in State}
_DECODE = json.JSONDecoder().raw_decode  # NOTE: our own compact JSON; skips loads()'s whitespace scans
_U64 = (1 << 64) - 1  # stored as a signed 64-bit integer; handed out unsigned
# `where` SQL from compile_where reads json_type/json_extract(metadata|u.metadata, ...); on an
# encrypted vault the column is opened first (the keys and values are bound parameters, never here).
_META_REF = re.compile(r"\b(json_type|json_extract)\((u\.)?metadata,")


class UnitStore:
    """All reads and writes of unit records, across collections."""

    def __init__(self, db: Database, catalog: Catalog) -> None:
        self.db = db
        self.catalog = catalog
        self.access = AccessCounts(db)
        db.conn.create_function("sv_meta", 2, self._sql_meta, deterministic=True)
        integrity.register(db.conn)

    # -- sealing (encryption at rest) -------------------------------------------------------

    def _seal(self, uid: str, field: str, value: str | None) -> str | bytes | None:
        cipher = self.db.cipher
        if cipher is None or value is None:
            return value
        return cipher.seal(f"units/{uid}/{field}".encode(), value.encode())

    def _open(self, uid: str, field: str, stored: str | bytes | None) -> str | None:
        if stored is None or isinstance(stored, str):
            return stored
        if self.db.cipher is None:
            raise EncryptionError(f"unit {uid!r} is sealed; open the vault with its key")
        return self.db.cipher.open(f"units/{uid}/{field}".encode(), bytes(stored)).decode()

    def _meta(self, uid: str, stored: str | bytes) -> dict[str, Any]:
        if type(stored) is str:  # NOTE: the plain fast path: loading every unit is dominated by this
            return {} if stored == "{}" else _DECODE(stored)[0]
        return json.loads(self._open(uid, "metadata", stored) or "{}")  # type: ignore[no-any-return]

    def _sql_meta(self, uid: str, stored: str | bytes) -> str | None:
        return self._open(uid, "metadata", stored)

    def _where(self, where_sql: str) -> str:
        if self.db.cipher is None:
            return where_sql
        return _META_REF.sub(lambda m: f"{m[1]}(sv_meta({m[2] or ''}uid, {m[2] or ''}metadata),", where_sql)

    # -- writes -----------------------------------------------------------------------------

    def add(self, cid: int, batch: NewUnits) -> list[str]:
        n = len(batch.ids)
        if len(set(batch.ids)) != n:
            raise InvalidInput("ids must be unique within one add() call")
        now = time.time()
        metas: list[Any] = dumps_all(batch.metadata)  # NOTE: validated before anything is written
        texts: list[Any] = batch.texts
        if self.db.cipher is not None:
            texts = [self._seal(u, "text", t) for u, t in zip(batch.ids, batch.texts, strict=True)]
            metas = [self._seal(u, "metadata", m) for u, m in zip(batch.ids, metas, strict=True)]
        # NOTE: a bulk add's WAL checkpoint (copying its pages into the database file) runs behind it.
        with self.catalog.guard(cid), self.db.write(checkpoint_behind=n >= _PARALLEL_ROWS) as conn:
            st = self.catalog.state(cid)
            vf = self.catalog.ensure_vectors(st, batch.vectors.shape[1])
            self._check_parents(conn, batch)
            start = st.info.watermark
            assert st.planes is not None
            # NOTE: a bulk add's vector writes (and their fsync) run on a worker thread that overlaps
            # the inserts below; it is joined, and so the rows are durable, before the transaction
            # can commit.
            blocks = BlockQueue(vf) if n >= _PARALLEL_ROWS else None
            writer = Background(blocks.drain) if blocks is not None else None
            try:
                sigs, crcs = write_vectors(
                    vf, start, batch.vectors, st.planes, normalise=batch.normalise, blocks=blocks
                )
            except BaseException:
                if writer is not None:
                    writer.join()  # NOTE: write_vectors closed the queue; the writer finishes what it holds
                raise
            if writer is None:
                vf.sync()
            try:
                self._insert(conn, cid, batch, start, now, texts, metas, sigs, crcs)
            except BaseException:
                if writer is not None:
                    writer.join()  # NOTE: never leave a write to the file running past the transaction
                raise
            if writer is not None:
                writer.result()
            conn.execute("UPDATE collections SET watermark = ? WHERE id = ?", (start + n, cid))
            # NOTE: the cache moves inside the transaction, under the write lock, so writer threads
            # never grow it at once; if the commit fails, guard() drops it (it reloads from SQLite).
            self.catalog.committed(st, start + n)
            st.codes[start : start + n] = 1
            st.hashes[start : start + n] = sigs
        return list(batch.ids)

    def _insert(
        self,
        conn: sqlite3.Connection,
        cid: int,
        batch: NewUnits,
        start: int,
        now: float,
        texts: list[Any],
        metas: list[Any],
        sigs: npt.NDArray[np.uint64],
        crcs: list[int],
    ) -> None:
        """Insert the rows of a validated batch (and their text index), given their vectors' signatures and CRCs."""
        n = len(batch.ids)
        # NOTE: every insert gives the record checksum (there is no insert trigger). It covers
        # created_at as SQLite stores it: the INSERT below spells `now` as a literal, and SQLite's
        # own decimal parser may land one ulp away from Python's float.
        stored_now = float(conn.execute(f"SELECT {now!r}").fetchone()[0])
        recs = integrity.unit_crcs(
            batch.ids,
            repeat(cid),
            texts,
            metas,
            batch.kinds,
            repeat("active"),
            repeat(stored_now),
            batch.conversation_ids,
            batch.parent_ids,
            batch.kv_refs,
        )
        rid0 = int(conn.execute("SELECT COALESCE(MAX(rid), 0) + 1 FROM units").fetchone()[0])
        cols = ["rid", "uid", "vec_row", "semantic_hash", "vec_crc", "rec_crc"]
        values: list[Any] = [
            range(rid0, rid0 + n),
            batch.ids,
            range(start, start + n),
            sigs.view(np.int64).tolist(),
            crcs,
            recs,
        ]
        # NOTE: a column the whole batch leaves at its default is not bound at all: each bound value
        # costs the insert about a tenth of its time. The stored value (and so rec_crc) is the same.
        optional: tuple[tuple[str, list[Any], str | None], ...] = (
            ("text", texts, None),
            ("metadata", metas, "{}"),
            ("kind", batch.kinds, "unit"),
            ("conversation_id", batch.conversation_ids, None),
            ("parent_id", batch.parent_ids, None),
            ("kv_ref", batch.kv_refs, None),
        )
        for col, given, default in optional:
            if given.count(default) != n:
                cols.append(col)
                values.append(given)
        try:
            # NOTE: the UNIQUE index is the duplicate check; asking first costs a query per 900 ids.
            conn.executemany(
                f"INSERT INTO units ({', '.join(cols)}, collection_id, state, created_at, accessed_at) "
                f"VALUES ({', '.join('?' * len(cols))}, {int(cid)}, 'active', {now!r}, {now!r})",
                zip(*values, strict=True),
            )
        except sqlite3.IntegrityError:
            taken = sorted(_existing(conn, batch.ids))
            if taken:
                raise InvalidInput(f"id {taken[0]!r} already exists; ids are unique across the vault") from None
            raise
        if self.db.cipher is None and "text" in cols:
            # NOTE: one statement reading the rows just inserted: no second pass of Python bindings.
            conn.execute(
                "INSERT INTO units_fts (rowid, text) SELECT rid, text FROM units "
                "WHERE rid >= ? AND rid < ? AND text IS NOT NULL",
                (rid0, rid0 + n),
            )

    def _check_parents(self, conn: sqlite3.Connection, batch: NewUnits) -> None:
        if batch.parent_ids.count(None) == len(batch.parent_ids):
            return
        parents = {p for p in batch.parent_ids if p is not None} - set(batch.ids)
        missing = parents - _existing(conn, list(parents))
        if missing:
            raise NotFound(f"parent_id {sorted(missing)[0]!r} is not a unit in this vault")
        position = {uid: i for i, uid in enumerate(batch.ids)}
        for pos, pid in enumerate(batch.parent_ids):
            if pid is not None and position.get(pid, -1) >= pos:
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
                params.append(self._seal(uid, "metadata", dumps(metadata)))
            if state is not None:
                sets.append("state = ?")
                params.append(state.value)
            if kv_ref is not None:
                sets.append("kv_ref = ?")
                params.append(kv_ref)
            if text is not None:
                sets.append("text = ?")
                params.append(self._seal(uid, "text", text))
                if isinstance(old_text, str):
                    conn.execute(
                        "INSERT INTO units_fts (units_fts, rowid, text) VALUES ('delete', ?, ?)", (rid, old_text)
                    )
                if self.db.cipher is None:
                    conn.execute("INSERT INTO units_fts (rowid, text) VALUES (?, ?)", (rid, text))
            new_row = None
            if vector is not None:
                vf = self.catalog.ensure_vectors(st, vector.shape[1])
                new_row = st.info.watermark
                assert st.planes is not None
                sig = signatures(vector, st.planes)[0]
                vf.write_rows(new_row, vector)
                sets += ["vec_row = ?", "semantic_hash = ?", "vec_crc = ?"]
                params += [new_row, int(sig.view(np.int64)), row_crcs(vector)[0]]
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

    def restore_history(self, cid: int, items: Sequence[tuple[str, State, float, float, int]]) -> None:
        """Set ``(id, state, created_at, accessed_at, access_count)`` of units brought from another store.

        Used by ``sigmavault migrate`` so that migrated units keep their age and use counts.
        """
        with self.catalog.guard(cid), self.db.write() as conn:
            conn.executemany(
                "UPDATE units SET state = ?, created_at = ?, accessed_at = ?, access_count = ? "
                "WHERE uid = ? AND collection_id = ?",
                [(s.value, float(c), float(a), int(n), uid, cid) for uid, s, c, a, n in items],
            )
            rows = conn.execute(
                "SELECT vec_row, state FROM units WHERE collection_id = ? AND vec_row IS NOT NULL", (cid,)
            ).fetchall()
            st = self.catalog.state(cid)
            for vec_row, state in rows:
                st.codes[vec_row] = STATE_CODES[_STATES[state]]

    def vector_rows(self, cid: int) -> dict[str, int]:
        """``id -> vector row`` of every unit of ``cid`` with a vector (bulk checks, e.g. after a migration)."""
        rows = self.db.all("SELECT uid, vec_row FROM units WHERE collection_id = ? AND vec_row IS NOT NULL", (cid,))
        return {r[0]: int(r[1]) for r in rows}

    def delete(self, uids: Sequence[str], *, reparent: bool = True) -> list[tuple[int, int | None]]:
        """Remove units (their children are re-attached to the deleted unit's parent).

        Returns ``(collection_id, vec_row)`` of each removed unit. Call inside a write transaction
        that also drops the units' edges. ``reparent=False`` leaves children pointing at the id:
        an upsert removes a unit only to store it again under the same id.
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
                if isinstance(text, str):  # sealed text was never indexed
                    conn.execute("INSERT INTO units_fts (units_fts, rowid, text) VALUES ('delete', ?, ?)", (rid, text))
                if reparent:
                    conn.execute("UPDATE units SET parent_id = ? WHERE parent_id = ?", (parent, uid))
                conn.execute("DELETE FROM units WHERE rid = ?", (rid,))
                removed.append((cid, vec_row))
            for cid, vec_row in removed:
                if vec_row is not None:
                    self.catalog.state(cid).codes[vec_row] = 0
        self.access.forget(uids)
        return removed

    # -- reads ------------------------------------------------------------------------------

    def get(self, uid: str, *, vector: bool = True, touch: bool = True, cid: int | None = None) -> Unit:
        """One unit; with ``cid``, only if it belongs to that collection (checked before counting)."""
        row = self.db.one(f"SELECT {_UNIT_COLS} {_FROM} WHERE u.uid = ?", (uid,))
        if row is None:
            raise NotFound(f"no unit with id {uid!r}")
        if cid is not None and row[1] != cid:
            raise NotFound(f"unit {uid!r} belongs to collection {row[10]!r}, not to the one asked")
        if touch:
            self.touch([uid])
        return self._unit(row, vector=vector)

    def get_many(self, uids: Sequence[str], *, cid: int, vector: bool = True) -> list[Unit]:
        """The units of ``cid`` among ``uids``, in the order asked; missing ids are skipped (no access counted)."""
        rows: dict[str, Sequence[Any]] = {}
        unique = list(dict.fromkeys(uids))
        with self.db.read() as conn:
            for i in range(0, len(unique), 900):
                chunk = unique[i : i + 900]
                marks = ",".join("?" * len(chunk))
                found = conn.execute(
                    f"SELECT {_UNIT_COLS} {_FROM} WHERE u.uid IN ({marks}) AND u.collection_id = ?", (*chunk, cid)
                )
                rows.update((r[0], r) for r in found)
        return [self._unit(rows[u], vector=vector) for u in unique if u in rows]

    def owners(self, uids: Sequence[str]) -> dict[str, int]:
        """``id -> collection id`` of the ids among ``uids`` that exist anywhere in the vault."""
        out: dict[str, int] = {}
        with self.db.read() as conn:
            for i in range(0, len(uids), 900):
                chunk = list(uids[i : i + 900])
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT uid, collection_id FROM units WHERE uid IN ({marks})"
                out.update((r[0], int(r[1])) for r in conn.execute(sql, chunk))
        return out

    def ids_matching(self, cid: int, where_sql: str, params: Sequence[Any]) -> list[str]:
        """Ids of the units of ``cid`` that satisfy a compiled ``where`` (all of them with ``"1"``)."""
        where_sql = self._where(where_sql)
        found = self.db.all(
            f"SELECT uid FROM units u WHERE u.collection_id = ? AND {where_sql} ORDER BY u.rid", (cid, *params)
        )
        return [r[0] for r in found]

    def cid_of(self, uid: str) -> int:
        row = self.db.one("SELECT collection_id FROM units WHERE uid = ?", (uid,))
        if row is None:
            raise NotFound(f"no unit with id {uid!r}")
        return int(row[0])

    def ids(self) -> set[str]:
        """Every unit id in the vault (the graph part's check compares its edges with them)."""
        return {r[0] for r in self.db.all("SELECT uid FROM units")}

    def vec_row_of(self, uid: str) -> int | None:
        """The vector row of a unit, or None (no such unit, or a unit without a vector)."""
        row = self.db.one("SELECT vec_row FROM units WHERE uid = ?", (uid,))
        return None if row is None else row[0]

    def check(self, report: CheckReport) -> None:
        """Verify this part's tables and vector files (see :mod:`sigmavault.units.check`)."""
        check_units(self.db, self.catalog, report)

    def exists(self, uids: Sequence[str]) -> set[str]:
        with self.db.read() as conn:
            return _existing(conn, list(uids))

    def by_rows(
        self, cid: int, rows: Sequence[int], *, matrix: Vector | None = None
    ) -> dict[int, tuple[str, str | None, dict[str, Any]]]:
        """``vec_row -> (id, text, metadata)`` for search hits; each metadata dict is a new object.

        With ``matrix`` (the rows the search scored), each hit's vector is checked against its
        stored CRC32 first: a score computed from a damaged row is never handed out.
        """
        if not len(rows):
            return {}
        marks = ",".join("?" * len(rows))
        found = self.db.all(
            f"SELECT vec_row, uid, text, metadata, vec_crc FROM units WHERE collection_id = ? AND vec_row IN ({marks})",
            (cid, *map(int, rows)),
        )
        if matrix is not None:
            read.verify_rows(matrix, found)
        try:
            if self.db.cipher is not None:
                return {r[0]: (r[1], self._open(r[1], "text", r[2]), self._meta(r[1], r[3])) for r in found}
            load = read.load_meta
            return {r[0]: (r[1], r[2], load(r[3])) for r in found}
        except (ValueError, TypeError) as exc:
            raise Corrupted(f"a unit record of a search hit is damaged ({exc}); run `sigmavault check`") from exc

    def iter_units(
        self, *, cid: int | None = None, where_sql: str = "1", params: Sequence[Any] = (), batch: int = 4096
    ) -> Iterator[Unit]:
        """Every unit (optionally of one collection / matching a compiled filter), in insertion order."""
        last = 0
        where_sql = self._where(where_sql)
        name = None
        if cid is not None:
            try:
                name = self.catalog.by_id(cid).name
            except NotFound:
                return
        # NOTE: the unary + keeps SQLite on the rowid range; through the collection index it would
        # sort the whole collection for every batch (quadratic in its size). Within one collection
        # its name is known: no join, and one column less per row.
        if cid is not None:
            source, names = f"FROM units u WHERE u.rid > ? AND +u.collection_id = {int(cid)}", ""
        else:
            source, names = f"{_FROM} WHERE u.rid > ?", ", c.name"
        while True:
            rows = self.db.all(
                f"SELECT {_LIST_COLS}{names}, u.rid {source} AND {where_sql} ORDER BY u.rid LIMIT {batch}",
                (last, *params),
            )
            if not rows:
                return
            yield from self._units(rows, name)
            last = rows[-1][-1]

    def rows_matching(self, cid: int, where_sql: str, params: Sequence[Any]) -> np.ndarray:
        """Vector rows of the units in ``cid`` that satisfy a compiled ``where``."""
        where_sql = self._where(where_sql)
        found = self.db.all(
            f"SELECT vec_row FROM units WHERE collection_id = ? AND vec_row IS NOT NULL AND {where_sql}",
            (cid, *params),
        )
        return np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))

    def text_search(
        self, cid: int, query: str, k: int, states: tuple[State, ...], where_sql: str, params: Sequence[Any]
    ) -> list[tuple[str, float, str | None, dict[str, Any]]]:
        """BM25 over FTS5; returns ``(id, score, text, metadata)`` with score = -bm25 (higher is better)."""
        if self.db.cipher is not None:
            raise InvalidInput(
                "text and hybrid search are off on an encrypted vault: a full-text index would keep the "
                "words in plain text; use mode='vector'"
            )
        return textquery.search(self.db, cid, query, k, states, where_sql, params)

    def conversation(self, conversation_id: str) -> list[Unit]:
        sql = f"SELECT {_LIST_COLS}, c.name {_FROM} WHERE u.conversation_id = ? ORDER BY u.rid"
        return self._units(self.db.all(sql, (conversation_id,)), None)

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

    def _units(self, rows: list[Any], name: str | None) -> list[Unit]:
        """Units (without vectors) of a batch of listing rows (:data:`_LIST_COLS`; ``name``: their
        collection's, or None when each row carries it at [14]), checked and decoded batch-wide when plain.

        NOTE: loading every unit is dominated by per-row Python. A batch whose records all match
        their rec_crc (checked by C iterators, see integrity.crcs_of_rows), with plain text and
        metadata and no access counts pending, is decoded with one JSON parse of all its metadata
        and Units built positionally (types.build_unit); anything else (a damaged row, a sealed
        field, an unchecked record) goes row by row through :meth:`_unit`, which raises the same
        errors as before.
        """
        names = [name] * len(rows) if name is not None else list(map(_NAME, rows))
        if not rows or self.access.any_pending():
            return [self._unit(_full_row(r, n), vector=False) for r, n in zip(rows, names, strict=True)]
        try:
            if (
                _PLAIN_TEXT.issuperset(map(type, map(_TEXT, rows)))
                and _PLAIN_META.issuperset(map(type, map(_META, rows)))
                and list(map(_REC_CRC, rows)) == integrity.crcs_of_rows(rows)
            ):
                metas = read.load_meta_array(f"[{','.join(map(_META, rows))}]")
                if len(metas) == len(rows):
                    states, build = _STATES, build_unit
                    return [
                        build(r[0], n, r[2], m, r[4], states[r[5]], r[6], r[10], r[11], r[7], r[8], r[12] & _U64, r[9])
                        for r, m, n in zip(rows, metas, names, strict=True)
                    ]
        except (KeyError, ValueError, TypeError, OverflowError, RecursionError):
            pass  # NOTE: found and named row by row below
        return [self._unit(_full_row(r, n), vector=False) for r, n in zip(rows, names, strict=True)]

    def _unit(self, r: Sequence[Any], *, vector: bool) -> Unit:
        try:
            return self._decode(r, vector=vector)
        except VaultError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, OverflowError, UnicodeError) as exc:
            # NOTE: a row that does not decode (an unknown state, metadata that is not JSON, a text
            # that is neither str nor a sealed blob) is damage on disk, not a caller's mistake.
            raise Corrupted(
                f"unit {r[0]!r}: its stored record is damaged ({type(exc).__name__}: {exc}); run `sigmavault check`"
            ) from exc

    def _decode(self, r: Sequence[Any], *, vector: bool) -> Unit:
        if r[17] is not None and r[17] != integrity.unit_crc(*r[:10]):
            raise Corrupted(f"unit {r[0]!r}: its stored record fails its checksum; run `sigmavault check`")
        count, seen = r[12], r[11]
        pending = self.access.pending(r[0])
        if pending is not None:
            count, seen = count + pending[0], max(seen, pending[1])
        vec = None
        if vector and r[14] is not None:
            vec = self._vector(r[0], r[1], r[14], r[15], r[16])
        text = r[2]
        if text is not None and type(text) is not str:
            text = self._open(r[0], "text", text)
        meta = self._meta(r[0], r[3])
        return build_unit(
            r[0], r[10], text, meta, r[4], _STATES[r[5]], r[6], seen, count, r[7], r[8], r[13] & _U64, r[9], vec
        )

    def _vector(self, uid: str, cid: int, row: int, watermark: int, crc: int | None) -> Vector:
        """The stored vector of one unit, read from the same snapshot as its record."""
        if not isinstance(row, int) or not 0 <= row < watermark:
            raise Corrupted(
                f"unit {uid!r}: its vector row {row!r} lies outside the {watermark} committed rows of its "
                "collection; run `sigmavault check`"
            )
        # NOTE: a state loaded earlier that covers the row serves it (see Catalog.cached) without the
        # data_version query; otherwise state() reloads it when another process has committed since.
        st = self.catalog.cached(cid, row) or self.catalog.state(cid)
        vec = self.catalog.row_vector(st, row)
        # NOTE: a copy of a row of the little-endian float32 map: its bytes are what row_crcs checks.
        if crc is not None and zlib.crc32(vec.data) != crc:
            raise Corrupted(
                f"unit {uid!r}: its vector (row {row} of {st.info.name!r}) fails its checksum; the vector file "
                "was damaged: run `sigmavault check` and restore from a bundle"
            )
        return vec

    # -- access statistics ------------------------------------------------------------------

    def touch(self, uids: Sequence[str]) -> None:
        """Count an access now; persisted in batches (see :mod:`sigmavault.units.access`)."""
        self.access.touch(uids)

    def flush_access(self, *, wait: bool = True) -> None:
        """Persist pending access counts now (after any flush running behind the callers)."""
        if wait:
            self.access.join()
        self.access.flush(wait=wait)


def _full_row(r: Sequence[Any], name: str) -> tuple[Any, ...]:
    """A listing row (:data:`_LIST_COLS`) in the :data:`_UNIT_COLS` layout :meth:`UnitStore._unit` reads (no vector)."""
    return (*r[:10], name, r[10], r[11], r[12], None, None, None, r[13])


def _existing(conn: sqlite3.Connection, uids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(uids), 900):
        chunk = uids[i : i + 900]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(f"SELECT uid FROM units WHERE uid IN ({marks})", chunk))
    return found
