"""Writing a batch's vector rows: scaled, signed and checksummed block by block, on a worker thread for bulk adds.

Split from ``units.records`` (which inserts the rows' records): this is the vector-file half of an add.
"""

from __future__ import annotations

import queue
from typing import Any

import numpy as np
import numpy.typing as npt

from sigmavault.errors import InvalidInput
from sigmavault.index import signatures
from sigmavault.store import VectorFile
from sigmavault.store.vectors import row_crcs
from sigmavault.types import Vector

__all__ = ["BLOCK_ROWS", "BlockQueue", "write_vectors"]

BLOCK_ROWS = 8192  # rows converted, signed, checksummed and written at a time (12 MB at 384-d)


class BlockQueue:
    """Blocks of vector rows handed to a writer thread, with the few buffers they are scaled into.

    NOTE: a block scaled into a buffer is written by :meth:`drain` (on the worker) and its buffer
    handed back; the producer waits for a free one, so at most ``_BUFFERS`` blocks are in flight
    and a write the kernel throttles (a busy disk) never holds up the producer's other work.
    """

    _BUFFERS = 3

    def __init__(self, vf: VectorFile) -> None:
        self.vf = vf
        self.work: queue.SimpleQueue[tuple[int, Vector, Vector | None] | None] = queue.SimpleQueue()
        self.free: queue.SimpleQueue[Vector] = queue.SimpleQueue()
        self.made = 0

    def buffer(self, rows: int, dim: int) -> Vector:
        """A (rows, dim) float32 buffer: a new one while fewer than _BUFFERS exist, else one the writer freed."""
        if self.made < self._BUFFERS:
            self.made += 1
            return np.empty((rows, dim), dtype=np.float32)
        return self.free.get()

    def put(self, row: int, rows: Vector, buffer: Vector | None) -> None:
        self.work.put((row, rows, buffer))

    def close(self) -> None:
        self.work.put(None)

    def drain(self) -> None:
        """Write every block until :meth:`close`, then fsync; a failed write still frees every buffer."""
        error: BaseException | None = None
        while (item := self.work.get()) is not None:
            row, rows, buffer = item
            if error is None:
                try:
                    self.vf.write_rows(row, rows, sync=False)
                except BaseException as exc:  # NOTE: raised by Background.result() once all is drained
                    error = exc
            if buffer is not None:
                self.free.put(buffer)
        if error is not None:
            raise error
        self.vf.sync()


def write_vectors(
    vf: VectorFile,
    start: int,
    vectors: Any,
    planes: npt.NDArray[np.float32],
    *,
    normalise: bool,
    blocks: BlockQueue | None,
) -> tuple[npt.NDArray[np.uint64], list[int]]:
    """Write a batch's vector rows from row ``start``; their signatures and CRCs.

    Without ``blocks`` the rows are written here and the caller fsyncs (``vf.sync()``); with it they
    are handed to its writer thread, and this closes it (the writer fsyncs).

    NOTE: block by block: each block is converted to float32 (and scaled to unit length with
    ``normalise``, into one of a few reused buffers), signed and checksummed while it is in cache.
    A normalised copy of a whole batch (150 MB at 100k x 384) cost more than the arithmetic: fresh
    memory is slow to fault in (transparent huge pages may compact memory first).
    """
    n, dim = vectors.shape
    sigs = np.empty(n, dtype=np.uint64)
    crcs: list[int] = []
    own = None
    try:
        for s in range(0, n, BLOCK_ROWS):
            rows = np.asarray(vectors[s : s + BLOCK_ROWS], dtype=np.float32)
            buffer = None
            if normalise:
                norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
                if not norms.all():
                    raise InvalidInput(f"vector {s + int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros")
                if blocks is not None:
                    buffer = blocks.buffer(min(n, BLOCK_ROWS), dim)
                elif own is None:
                    own = np.empty((min(n, BLOCK_ROWS), dim), dtype=np.float32)
                target = buffer if buffer is not None else own
                assert target is not None
                rows = np.divide(rows, norms, out=target[: len(rows)], dtype=np.float32)
            sigs[s : s + len(rows)] = signatures(rows, planes)
            crcs += row_crcs(rows)
            if blocks is not None:
                blocks.put(start + s, rows, buffer)
            else:
                vf.write_rows(start + s, rows, sync=False)
    finally:
        if blocks is not None:
            blocks.close()
    return sigs, crcs
