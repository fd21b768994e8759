"""The one internal context a :class:`~sigmavault.vault.Vault` builds and hands to what it builds.

It owns what the parts share: the SQLite store (and its cipher), the collection catalogue, the unit
store, the graph, the ANN index manager, the search engine, the vault's configuration, and the
lazily built parts (kv, sessions, policies, witness). ``Collection``, ``check()`` (see
:mod:`sigmavault.parts`), bundles and migration all work through it, so none of them reads
another module's private names. Tools reach it as ``vault.context``; it is not a user API.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sigmavault import graph, units
from sigmavault.graph import GraphStore
from sigmavault.store import Cipher, Database, Migration
from sigmavault.types import CheckReport, Reporter
from sigmavault.units import Catalog, UnitStore
from sigmavault.units.indexes import IndexManager
from sigmavault.units.search import SearchEngine

__all__ = ["VAULT_MIGRATIONS", "Part", "VaultConfig", "VaultContext", "read_meta", "write_meta"]


def _create_vault_meta(conn: sqlite3.Connection) -> None:
    # NOTE: a function, not SQL text: the id and time must be drawn per vault, not once at import.
    conn.execute("CREATE TABLE vault_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.executemany(
        "INSERT INTO vault_meta VALUES (?, ?)",
        [("format", "1"), ("vault_id", uuid.uuid4().hex), ("created_at", f"{time.time():.3f}")],
    )


# The vault's own table (``vault_meta``: format, lineage id, bundle generation and source, cipher).
VAULT_MIGRATIONS: list[Migration] = [_create_vault_meta]


def read_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """A value of the vault's own table, on any connection (the vault's, or a snapshot copy's)."""
    row = conn.execute("SELECT value FROM vault_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def write_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set a value of the vault's own table (inside the caller's write transaction)."""
    conn.execute(
        "INSERT INTO vault_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


class Part(Protocol):
    """What the facade needs of a lazily built part (kv, sessions, policies, witness) besides its API."""

    def close(self) -> None: ...

    def check(self, report: CheckReport) -> None: ...


@dataclass(frozen=True, slots=True)
class VaultConfig:
    """How the vault was opened."""

    frozen: bool
    busy_timeout: float
    progress: Reporter | None = None


class VaultContext:
    """The shared state of one open vault; the parts' slices of the store are its attributes."""

    def __init__(self, root: Path, db: Database, config: VaultConfig) -> None:
        self.root = root
        self.db = db
        self.config = config
        db.migrate(units.PART, units.MIGRATIONS)
        db.migrate(graph.PART, graph.MIGRATIONS)
        self.catalog = Catalog(db, root)
        self.units = UnitStore(db, self.catalog)
        self.graph = GraphStore(db)
        self.indexes = IndexManager(db, self.catalog, root, report=config.progress)
        self.search = SearchEngine(self.catalog, self.units, self.indexes)
        # NOTE: filled by sigmavault.parts.part() on first use, in the order parts were built.
        self.parts: dict[str, Part] = {}

    @property
    def cipher(self) -> Cipher | None:
        return self.db.cipher

    def forget(self) -> None:
        """Drop cached state that may describe writes a transaction just rolled back."""
        self.catalog.forget()
        self.indexes.forget()

    def close(self) -> None:
        """Drain the built parts (witness queue, access counts), then release files and the store."""
        try:
            for part in reversed(list(self.parts.values())):
                part.close()
            self.units.flush_access()
        finally:
            self.parts.clear()
            self.indexes.close()
            self.catalog.close()
            self.db.close()
