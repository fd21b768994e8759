"""Tables of the policies part: typed learned parameters, and the generation counter of its cache."""

from __future__ import annotations

from sigmavault.store import Migration

__all__ = ["CLOCK", "COLUMNS", "MIGRATIONS", "PART", "TABLE"]

PART = "policies"
TABLE = "policies"
CLOCK = "policies_clock"
COLUMNS = (
    "pid, kind, params, dim, embedding, confidence, source, fisher, state, provenance, replaced_by, "
    "created_at, last_accessed"
)

MIGRATIONS: list[Migration] = [
    [
        # NOTE: params is JSON text, or a sealed BLOB when the vault is encrypted. Vectors are
        # plain float32 BLOBs; ``dim`` mirrors the embedding's length so SQL can pick a bank.
        # provenance is the JSON list of the ids an entry replaced (consolidation, pruning).
        """CREATE TABLE policies (
            pid TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            params BLOB NOT NULL,
            dim INTEGER,
            embedding BLOB,
            confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
            source TEXT NOT NULL CHECK (source IN ('instant', 'background', 'deep', 'imported')),
            fisher BLOB,
            state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'archived')),
            provenance TEXT NOT NULL DEFAULT '[]',
            replaced_by TEXT,
            created_at REAL NOT NULL,
            last_accessed REAL NOT NULL
        )""",
        "CREATE INDEX policies_by_kind ON policies(kind, state, confidence)",
        "CREATE TABLE policies_clock (gen INTEGER NOT NULL)",
        "INSERT INTO policies_clock (gen) VALUES (0)",
    ],
]
