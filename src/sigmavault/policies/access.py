"""Access times of policy entries, counted in memory and persisted with the next write.

A search or get must not cost a durable commit, so ``last_accessed`` is batched: written by a
write hook inside the next transaction of the vault (any part's), or after ``flush_count``
accesses / ``flush_seconds``. A crash may lose that much access time, nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sigmavault.errors import VaultLocked
from sigmavault.store import Database

__all__ = ["AccessLog"]


class AccessLog:
    """Pending ``policy id -> last access time``, persisted into the policies table."""

    def __init__(self, db: Database, *, flush_count: int = 1024, flush_seconds: float = 2.0) -> None:
        self._db = db
        self.flush_count = flush_count
        self.flush_seconds = flush_seconds
        self._pending: dict[str, float] = {}
        self._inflight: dict[str, float] = {}
        self._since = 0.0
        self._lock = threading.Lock()
        if not db.readonly:
            db.add_write_hook(self._flush_in_txn, on_rollback=self._restore)

    def seen(self, pid: str, stored: float) -> float:
        """The latest access time of ``pid``: the stored one or a newer pending one."""
        pending = self._pending.get(pid)
        return stored if pending is None else max(stored, pending)

    def touch(self, ids: Sequence[str]) -> None:
        if self._db.readonly or not ids:
            return
        now = time.time()
        with self._lock:
            if not self._pending:
                self._since = now
            for pid in ids:
                self._pending[pid] = now
            due = len(self._pending) >= self.flush_count or now - self._since > self.flush_seconds
        if due:
            self.flush(wait=False)

    def forget(self, ids: Sequence[str]) -> None:
        with self._lock:
            for pid in ids:
                self._pending.pop(pid, None)

    def flush(self, *, wait: bool = True) -> None:
        """Persist pending access times now (a busy vault is skipped when ``wait=False``)."""
        if not self._pending or self._db.readonly or self._db.closed:
            return
        try:
            # NOTE: access times may lose their last moments, so this commit skips the fsync.
            with self._db.write(wait=wait, durable=False):
                pass  # the write hook does the work inside the transaction
        except VaultLocked:
            if wait:
                raise

    def _flush_in_txn(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._inflight = pending
        if pending:
            self._db.conn.executemany(
                "UPDATE policies SET last_accessed = MAX(last_accessed, ?) WHERE pid = ?",
                [(t, pid) for pid, t in pending.items()],
            )

    def _restore(self) -> None:
        """The transaction that took the pending times rolled back: keep them for the next one."""
        with self._lock:
            for pid, t in self._inflight.items():
                self._pending[pid] = max(t, self._pending.get(pid, 0.0))
            self._inflight = {}
