"""Housekeeping of the KV store: clear, garbage collection (``gc``) and verification (``check``).

These walk every row and file, so they live apart from the hot save/load path in :mod:`.store`;
they work on the disk tier (:class:`~sigmavault.kv.disk.DiskTier`) through its public methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sigmavault.errors import Corrupted, VaultError
from sigmavault.kv.chunkfile import decode_chunk, read_chunk
from sigmavault.kv.disk import DiskTier
from sigmavault.kv.fingerprint import Fingerprint, fingerprint_of
from sigmavault.kv.index import ChunkRow
from sigmavault.kv.keys import chunk_key
from sigmavault.store.blobdir import blob_age, remove_blob
from sigmavault.types import CheckReport

__all__ = ["clear", "collect", "verify"]

_MAX_LISTED = 20  # problems named one by one in a check report before summarising


def _model_name(model: Any) -> str:
    if isinstance(model, str):
        return model
    if isinstance(model, Fingerprint):
        return model.model
    return fingerprint_of(model).model


def clear(disk: DiskTier, model: Any) -> int:
    name = None if model is None else _model_name(model)
    rows = [r for r in disk.index.iter_rows() if name is None or r.model == name]
    disk.remove(rows)
    if name is None:
        disk.ram.clear()
    return len(rows)


def _problem(disk: DiskTier, row: ChunkRow, *, deep: bool) -> str | None:
    """Why ``row`` cannot be served, or None. ``deep`` also decodes and re-derives the key."""
    path = disk.path(row.key)
    if not deep:
        return None if path.is_file() else "file is missing"
    try:
        chunk = decode_chunk(read_chunk(path, row.key, disk.cipher))
    except Corrupted as exc:
        return str(exc)
    if (chunk.start, len(chunk.tokens), chunk.parent, chunk.fingerprint) != (row.start, row.tokens, row.parent, row.fp):
        return "file header does not match its index row"
    if chunk_key(row.parent, row.fp, chunk.tokens) != row.key:
        return "token ids do not hash to the chunk's key"
    return None


def collect(
    disk: DiskTier,
    *,
    verify: bool,
    grace: float,
    evict: Callable[[], list[ChunkRow]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Repair what can be repaired by forgetting it; everything dropped is recomputable KV.

    ``evict`` (given when a disk budget is set) evicts down to it and returns what it evicted.
    """
    out = {
        "dropped_missing": 0,
        "dropped_corrupt": 0,
        "dropped_unreachable": 0,
        "orphan_files": 0,
        "evicted": 0,
        "bytes_freed": 0,
    }
    bad: list[ChunkRow] = []
    rows = list(disk.index.iter_rows())
    for done, row in enumerate(rows, 1):
        if progress is not None:
            progress(done, len(rows))
        why = _problem(disk, row, deep=verify)
        if why is not None:
            bad.append(row)
            out["dropped_missing" if "missing" in why else "dropped_corrupt"] += 1
    disk.remove(bad)
    unreachable = disk.index.unreachable()
    disk.remove(unreachable)
    out["dropped_unreachable"] = len(unreachable)
    out["bytes_freed"] = sum(r.bytes for r in bad + unreachable)
    known = {disk.path(r.key) for r in disk.index.iter_rows()}
    for path in disk.files():
        # NOTE: a young unknown file may belong to a save in another process that has not
        # committed its row yet; only files older than ``grace`` seconds are orphans.
        if path not in known and blob_age(path) >= grace:
            size = path.stat().st_size if path.exists() else 0
            if remove_blob(path):
                out["orphan_files"] += 1
                out["bytes_freed"] += size
    if evict is not None:
        victims = evict()
        out["evicted"] = len(victims)
        out["bytes_freed"] += sum(r.bytes for r in victims)
    return out


def verify(disk: DiskTier, report: CheckReport) -> None:
    if not disk.index.ready:
        return
    bad = 0
    known = set()
    for row in disk.index.iter_rows():
        known.add(disk.path(row.key))
        try:
            why = _problem(disk, row, deep=True)
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
    orphans = [p for p in disk.files() if p not in known]
    if orphans:
        report.notes.append(
            f"kv: {len(orphans)} chunk files have no index row (left by a crash); `sigmavault kv gc PATH` removes them"
        )
    unreachable = disk.index.unreachable()
    if unreachable:
        report.notes.append(
            f"kv: {len(unreachable)} chunks follow an evicted chunk and cannot be served; "
            "`sigmavault kv gc PATH` removes them"
        )
