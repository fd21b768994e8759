"""Tamper evidence: every batch is chained to the one before it by SHA-256 (always on).

A batch stores the digest of each of its entries (records.digest over the stored row) and
``hash = SHA-256("svwb1" | prev_hash | id | first_seq | n | digests)``. ``verify`` recomputes
every entry's digest from the tables and every batch hash, and follows ``prev_hash`` links, so
an edited, deleted or reordered row, or an edited batch record, is reported by ``check``.

NOTE: without a secret key, someone who can write the file can rewrite the whole chain from the
edited batch onward; to catch that too, keep :meth:`Witness.head` (the newest batch hash)
somewhere else, as one would pin a Git commit.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from sigmavault.witness.records import SELECT_STORED, digest

__all__ = ["GENESIS", "BatchRecord", "batch_hash", "verify"]

GENESIS = bytes(32)
_MAX_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: int
    first_seq: int
    n: int
    prev_hash: bytes
    hash: bytes
    digests: bytes | None
    archived: int


def batch_hash(prev: bytes, batch_id: int, first_seq: int, n: int, digests: bytes) -> bytes:
    h = hashlib.sha256(b"svwb1")
    h.update(prev)
    h.update(batch_id.to_bytes(8, "little"))
    h.update(first_seq.to_bytes(8, "little"))
    h.update(n.to_bytes(8, "little"))
    h.update(digests)
    return h.digest()


def batches(conn: sqlite3.Connection, *, after: int = 0) -> Iterator[BatchRecord]:
    rows = conn.execute(
        "SELECT id, first_seq, n, prev_hash, hash, digests, archived FROM witness_batches WHERE id > ? ORDER BY id",
        (after,),
    )
    for r in rows:
        yield BatchRecord(r[0], r[1], r[2], bytes(r[3]), bytes(r[4]), None if r[5] is None else bytes(r[5]), r[6])


def verify(conn: sqlite3.Connection) -> tuple[list[str], dict[str, int]]:
    """Check the chain against the tables; returns (problems, counts)."""
    problems: list[str] = []
    counts = {"batches": 0, "entries": 0, "linkage_only": 0}
    prev = GENESIS
    expected_seq: int | None = None
    for b in batches(conn):
        counts["batches"] += 1
        if len(problems) >= _MAX_PROBLEMS:
            problems.append("witness: more problems not listed")
            break
        if b.prev_hash != prev:
            problems.append(f"witness: batch {b.id} does not follow batch before it (chain broken; rows replaced?)")
        if expected_seq is not None and b.first_seq != expected_seq:
            problems.append(f"witness: batch {b.id} starts at entry {b.first_seq}, expected {expected_seq}")
        prev = b.hash
        expected_seq = b.first_seq + b.n
        rows = conn.execute(
            f"{SELECT_STORED} WHERE e.seq BETWEEN ? AND ? ORDER BY e.seq", (b.first_seq, expected_seq - 1)
        ).fetchall()
        counts["entries"] += len(rows)
        if len(rows) + b.archived != b.n:
            problems.append(
                f"witness: batch {b.id} holds {len(rows)} entries, {b.archived} archived, of {b.n} written; "
                "entries were deleted outside archive()"
            )
        if b.digests is None:
            counts["linkage_only"] += 1
            if b.archived != b.n:
                problems.append(f"witness: batch {b.id} lost its digests but is not fully archived")
            continue
        if len(b.digests) != 32 * b.n or batch_hash(b.prev_hash, b.id, b.first_seq, b.n, b.digests) != b.hash:
            problems.append(f"witness: batch {b.id}: its hash does not match its entries' digests (batch edited)")
        for row in rows:
            pos = int(row[0]) - b.first_seq
            try:
                same = digest(row) == b.digests[32 * pos : 32 * pos + 32]
            except TypeError:
                same = False
            if not same:
                problems.append(
                    f"witness: entry {row[0]} (request {row[1]}) in batch {b.id} was changed after it was written"
                )
                if len(problems) >= _MAX_PROBLEMS:
                    break
    total = conn.execute("SELECT COUNT(*) FROM witness_entries").fetchone()[0]
    if total != counts["entries"] and len(problems) < _MAX_PROBLEMS:
        problems.append(
            f"witness: {total - counts['entries']} entries belong to no batch (inserted outside the writer)"
        )
    return problems, counts
