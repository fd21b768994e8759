"""Prefix keys: a model fingerprint and the chained SHA-256 key of every chunk of token ids.

A chunk's key hashes the previous chunk's key, the model fingerprint (which folds in the codec)
and the chunk's token ids as little-endian ``uint32``. The key of chunk *i* therefore names the
whole prefix up to its end, and it is the same in every process and on every machine (never
Python's ``hash()``, which is salted per process).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sigmavault import validate
from sigmavault.errors import InvalidInput
from sigmavault.kv.fingerprint import Fingerprint

__all__ = [
    "DOMAIN",
    "ROOT",
    "Fingerprint",
    "TokenIds",
    "chain",
    "chunk_key",
    "chunk_spans",
    "format_ref",
    "leads",
    "parse_ref",
    "tokens_of",
]

TokenIds = npt.NDArray[np.uint32]
DOMAIN = b"sigmavault.kv/1\x00"  # NOTE: versions the key derivation; bump it and every key changes.
ROOT = bytes(32)  # the "previous key" of a prefix's first chunk
_REF = re.compile(r"^([0-9a-f]{64}):([0-9]+)$")


def tokens_of(input_ids: Any) -> TokenIds:
    """Token ids as a 1-D ``uint32`` array, from a list, numpy array or a ``[1, T]`` tensor."""
    if hasattr(input_ids, "detach"):  # a torch tensor; no torch import needed to read it
        input_ids = input_ids.detach().to("cpu").numpy()
    try:
        arr = np.asarray(input_ids)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"input_ids must be a sequence of integer token ids: {exc}") from None
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise InvalidInput(f"input_ids must be 1-D or of shape [1, T] (batch of one), got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint32)
    if arr.dtype.kind not in "iu":
        raise InvalidInput(f"input_ids must be integers, got dtype {arr.dtype}")
    if int(arr.min()) < 0 or int(arr.max()) > 0xFFFFFFFF:
        raise InvalidInput("token ids must lie in [0, 2**32)")
    return arr.astype(np.uint32)


def chunk_key(previous: bytes, fingerprint_digest: bytes, tokens: TokenIds) -> bytes:
    """SHA-256 over the domain tag, the previous key, the fingerprint and the tokens (``<u4``)."""
    h = hashlib.sha256(DOMAIN)
    h.update(previous)
    h.update(fingerprint_digest)
    h.update(np.ascontiguousarray(tokens, dtype="<u4").tobytes())
    return h.digest()


def leads(fingerprint_digest: bytes, tokens: TokenIds, *, width: int = 8) -> list[int]:
    """Signed 64-bit probes of the first 1..``width`` tokens: ``leads(...)[j - 1]`` for ``j`` tokens.

    A stored chunk records the probe of its first ``min(width, len)`` tokens, so finding which
    short chunks may continue a prefix is an indexed lookup instead of hashing every candidate.
    """
    out = []
    for j in range(1, min(width, len(tokens)) + 1):
        h = hashlib.sha256(fingerprint_digest)
        h.update(np.ascontiguousarray(tokens[:j], dtype="<u4").tobytes())
        out.append(int.from_bytes(h.digest()[:8], "little", signed=True))
    return out


def chunk_spans(n_tokens: int, chunk_tokens: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each chunk of a prefix of ``n_tokens``; the last one may be short."""
    for start in range(0, n_tokens, chunk_tokens):
        yield start, min(n_tokens, start + chunk_tokens)


def chain(
    fingerprint_digest: bytes, tokens: TokenIds, spans: Sequence[tuple[int, int]], *, parent: bytes = ROOT
) -> list[bytes]:
    """The key of each span, chained from ``parent`` (the root unless the spans continue a stored chunk)."""
    keys: list[bytes] = []
    previous = parent
    for start, end in spans:
        previous = chunk_key(previous, fingerprint_digest, tokens[start:end])
        keys.append(previous)
    return keys


def format_ref(last_key: bytes, n_tokens: int) -> str:
    """A ``kv_ref``: the hex key of a prefix's last chunk, a colon, and the prefix length in tokens."""
    return f"{last_key.hex()}:{n_tokens}"


def parse_ref(ref: str) -> tuple[bytes, int]:
    """``(last_key, n_tokens)`` of a ``kv_ref``; raises :class:`InvalidInput` when malformed."""
    match = _REF.match(ref) if isinstance(ref, str) else None
    if match is None:
        raise InvalidInput(
            f"{validate.show(ref)} is not a kv_ref; a kv_ref is '<64 hex digits>:<tokens>' "
            "as returned by vault.kv.save()"
        )
    return bytes.fromhex(match.group(1)), int(match.group(2))
