"""How an entry is stored and read back: rows, the sealed payload, embeddings and digests.

A *stored row* is what the hot store (and an archive file) holds for one entry, in one tuple:
``seq`` and the 14 other scalar columns of ``witness_entries`` (with the model's name in place
of its id), then the payload (JSON text, or sealed bytes when the vault has a key) and the two
embedding blobs. An entry's chain digest covers all of it but ``seq`` (its place in the batch
stands for that), so a check can recompute it from the tables alone.

NOTE: ``encode`` (JSON, embeddings to bytes, digests) runs on the writer thread. Running it inside
``record()`` instead was measured (A/B, same run): it doubled the caller's p50 and raised its p99
3-4x, for no gain in throughput.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from sigmavault.errors import Corrupted, VaultError
from sigmavault.store import Cipher
from sigmavault.witness.entry import Pending, WitnessEntry

__all__ = ["SELECT_STORED", "Encoded", "StoredRow", "decode", "digest", "encode"]

StoredRow = tuple[Any, ...]
# The flat parameters of witness_entries and witness_blobs rows, the entries' digests, and whether
# any entry has an embedding (else the blob rows hold only seq and payload; see encode).
Encoded = tuple[list[Any], list[Any], list[bytes], bool]

SELECT_STORED = (
    "SELECT e.seq, e.request_id, e.session_id, e.ts_ms, m.name, e.quality, e.embedding_ms, e.retrieval_ms, "
    "e.routing_ms, e.generation_ms, e.total_ms, e.prompt_tokens, e.completion_tokens, e.error_type, e.failed, "
    "b.payload, b.query_vec, b.response_vec "
    "FROM witness_entries e LEFT JOIN witness_models m ON m.id = e.model_id LEFT JOIN witness_blobs b ON b.seq = e.seq"
)
_NONE = b"\xff" * 8
# mask of NULL columns, then ts_ms, quality, 5 latencies, 2 token counts, failed
_NUMBERS = struct.Struct("<Hqddddddqqq")
_U32 = struct.Struct("<I").pack
_U64 = struct.Struct("<Q").pack
_sha256 = hashlib.sha256
# NOTE: a prebuilt encoder: json.dumps with options builds a new encoder on every call.
_FALLBACK = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)
_VEC = np.dtype("<f4")


def encode(items: Sequence[Pending], cipher: Cipher | None, seq: int, model_ids: Mapping[str, int]) -> Encoded:
    """The rows of validated entries (see entry.normalize) numbered from ``seq``, in one pass.

    Returns the flat parameters of ``witness_entries`` (15 per entry, model by id from
    ``model_ids``), those of ``witness_blobs`` (per entry that has a payload or an embedding: 4,
    or 2 (seq, payload) when no entry has an embedding), each entry's chain digest (which leaves
    ``seq`` out, so the rows can be renumbered) and whether any entry has an embedding.

    NOTE: this is the writer's per-record path, so the digest is computed inline, the bytes
    :func:`_digest` would build: the numbers are packed in one call whenever none is NULL (a
    NULL makes ``pack`` fail, and the general function then builds the same bytes), and the
    length-prefixed bytes of session ids, models and error types, which repeat, are cached.
    """
    entries: list[Any] = []
    blobs: list[Any] = []
    digests: list[bytes] = []
    add_entry, add_blob, add_digest = entries.extend, blobs.extend, digests.append
    pack, texts, dumps, sha256, u64 = _NUMBERS.pack, _texts(), orjson.dumps, _sha256, _U64
    vectors = False
    for rid, sid, ts, model, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, ctx, qv, rv, routing, etype, emsg in items:
        failed = 0 if etype is None and emsg is None else 1
        if ctx or routing is not None or emsg is not None:
            doc: dict[str, Any] = {}
            if ctx:
                doc["c"] = ctx
            if routing is not None:
                doc["r"] = routing
            if emsg is not None:
                doc["m"] = emsg
            try:
                raw = dumps(doc)
            except TypeError:
                # NOTE: orjson (~8x faster than the json module) refuses an integer beyond 64 bits and
                # a lone surrogate (its JSONEncodeError is a TypeError); the json module writes those,
                # escaped to ASCII, so the writer never fails on an entry that ``normalize`` admitted.
                raw = _FALLBACK.encode(doc).encode()
            if cipher is None:
                payload: str | bytes | None = raw.decode()
                tail = b"s" + u64(len(raw)) + raw
            else:
                payload = cipher.seal(_aad(rid), raw)
                tail = u64(len(payload)) + payload
        else:
            payload = None
            tail = _NONE
        add_entry((seq, rid, sid, ts, None if model is None else model_ids[model], quality,
                   e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, etype, failed))  # fmt: skip
        if qv is None and rv is None:
            if payload is not None:
                add_blob((seq, payload, None, None))
            try:
                packed = pack((sid is None) << 11 | (model is None) << 12 | (etype is None) << 13,
                              ts, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, failed)  # fmt: skip
            except struct.error:  # a NULL number: the general function
                add_digest(_digest(rid, sid, ts, model, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, etype,
                                   failed, payload, None, None))  # fmt: skip
            else:
                rb = rid.encode()
                t2 = texts.get(sid) or _text_part(texts, sid)
                t3 = texts.get(model) or _text_part(texts, model)
                t4 = texts.get(etype) or _text_part(texts, etype)
                add_digest(sha256(b"".join((packed, _U32(len(rb)), rb, t2, t3, t4, tail, _NONE, _NONE))).digest())
        else:
            vectors = True
            qb = None if qv is None else qv.astype(_VEC, copy=False).tobytes()
            rb = None if rv is None else rv.astype(_VEC, copy=False).tobytes()
            add_blob((seq, payload, qb, rb))
            add_digest(_digest(rid, sid, ts, model, quality, e_ms, r_ms, ro_ms, g_ms, t_ms, pt, ct, etype, failed,
                               payload, qb, rb))  # fmt: skip
        seq += 1
    if not vectors:
        # NOTE: two parameters per row instead of four: half the binding, and 8192 rows per statement.
        pairs: list[Any] = [None] * (len(blobs) // 2)
        pairs[0::2] = blobs[0::4]
        pairs[1::2] = blobs[1::4]
        blobs = pairs
    return entries, blobs, digests, vectors


_TEXTS: dict[str | None, bytes] = {}
_MAX_TEXTS = 4096


def _texts() -> dict[str | None, bytes]:
    """The cache of length-prefixed text columns (emptied when it grew past its bound)."""
    if len(_TEXTS) > _MAX_TEXTS:
        _TEXTS.clear()
    return _TEXTS


def _text_part(cache: dict[str | None, bytes], text: str | None) -> bytes:
    """A text column as the digest holds it: its UTF-8 length (u32), then its bytes (NULL: length 0)."""
    raw = b"" if text is None else text.encode()
    part = cache[text] = _U32(len(raw)) + raw
    return part


def digest(row: StoredRow) -> bytes:
    """The chain digest of a stored row (``seq`` excluded). Raises TypeError on a mistyped column."""
    if len(row) != 18:
        raise TypeError(f"a stored witness row has 18 columns, got {len(row)}")
    return _digest(*row[1:])


def _digest(
    rid: Any, sid: Any, ts: Any, model: Any, quality: Any, e_ms: Any, r_ms: Any, ro_ms: Any, g_ms: Any, t_ms: Any,
    pt: Any, ct: Any, etype: Any, failed: Any, payload: Any, qb: Any, rb: Any,
) -> bytes:  # fmt: skip
    """SHA-256 over canonical bytes: a bit mask of the NULL columns; the 10 numeric columns packed
    little-endian (int64 or float64, exact); the 4 text columns and each blob, length-prefixed
    (a text payload tagged ``s``). One ``join`` and one hash call per entry: this runs per record."""
    mask = (
        (ts is None) | (quality is None) << 1 | (e_ms is None) << 2 | (r_ms is None) << 3 | (ro_ms is None) << 4
        | (g_ms is None) << 5 | (t_ms is None) << 6 | (pt is None) << 7 | (ct is None) << 8 | (failed is None) << 9
        | (rid is None) << 10 | (sid is None) << 11 | (model is None) << 12 | (etype is None) << 13
    )  # fmt: skip
    try:
        packed = _NUMBERS.pack(
            mask, 0 if ts is None else ts, 0 if quality is None else quality, 0 if e_ms is None else e_ms,
            0 if r_ms is None else r_ms, 0 if ro_ms is None else ro_ms, 0 if g_ms is None else g_ms,
            0 if t_ms is None else t_ms, 0 if pt is None else pt, 0 if ct is None else ct,
            0 if failed is None else failed,
        )  # fmt: skip
        t1 = b"" if rid is None else rid.encode()
        t2 = b"" if sid is None else sid.encode()
        t3 = b"" if model is None else model.encode()
        t4 = b"" if etype is None else etype.encode()
    except struct.error as exc:
        raise TypeError(f"a numeric witness column holds a value of another type ({exc})") from None
    except AttributeError:
        raise TypeError("a text witness column holds a value that is not text") from None
    if payload is None:
        p = _NONE
    elif type(payload) is str:
        raw = payload.encode()
        p = b"s" + _U64(len(raw)) + raw
    else:
        p = _U64(len(payload)) + payload
    parts = (
        packed, _U32(len(t1)), t1, _U32(len(t2)), t2, _U32(len(t3)), t3, _U32(len(t4)), t4, p,
        _NONE if qb is None else _U64(len(qb)) + qb, _NONE if rb is None else _U64(len(rb)) + rb,
    )  # fmt: skip
    return _sha256(b"".join(parts)).digest()


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
