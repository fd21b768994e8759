"""The chunk format: one chunk's token ids and encoded KV, self-describing and checked on read.

Payload layout (inside a :func:`sigmavault.store.write_blob` file, magic ``SVKVCHNK``)::

    u32 LE   length of the JSON header
    JSON     {"codec", "dtype", "shape": [L, H, T, D], "start", "parent", "fp", "sections": [n, ...]}
             (+ "tokens": N when a pruned chunk holds T < N KV slots for N token ids)
    pad      zero bytes to a multiple of 16
    N x u32  the chunk's token ids (N = T unless pruned), little-endian, then padding to 16
    n bytes  each codec section in turn, each padded to 16 (aligned numpy views on read)

The blob header carries magic, version and a SHA-256 of the payload. When the vault has a cipher
the whole payload is sealed (blob flag 1), because token ids are user content.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault.errors import Corrupted, VaultError
from sigmavault.kv.arrays import STORAGE, KVArrays
from sigmavault.kv.codecs import Codec, codec_from_spec
from sigmavault.kv.keys import TokenIds
from sigmavault.store import Cipher, read_blob, write_blob

__all__ = [
    "MAGIC",
    "Chunk",
    "decode_chunk",
    "encode_chunk",
    "open_payload",
    "read_chunk",
    "seal_payload",
    "write_chunk",
]

MAGIC = b"SVKVCHNK"
VERSION = 1
SEALED = 1  # blob flag: the payload is sealed by the vault's cipher
_LEN = struct.Struct("<I")
_ALIGN = 16


@dataclass(frozen=True, slots=True)
class Chunk:
    """A decoded chunk: where it sits in its prefix, its tokens and its KV."""

    start: int
    parent: bytes
    fingerprint: bytes
    codec: str
    tokens: TokenIds
    kv: KVArrays


def _pad(n: int) -> int:
    return -n % _ALIGN


def encode_chunk(
    codec: Codec,
    kv: KVArrays,
    *,
    tokens: TokenIds,
    start: int,
    parent: bytes,
    fingerprint: bytes,
    pruned: bool = False,
) -> bytes:
    """The payload bytes of one chunk (``kv`` must cover exactly ``tokens``).

    ``pruned``: ``kv`` holds fewer slots than ``tokens`` (a pruned prefix, see :mod:`.prune`); the header then
    records the token count apart from the KV shape.
    """
    if kv.tokens != len(tokens) and not (pruned and kv.tokens < len(tokens)):
        raise ValueError(f"chunk KV covers {kv.tokens} tokens but {len(tokens)} token ids were given")
    sections = codec.encode(kv)
    doc: dict[str, Any] = {
        "codec": codec.spec,
        "dtype": kv.dtype,
        "shape": list(kv.keys.shape),
        "start": start,
        "parent": parent.hex(),
        "fp": fingerprint.hex(),
        "sections": [len(s) for s in sections],
    }
    if kv.tokens != len(tokens):
        doc["tokens"] = len(tokens)
    header = json.dumps(doc, separators=(",", ":")).encode()
    parts = [_LEN.pack(len(header)), header, bytes(_pad(_LEN.size + len(header)))]
    tok = np.ascontiguousarray(tokens, dtype="<u4").tobytes()
    parts += [tok, bytes(_pad(len(tok)))]
    for section in sections:
        parts += [section, bytes(_pad(len(section)))]
    return b"".join(parts)


def decode_chunk(payload: bytes) -> Chunk:
    """Parse a payload; any inconsistency raises :class:`Corrupted` (never another exception)."""
    try:
        return _decode(memoryview(payload))
    except Corrupted:
        raise
    except Exception as exc:  # NOTE: a damaged payload must never escape as a numpy/JSON traceback.
        raise Corrupted(f"KV chunk payload is malformed: {type(exc).__name__}: {exc}") from exc


def _decode(view: memoryview) -> Chunk:
    if len(view) < _LEN.size:
        raise Corrupted("KV chunk payload is shorter than its header length field")
    (hlen,) = _LEN.unpack_from(view)
    if hlen > len(view) - _LEN.size:
        raise Corrupted(f"KV chunk header claims {hlen} bytes, payload has {len(view)}")
    header: dict[str, Any] = json.loads(bytes(view[_LEN.size : _LEN.size + hlen]))
    shape = tuple(int(x) for x in header["shape"])
    dtype = str(header["dtype"])
    if len(shape) != 4 or min(shape) < 0 or dtype not in STORAGE:
        raise Corrupted(f"KV chunk header has shape {shape} and dtype {dtype!r}")
    pos = _LEN.size + hlen
    pos += _pad(pos)
    n_tokens = int(header.get("tokens", shape[2]))
    if n_tokens < shape[2]:
        raise Corrupted(f"KV chunk header has {shape[2]} KV slots for {n_tokens} tokens")
    tokens = np.frombuffer(view[pos : pos + 4 * n_tokens], dtype="<u4").astype(np.uint32)
    if len(tokens) != n_tokens:
        raise Corrupted("KV chunk payload ends inside its token ids")
    pos += 4 * n_tokens
    pos += _pad(pos)
    sections = []
    for size in header["sections"]:
        size = int(size)
        if size < 0 or pos + size > len(view):
            raise Corrupted("KV chunk payload ends inside a codec section")
        sections.append(view[pos : pos + size])
        pos += size + _pad(size)
    if pos != len(view):
        raise Corrupted(f"KV chunk payload has {len(view) - pos} stray bytes after its sections")
    codec = codec_from_spec(str(header["codec"]))
    kv = codec.decode((shape[0], shape[1], shape[2], shape[3]), dtype, sections)
    return Chunk(
        start=int(header["start"]),
        parent=bytes.fromhex(header["parent"]),
        fingerprint=bytes.fromhex(header["fp"]),
        codec=codec.spec,
        tokens=tokens,
        kv=kv,
    )


def _aad(key: bytes) -> bytes:
    return f"kv_chunks/{key.hex()}/payload".encode()


def write_chunk(path: Path, key: bytes, payload: bytes, cipher: Cipher | None) -> int:
    """Durably write a chunk file; returns its size in bytes."""
    if cipher is None:
        return write_blob(path, payload, magic=MAGIC, version=VERSION)
    return write_blob(path, cipher.seal(_aad(key), payload), magic=MAGIC, version=VERSION, flags=SEALED)


def read_chunk(path: Path, key: bytes, cipher: Cipher | None) -> bytes:
    """The checked (and opened) payload; :class:`Corrupted` when the file fails its checksum."""
    _, flags, data = read_blob(path, magic=MAGIC, max_version=VERSION)
    if not flags & SEALED:
        return data
    if cipher is None:
        raise VaultError(f"{path}: this KV chunk is encrypted; open the vault with its key")
    return cipher.open(_aad(key), data)


def seal_payload(key: bytes, payload: bytes, cipher: Cipher | None) -> bytes:
    """The payload as it leaves the vault for a shared tier: sealed when the vault has a cipher."""
    return payload if cipher is None else cipher.seal(_aad(key), payload)


def open_payload(key: bytes, data: bytes, sealed: bool, cipher: Cipher | None) -> bytes:
    """Inverse of :func:`seal_payload`; :class:`VaultError` when a sealed payload meets a vault without the key."""
    if not sealed:
        return data
    if cipher is None:
        raise VaultError("a shared KV chunk is encrypted; open the vault with its key")
    return cipher.open(_aad(key), data)
