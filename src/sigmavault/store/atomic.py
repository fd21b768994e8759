"""Whole files written atomically (temp name, fsync, rename, fsync the directory), and read back.

For derived files in formats other tools read (gzip JSONL archives, exports) where the blob
header of blobs.py would get in the way.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from sigmavault.store.vectors import fsync_dir

__all__ = ["atomic_write", "file_sha256", "open_read", "remove_file"]


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that appears at ``path`` whole, and durably, only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def open_read(path: Path) -> BinaryIO:
    """Open a file for reading (the caller closes it)."""
    return path.open("rb")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def remove_file(path: Path) -> bool:
    """Delete ``path`` if present and make the removal durable; True when something was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True
