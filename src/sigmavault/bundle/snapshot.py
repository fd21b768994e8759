"""A consistent copy of a vault's files: the SQLite store, vectors up to their watermarks, part files.

Under the vault's write lock nothing commits, so the SQLite snapshot (taken with the online
backup API through a second, read-only connection), the part files (KV chunks, witness archives,
ANN index files) and the vector watermarks all describe one moment. Vector rows below a
watermark never change, so the vector files are copied after the lock is released.

A collection subset is a whole snapshot filtered afterwards: each per-collection part of the
registry (units, graph, ANN indexes) reduces its own tables to the chosen collections, and the
vault-wide parts (kv, sessions, policies, witness) are dropped with their schema records, so the
receiving vault sees them as never used (:func:`sigmavault.parts.subset_snapshot`). ``VACUUM``
rewrites the filtered file, so no page of a dropped record survives in the bundle.

This is a tool above the facade: it works through ``vault.context`` and the parts registry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmavault.bundle.container import Writer
from sigmavault.bundle.manifest import FileEntry
from sigmavault.context import read_meta, write_meta
from sigmavault.errors import NotFound
from sigmavault.parts import snapshot_counts, subset_snapshot
from sigmavault.store.tree import sqlite_file, sqlite_snapshot
from sigmavault.store.vectors import HEADER_SIZE

if TYPE_CHECKING:
    from sigmavault.vault import Vault

__all__ = ["DB_NAME", "Snapshot", "take"]

DB_NAME = "vault.db"
_SQLITE_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}


@dataclass(slots=True)
class Snapshot:
    """What was copied, and the facts the manifest records about it."""

    files: list[FileEntry]
    fields: dict[str, Any]


def _bump_generation(vault: Vault) -> None:
    """Each export of a writable vault publishes a new generation of its lineage."""
    with vault.context.db.write() as conn:
        write_meta(conn, "generation", str(int(read_meta(conn, "generation") or 0) + 1))


def _flush_parts(vault: Vault) -> None:
    # NOTE: before the lock: the witness writer needs the write lock to drain its queue.
    for part in list(vault.context.parts.values()):
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
    db = vault.context.db
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
        keep = [c for c in vault.context.catalog.infos() if collections is None or c.name in collections]
        keep_cids = None if collections is None else {c.id for c in keep}
        lineage = read_meta(conn, "vault_id") or ""
        generation = int(read_meta(conn, "generation") or 0)
        encrypted = read_meta(conn, "cipher") is not None
        sqlite_snapshot(db.path, scratch)
        for path in _part_files(vault.root, keep_cids):
            files.append(writer.add_file(path.relative_to(vault.root).as_posix(), path))
    detached = 0
    if keep_cids is not None:
        detached = _filter(scratch, sorted(keep_cids), encrypted=encrypted)
    with sqlite_file(scratch) as snap:
        counts = snapshot_counts(snap)
    files.append(writer.commit_scratch(DB_NAME, scratch))
    vector_dir = vault.context.catalog.vector_dir
    for info in keep:
        src = vector_dir / f"{info.id}.f32"
        if info.dim and src.exists():
            files.append(writer.add_file(f"vectors/{info.id}.f32", src, HEADER_SIZE + info.watermark * info.dim * 4))
    fields = {
        "generation": generation,
        "lineage_id": lineage,
        "created_at": round(time.time(), 6),
        "collections": [c.name for c in keep],
        "dimensions": {c.name: c.dim for c in keep},
        "embedders": {c.name: c.embedder for c in keep},
        "scope": "vault" if collections is None else "collections",
        "encrypted": encrypted,
        "counts": {**counts, "collections": len(keep), "detached_parents": detached},
    }
    return Snapshot(files=files, fields=fields)


def _filter(path: Path, keep_cids: list[int], *, encrypted: bool) -> int:
    """Reduce a snapshot to ``keep_cids``; returns how many kept units lost a parent in another collection."""
    with sqlite_file(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        detached = subset_snapshot(conn, keep_cids, encrypted=encrypted)
        conn.execute("COMMIT")
        conn.execute("VACUUM")
    return detached
