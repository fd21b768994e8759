"""Access counts of units, counted in memory and persisted in batches; and a one-call worker thread.

A ``get`` or a search must not cost a durable commit, so each access is added to a pending
``id -> (count, last time)`` map. The map is written by a write hook inside the next write
transaction of the vault (any part's), or by a flush once ``FLUSH_COUNT`` ids are pending or
``FLUSH_SECONDS`` have passed. That flush runs on a short-lived worker thread, not on the thread
that counted the access, so the caller's ``get`` returns at once; it commits without an fsync
(access counts may lose their last moments, as documented: a crash loses at most that much,
nothing else). A transaction that took the pending counts and then rolled back puts them back.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from sigmavault.errors import VaultError, VaultLocked
from sigmavault.store import Database

__all__ = ["FLUSH_COUNT", "FLUSH_SECONDS", "AccessCounts", "Background"]

FLUSH_COUNT = 2048
FLUSH_SECONDS = 2.0


class AccessCounts:
    """Pending ``unit id -> (accesses, last access time)``, persisted into the units table."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: dict[str, tuple[int, float]] = {}
        self._inflight: dict[str, tuple[int, float]] = {}
        self._since = 0.0
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        if not db.readonly:
            db.add_write_hook(self._flush_in_txn, on_rollback=self._restore)

    def any_pending(self) -> bool:
        """Whether some access is counted but not yet persisted."""
        return bool(self._pending)

    def pending(self, uid: str) -> tuple[int, float] | None:
        """Accesses of ``uid`` not yet persisted (count, last time), or None."""
        return self._pending.get(uid)

    def touch(self, uids: Sequence[str]) -> None:
        """Count an access now; persisted in batches (a crash may lose the last ~2 s of counts)."""
        if self._db.readonly or not uids:
            return
        now = time.time()
        with self._lock:
            if not self._pending:
                self._since = now
            pending = self._pending
            for uid in uids:
                c, _ = pending.get(uid, (0, 0.0))
                pending[uid] = (c + 1, now)
            due = len(pending) >= FLUSH_COUNT or now - self._since > FLUSH_SECONDS
            start = due and (self._worker is None or not self._worker.is_alive())
            if start:
                self._worker = threading.Thread(target=self._flush_behind, name="sigmavault-access", daemon=True)
        if start:
            assert self._worker is not None
            self._worker.start()

    def forget(self, uids: Sequence[str]) -> None:
        """Drop the pending counts of deleted units."""
        with self._lock:
            for uid in uids:
                self._pending.pop(uid, None)

    def flush(self, *, wait: bool = True) -> None:
        """Persist the pending counts now (a busy vault is skipped when ``wait=False``)."""
        if not self._pending or self._db.readonly or self._db.closed:
            return
        try:
            # NOTE: access counts may lose their last moments (documented), so this commit skips the fsync.
            with self._db.write(wait=wait, durable=False):
                pass  # the write hook does the work inside the transaction
        except VaultLocked:
            if wait:
                raise

    def join(self) -> None:
        """Wait for a flush running behind the callers (before closing, and in tests)."""
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    def _flush_behind(self) -> None:
        # NOTE: a closed or busy vault: the counts stay pending for the next write or close().
        with contextlib.suppress(VaultError):
            self.flush(wait=False)

    def _flush_in_txn(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._inflight = pending
        if pending:
            self._db.conn.executemany(
                "UPDATE units SET access_count = access_count + ?, accessed_at = MAX(accessed_at, ?) WHERE uid = ?",
                [(c, t, uid) for uid, (c, t) in pending.items()],
            )

    def _restore(self) -> None:
        """The transaction that took the pending counts rolled back: keep them for the next one."""
        with self._lock:
            for uid, (c, t) in self._inflight.items():
                c2, t2 = self._pending.get(uid, (0, 0.0))
                self._pending[uid] = (c + c2, max(t, t2))
            self._inflight = {}


class Background(threading.Thread):
    """One call on another thread, so that a disk write and its fsync overlap SQLite work."""

    def __init__(self, fn: Any, *args: Any) -> None:
        super().__init__(name="sigmavault-vector-write", daemon=True)
        self._call = (fn, args)
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        fn, args = self._call
        try:
            fn(*args)
        except BaseException as exc:  # NOTE: handed to the caller by result()
            self._error = exc

    def result(self) -> None:
        """Wait for the call; raise what it raised."""
        self.join()
        if self._error is not None:
            raise self._error
