"""Checksums of unit records and vector rows: what SQLite's page checks and the vector file cannot see.

SQLite verifies the *structure* of its pages, not the values in them: a flipped bit inside a unit's
``kind`` or ``metadata`` reads back as a different, well-formed value. Each unit row therefore keeps
``rec_crc``, a CRC32 of its fields (their tuple's repr, so no two field lists collide), given by
the one code path that inserts units (``UnitStore.add``, computed in bulk by :func:`unit_crcs`)
and set by an SQLite trigger on every update of those fields whatever code path writes them;
and ``vec_crc``, the CRC32 of its float32 vector row. Access counts and times are left out: they
are advisory, batched, and allowed to lose their last moments.

When they are verified: opening a vault verifies none (it reads only the catalogue and cuts crash
tails past each watermark). Every read verifies what it returns: ``get`` the record and its vector
row, a listing (``list(collection)``, ``all(where=...)``, a conversation) each record, a batch at a
time (:func:`crcs_of_rows` over the rows; a mismatch is found and named row by row), search hits their
vector rows against the rows that were scored. ``check()`` verifies every record and every row.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import Any

from sigmavault.store import Database
from sigmavault.store.vectors import row_crcs
from sigmavault.types import Vector

__all__ = [
    "DROP_INSERT_TRIGGER",
    "FIELDS",
    "TRIGGERS",
    "crcs_of",
    "crcs_of_columns",
    "crcs_of_rows",
    "register",
    "unit_crc",
    "unit_crcs",
    "verify_records",
    "verify_vectors",
]

# The unit fields a record checksum covers, in order (SQL column names).
FIELDS = "uid, collection_id, text, metadata, kind, state, created_at, conversation_id, parent_id, kv_ref"
_NEW = ", ".join(f"NEW.{f.strip()}" for f in FIELDS.split(","))
TRIGGERS = [
    "ALTER TABLE units ADD COLUMN rec_crc INTEGER",
    f"""CREATE TRIGGER units_rec_crc_insert AFTER INSERT ON units WHEN NEW.rec_crc IS NULL BEGIN
        UPDATE units SET rec_crc = sv_unit_crc({_NEW}) WHERE rid = NEW.rid;
    END""",
    f"""CREATE TRIGGER units_rec_crc_update AFTER UPDATE OF {FIELDS} ON units BEGIN
        UPDATE units SET rec_crc = sv_unit_crc({_NEW}) WHERE rid = NEW.rid;
    END""",
]


_UTF8 = methodcaller("encode", "utf-8", "surrogatepass")


# NOTE: the insert trigger ran a trigger program for every inserted row (about a fifth of the
# insert's time at 100k units) only to find rec_crc already given; inserts now always give it,
# and a row that ever came without it would read as "unchecked" in check(), never as damaged.
DROP_INSERT_TRIGGER = ["DROP TRIGGER IF EXISTS units_rec_crc_insert"]


def unit_crc(*fields: Any) -> int:
    """CRC32 over the ``repr`` of ``fields`` (in :data:`FIELDS` order).

    NOTE: the repr of a tuple of str/bytes/int/float/None is unambiguous (quotes are escaped, str and
    bytes differ, floats print their shortest exact form) and built in C: ~4x faster than framing
    each field in Python, which matters at a million units per add.
    """
    return zlib.crc32(repr(fields).encode("utf-8", "surrogatepass"))


def unit_crcs(*columns: Iterable[Any]) -> list[int]:
    """:func:`unit_crc` of each row of ``columns`` (in :data:`FIELDS` order; a constant as ``itertools.repeat``).

    A list column whose values all print alike (one ``kind`` for a whole add, no parents) is written once.
    """
    folded = [repeat(c[0]) if i and type(c) is list and c and _constant(c, c[0]) else c for i, c in enumerate(columns)]
    return crcs_of_columns(folded)


def crcs_of(records: Iterable[tuple[Any, ...]]) -> list[int]:
    """:func:`unit_crc` of each tuple of fields (in :data:`FIELDS` order)."""
    return list(map(zlib.crc32, map(_UTF8, map(repr, records))))


def crcs_of_rows(rows: Sequence[Sequence[Any]], width: int = 10) -> list[int]:
    """:func:`unit_crc` of ``row[:width]`` of each row: the same as :func:`crcs_of`, in about half the time.

    NOTE: rows read back from one add share most of their fields (collection, kind, state, the
    time, the ids left None); those columns are found here and printed once (see :func:`crcs_of_columns`).
    """
    if len(rows) < 2:
        return crcs_of(tuple(r[:width]) for r in rows)
    columns: list[Any] = [list(map(itemgetter(0), rows))]  # NOTE: the ids: never constant, they give the row count
    for i in range(1, width):
        column = list(map(itemgetter(i), rows))
        first = column[0]
        columns.append(repeat(first) if _constant(column, first) else column)
    return crcs_of_columns(columns)


def crcs_of_columns(columns: Sequence[Iterable[Any]]) -> list[int]:
    """:func:`unit_crc` of each row of ``columns``; a column given as ``itertools.repeat(v)`` is ``v`` in every row.

    NOTE: the repr of a tuple is ``"(" + ", ".join(map(repr, fields)) + ")"``; ``%r`` formatting
    gives the same text, so one format string with each constant column's repr written into it
    (instead of a repr of every field of every row: a float's repr alone is ~0.4 us) gives the same
    bytes and the same CRCs in about a third of the time. Rows of at least two fields only (a
    one-field tuple prints a trailing comma).
    """
    if len(columns) < 2:
        raise ValueError("record checksums cover at least two fields")
    parts: list[str] = []
    varying: list[Iterable[Any]] = []
    for column in columns:
        if isinstance(column, repeat):
            parts.append(repr(next(column)).replace("%", "%%"))
        else:
            parts.append("%r")
            varying.append(column)
    if not varying:
        raise ValueError("a column of record checksums must give the row count")
    fmt = "(" + ", ".join(parts) + ")"
    if len(varying) == 1:
        rows: Iterable[Any] = zip(varying[0])
    else:
        rows = zip(*varying, strict=True)
    return list(map(zlib.crc32, map(_UTF8, map(fmt.__mod__, rows))))


def _constant(column: list[Any], first: Any) -> bool:
    """Whether every value of ``column`` prints as ``first`` does (same type, equal, not a signed zero)."""
    kind = type(first)
    if kind is float and (first == 0.0 or first != first):  # NOTE: 0.0 == -0.0 but their reprs differ
        return False
    return column.count(first) == len(column) and len(set(map(type, column))) == 1


def register(conn: sqlite3.Connection) -> None:
    """Make ``sv_unit_crc`` known to a connection that writes units (the triggers call it)."""
    conn.create_function("sv_unit_crc", 10, unit_crc, deterministic=True)


def verify_vectors(db: Database, cid: int, matrix: Vector) -> tuple[int, str | None, int]:
    """Every unit's vector row of ``cid`` against its CRC32: ``(damaged, first damaged id, unchecked)``."""
    bad, first, unchecked, last = 0, None, 0, 0
    while True:
        found = db.all(
            "SELECT rid, vec_row, vec_crc, uid FROM units WHERE +collection_id = ? AND rid > ? "
            "AND vec_row IS NOT NULL ORDER BY rid LIMIT 65536",
            (cid, last),
        )
        if not found:
            return bad, first, unchecked
        last = found[-1][0]
        known = [r for r in found if r[2] is not None and 0 <= r[1] < len(matrix)]
        unchecked += len(found) - len(known)
        crcs = row_crcs(matrix[[r[1] for r in known]]) if known else []
        for r, crc in zip(known, crcs, strict=True):
            if crc != r[2]:
                bad += 1
                first = first or r[3]


def verify_records(db: Database) -> tuple[int, str | None, int]:
    """Every unit record against its ``rec_crc``: ``(damaged, first damaged id, unchecked)``."""
    bad = db.one(f"SELECT COUNT(*), MIN(uid) FROM units WHERE rec_crc IS NOT NULL AND rec_crc != sv_unit_crc({FIELDS})")
    unchecked = db.one("SELECT COUNT(*) FROM units WHERE rec_crc IS NULL")
    return int(bad[0]), bad[1], int(unchecked[0])
