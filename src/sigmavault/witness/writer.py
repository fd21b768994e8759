"""The background writer: a bounded queue drained in batches by one thread with its own connection.

``put`` is the caller's hot path: a length check and a ``deque.append`` (atomic under the GIL),
plus a wake-up only when a full batch is waiting. The thread wakes when ``batch_size`` entries
are queued or every ``flush_interval`` seconds, whichever comes first, and writes what is queued
in transactions of at most ``batch_size`` entries, each one link of the hash chain.

NOTE: the writer opens a second SQLite connection so it never queues on the facade's connection
lock, and runs it with ``synchronous=NORMAL``: in WAL mode a commit then survives a process
crash but may be lost on power failure or an OS crash, the trade the spec allows for witness
batches (the queue itself is lost on any crash anyway). ``flush()`` marks a point in the queue
and waits until everything before it is committed.
"""

from __future__ import annotations

import atexit
import functools
import sqlite3
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from sigmavault import validate
from sigmavault.errors import VaultClosed, VaultError
from sigmavault.store import Database
from sigmavault.witness.chain import GENESIS, batch_hash
from sigmavault.witness.entry import Pending, now_ms
from sigmavault.witness.records import prepare

__all__ = ["Overflow", "Writer", "WriterConfig"]

Overflow = Literal["block", "drop"]

_INSERT_BATCH = (
    "INSERT INTO witness_batches (id, first_seq, n, created_ms, prev_hash, hash, digests) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_COMMIT_ENTRIES = 2000  # under a backlog, several batches (chain links) share one commit
_ROWS_PER_STATEMENT = 500  # 500 * 15 parameters stays far below SQLite's limit of 32766
_GIVE_UP_AFTER = 3  # failed attempts per batch once close() was asked for
_live: weakref.WeakSet[Writer] = weakref.WeakSet()


@dataclass(slots=True)
class WriterConfig:
    """Batching and back-pressure settings (see ``Witness.configure``)."""

    batch_size: int = 100
    flush_interval: float = 1.0
    queue_size: int = 10_000
    overflow: Overflow = "block"

    def validate(self) -> None:
        validate.integer(self.batch_size, "batch_size", lo=1, hi=100_000)
        validate.number(self.flush_interval, "flush_interval", lo=0.001, hi=3600.0)
        validate.integer(self.queue_size, "queue_size", lo=1, hi=1 << 40)
        validate.choice(self.overflow, "overflow", ("block", "drop"))


class Writer:
    """Owns the queue, the thread and the writer connection; started on the first record."""

    def __init__(self, main: Database, config: WriterConfig) -> None:
        self.config = config
        self._main = main
        self._db = Database(main.path, busy_timeout=main.busy_timeout)
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._queue: deque[Any] = deque()
        self._busy = False  # the writer thread holds entries taken from the queue and not yet committed
        self._wake = threading.Event()
        self._space = threading.Condition()
        self._counts = threading.Lock()
        self._blocked = 0
        self._stopping = False
        self._models: dict[str, int] = {}
        self.dropped = 0  # dropped by this process since start
        self._unsaved_drops = 0  # dropped but not yet added to witness_state
        self.persisted = 0
        self.batches = 0
        self.lost = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sigmavault-witness-writer", daemon=True)
        self._thread.start()
        _live.add(self)

    # -- caller side ------------------------------------------------------------------------

    def put(self, item: Pending) -> bool:
        """Queue ``item``; False when the queue is full and the policy is ``drop``."""
        if self._stopping:
            raise VaultClosed("the witness log is closed; entries recorded now would be lost")
        q = self._queue
        if len(q) >= self.config.queue_size:
            if self.config.overflow == "drop":
                with self._counts:
                    self.dropped += 1
                    self._unsaved_drops += 1
                return False
            self._wait_for_space()
        q.append(item)
        if len(q) >= self.config.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    def _wait_for_space(self) -> None:
        # NOTE: several blocked producers may each append once space opens, so the bound is
        # soft by at most the number of producer threads; it only exists to bound memory.
        with self._space:
            self._blocked += 1
            try:
                while len(self._queue) >= self.config.queue_size:
                    self._alive()
                    self._wake.set()
                    self._space.wait(0.05)
            finally:
                self._blocked -= 1

    def _alive(self) -> None:
        if self._stopping:
            raise VaultClosed("the witness log is closing; entries recorded now are not kept")
        if not self._thread.is_alive():
            raise VaultError("the witness writer thread died; reopen the vault")

    @property
    def pending(self) -> bool:
        """Entries recorded but not committed yet: queued, or taken by the writer and in flight."""
        return bool(self._queue) or self._busy

    @property
    def queued(self) -> int:
        return sum(1 for item in list(self._queue) if not isinstance(item, threading.Event))

    def flush(self) -> None:
        """Return once every entry queued before this call is committed."""
        marker = threading.Event()
        self._queue.append(marker)
        self._wake.set()
        while not marker.wait(0.05):
            if self.error is not None:
                raise VaultError(
                    f"the witness writer cannot persist entries ({type(self.error).__name__}: {self.error}); "
                    "they stay queued and are retried"
                )
            self._alive()

    def stop(self) -> None:
        """Drain the queue, stop the thread and close the connection (idempotent)."""
        if self._stopping and not self._thread.is_alive():
            return
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self._drain()  # NOTE: catches entries a racing record() appended after the thread left.
        self._db.close()
        _live.discard(self)
        if self.lost:
            raise VaultError(
                f"{self.lost} witness entries could not be persisted "
                f"({type(self.error).__name__}: {self.error}); they are lost"
            )

    # -- writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.config.flush_interval)
            self._wake.clear()
            self._drain()
            if self._stopping and not self._queue:
                return

    def _drain(self) -> None:
        # NOTE: set before the first entry leaves the queue, so `pending` never reads false while a taken batch
        # is still uncommitted (a query that skipped its flush then missed those entries).
        self._busy = True
        try:
            self._drain_queue()
        finally:
            self._busy = False

    def _drain_queue(self) -> None:
        q = self._queue
        while q:
            batches: list[list[Pending]] = []
            markers: list[threading.Event] = []
            size = self.config.batch_size
            budget = max(size, _COMMIT_ENTRIES)
            batch: list[Pending] = []
            taken = 0
            while q and taken < budget:
                item = q.popleft()
                if isinstance(item, threading.Event):
                    markers.append(item)
                    continue
                batch.append(item)
                taken += 1
                if len(batch) == size:
                    batches.append(batch)
                    batch = []
            if batch:
                batches.append(batch)
            if batches:
                self._persist_with_retry(batches)
            for marker in markers:
                marker.set()
            if self._blocked:
                with self._space:
                    self._space.notify_all()

    def _persist_with_retry(self, batches: list[list[Pending]]) -> None:
        delay = 0.05
        attempts = 0
        while True:
            try:
                self._persist(batches)
                self.error = None
                return
            except Exception as exc:  # NOTE: never let the thread die; report through flush()/status().
                attempts += 1
                self.error = exc
                if self._stopping and attempts >= _GIVE_UP_AFTER:
                    self.lost += sum(len(b) for b in batches)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _persist(self, batches: list[list[Pending]]) -> None:
        """Write ``batches`` (each one link of the chain) in one transaction."""
        cipher = self._main.cipher
        # NOTE: encoding and hashing happen before BEGIN, so the write lock is held only to insert.
        prepared = [[prepare(item, cipher) for item in pending] for pending in batches]
        new_models: dict[str, int] = {}
        entries: list[Any] = []
        blobs: list[Any] = []
        links: list[tuple[Any, ...]] = []
        with self._db.write() as conn:
            last = conn.execute(
                "SELECT id, first_seq + n, hash FROM witness_batches ORDER BY id DESC LIMIT 1"
            ).fetchone()
            batch_id, seq, prev = (last[0] + 1, last[1], bytes(last[2])) if last else (1, 1, GENESIS)
            for batch in prepared:
                first = seq
                for p in batch:
                    model = p[3]
                    mid = None
                    if model is not None:
                        mid = self._models.get(model) or new_models.get(model) or _model_id(conn, model, new_models)
                    entries.extend((seq, p[0], p[1], p[2], mid))
                    entries.extend(p[4:14])
                    if p[14] is not None or p[15] is not None or p[16] is not None:
                        blobs.extend((seq, p[14], p[15], p[16]))
                    seq += 1
                digests = b"".join([p[17] for p in batch])
                chained = batch_hash(prev, batch_id, first, len(batch), digests)
                links.append((batch_id, first, len(batch), now_ms(), prev, chained, digests))
                batch_id, prev = batch_id + 1, chained
            _insert(conn, "witness_entries", entries, 15)
            _insert(conn, "witness_blobs", blobs, 4)
            conn.executemany(_INSERT_BATCH, links)
            drops = self._unsaved_drops
            if drops:
                conn.execute(
                    "INSERT INTO witness_state (key, value) VALUES ('dropped', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                    (drops,),
                )
        self._models.update(new_models)
        with self._counts:
            self._unsaved_drops -= drops
        self.persisted += len(entries) // 15
        self.batches += len(links)


def _insert(conn: sqlite3.Connection, table: str, flat: list[Any], width: int) -> None:
    """Insert rows given as one flat parameter list, up to _ROWS_PER_STATEMENT rows per statement.

    NOTE: one multi-row INSERT is one sqlite3_step, so the writer gives up the GIL a few times
    per commit rather than once per row (executemany), which keeps record() callers fast.
    """
    step = _ROWS_PER_STATEMENT * width
    for start in range(0, len(flat), step):
        part = flat[start : start + step]
        conn.execute(_values_sql(table, width, len(part) // width), part)


@functools.lru_cache(maxsize=64)
def _values_sql(table: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"INSERT INTO {table} VALUES " + ", ".join([one] * rows)


def _model_id(conn: sqlite3.Connection, name: str, new: dict[str, int]) -> int:
    # NOTE: ids created here join the cache only after the commit (a rollback would undo them).
    row = conn.execute("SELECT id FROM witness_models WHERE name = ?", (name,)).fetchone()
    if row is None:
        row = conn.execute("INSERT INTO witness_models (name) VALUES (?) RETURNING id", (name,)).fetchone()
    new[name] = int(row[0])
    return int(row[0])


@atexit.register
def _drain_at_exit() -> None:
    """Persist what is queued when a program exits without closing its vault."""
    for writer in list(_live):
        try:
            writer.stop()
        except VaultError as exc:
            print(f"sigmavault: {exc}", file=sys.stderr)
