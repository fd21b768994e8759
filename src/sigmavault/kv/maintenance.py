"""Housekeeping of the KV store: clear, garbage collection (``gc``) and verification (``check``).

These walk every row and file, so they live apart from the hot save/load path in :mod:`.store`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmavault.errors import Corrupted, VaultError
from sigmavault.kv.chunkfile import decode_chunk, read_chunk
from sigmavault.kv.index import ChunkRow
from sigmavault.kv.keys import Fingerprint, chunk_key
from sigmavault.store.blobdir import blob_age, list_blobs, remove_blob
from sigmavault.types import CheckReport

if TYPE_CHECKING:
    from sigmavault.kv.store import KVStore

__all__ = ["clear", "collect", "verify"]

_MAX_LISTED = 20  # problems named one by one in a check report before summarising


def _model_name(model: Any) -> str:
    if isinstance(model, str):
        return model
    if isinstance(model, Fingerprint):
        return model.model
    from sigmavault.kv.hf import fingerprint_of

    return fingerprint_of(model).model


def _remove(store: KVStore, rows: list[ChunkRow]) -> None:
    """Delete rows (one transaction), then their files and RAM copies."""
    if not rows:
        return
    with store._db.write():
        store._index.delete(r.key for r in rows)
    store._forget(rows)


def clear(store: KVStore, model: Any) -> int:
    name = None if model is None else _model_name(model)
    rows = [r for r in store._index.iter_rows() if name is None or r.model == name]
    _remove(store, rows)
    if name is None:
        store._ram.clear()
    return len(rows)


def _problem(store: KVStore, row: ChunkRow, *, deep: bool) -> str | None:
    """Why ``row`` cannot be served, or None. ``deep`` also decodes and re-derives the key."""
    path = store._path(row.key)
    if not deep:
        return None if path.is_file() else "file is missing"
    try:
        chunk = decode_chunk(read_chunk(path, row.key, store._db.cipher))
    except Corrupted as exc:
        return str(exc)
    if (chunk.start, len(chunk.tokens), chunk.parent, chunk.fingerprint) != (row.start, row.tokens, row.parent, row.fp):
        return "file header does not match its index row"
    if chunk_key(row.parent, row.fp, chunk.tokens) != row.key:
        return "token ids do not hash to the chunk's key"
    return None


def collect(
    store: KVStore, *, verify: bool, grace: float, progress: Callable[[int, int], None] | None = None
) -> dict[str, int]:
    """Repair what can be repaired by forgetting it; everything dropped is recomputable KV."""
    out = {
        "dropped_missing": 0,
        "dropped_corrupt": 0,
        "dropped_unreachable": 0,
        "orphan_files": 0,
        "evicted": 0,
        "damage_acknowledged": 0,
        "bytes_freed": 0,
    }
    bad: list[ChunkRow] = []
    rows = list(store._index.iter_rows())
    for done, row in enumerate(rows, 1):
        if progress is not None:
            progress(done, len(rows))
        why = _problem(store, row, deep=verify)
        if why is not None:
            bad.append(row)
            out["dropped_missing" if "missing" in why else "dropped_corrupt"] += 1
    _remove(store, bad)
    unreachable = store._index.unreachable()
    _remove(store, unreachable)
    out["dropped_unreachable"] = len(unreachable)
    out["bytes_freed"] = sum(r.bytes for r in bad + unreachable)
    known = {store._path(r.key) for r in store._index.iter_rows()}
    for path in _files(store._dir):
        # NOTE: a young unknown file may belong to a save in another process that has not
        # committed its row yet; only files older than ``grace`` seconds are orphans.
        if path not in known and blob_age(path) >= grace:
            size = path.stat().st_size if path.exists() else 0
            if remove_blob(path):
                out["orphan_files"] += 1
                out["bytes_freed"] += size
    # NOTE: the damaged chunks noted while serving were dropped then; this gc has now checked
    # the rest, so the noted damage is repaired (the prefixes are recomputed on their next save).
    out["damage_acknowledged"] = store._index.clear_damage() + len(store._damage_seen)
    store._damage_seen.clear()
    budget = store.config.disk_bytes
    if budget is not None:
        victims = store._commit([], budget, keep=frozenset())
        out["evicted"] = len(victims)
        out["bytes_freed"] += sum(r.bytes for r in victims)
    return out


def _files(directory: Path) -> list[Path]:
    from sigmavault.kv.store import SUFFIX

    return list_blobs(directory, SUFFIX) + list_blobs(directory, ".tmp")


def verify(store: KVStore, report: CheckReport) -> None:
    noted = {**{k: (t, r) for k, t, r in store._index.damage()}, **store._damage_seen}
    for key, (found_at, reason) in sorted(noted.items(), key=lambda kv: kv[1][0])[:_MAX_LISTED]:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(found_at))
        report.problems.append(
            f"kv: chunk {key.hex()[:16]} was found damaged while serving at {when} ({reason}) and dropped; "
            "`sigmavault kv gc --verify PATH` checks the rest and clears this report"
        )
    if len(noted) > _MAX_LISTED:
        report.problems.append(f"kv: {len(noted) - _MAX_LISTED} more chunks were found damaged while serving")
    if not store._index.ready:
        return
    bad = 0
    known = set()
    for row in store._index.iter_rows():
        known.add(store._path(row.key))
        try:
            why = _problem(store, row, deep=True)
        except VaultError as exc:
            why = str(exc)
        if why is not None:
            bad += 1
            if bad <= _MAX_LISTED:
                report.problems.append(
                    f"kv: chunk {row.key.hex()[:16]} ({row.tokens} tokens at {row.start}): {why}; "
                    "`sigmavault kv gc --verify PATH` drops it (it is recomputed on the next save)"
                )
    if bad > _MAX_LISTED:
        report.problems.append(f"kv: {bad - _MAX_LISTED} more damaged chunks")
    orphans = [p for p in _files(store._dir) if p not in known]
    if orphans:
        report.notes.append(
            f"kv: {len(orphans)} chunk files have no index row (left by a crash); `sigmavault kv gc PATH` removes them"
        )
    unreachable = store._index.unreachable()
    if unreachable:
        report.notes.append(
            f"kv: {len(unreachable)} chunks follow an evicted chunk and cannot be served; "
            "`sigmavault kv gc PATH` removes them"
        )
