"""How an entry is stored and read back: rows, the sealed payload, embeddings and digests.

A *stored row* is what the hot store (and an archive file) holds for one entry, in one tuple:
``seq`` and the 14 other scalar columns of ``witness_entries`` (with the model's name in place
of its id), then the payload (JSON text, or sealed bytes when the vault has a key) and the two
embedding blobs. An entry's chain digest covers all of it but ``seq`` (its place in the batch
stands for that), so a check can recompute it from the tables alone.

NOTE: ``prepare`` runs on the writer thread. Running it inside ``record()`` instead was measured
(A/B, same run): it doubled the caller's p50 and raised its p99 3-4x, for no gain in throughput.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np

from sigmavault.errors import Corrupted, VaultError
from sigmavault.store import Cipher
from sigmavault.witness.entry import Pending, WitnessEntry

__all__ = ["SELECT_STORED", "Prepared", "StoredRow", "decode", "digest", "prepare"]

StoredRow = tuple[Any, ...]
# A stored row without seq, plus its digest (see prepare).
Prepared = tuple[Any, ...]

SELECT_STORED = (
    "SELECT e.seq, e.request_id, e.session_id, e.ts_ms, m.name, e.quality, e.embedding_ms, e.retrieval_ms, "
    "e.routing_ms, e.generation_ms, e.total_ms, e.prompt_tokens, e.completion_tokens, e.error_type, e.failed, "
    "b.payload, b.query_vec, b.response_vec "
    "FROM witness_entries e LEFT JOIN witness_models m ON m.id = e.model_id LEFT JOIN witness_blobs b ON b.seq = e.seq"
)
_NONE = b"\xff" * 8
# mask of NULL columns, then ts_ms, quality, 5 latencies, 2 token counts, failed
_NUMBERS = struct.Struct("<Hqddddddqqq")
# NOTE: a prebuilt encoder: json.dumps with options builds a new encoder on every call.
_PAYLOAD = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_VEC = np.dtype("<f4")


def prepare(item: Pending, cipher: Cipher | None) -> Prepared:
    """A validated entry (see entry.normalize) as a stored row without ``seq``, then its digest."""
    (rid, sid, ts, model, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct,
     ctx, qv, rv, routing, etype, emsg) = item  # fmt: skip
    doc: dict[str, Any] = {}
    if ctx:
        doc["c"] = list(ctx)
    if routing is not None:
        doc["r"] = routing
    if emsg is not None:
        doc["m"] = emsg
    payload: str | bytes | None = None
    if doc:
        payload = _PAYLOAD.encode(doc)
        if cipher is not None:
            payload = cipher.seal(_aad(rid), payload.encode())
    row = (
        rid, sid, ts, model, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, etype,
        int(etype is not None or emsg is not None),
        payload,
        None if qv is None else qv.astype(_VEC, copy=False).tobytes(),
        None if rv is None else rv.astype(_VEC, copy=False).tobytes(),
    )  # fmt: skip
    return (*row, _digest(row))


def digest(row: StoredRow) -> bytes:
    """The chain digest of a stored row (``seq`` excluded). Raises TypeError on a mistyped column."""
    return _digest(row[1:])


def _digest(row: tuple[Any, ...]) -> bytes:
    """SHA-256 over canonical bytes: a bit mask of the NULL columns; the 9 numeric columns packed
    little-endian (int64 or float64, exact); the 4 text columns and each blob, length-prefixed
    (a text payload tagged ``s``)."""
    (rid, sid, ts, model, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, etype, failed) = row[:14]
    nums = (ts, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, failed)
    texts = (rid, sid, model, etype)
    mask = 0
    bit = 1
    for v in (*nums, *texts):
        if v is None:
            mask |= bit
        bit <<= 1
    try:
        packed = _NUMBERS.pack(mask, *(0 if v is None else v for v in nums))
    except struct.error as exc:
        raise TypeError(f"a numeric witness column holds a value of another type ({exc})") from None
    h = hashlib.sha256(packed)
    for text in texts:
        if text is not None and not isinstance(text, str):
            raise TypeError(f"a text witness column holds a {type(text).__name__}")
        raw = b"" if text is None else text.encode()
        h.update(len(raw).to_bytes(4, "little"))
        h.update(raw)
    for blob in row[14:17]:
        if blob is None:
            h.update(_NONE)
            continue
        if isinstance(blob, str):
            blob = blob.encode()
            h.update(b"s")
        h.update(len(blob).to_bytes(8, "little"))
        h.update(blob)
    return h.digest()


def decode(row: StoredRow, cipher: Cipher | None, *, embeddings: bool = True) -> WitnessEntry:
    """A :class:`WitnessEntry` from a stored row (opening the payload with ``cipher``)."""
    ctx: tuple[str, ...] = ()
    routing = None
    emsg = None
    payload = row[15]
    if payload is not None:
        doc = _payload(str(row[1]), payload, cipher)
        ctx = tuple(doc.get("c", ()))
        routing = doc.get("r")
        emsg = doc.get("m")
    return WitnessEntry(
        seq=row[0], request_id=row[1], session_id=row[2], timestamp=row[3], model=row[4], quality=row[5],
        embedding_ms=row[6], retrieval_ms=row[7], routing_ms=row[8], generation_ms=row[9], total_ms=row[10],
        prompt_tokens=row[11], completion_tokens=row[12], context_ids=ctx,
        query_embedding=_vector(row[16]) if embeddings else None,
        response_embedding=_vector(row[17]) if embeddings else None,
        routing=routing, error_type=row[13], error_message=emsg,
    )  # fmt: skip


def _aad(request_id: str) -> bytes:
    return f"witness_blobs/{request_id}/payload".encode()


def _payload(rid: str, stored: str | bytes, cipher: Cipher | None) -> dict[str, Any]:
    # NOTE: plain payloads are TEXT and sealed ones BLOB, so entries written before the vault
    # got a key still read.
    if isinstance(stored, bytes) and cipher is None:
        raise VaultError(f"witness entry {rid} is encrypted; open the vault with its key to read it")
    try:
        raw = stored if isinstance(stored, str) or cipher is None else cipher.open(_aad(rid), bytes(stored))
        doc = json.loads(raw)
    except VaultError:
        raise
    except Exception as exc:
        raise Corrupted(f"witness entry {rid}: payload cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict):
        raise Corrupted(f"witness entry {rid}: payload is not a JSON object")
    return doc


def _vector(blob: bytes | None) -> np.ndarray[Any, np.dtype[np.float32]] | None:
    if blob is None:
        return None
    return np.frombuffer(blob, dtype=_VEC).astype(np.float32, copy=False)
