"""The background writer: a bounded queue drained in batches by one thread with its own connection.

``put`` is the caller's hot path: a length check and a ``deque.append`` (atomic under the GIL).
The thread writes what is queued once ``batch_size`` entries are queued or ``flush_interval``
seconds after its last write, whichever comes first, in links of the hash chain of at most
``batch_size`` entries (under a backlog several links share one commit). While entries keep
arriving it looks at the queue every few milliseconds (``_POLL``) on its own timer; only a writer
that saw none arrive (waiting up to ``flush_interval``) is woken by ``put``, when a full batch is
waiting. NOTE: waking it from ``put`` (a futex call and a thread switch) cost the one record in
every ``batch_size`` that did it ~40 us when requests arrive paced, which set ``record()``'s p99.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sigmavault import validate
from sigmavault.errors import VaultClosed, VaultError
from sigmavault.store import Database
from sigmavault.witness.chain import GENESIS, batch_hash
from sigmavault.witness.entry import Pending, now_ms
from sigmavault.witness.records import encode
from sigmavault.witness.schema import BLOB_COLS, ENTRY_COLS

__all__ = ["Overflow", "Writer", "WriterConfig"]

Overflow = Literal["block", "drop"]

_PAYLOAD_COLS = BLOB_COLS[:2]  # a commit without embeddings leaves the two vector columns out (NULL)
_CHECKPOINT_BEHIND = 1024  # entries in a commit from which its WAL checkpoint runs on a worker thread
_BATCH_COLS = ("id", "first_seq", "n", "created_ms", "prev_hash", "hash", "digests")
_COMMIT_ENTRIES = 8192  # under a backlog, several batches (chain links) share one commit (8 statements per table)
_ROWS_PER_STATEMENT = 1024  # a power of two; compiling a statement costs ~12 ms per 1024 rows, once per connection
_PARAMS_PER_STATEMENT = 32766  # SQLite's default limit on parameters; a build's lower limit is respected too
_GIVE_UP_AFTER = 3  # failed attempts per batch once close() was asked for
_POLL = 0.005  # seconds between the writer's looks at a non-empty queue (no caller wakes it then)
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
        self._idle = False  # the writer thread waits for entries (up to flush_interval); put() wakes it
        self._wake = threading.Event()
        self._space = threading.Condition()
        self._counts = threading.Lock()
        self._blocked = 0
        self._stopping = False
        self._models: dict[str, int] = {}
        self._head: tuple[int, int, bytes] | None = None  # the chain's head after this writer's last commit
        # NOTE: a test seam: called on the writer thread after it took entries from the queue
        # and before it commits them (tests hold the writer there to check what readers see).
        self.before_commit: Callable[[], None] | None = None
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
        if self._idle and len(q) >= self.config.batch_size and not self._wake.is_set():
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
        q = self._queue
        last = time.monotonic()  # the last write
        seen = 0  # the queue's length at the last look
        while True:
            config = self.config
            n = len(q)
            woken = False
            if n < config.batch_size:
                wait = max(0.0, last + config.flush_interval - time.monotonic()) if n else config.flush_interval
                if n > seen:
                    # NOTE: entries are arriving: look again shortly, on this thread's own timer.
                    woken = self._wake.wait(min(_POLL, wait))
                else:
                    # NOTE: idle, or nothing came since the last look: put() wakes this thread once a batch
                    # is full. Announced before the queue is looked at again, so that a put() either sees
                    # the flag or its entry is seen here.
                    self._idle = True
                    if len(q) == n:
                        woken = self._wake.wait(wait)
                    self._idle = False
            self._wake.clear()
            seen = len(q)
            now = time.monotonic()
            # NOTE: the event is set by flush(), stop(), a blocked producer, or put() for an idle writer.
            if woken or self._stopping or seen >= config.batch_size or (seen and now - last >= config.flush_interval):
                self._drain()
                last, seen = now, 0
            if self._stopping and not q:
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
            # NOTE: under a backlog one commit takes up to _COMMIT_ENTRIES entries (several chain
            # links): the fixed cost of a commit, and the GIL hand-overs it causes, are paid once.
            size = self.config.batch_size
            budget = max(size, _COMMIT_ENTRIES)
            items: list[Pending] = []
            markers: list[threading.Event] = []
            take, keep = q.popleft, items.append
            while q and len(items) < budget:
                item = take()
                if type(item) is tuple:
                    keep(item)
                else:
                    markers.append(item)
            if items:
                self._persist_with_retry(items, size)
            for marker in markers:
                marker.set()
            if self._blocked:
                with self._space:
                    self._space.notify_all()

    def _persist_with_retry(self, items: list[Pending], size: int) -> None:
        delay = 0.05
        attempts = 0
        while True:
            try:
                self._persist(items, size)
                self.error = None
                return
            except Exception as exc:  # NOTE: never let the thread die; report through flush()/status().
                attempts += 1
                self.error = exc
                self._head = None  # read it again: the failed commit may have left it unknown
                if self._stopping and attempts >= _GIVE_UP_AFTER:
                    self.lost += len(items)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _persist(self, items: list[Pending], size: int) -> None:
        """Write ``items`` in one transaction, ``size`` entries per link of the chain.

        NOTE: rows, payloads and digests are built before BEGIN from the chain's head as this
        writer last saw it, so the write lock is held only to insert; if another process moved
        the head meanwhile, they are built again from the new head (digests leave ``seq`` out).
        """
        self._learn_models(items)
        head = self._head or _head(self._db.conn)
        drops = 0
        while True:
            batch_id, seq, prev = head
            entries, blobs, digests, vectors = encode(items, self._main.cipher, seq, self._models)
            blob_cols = BLOB_COLS if vectors else _PAYLOAD_COLS
            created = now_ms()
            links: list[Any] = []
            for start in range(0, len(items), size):
                chunk = b"".join(digests[start : start + size])
                n = len(chunk) // 32
                chained = batch_hash(prev, batch_id, seq + start, n, chunk)
                links.extend((batch_id, seq + start, n, created, prev, chained, chunk))
                batch_id, prev = batch_id + 1, chained
            if self.before_commit is not None:
                self.before_commit()
            # NOTE: checkpoint_behind: the WAL checkpoint a commit of thousands of rows would run (copying
            # its pages into the database file, and an fsync) runs on a worker thread instead of here.
            with self._db.write(checkpoint_behind=len(items) >= _CHECKPOINT_BEHIND) as conn:
                now = _head(conn)
                if now == head:
                    _insert(conn, "witness_entries", ENTRY_COLS, entries)
                    _insert(conn, "witness_blobs", blob_cols, blobs)
                    _insert(conn, "witness_batches", _BATCH_COLS, links)
                    drops = self._unsaved_drops
                    if drops:
                        conn.execute(
                            "INSERT INTO witness_state (key, value) VALUES ('dropped', ?) "
                            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                            (drops,),
                        )
            if now == head:
                break
            head = now
        self._head = (batch_id, seq + len(items), prev)
        with self._counts:
            self._unsaved_drops -= drops
        self.persisted += len(items)
        self.batches += len(links) // len(_BATCH_COLS)

    def _learn_models(self, items: list[Pending]) -> None:
        """Give every model named in ``items`` an id (in a transaction of its own: an unused name is harmless)."""
        known = self._models
        new = {item[3] for item in items if item[3] not in known}
        new.discard(None)
        if not new:
            return
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO witness_models (name) VALUES (?) ON CONFLICT(name) DO NOTHING", [(n,) for n in new]
            )
            marks = ", ".join("?" * len(new))
            found = conn.execute(f"SELECT name, id FROM witness_models WHERE name IN ({marks})", list(new)).fetchall()
        known.update((str(name), int(mid)) for name, mid in found)


def _head(conn: sqlite3.Connection) -> tuple[int, int, bytes]:
    """(id of the next batch, seq of the next entry, hash of the newest batch)."""
    last = conn.execute("SELECT id, first_seq + n, hash FROM witness_batches ORDER BY id DESC LIMIT 1").fetchone()
    return (int(last[0]) + 1, int(last[1]), bytes(last[2])) if last else (1, 1, GENESIS)


def _insert(conn: sqlite3.Connection, table: str, cols: tuple[str, ...], flat: list[Any]) -> None:
    """Insert rows given as one flat parameter list, in multi-row INSERTs of power-of-two sizes.

    NOTE: one multi-row INSERT is one sqlite3_step, so the writer gives up the GIL a few times
    per commit rather than once per row (executemany): each hand-over costs it up to the
    interpreter's switch interval (5 ms) while a caller thread runs, which starved it under load.
    Sizes are powers of two (1024, then the binary digits of the rest) so that a handful of
    statements serve every commit from SQLite's statement cache: compiling a statement of a new
    size costs more than executing it. Larger statements were measured: the few GIL hand-overs
    they save were worth less than compiling them (~12 ms per 1024 rows) in each new writer.
    """
    width = len(cols)
    start, total = 0, len(flat) // width
    most = _max_rows(conn, width)
    while start < total:
        rows = min(most, 1 << ((total - start).bit_length() - 1))
        conn.execute(_values_sql(table, cols, rows), flat[start * width : (start + rows) * width])
        start += rows


def _max_rows(conn: sqlite3.Connection, width: int) -> int:
    """The rows per statement: at most _ROWS_PER_STATEMENT, and within SQLite's parameter limit."""
    params = min(_PARAMS_PER_STATEMENT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return min(_ROWS_PER_STATEMENT, 1 << max(0, (params // width).bit_length() - 1))


@functools.lru_cache(maxsize=128)
def _values_sql(table: str, cols: tuple[str, ...], rows: int) -> str:
    one = "(" + ", ".join("?" * len(cols)) + ")"
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES " + ", ".join([one] * rows)


@atexit.register
def _drain_at_exit() -> None:
    """Persist what is queued when a program exits without closing its vault."""
    for writer in list(_live):
        try:
            writer.stop()
        except VaultError as exc:
            print(f"sigmavault: {exc}", file=sys.stderr)
