"""Operating-system I/O errors turned into the vault's own: :class:`StorageFull` and :class:`StorageError`.

Every file the vault writes goes through ``store/``; a bare ``OSError`` from there (a full disk,
a read-only mount, an I/O error) reaches callers as one of these two, with the path and what to do.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sigmavault.errors import StorageError, StorageFull

__all__ = ["io_errors", "storage_error"]

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def storage_error(exc: OSError, path: Path | str, doing: str) -> StorageError:
    """The VaultError for ``exc`` raised while ``doing`` something to ``path``."""
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL:
        return StorageFull(
            f"{path}: no space left while {doing} ({reason}); free disk space and retry: "
            "nothing already acknowledged was lost"
        )
    return StorageError(f"{path}: the operating system refused {doing} ({reason}); check the path and its permissions")


@contextmanager
def io_errors(path: Path | str, doing: str) -> Iterator[None]:
    """Translate an ``OSError`` raised in the block (see :func:`storage_error`)."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, path, doing) from exc
