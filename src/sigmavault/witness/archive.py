"""Retention: old entries move to gzip JSONL files under ``<vault>/witness-archive/``.

Each chunk is one step inside one write transaction: select the oldest rows, write them to a
new archive file (temp name, fsync, rename, fsync the directory), delete them from the hot
store, record the file in ``witness_archives`` and commit. A crash before the commit leaves an
unrecorded file whose entries are still hot; the next archive() removes it and ``check`` notes
it. So hot entries + entries of recorded archives always equal what was written.

File format (one JSON object per line): a header ``{"format": "sigmavault-witness-archive",
"version": 1, ...}``; one line per entry holding its stored row (see records.py), embeddings in
base64, the payload as JSON text (``payload_b64`` when sealed); and one ``{"batch": ...}`` line
per chain batch that this file completes, so the digests of archived entries are kept with them.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault.errors import Corrupted, InvalidInput, NotFound
from sigmavault.store import Database
from sigmavault.store.files import atomic_write, file_digest, open_read, remove_file
from sigmavault.witness.entry import now_ms
from sigmavault.witness.records import SELECT_STORED, StoredRow

__all__ = ["ARCHIVE_DIR", "ArchiveResult", "archive", "archive_path", "orphans", "read_rows"]

ARCHIVE_DIR = "witness-archive"
FORMAT = "sigmavault-witness-archive"
_NAME = re.compile(r"^witness-\d{12}-\d{12}\.jsonl\.gz$")
_TEMP = re.compile(r"^\.witness-\d{12}-\d{12}\.jsonl\.gz\.\d+\.tmp$")
_COLUMNS = (
    "seq", "request_id", "session_id", "ts_ms", "model", "quality", "embedding_ms", "retrieval_ms",
    "routing_ms", "generation_ms", "total_ms", "prompt_tokens", "completion_tokens", "error_type", "failed",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """What one ``archive()`` call moved: entries, files written, and the cutoff it used (UTC ms)."""

    entries: int
    files: list[str]
    cutoff_ms: int


def archive_path(root: Path, name: str) -> Path:
    """The path of an archive given its file name (or a path to one anywhere)."""
    if _NAME.match(name):
        return root / ARCHIVE_DIR / name
    path = Path(name)
    if not path.is_file():
        raise NotFound(f"no witness archive {name!r}; list them with `sigmavault witness archive PATH --list`")
    return path


def orphans(conn: sqlite3.Connection, root: Path) -> list[Path]:
    """Archive files (and temp files) that no committed archive step recorded."""
    folder = root / ARCHIVE_DIR
    if not folder.is_dir():
        return []
    recorded = {r[0] for r in conn.execute("SELECT file FROM witness_archives")}
    return sorted(
        p for p in folder.iterdir() if (_NAME.match(p.name) and p.name not in recorded) or _TEMP.match(p.name)
    )


def archive(
    db: Database, root: Path, *, cutoff_ms: int, chunk: int, progress: Callable[[int, int], None] | None = None
) -> ArchiveResult:
    """Move every entry with ``ts_ms < cutoff_ms`` to archive files of at most ``chunk`` entries."""
    total = int(db.one("SELECT COUNT(*) FROM witness_entries WHERE ts_ms < ?", (cutoff_ms,))[0])
    files: list[str] = []
    done = 0
    while True:
        with db.write() as conn:
            # NOTE: inside the write lock no other archive step is between its file and its commit.
            for path in orphans(conn, root):
                remove_file(path)
            moved, name = _step(conn, root, cutoff_ms, chunk)
        if not moved:
            break
        files.append(name)
        done += moved
        if progress is not None:
            progress(done, max(done, total))
    return ArchiveResult(entries=done, files=files, cutoff_ms=cutoff_ms)


def _step(conn: sqlite3.Connection, root: Path, cutoff_ms: int, chunk: int) -> tuple[int, str]:
    rows = conn.execute(f"{SELECT_STORED} WHERE e.ts_ms < ? ORDER BY e.seq LIMIT ?", (cutoff_ms, chunk)).fetchall()
    if not rows:
        return 0, ""
    first, last = int(rows[0][0]), int(rows[-1][0])
    batches = conn.execute(
        "SELECT id, first_seq, n, prev_hash, hash, digests, archived FROM witness_batches "
        "WHERE first_seq <= ? AND first_seq + n > ? ORDER BY first_seq",
        (last, first),
    ).fetchall()
    seqs = np.fromiter((int(r[0]) for r in rows), dtype=np.int64, count=len(rows))
    starts = np.asarray([int(b[1]) for b in batches], dtype=np.int64)
    counts = np.bincount(np.searchsorted(starts, seqs, side="right") - 1, minlength=len(batches))
    completed = [b for b, c in zip(batches, counts, strict=True) if c and int(b[6]) + int(c) == int(b[2])]
    name = f"witness-{first:012d}-{last:012d}.jsonl.gz"
    path = root / ARCHIVE_DIR / name
    header = {
        "format": FORMAT, "version": 1, "created_ms": now_ms(), "entries": len(rows),
        "first_seq": first, "last_seq": last, "cutoff_ms": cutoff_ms,
    }  # fmt: skip
    try:
        with atomic_write(path) as fh, gzip.GzipFile(filename="", fileobj=fh, mode="wb", mtime=0) as gz:
            gz.write(_line(header))
            for row in rows:
                gz.write(_line(_row_doc(row)))
            for b in completed:
                gz.write(_line({"batch": _batch_doc(b)}))
        conn.execute(
            "DELETE FROM witness_blobs WHERE seq IN "
            "(SELECT seq FROM witness_entries WHERE seq BETWEEN ? AND ? AND ts_ms < ?)",
            (first, last, cutoff_ms),
        )
        gone = conn.execute(
            "DELETE FROM witness_entries WHERE seq BETWEEN ? AND ? AND ts_ms < ?", (first, last, cutoff_ms)
        ).rowcount
        if gone != len(rows):
            raise Corrupted(f"witness archive: selected {len(rows)} entries but deleted {gone}; nothing was changed")
        conn.executemany(
            "UPDATE witness_batches SET archived = archived + ? WHERE id = ?",
            [(int(c), int(b[0])) for b, c in zip(batches, counts, strict=True) if c],
        )
        conn.executemany("UPDATE witness_batches SET digests = NULL WHERE id = ?", [(int(b[0]),) for b in completed])
        times = [int(r[3]) for r in rows]
        conn.execute(
            "INSERT INTO witness_archives (file, entries, first_seq, last_seq, min_ts, max_ts, bytes, sha256, "
            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, len(rows), first, last, min(times), max(times), path.stat().st_size, file_digest(path)[1], now_ms()),
        )
    except BaseException:
        # NOTE: the transaction rolls back, so the rows stay hot; the file would be a duplicate.
        remove_file(path)
        raise
    return len(rows), name


def _line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode() + b"\n"


def _b64(blob: bytes | None) -> str | None:
    return None if blob is None else base64.b64encode(blob).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)


def _row_doc(row: StoredRow) -> dict[str, Any]:
    doc = dict(zip(_COLUMNS, row[:15], strict=True))
    payload = row[15]
    if isinstance(payload, str):
        doc["payload"] = payload
    else:
        doc["payload_b64"] = _b64(payload)
    doc["query_vec"] = _b64(row[16])
    doc["response_vec"] = _b64(row[17])
    return doc


def _batch_doc(b: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": b[0], "first_seq": b[1], "n": b[2], "prev_hash": bytes(b[3]).hex(), "hash": bytes(b[4]).hex(),
        "digests": _b64(None if b[5] is None else bytes(b[5])),
    }  # fmt: skip


def read_rows(path: Path) -> Iterator[StoredRow]:
    """The stored rows of an archive file, in order; raises Corrupted on a damaged or foreign file."""
    try:
        with open_read(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            header = _parse(gz.readline(), path, 1)
            if header.get("format") != FORMAT:
                raise InvalidInput(f"{path} is not a sigmavault witness archive")
            if not isinstance(header.get("version", 0), int):
                raise Corrupted(f"{path}: archive header has no valid version")
            if int(header.get("version", 0)) > 1:
                raise Corrupted(f"{path}: archive format {header.get('version')} is newer than this sigmavault reads")
            count = 0
            for number, line in enumerate(gz, start=2):
                doc = _parse(line, path, number)
                if "batch" in doc:
                    continue
                try:
                    scalars = tuple(doc[c] for c in _COLUMNS)
                    payload = doc["payload"] if "payload" in doc else _unb64(doc["payload_b64"])
                    blobs = (payload, _unb64(doc["query_vec"]), _unb64(doc["response_vec"]))
                except (KeyError, ValueError, TypeError) as exc:
                    raise Corrupted(f"{path}: line {number} is not a witness entry ({exc})") from None
                count += 1
                yield scalars + blobs
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # NOTE: a damaged deflate stream raises zlib.error, a damaged trailer BadGzipFile: both are damage.
        raise Corrupted(f"{path}: archive cannot be read ({type(exc).__name__}: {exc})") from exc
    if count != header.get("entries"):
        raise Corrupted(f"{path}: holds {count} entries, its header says {header.get('entries')}")


def _parse(line: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Corrupted(f"{path}: line {number} is not JSON") from None
    if not isinstance(doc, dict):
        raise Corrupted(f"{path}: line {number} is not a JSON object")
    return doc
