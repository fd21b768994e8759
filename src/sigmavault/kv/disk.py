"""The disk tier of the KV store: chunk files under ``<vault>/kv/`` and their rows in ``kv_chunks``.

``KVStore`` (the API) and the housekeeping in :mod:`.maintenance` both work through this tier's
public methods, so neither reaches into the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sigmavault.kv.index import ChunkRow, KVIndex
from sigmavault.kv.tiers import RamTier
from sigmavault.store import Cipher, Database
from sigmavault.store.blobdir import list_blobs, remove_blob

__all__ = ["SUFFIX", "DiskTier"]

SUFFIX = ".kvc"


class DiskTier:
    """Where chunk ``key`` lives on disk, and the removal of chunks (row first, then file and RAM copy)."""

    def __init__(self, db: Database, root: Path, index: KVIndex, ram: RamTier) -> None:
        self.db = db
        self.index = index
        self.ram = ram
        self.dir = root / "kv"

    @property
    def cipher(self) -> Cipher | None:
        return self.db.cipher

    def path(self, key: bytes) -> Path:
        name = key.hex()
        return self.dir / name[:2] / f"{name}{SUFFIX}"

    def files(self) -> list[Path]:
        """Every chunk file and temp file on disk, whether or not a row names it."""
        return list_blobs(self.dir, SUFFIX) + list_blobs(self.dir, ".tmp")

    def forget(self, rows: Iterable[ChunkRow]) -> None:
        """After their rows are gone: drop files and RAM copies (a crash here leaves orphans)."""
        for row in rows:
            self.ram.discard(row.key)
            remove_blob(self.path(row.key))

    def remove(self, rows: list[ChunkRow]) -> None:
        """Delete rows (one transaction), then their files and RAM copies."""
        if not rows:
            return
        with self.db.write():
            self.index.delete(r.key for r in rows)
        self.forget(rows)
