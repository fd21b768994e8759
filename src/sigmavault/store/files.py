"""Whole files: the one durable-write path, content digests, removal, stale temps.

Every durable file write of the vault goes through :func:`publish` (fsync the finished temp
file, rename it into place, fsync the directory): :func:`atomic_write` for files written here
(blob files, witness archives, state files, bundle manifests), :func:`temp_path` + ``publish``
for files another library writes to a path (FAISS indexes, tar bundles).

A library such as FAISS wants a path to write to. :func:`temp_path` hands it a hidden temporary
name in the destination directory; :func:`publish` fsyncs the finished file, renames it into place
and fsyncs the directory (callers do this inside the SQLite transaction that records the file), so
a crash leaves the old file, the new one, or a temp file that :func:`remove_stale_temps` collects.
:func:`file_digest` is the SHA-256 that lets a reader refuse a file changed after it was recorded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from sigmavault.store.ioerrors import io_errors, storage_error
from sigmavault.store.vectors import fsync_dir

__all__ = [
    "atomic_write",
    "file_digest",
    "open_read",
    "process_alive",
    "publish",
    "remove_file",
    "remove_stale_temps",
    "temp_path",
]

_CHUNK = 1 << 22


@contextmanager
def temp_path(path: Path) -> Iterator[Path]:
    """Yield a hidden temporary name beside ``path`` for a writer; it is removed unless published."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def publish(tmp: Path, path: Path) -> None:
    """Make the finished ``tmp`` durable under the name ``path`` (fsync, rename, fsync the directory)."""
    with io_errors(path, "publishing a file"):
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)


def file_digest(path: Path) -> tuple[int, str]:
    """``(size in bytes, SHA-256 hex)`` of a file, read in chunks (bounded memory)."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that appears at ``path`` whole, and durably, only if the block succeeds."""
    # NOTE: a full disk (or any OS refusal) is a StorageError; temp_path removes the half-written temp.
    try:
        with temp_path(path) as tmp:
            with tmp.open("wb") as fh:
                yield fh
            publish(tmp, path)
    except OSError as exc:
        raise storage_error(exc, path, "writing a file") from exc


def open_read(path: Path) -> BinaryIO:
    """Open a file for binary reading (the caller closes it)."""
    return path.open("rb")


def remove_file(path: Path) -> bool:
    """Delete ``path`` if present and make the removal durable; True when something was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def remove_stale_temps(directory: Path) -> int:
    """Remove temp files left by a writer that died (``.name.PID.tmp`` whose PID is gone)."""
    if not directory.is_dir():
        return 0
    removed = 0
    for tmp in directory.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (temp names carry their writer's pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
