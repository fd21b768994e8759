"""Text fields at rest: plain TEXT, or a sealed BLOB when the vault has a cipher.

The SQLite type tells them apart on read (``str`` is plain, ``bytes`` is sealed), so a vault
written before a key was set still reads. ``aad`` names the field's place
(``"{table}/{record_id}/{field}"``): a sealed value copied to another record fails to open.
"""

from __future__ import annotations

from sigmavault.errors import VaultError
from sigmavault.store.sqlite import Database

__all__ = ["open_text", "seal_text"]


def seal_text(db: Database, aad: str, text: str) -> str | bytes:
    """What to store for ``text``: itself, or its sealed bytes under the vault's cipher."""
    if db.cipher is None:
        return text
    return db.cipher.seal(aad.encode(), text.encode())


def open_text(db: Database, aad: str, stored: str | bytes) -> str:
    """The text a stored value holds; sealed values need the vault's cipher."""
    if isinstance(stored, str):
        return stored
    if db.cipher is None:
        raise VaultError(f"{aad} is encrypted; open the vault with its key to read it")
    return db.cipher.open(aad.encode(), bytes(stored)).decode()
