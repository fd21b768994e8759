"""An in-memory cache of one part's records that stays correct when other processes write.

SQLite's ``PRAGMA data_version`` changes whenever *another* connection commits anything; a
one-row generation counter in the part's own table, bumped by every write of that part, says
whether the commit touched the part at all. So a hit costs one PRAGMA (about a microsecond),
and the cache is dropped only when another connection changed this part. Writes made through
:meth:`VersionedCache.write` update the cache after their commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from sigmavault.store.sqlite import Database

__all__ = ["VersionedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class VersionedCache(Generic[K, V]):
    """A bounded LRU map ``key -> value`` guarded by the database's change counters.

    ``clock_table`` is a table of the part with one row and one INTEGER column ``gen``. Values
    must be immutable (callers build fresh objects from them), since a hit hands out the cached one.

    NOTE: the cache lock is never held while calling into the database, so a thread that holds
    the database's write lock (a nested write) can always take it: no lock-order deadlock.
    """

    def __init__(self, db: Database, clock_table: str, *, capacity: int = 65536) -> None:
        self._db = db
        self._gen_sql = f"SELECT gen FROM {clock_table}"
        self._bump_sql = f"UPDATE {clock_table} SET gen = ?"
        self.capacity = max(1, capacity)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._epoch = 0  # advances on every clear and every applied write: a fill racing one is dropped
        self._dv: int | None = db.data_version()
        self._gen: int | None = self._read_gen()

    def _read_gen(self) -> int | None:
        row = self._db.one(self._gen_sql)
        return None if row is None else int(row[0])

    def _sync(self) -> bool:
        """Drop the cache if another connection changed the part; False while it must be bypassed.

        NOTE: inside an open transaction on this connection (a nested write, or another thread's)
        rows read may never commit, so they are neither served from nor put into the cache.
        """
        if self._db.conn.in_transaction:
            return False
        dv = self._db.data_version()  # read before the counter: a commit in between is seen next time
        if dv == self._dv:
            return True
        gen = self._read_gen()
        with self._lock:
            if gen != self._gen:
                self._clear()
                self._gen = gen
            self._dv = dv
        return True

    def _clear(self) -> None:
        self._data.clear()
        self._epoch += 1

    def fetch(self, key: K, load: Callable[[], V | None]) -> V | None:
        """The cached value of ``key``, or ``load()`` (remembered unless it is ``None``)."""
        if not self._sync():
            return load()
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                return hit
            epoch = self._epoch
        value = load()
        if value is not None:
            with self._lock:
                if epoch == self._epoch:
                    self._data[key] = value
                    if len(self._data) > self.capacity:
                        self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def __len__(self) -> int:
        return len(self._data)

    @contextmanager
    def write(self) -> Iterator[tuple[sqlite3.Connection, dict[K, V | None]]]:
        """A write transaction of the part; yields ``(conn, changes)``.

        Put ``key: value`` (or ``key: None`` to forget a key) in ``changes``; they reach the cache
        only after the transaction commits. Joined to an outer transaction (whose fate is not
        known here) or after another connection changed the part, the cache is cleared instead.
        """
        nested = self._db.conn.in_transaction  # NOTE: another thread's open txn also reads True: safe
        changes: dict[K, V | None] = {}
        try:
            with self._db.write() as conn:
                before = int(conn.execute(self._gen_sql).fetchone()[0])
                conn.execute(self._bump_sql, (before + 1,))
                yield conn, changes
        except BaseException:
            with self._lock:
                self._clear()
                self._dv = None  # re-read the counter before trusting the cache again
            raise
        with self._lock:
            self._epoch += 1
            if nested or before != self._gen:
                self._clear()
                self._dv = None  # re-read the counter once the outer transaction is over
                return
            self._gen = before + 1
            for key, value in changes.items():
                if value is None:
                    self._data.pop(key, None)
                else:
                    self._data[key] = value
                    self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
