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
    └── EncryptionError

Each message says what was wrong and, where there is one, what to do about it.
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
    "VaultClosed",
    "VaultError",
    "VaultLocked",
]


class VaultError(Exception):
    """Base class of every error sigmavault raises on purpose."""


class InvalidInput(VaultError, ValueError):
    """An argument was malformed; nothing was written."""


class DimensionMismatch(InvalidInput):
    """A vector's length differs from the collection's dimension."""


class InvalidFilter(InvalidInput):
    """A `where` clause used an unknown operator, key or value type."""


class EmptyText(InvalidInput):
    """A unit's text was empty or only whitespace where text is required."""


class NotFound(VaultError, KeyError):
    """No record has the requested id."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else "not found"


class Corrupted(VaultError):
    """Stored data failed a consistency or checksum check."""


class VaultLocked(VaultError):
    """Another process held the write lock for longer than the busy timeout."""


class VaultClosed(VaultError):
    """The vault (or a collection of it) was used after `close()`."""


class ReadOnly(VaultError):
    """A write was attempted on a vault opened read-only (`frozen=True`)."""


class EmbedderUnavailable(VaultError):
    """Text needs an embedder, and none is configured or installable."""


class BundleInvalid(VaultError):
    """A bundle failed verification, or cannot be imported safely."""


class EncryptionError(VaultError):
    """An encrypted vault got no key or the wrong key, or encryption is unavailable."""
