"""A consistent copy of a vault's files: the SQLite store, vectors up to their watermarks, part files.

Under the vault's write lock nothing commits, so the SQLite snapshot (taken with the online
backup API through a second, read-only connection), the part files (KV chunks, witness archives,
ANN index files) and the vector watermarks all describe one moment. Vector rows below a
watermark never change, so the vector files are copied after the lock is released.

A collection subset is a whole snapshot filtered afterwards: units, vectors, index files and
edges of the chosen collections stay; vault-wide parts (kv, sessions, policies, witness) are
dropped with their schema records, so the receiving vault sees them as never used. ``VACUUM``
rewrites the filtered file, so no page of a dropped record survives in the bundle.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmavault.bundle.container import Writer
from sigmavault.bundle.manifest import FileEntry
from sigmavault.errors import NotFound
from sigmavault.store.tree import sqlite_file, sqlite_snapshot
from sigmavault.store.vectors import HEADER_SIZE
from sigmavault.units import integrity

if TYPE_CHECKING:
    from sigmavault.vault import Vault

__all__ = ["DB_NAME", "Snapshot", "take"]

DB_NAME = "vault.db"
_SQLITE_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}
# Tables and schema records of the parts a collection subset keeps (units, graph, ANN indexes).
_KEEP_TABLE_PREFIXES = ("vault_meta", "sv_schema", "collections", "units", "edges", "ann_", "sqlite_")
_KEEP_PARTS = ("vault", "units", "graph", "ann")


@dataclass(slots=True)
class Snapshot:
    """What was copied, and the facts the manifest records about it."""

    files: list[FileEntry]
    fields: dict[str, Any]


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM vault_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _bump_generation(vault: Vault) -> None:
    """Each export of a writable vault publishes a new generation of its lineage."""
    db = vault._db
    with db.write() as conn:
        current = _meta(conn, "generation")
        conn.execute(
            "INSERT INTO vault_meta (key, value) VALUES ('generation', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(int(current or 0) + 1),),
        )


def _flush_parts(vault: Vault) -> None:
    # NOTE: before the lock: the witness writer needs the write lock to drain its queue.
    for part in list(vault._parts.values()):
        flush = getattr(part, "flush", None)
        if callable(flush):
            flush()


def _part_files(root: Path, keep_cids: set[int] | None) -> list[Path]:
    """Regular files of the parts (not SQLite, not vectors, not hidden temp files), sorted."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink())
        if rel_dir == Path("vectors"):
            continue
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            if rel_dir == Path(".") and name in _SQLITE_FILES:
                continue
            if keep_cids is not None:
                # A subset keeps only the ANN index files of its collections (``index/<cid>.<gen>.faiss``).
                if rel_dir != Path("index") or not name.split(".", 1)[0].isdigit():
                    continue
                if int(name.split(".", 1)[0]) not in keep_cids:
                    continue
            out.append(path)
    return out


def take(
    vault: Vault,
    writer: Writer,
    *,
    collections: Sequence[str] | None = None,
    bump: bool = True,
) -> Snapshot:
    """Copy ``vault`` (or the named ``collections`` of it) into ``writer``."""
    db = vault._db
    names = vault.collections()
    if collections is not None:
        unknown = [c for c in collections if c not in names]
        if unknown:
            raise NotFound(f"no collection {unknown[0]!r} to export; have: {', '.join(names) or 'none'}")
    _flush_parts(vault)
    if bump and not db.readonly:
        _bump_generation(vault)
    scratch = writer.scratch_path(DB_NAME)
    files: list[FileEntry] = []
    lock = db.read() if db.readonly else db.write()
    with lock as conn:
        rows = conn.execute("SELECT id, name, dim, watermark, embedder FROM collections ORDER BY id").fetchall()
        keep = [r for r in rows if collections is None or r[1] in collections]
        keep_cids = None if collections is None else {int(r[0]) for r in keep}
        lineage = _meta(conn, "vault_id") or ""
        generation = int(_meta(conn, "generation") or 0)
        encrypted = _meta(conn, "cipher") is not None
        sqlite_snapshot(db.path, scratch)
        for path in _part_files(vault.root, keep_cids):
            files.append(writer.add_file(path.relative_to(vault.root).as_posix(), path))
    detached = 0
    if keep_cids is not None:
        detached = _filter(scratch, sorted(keep_cids), encrypted=encrypted)
    with sqlite_file(scratch) as snap:
        counts = {
            "units": int(snap.execute("SELECT COUNT(*) FROM units").fetchone()[0]),
            "edges": int(snap.execute("SELECT COUNT(*) FROM edges").fetchone()[0]),
        }
    files.append(writer.commit_scratch(DB_NAME, scratch))
    vector_dir = vault._catalog.vector_dir
    for cid, _name, dim, watermark, _emb in keep:
        src = vector_dir / f"{cid}.f32"
        if dim and src.exists():
            files.append(writer.add_file(f"vectors/{cid}.f32", src, HEADER_SIZE + int(watermark) * int(dim) * 4))
    fields = {
        "generation": generation,
        "lineage_id": lineage,
        "created_at": round(time.time(), 6),
        "collections": [r[1] for r in keep],
        "dimensions": {r[1]: r[2] for r in keep},
        "embedders": {r[1]: r[4] for r in keep},
        "scope": "vault" if collections is None else "collections",
        "encrypted": encrypted,
        "counts": {**counts, "collections": len(keep), "detached_parents": detached},
    }
    return Snapshot(files=files, fields=fields)


def _filter(path: Path, keep_cids: list[int], *, encrypted: bool) -> int:
    """Reduce a snapshot to ``keep_cids``; returns how many kept units lost a parent in another collection."""
    marks = ",".join("?" * len(keep_cids))
    with sqlite_file(path) as conn:
        integrity.register(conn)  # NOTE: the units' checksum triggers fire on the parent_id update below
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"DELETE FROM units WHERE collection_id NOT IN ({marks})", keep_cids)
        detached = conn.execute(
            "UPDATE units SET parent_id = NULL WHERE parent_id IS NOT NULL AND parent_id NOT IN (SELECT uid FROM units)"
        ).rowcount
        conn.execute("DELETE FROM edges WHERE src NOT IN (SELECT uid FROM units) OR dst NOT IN (SELECT uid FROM units)")
        views = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")]
        for view in views:
            if not view.startswith(_KEEP_TABLE_PREFIXES):
                conn.execute(f'DROP VIEW IF EXISTS "{view}"')
        # NOTE: virtual tables first: dropping one drops its shadow tables with it.
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY sql LIKE 'CREATE VIRTUAL%' DESC, name"
            )
        ]
        for table in tables:
            if not table.startswith(_KEEP_TABLE_PREFIXES):
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            elif table != "units" and "collection_id" in _columns(conn, table):
                conn.execute(f'DELETE FROM "{table}" WHERE collection_id NOT IN ({marks})', keep_cids)
        conn.execute(f"DELETE FROM collections WHERE id NOT IN ({marks})", keep_cids)
        conn.execute(f"DELETE FROM sv_schema WHERE part NOT IN ({','.join('?' * len(_KEEP_PARTS))})", _KEEP_PARTS)
        if not encrypted:
            # NOTE: units_fts is an external-content index; rebuilding it from the remaining units
            # drops the entries of removed ones. An encrypted vault never indexes text at all.
            conn.execute("INSERT INTO units_fts (units_fts) VALUES ('rebuild')")
        conn.execute("COMMIT")
        conn.execute("VACUUM")
    return int(detached)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}
