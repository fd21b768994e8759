"""The disk tier's index: one SQLite row per chunk file, plus persisted settings and counters.

Plain (unencrypted) columns are only what lookups and eviction need: keys (SHA-256 digests), the
fingerprint digest, the model name, codec, token position and count, sizes and access times.
Token ids and KV live in the chunk files, sealed when the vault has a cipher.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sigmavault.errors import ReadOnly
from sigmavault.kv.keys import ROOT
from sigmavault.store import Database, Migration

__all__ = ["MIGRATIONS", "PART", "ChunkRow", "KVIndex"]

PART = "kv"

MIGRATIONS: list[Migration] = [
    [
        """CREATE TABLE kv_chunks (
            key BLOB PRIMARY KEY,
            parent BLOB NOT NULL,
            fp BLOB NOT NULL,
            model TEXT NOT NULL,
            codec TEXT NOT NULL,
            start INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            lead INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            created_at REAL NOT NULL,
            accessed_at REAL NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        "CREATE INDEX kv_chunks_by_parent ON kv_chunks(parent, fp, lead)",
        "CREATE INDEX kv_chunks_by_access ON kv_chunks(accessed_at, start)",
        "CREATE TABLE kv_config (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE kv_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ],
    # Damage found while serving (a chunk that failed its checksum and was dropped): kept until
    # `kv gc` acknowledges it, so that check() reports it even though the chunk itself is gone.
    ["CREATE TABLE kv_damage (key BLOB PRIMARY KEY, found_at REAL NOT NULL, reason TEXT NOT NULL) WITHOUT ROWID"],
]

_COLUMNS = "key, parent, fp, model, codec, start, tokens, lead, bytes, created_at, accessed_at, hits"


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """One stored chunk as the index knows it."""

    key: bytes
    parent: bytes
    fp: bytes
    model: str
    codec: str
    start: int
    tokens: int
    lead: int
    bytes: int
    created_at: float
    accessed_at: float
    hits: int

    @property
    def end(self) -> int:
        return self.start + self.tokens


def _row(r: Any) -> ChunkRow:
    return ChunkRow(bytes(r[0]), bytes(r[1]), bytes(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])


class KVIndex:
    """Queries over the kv tables. ``ready`` is False for a read-only vault that never had them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        try:
            db.migrate(PART, MIGRATIONS)
            self.ready = True
        except ReadOnly:
            self.ready = False  # NOTE: a frozen vault without kv tables is an empty KV store.

    # -- lookups ----------------------------------------------------------------------------

    def rows(self, keys: Iterable[bytes]) -> dict[bytes, ChunkRow]:
        keys = list(keys)
        if not self.ready or not keys:
            return {}
        out: dict[bytes, ChunkRow] = {}
        for i in range(0, len(keys), 500):  # NOTE: stays under SQLite's host-parameter limit
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            for r in self.db.all(f"SELECT {_COLUMNS} FROM kv_chunks WHERE key IN ({marks})", part):
                row = _row(r)
                out[row.key] = row
        return out

    def children(self, parent: bytes, fp: bytes, leads: list[int], *, most: int) -> list[ChunkRow]:
        """Chunks of at most ``most`` tokens continuing ``parent`` whose lead is one of ``leads``, longest first."""
        if not self.ready or not leads:
            return []
        marks = ",".join("?" * len(leads))
        rows = self.db.all(
            f"SELECT {_COLUMNS} FROM kv_chunks WHERE parent = ? AND fp = ? AND lead IN ({marks}) AND tokens <= ? "
            "ORDER BY tokens DESC",
            (parent, fp, *leads, most),
        )
        return [_row(r) for r in rows]

    def chain(self, last: bytes) -> list[ChunkRow]:
        """The chunks from a prefix's first to ``last`` (empty if ``last`` is unknown)."""
        if not self.ready:
            return []
        rows = self.db.all(
            f"""WITH RECURSIVE up(k, depth) AS (
                    SELECT ?, 0
                    UNION ALL
                    SELECT c.parent, up.depth + 1 FROM kv_chunks c JOIN up ON c.key = up.k
                    WHERE c.parent != ? AND up.depth < 1000000
                )
                SELECT {_COLUMNS} FROM kv_chunks JOIN up ON kv_chunks.key = up.k ORDER BY up.depth DESC""",
            (last, ROOT),
        )
        return [_row(r) for r in rows]

    def iter_rows(self) -> Iterator[ChunkRow]:
        if not self.ready:
            return
        for r in self.db.all(f"SELECT {_COLUMNS} FROM kv_chunks ORDER BY start, key"):
            yield _row(r)

    def unreachable(self) -> list[ChunkRow]:
        """Chunks whose parent chain is broken (a parent was evicted or dropped)."""
        if not self.ready:
            return []
        rows = self.db.all(
            f"""WITH RECURSIVE reach(k) AS (
                    SELECT key FROM kv_chunks WHERE parent = ?
                    UNION SELECT c.key FROM kv_chunks c JOIN reach ON c.parent = reach.k
                )
                SELECT {_COLUMNS} FROM kv_chunks WHERE key NOT IN (SELECT k FROM reach)""",
            (ROOT,),
        )
        return [_row(r) for r in rows]

    def totals(self) -> dict[str, Any]:
        if not self.ready:
            return {"chunks": 0, "bytes": 0, "tokens": 0, "by_codec": {}, "models": 0}
        by_codec: dict[str, dict[str, int]] = {}
        sql = "SELECT codec, COUNT(*), SUM(bytes), SUM(tokens) FROM kv_chunks GROUP BY codec"
        for codec, n, b, t in self.db.all(sql):
            entry = by_codec.setdefault(str(codec).split(",")[0], {"chunks": 0, "bytes": 0, "tokens": 0})
            entry["chunks"] += int(n)
            entry["bytes"] += int(b or 0)
            entry["tokens"] += int(t or 0)
        models = self.db.one("SELECT COUNT(DISTINCT model) FROM kv_chunks")[0]
        return {
            "chunks": sum(v["chunks"] for v in by_codec.values()),
            "bytes": sum(v["bytes"] for v in by_codec.values()),
            "tokens": sum(v["tokens"] for v in by_codec.values()),
            "by_codec": by_codec,
            "models": int(models),
        }

    def total_bytes(self) -> int:
        if not self.ready:
            return 0
        return int(self.db.one("SELECT COALESCE(SUM(bytes), 0) FROM kv_chunks")[0])

    # -- writes (call inside db.write()) ----------------------------------------------------

    def insert(self, rows: Iterable[ChunkRow]) -> None:
        """Add chunk rows; a chunk saved again after it was dropped as damaged is repaired (its note goes)."""
        rows = list(rows)
        self.db.conn.executemany("DELETE FROM kv_damage WHERE key = ?", [(r.key,) for r in rows])
        self.db.conn.executemany(
            f"INSERT OR IGNORE INTO kv_chunks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.key,
                    r.parent,
                    r.fp,
                    r.model,
                    r.codec,
                    r.start,
                    r.tokens,
                    r.lead,
                    r.bytes,
                    r.created_at,
                    r.accessed_at,
                    r.hits,
                )
                for r in rows
            ],
        )

    def delete(self, keys: Iterable[bytes]) -> None:
        self.db.conn.executemany("DELETE FROM kv_chunks WHERE key = ?", [(k,) for k in keys])

    def victims(self, budget: int, *, keep: frozenset[bytes] = frozenset()) -> list[ChunkRow]:
        """Least recently used chunks (deepest first on ties) whose removal brings bytes to ``budget``."""
        excess = self.total_bytes() - budget
        out: list[ChunkRow] = []
        if excess <= 0:
            return out
        cursor = self.db.conn.execute(f"SELECT {_COLUMNS} FROM kv_chunks ORDER BY accessed_at ASC, start DESC")
        deferred: list[ChunkRow] = []
        for r in cursor:
            row = _row(r)
            if row.key in keep:
                deferred.append(row)
                continue
            out.append(row)
            excess -= row.bytes
            if excess <= 0:
                return out
        # NOTE: the budget is smaller than what this very save wrote; its deepest chunks go too.
        for row in sorted(deferred, key=lambda x: -x.start):
            if excess <= 0:
                break
            out.append(row)
            excess -= row.bytes
        return out

    def record(self, touches: Mapping[bytes, tuple[float, int]], counters: Mapping[str, int]) -> None:
        """Apply batched access times/hits and add to the persisted counters."""
        self.db.conn.executemany(
            "UPDATE kv_chunks SET accessed_at = MAX(accessed_at, ?), hits = hits + ? WHERE key = ?",
            [(when, hits, key) for key, (when, hits) in touches.items()],
        )
        self.db.conn.executemany(
            "INSERT INTO kv_counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [(name, value) for name, value in counters.items() if value],
        )

    # -- damage found at run time ------------------------------------------------------------

    def note_damage(self, key: bytes, reason: str, found_at: float) -> None:
        """Remember a chunk dropped as damaged; call inside the write transaction that drops it."""
        self.db.execute(
            "INSERT OR REPLACE INTO kv_damage (key, found_at, reason) VALUES (?, ?, ?)", (key, found_at, reason[:500])
        )

    def damage(self) -> list[tuple[bytes, float, str]]:
        """``(key, found_at, reason)`` of every chunk dropped as damaged since the last ``gc``."""
        if not self.ready:
            return []
        return [(bytes(k), float(t), str(r)) for k, t, r in self.db.all("SELECT key, found_at, reason FROM kv_damage")]

    def clear_damage(self) -> int:
        """Forget the damage found so far (``gc`` repaired what it could); returns how many were noted."""
        with self.db.write() as conn:
            return int(conn.execute("DELETE FROM kv_damage").rowcount)

    # -- settings and counters --------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        if not self.ready:
            return {}
        return {str(n): int(v) for n, v in self.db.all("SELECT name, value FROM kv_counters")}

    def reset_counters(self) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM kv_counters")

    def settings(self) -> dict[str, Any]:
        if not self.ready:
            return {}
        return {str(n): json.loads(v) for n, v in self.db.all("SELECT name, value FROM kv_config")}

    def save_settings(self, values: Mapping[str, Any]) -> None:
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO kv_config (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [(k, json.dumps(v)) for k, v in values.items()],
            )
