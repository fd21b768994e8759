"""Fixed-width float32 rows in a memory-mapped file, addressed by row number.

The file is derived data: SQLite records how many rows are committed (the watermark). Rows are
written and fsynced *before* the transaction that references them commits, so a crash can only
leave an unreferenced tail past the watermark, which :meth:`VectorFile.truncate` removes.

Layout: a 64-byte header (magic, format version, dimension) followed by ``dim * 4``-byte rows.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np

from sigmavault.errors import Corrupted, DimensionMismatch
from sigmavault.store.ioerrors import io_errors
from sigmavault.types import Vector

__all__ = ["HEADER_SIZE", "VectorFile", "row_crcs"]

MAGIC = b"SVVECTR\x00"
FORMAT_VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sII")


def row_crcs(vectors: Vector) -> list[int]:
    """CRC32 of each row's little-endian float32 bytes, exactly as :meth:`VectorFile.write_rows` stores them.

    zlib's CRC32 detects every single-bit flip and every burst up to 32 bits in a row (a 384-d row
    is 1,536 bytes); it runs in C at about a microsecond per row (``benchmarks/checksums.py``).
    """
    data = np.ascontiguousarray(vectors, dtype="<f4")
    return [zlib.crc32(row) for row in data]


def fsync_dir(path: Path) -> None:
    """Make a create/rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VectorFile:
    """Append-mostly float32 matrix on disk, read through one shared memory map."""

    def __init__(self, path: Path, dim: int, *, readonly: bool = False) -> None:
        self.path = path
        self.dim = dim
        self.row_bytes = dim * 4
        self._lock = threading.Lock()
        self._map: mmap.mmap | None = None
        self._mapped_rows = 0
        self._view: Vector = np.empty((0, dim), dtype=np.float32)
        exists = path.exists()
        if not exists and readonly:
            raise Corrupted(f"{path}: vector file is missing")
        flags = os.O_RDONLY if readonly else os.O_RDWR | os.O_CREAT
        with io_errors(path, "opening the vector file"):
            self._fd = os.open(path, flags, 0o644)
        try:
            if not exists or os.fstat(self._fd).st_size == 0:
                if readonly:
                    raise Corrupted(f"{path}: vector file is empty (it has no header)")
                with io_errors(path, "writing the vector file header"):
                    os.pwrite(self._fd, _HEADER.pack(MAGIC, FORMAT_VERSION, dim).ljust(HEADER_SIZE, b"\0"), 0)
                    os.fsync(self._fd)
                    fsync_dir(path.parent)
            self._check_header()
        except BaseException:
            os.close(self._fd)  # NOTE: a refused file must not leak its descriptor
            self._fd = -1
            raise

    def _check_header(self) -> None:
        head = os.pread(self._fd, HEADER_SIZE, 0)
        if len(head) < _HEADER.size:
            raise Corrupted(f"{self.path}: vector file header is truncated")
        magic, version, dim = _HEADER.unpack_from(head)
        if magic != MAGIC:
            raise Corrupted(f"{self.path}: not a sigmavault vector file (bad magic)")
        if version > FORMAT_VERSION:
            raise Corrupted(f"{self.path}: vector file format {version} is newer than this sigmavault")
        if version < 1:
            raise Corrupted(f"{self.path}: vector file format {version} is invalid")
        if dim != self.dim:
            raise Corrupted(f"{self.path}: vector file holds {dim}-d rows, the catalogue says {self.dim}")
        if len(head) < HEADER_SIZE or any(head[_HEADER.size :]):
            # NOTE: version 1 reserves the rest of the header as zeros; anything else is damage.
            raise Corrupted(f"{self.path}: vector file header is damaged (reserved bytes are not zero)")

    def rows_on_disk(self) -> int:
        """Complete rows physically present (may exceed the watermark after a crash)."""
        return max(0, (os.fstat(self._fd).st_size - HEADER_SIZE) // self.row_bytes)

    def write_rows(self, start: int, vectors: Vector, *, sync: bool = True) -> None:
        """Write ``vectors`` at row ``start`` and fsync; call inside the SQLite write transaction.

        ``sync=False`` leaves the fsync to a later :meth:`sync` (a bulk write in blocks: one fsync),
        which must return before the transaction that references the rows commits.
        """
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DimensionMismatch(f"expected rows of {self.dim} floats, got shape {vectors.shape}")
        data = np.ascontiguousarray(vectors, dtype="<f4")
        offset = HEADER_SIZE + start * self.row_bytes
        view = data.data.cast("B")  # NOTE: no copy; pwrite reads the array's own buffer
        # NOTE: a failed write leaves at most a tail past the watermark, which the next open cuts.
        with io_errors(self.path, "writing vectors"):
            while view:
                written = os.pwrite(self._fd, view, offset)
                view = view[written:]
                offset += written
            if sync:
                os.fsync(self._fd)

    def sync(self) -> None:
        """fsync the rows written with ``sync=False``."""
        with io_errors(self.path, "writing vectors"):
            os.fsync(self._fd)

    def truncate(self, rows: int) -> None:
        """Drop everything past ``rows`` (a crash's unreferenced tail)."""
        with self._lock:
            self._release()
            with io_errors(self.path, "cutting the vector file's uncommitted tail"):
                os.ftruncate(self._fd, HEADER_SIZE + rows * self.row_bytes)
                os.fsync(self._fd)

    def view(self, rows: int) -> Vector:
        """A read-only (rows, dim) array backed by the map; remaps when the file has grown."""
        with self._lock:
            if rows > self._mapped_rows:
                self._remap(rows)
            return self._view[:rows]

    def _remap(self, rows: int) -> None:
        size = HEADER_SIZE + rows * self.row_bytes
        if os.fstat(self._fd).st_size < size:
            raise Corrupted(
                f"{self.path}: vector file holds {self.rows_on_disk()} rows but {rows} are committed; "
                "run `sigmavault check` and restore from a bundle"
            )
        self._release()
        self._map = mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
        arr = np.frombuffer(self._map, dtype="<f4", count=rows * self.dim, offset=HEADER_SIZE)
        self._view = arr.reshape(rows, self.dim)
        self._mapped_rows = rows

    def _release(self) -> None:
        self._view = np.empty((0, self.dim), dtype=np.float32)
        self._mapped_rows = 0
        old, self._map = self._map, None
        if old is not None:
            # NOTE: a caller may still hold an array over the old map; then it closes with that array.
            with contextlib.suppress(BufferError):
                old.close()

    def close(self) -> None:
        with self._lock:
            self._release()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
