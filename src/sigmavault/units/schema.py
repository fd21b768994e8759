"""Tables of the units part: the collection catalogue, unit records and their FTS5 index."""

from __future__ import annotations

from sigmavault.store import Migration
from sigmavault.units.integrity import DROP_INSERT_TRIGGER, TRIGGERS

__all__ = ["MIGRATIONS", "PART"]

PART = "units"

MIGRATIONS: list[Migration] = [
    [
        """CREATE TABLE collections (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            dim INTEGER,
            metric TEXT NOT NULL DEFAULT 'cosine',
            embedder TEXT,
            hash_seed INTEGER NOT NULL,
            watermark INTEGER NOT NULL DEFAULT 0,
            config TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE units (
            rid INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            collection_id INTEGER NOT NULL REFERENCES collections(id),
            vec_row INTEGER,
            text TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            kind TEXT NOT NULL DEFAULT 'unit',
            state TEXT NOT NULL DEFAULT 'active',
            created_at REAL NOT NULL,
            accessed_at REAL NOT NULL,
            access_count INTEGER NOT NULL DEFAULT 0,
            conversation_id TEXT,
            parent_id TEXT,
            semantic_hash INTEGER NOT NULL DEFAULT 0,
            kv_ref TEXT
        )""",
        "CREATE UNIQUE INDEX units_by_row ON units(collection_id, vec_row)",
        "CREATE INDEX units_by_conversation ON units(conversation_id, rid) WHERE conversation_id IS NOT NULL",
        "CREATE INDEX units_by_parent ON units(parent_id) WHERE parent_id IS NOT NULL",
        # NOTE: external-content FTS keeps one copy of the text (in units). Its content is a view
        # of the units that have text, so FTS5's integrity-check can compare index and texts (a
        # NULL text would read as a mismatch). The porter stemmer lets "boiling" find "boils".
        "CREATE VIEW units_text AS SELECT rid, text FROM units WHERE text IS NOT NULL",
        """CREATE VIRTUAL TABLE units_fts USING fts5(
            text, content='units_text', content_rowid='rid', tokenize='porter unicode61'
        )""",
    ],
    [
        # Ids of dropped collections: never handed out again, so a vector file or index a crash left
        # behind, or another process's open map of it, can never be read as a new collection's.
        "CREATE TABLE collections_retired (id INTEGER PRIMARY KEY, name TEXT NOT NULL, dropped_at REAL NOT NULL)",
    ],
    # CRC32 of the unit's float32 vector row as written (NULL: written before checksums existed).
    # Kept in SQLite beside the watermark: it commits atomically with the row it describes and
    # costs no extra fsync, which a side file beside the vector file would.
    ["ALTER TABLE units ADD COLUMN vec_crc INTEGER"],
    # CRC32 of each unit record's fields, kept by triggers (see units/integrity.py).
    TRIGGERS,
    # Inserts give rec_crc themselves; the insert trigger only cost time (see units/integrity.py).
    DROP_INSERT_TRIGGER,
]
