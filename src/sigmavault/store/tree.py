"""Whole-directory work for bundles and migrations: hashed copies, SQLite snapshots, atomic swaps.

A vault directory is replaced only by renaming a complete sibling directory into its place
(:func:`swap_in`), so a crash or a failed import leaves either the old tree or the new one.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import os
import secrets
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from sigmavault.errors import Corrupted, VaultError
from sigmavault.store.files import process_alive
from sigmavault.store.vectors import fsync_dir

__all__ = [
    "CHUNK",
    "aside",
    "copy_hashed",
    "fsync_file",
    "remove_stale",
    "remove_tree",
    "sqlite_file",
    "sqlite_snapshot",
    "swap_in",
]

CHUNK = 1 << 20


def copy_hashed(
    src: BinaryIO,
    dst: BinaryIO | None,
    *,
    length: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Copy ``src`` (``length`` bytes, or to its end) into ``dst``, hashing on the way.

    Returns ``(bytes, sha256 hex)``; with ``dst=None`` it only hashes. A source shorter than
    ``length`` raises :class:`Corrupted` (a file truncated under us).
    """
    h = hashlib.sha256()
    done = 0
    while length is None or done < length:
        want = CHUNK if length is None else min(CHUNK, length - done)
        block = src.read(want)
        if not block:
            break
        h.update(block)
        if dst is not None:
            dst.write(block)
        done += len(block)
        if progress is not None:
            progress(len(block))
    if length is not None and done != length:
        raise Corrupted(f"expected {length} bytes but the source ended after {done}")
    return done, h.hexdigest()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def aside(dest: Path, tag: str) -> Path:
    """A fresh hidden sibling name for ``dest`` (same filesystem, so a rename is atomic).

    The name carries this process's id, so :func:`remove_stale` can collect what a killed
    process left behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest)
    return dest.parent / f".{dest.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def remove_stale(dest: Path) -> int:
    """Delete hidden siblings of ``dest`` made by :func:`aside` in processes that no longer run."""
    removed = 0
    for path in dest.parent.glob(f".{glob.escape(dest.name)}.*-*-*"):
        pid = path.name.rsplit("-", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            remove_tree(path)
            removed += 1
    return removed


def remove_tree(path: Path) -> None:
    """Delete a file or directory tree if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # NOTE: old kernels or file systems without exchange: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, dest: Path, *, keep: Path | None = None) -> None:
    """Rename the finished tree ``new`` to ``dest``; an existing ``dest`` moves to ``keep`` (or is deleted).

    On Linux the two trees are exchanged atomically, so ``dest`` is never absent, even in a crash.
    Elsewhere the old tree is renamed away first, leaving a short window without ``dest``; the old
    tree is never deleted before the new one is in place.
    """
    if (dest.exists() and not dest.is_symlink()) and _exchange(new, dest):
        fsync_dir(dest.parent)
        if keep is not None:
            remove_tree(keep)
            os.rename(new, keep)
            fsync_dir(keep.parent)
        else:
            remove_tree(new)
        return
    old: Path | None = None
    if dest.exists() or dest.is_symlink():
        old = keep if keep is not None else aside(dest, "old")
        remove_tree(old)
        os.rename(dest, old)
    try:
        os.rename(new, dest)
    except OSError:
        if old is not None:
            os.rename(old, dest)
        raise
    fsync_dir(dest.parent)
    if old is not None and keep is None:
        remove_tree(old)


def sqlite_snapshot(source: Path, target: Path) -> None:
    """Copy the committed state of the SQLite file ``source`` to a standalone file ``target``.

    Uses a separate read-only connection and the online backup API: callers hold the vault's
    write lock so that nothing commits mid-copy. The copy is switched to a rollback journal, so
    it is one self-contained file (no -wal beside it).
    """
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(str(target))
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise VaultError(f"{source}: cannot snapshot the SQLite store: {exc}") from exc
    fsync_file(target)


@contextmanager
def sqlite_file(path: Path) -> Iterator[sqlite3.Connection]:
    """A private connection to a standalone SQLite file (a snapshot being filtered or stamped)."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
    except sqlite3.Error as exc:
        raise Corrupted(f"{path}: not a readable SQLite database ({exc})") from exc
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        yield conn
    except sqlite3.DatabaseError as exc:
        raise Corrupted(f"{path}: {exc}") from exc
    finally:
        conn.close()
    fsync_file(path)
