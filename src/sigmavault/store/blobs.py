"""Self-checking blob files, written atomically (temp name, fsync, rename, fsync the directory).

Header (56 bytes, little-endian): magic (8 bytes, chosen by the caller), format version (u32),
flags (u32), payload length (u64), SHA-256 of the first 24 header bytes and the payload (32 bytes).
A reader checks all of them before it hands out a byte, so a torn or flipped file (header
included) is reported, never used.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from sigmavault.errors import Corrupted
from sigmavault.store.files import atomic_write

__all__ = ["BLOB_HEADER", "read_blob", "write_blob"]

BLOB_HEADER = struct.Struct("<8sIIQ32s")
_FIELDS = struct.Struct("<8sIIQ")  # the header fields the digest covers


def write_blob(path: Path, payload: bytes, *, magic: bytes, version: int = 1, flags: int = 0) -> int:
    """Durably write ``payload`` at ``path``; returns the bytes written including the header."""
    if len(magic) != 8:
        raise ValueError("blob magic must be exactly 8 bytes")
    header = BLOB_HEADER.pack(magic, version, flags, len(payload), _digest(magic, version, flags, payload))
    with atomic_write(path) as fh:
        fh.write(header)
        fh.write(payload)
    return BLOB_HEADER.size + len(payload)


def _digest(magic: bytes, version: int, flags: int, payload: bytes) -> bytes:
    h = hashlib.sha256(_FIELDS.pack(magic, version, flags, len(payload)))
    h.update(payload)
    return h.digest()


def read_blob(path: Path, *, magic: bytes, max_version: int = 1) -> tuple[int, int, bytes]:
    """Return ``(version, flags, payload)``; raises :class:`Corrupted` on any mismatch."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Corrupted(f"{path}: blob file is missing") from None
    except OSError as exc:
        raise Corrupted(f"{path}: blob file cannot be read ({exc.strerror or exc})") from None
    if len(data) < BLOB_HEADER.size:
        raise Corrupted(f"{path}: blob file is shorter than its header")
    got_magic, version, flags, length, digest = BLOB_HEADER.unpack_from(data)
    if got_magic != magic:
        raise Corrupted(f"{path}: wrong magic {got_magic!r}, expected {magic!r}")
    if version > max_version:
        raise Corrupted(f"{path}: format version {version} is newer than this sigmavault reads")
    if version < 1:
        raise Corrupted(f"{path}: format version {version} is invalid")
    payload = data[BLOB_HEADER.size :]
    if len(payload) != length:
        raise Corrupted(f"{path}: payload is {len(payload)} bytes, header says {length}")
    if _digest(got_magic, version, flags, payload) != digest:
        raise Corrupted(f"{path}: checksum mismatch")
    return version, flags, payload
