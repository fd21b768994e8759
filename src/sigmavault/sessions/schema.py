"""Tables of the sessions part: one row per session, and the generation counter of its cache."""

from __future__ import annotations

from sigmavault.store import Migration

__all__ = ["CLOCK", "MIGRATIONS", "PART", "TABLE"]

PART = "sessions"
TABLE = "sessions"
CLOCK = "sessions_clock"

MIGRATIONS: list[Migration] = [
    [
        # NOTE: metadata is JSON text, or a sealed BLOB when the vault is encrypted; ids, user,
        # adapter, KV reference, counters and times stay plain so SQL can filter on them.
        """CREATE TABLE sessions (
            sid TEXT PRIMARY KEY,
            user_id TEXT,
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed', 'expired')),
            turn_count INTEGER NOT NULL DEFAULT 0 CHECK (turn_count >= 0),
            created_at REAL NOT NULL,
            last_active REAL NOT NULL,
            active_adapter TEXT,
            kv_ref TEXT,
            metadata BLOB NOT NULL,
            context BLOB
        )""",
        "CREATE INDEX sessions_by_user ON sessions(user_id, last_active) WHERE user_id IS NOT NULL",
        "CREATE INDEX sessions_by_activity ON sessions(last_active)",
        # NOTE: bumped by every write of this part, so another process's cache knows to drop.
        "CREATE TABLE sessions_clock (gen INTEGER NOT NULL)",
        "INSERT INTO sessions_clock (gen) VALUES (0)",
    ],
]
