"""Housekeeping for a directory of blob files: list them, read their age, remove one.

Parts that keep many blob files (KV chunks) use these for eviction and garbage collection.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["blob_age", "list_blobs", "remove_blob"]


def remove_blob(path: Path) -> bool:
    """Unlink ``path`` if it exists; returns whether it did.

    NOTE: no directory fsync: callers delete the record first, so a removal lost in a crash
    leaves only an orphan file for garbage collection, never a dangling record.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def list_blobs(directory: Path, suffix: str) -> list[Path]:
    """Files under ``directory`` (recursively) whose names end in ``suffix``, sorted."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob(f"*{suffix}") if p.is_file())


def blob_age(path: Path) -> float:
    """Seconds since ``path`` was last modified (0 if it vanished meanwhile)."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return 0.0
