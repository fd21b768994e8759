"""The units part's rows in a snapshot copy of a vault (for collection-subset bundles).

A bundle of some collections is a whole snapshot reduced afterwards; each part reduces its own
tables, so no tool writes tables it does not own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from sigmavault.units import integrity

__all__ = ["count_units", "keep_collections", "unit_ids"]


def keep_collections(conn: sqlite3.Connection, cids: Sequence[int], *, encrypted: bool) -> int:
    """Delete the units and collections not in ``cids``; returns how many kept units lost their parent.

    Runs inside the caller's transaction on a snapshot connection.
    """
    integrity.register(conn)  # NOTE: the units' checksum triggers fire on the parent_id update below
    marks = ",".join("?" * len(cids))
    conn.execute(f"DELETE FROM units WHERE collection_id NOT IN ({marks})", list(cids))
    detached = conn.execute(
        "UPDATE units SET parent_id = NULL WHERE parent_id IS NOT NULL AND parent_id NOT IN (SELECT uid FROM units)"
    ).rowcount
    conn.execute(f"DELETE FROM collections WHERE id NOT IN ({marks})", list(cids))
    if not encrypted:
        # NOTE: units_fts is an external-content index; rebuilding it from the remaining units
        # drops the entries of removed ones. An encrypted vault never indexes text at all.
        conn.execute("INSERT INTO units_fts (units_fts) VALUES ('rebuild')")
    return int(detached)


def unit_ids(conn: sqlite3.Connection) -> set[str]:
    """Every unit id in the snapshot (what other parts' references may point at)."""
    return {r[0] for r in conn.execute("SELECT uid FROM units")}


def count_units(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM units").fetchone()[0])
