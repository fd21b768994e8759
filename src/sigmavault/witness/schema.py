"""Tables of the witness part.

``witness_entries`` is deliberately narrow (ids, time, model id, numbers) so that aggregates over
millions of rows scan little; the payload (context ids, routing, error message: user content,
sealed when the vault has a key) and the two embeddings live in ``witness_blobs``. Plain, for
SQL: request_id, session_id, ts_ms, model name, quality, latencies, token counts, error_type.
``witness_batches`` is the tamper-evident chain (see chain.py); ``witness_archives`` lists the
archive files whose entries left the hot store; ``witness_state`` holds counters (drops).
"""

from __future__ import annotations

from sigmavault.store import Migration

__all__ = ["BLOB_COLS", "ENTRY_COLS", "MIGRATIONS", "PART"]

PART = "witness"

# Stored columns of an entry in the order rows travel through the code (see records.py).
ENTRY_COLS = (
    "seq", "request_id", "session_id", "ts_ms", "model_id", "quality",
    "embedding_ms", "retrieval_ms", "routing_ms", "generation_ms", "total_ms",
    "prompt_tokens", "completion_tokens", "error_type", "failed",
)  # fmt: skip
BLOB_COLS = ("seq", "payload", "query_vec", "response_vec")

MIGRATIONS: list[Migration] = [
    [
        "CREATE TABLE witness_models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        """CREATE TABLE witness_entries (
            seq INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            session_id TEXT,
            ts_ms INTEGER NOT NULL,
            model_id INTEGER,
            quality REAL,
            embedding_ms REAL,
            retrieval_ms REAL,
            routing_ms REAL,
            generation_ms REAL,
            total_ms REAL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            error_type TEXT,
            failed INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX witness_by_time ON witness_entries(ts_ms)",
        "CREATE INDEX witness_by_request ON witness_entries(request_id)",
        "CREATE INDEX witness_by_session ON witness_entries(session_id, ts_ms) WHERE session_id IS NOT NULL",
        "CREATE INDEX witness_by_model ON witness_entries(model_id, ts_ms)",
        "CREATE INDEX witness_failed ON witness_entries(ts_ms) WHERE failed = 1",
        # NOTE: payload is JSON TEXT, or a BLOB sealed by the vault's cipher (see records.py).
        "CREATE TABLE witness_blobs (seq INTEGER PRIMARY KEY, payload, query_vec BLOB, response_vec BLOB)",
        # NOTE: entries of a batch have consecutive seqs first_seq .. first_seq + n - 1, so a
        # batch needs no column in witness_entries; digests are n * 32 bytes, NULL once the
        # whole batch is archived (its record then lives in the archive file).
        """CREATE TABLE witness_batches (
            id INTEGER PRIMARY KEY,
            first_seq INTEGER NOT NULL,
            n INTEGER NOT NULL,
            created_ms INTEGER NOT NULL,
            prev_hash BLOB NOT NULL,
            hash BLOB NOT NULL,
            digests BLOB,
            archived INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE witness_archives (
            id INTEGER PRIMARY KEY,
            file TEXT NOT NULL UNIQUE,
            entries INTEGER NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            min_ts INTEGER NOT NULL,
            max_ts INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        )""",
        "CREATE TABLE witness_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ],
]
