"""The exceptions sigmavault raises; every one derives from :class:`VaultError`.

::

    VaultError
    ├── InvalidInput            (also a ValueError)
    │   ├── DimensionMismatch
    │   ├── InvalidFilter
    │   └── EmptyText
    ├── NotFound                (also a KeyError)
    ├── Corrupted
    ├── VaultLocked
    ├── VaultClosed
    ├── ReadOnly
    ├── EmbedderUnavailable
    ├── BundleInvalid
    ├── EncryptionError
    ├── ShardUnavailable
    └── StorageError            (an operating-system I/O error while writing or reading files)
        └── StorageFull         (the disk or quota is full: errno ENOSPC / EDQUOT)

Each message says what was wrong and, where there is one, what to do about it. Every class carries a
stable string ``code`` (``"not_found"``, ``"invalid_input"`` …) that faces put in their JSON errors;
``to_dict()`` gives ``{"code": ..., "message": ...}``.
"""

from __future__ import annotations

__all__ = [
    "BundleInvalid",
    "Corrupted",
    "DimensionMismatch",
    "EmbedderUnavailable",
    "EmptyText",
    "EncryptionError",
    "InvalidFilter",
    "InvalidInput",
    "NotFound",
    "ReadOnly",
    "ShardUnavailable",
    "StorageError",
    "StorageFull",
    "VaultClosed",
    "VaultError",
    "VaultLocked",
]


class VaultError(Exception):
    """Base class of every error sigmavault raises on purpose."""

    code = "vault_error"

    def to_dict(self) -> dict[str, str]:
        """The error as faces report it: its stable ``code`` and its message."""
        return {"code": self.code, "message": str(self)}


class InvalidInput(VaultError, ValueError):
    """An argument was malformed; nothing was written."""

    code = "invalid_input"


class DimensionMismatch(InvalidInput):
    """A vector's length differs from the collection's dimension."""

    code = "dimension_mismatch"


class InvalidFilter(InvalidInput):
    """A `where` clause used an unknown operator, key or value type."""

    code = "invalid_filter"


class EmptyText(InvalidInput):
    """A unit's text was empty or only whitespace where text is required."""

    code = "empty_text"


class NotFound(VaultError, KeyError):
    """No record has the requested id."""

    code = "not_found"

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else "not found"


class Corrupted(VaultError):
    """Stored data failed a consistency or checksum check."""

    code = "corrupted"


class VaultLocked(VaultError):
    """Another process held the write lock for longer than the busy timeout."""

    code = "vault_locked"


class VaultClosed(VaultError):
    """The vault (or a collection of it) was used after `close()`."""

    code = "vault_closed"


class ReadOnly(VaultError):
    """A write was attempted on a vault opened read-only (`frozen=True`)."""

    code = "read_only"


class EmbedderUnavailable(VaultError):
    """Text needs an embedder, and none is configured or installable."""

    code = "embedder_unavailable"


class BundleInvalid(VaultError):
    """A bundle failed verification, or cannot be imported safely."""

    code = "bundle_invalid"


class EncryptionError(VaultError):
    """An encrypted vault got no key or the wrong key, or encryption is unavailable."""

    code = "encryption_error"


class StorageError(VaultError):
    """The operating system refused an I/O operation on the vault's files (permissions, I/O error).

    The write that raised it did not happen; what was acknowledged before is intact.
    """

    code = "storage_error"


class StorageFull(StorageError):
    """The disk (or the user's quota) is full; free space and retry: nothing acknowledged was lost."""

    code = "storage_full"


class ShardUnavailable(VaultError):
    """A shard of a sharded collection failed or did not answer in time; ``shards`` names them."""

    code = "shard_unavailable"

    def __init__(self, message: str, shards: list[str] | None = None) -> None:
        super().__init__(message)
        self.shards = list(shards or [])

    def __reduce__(self) -> tuple[type[ShardUnavailable], tuple[str, list[str]]]:
        return (type(self), (str(self), self.shards))
