"""The SQLite connection: WAL mode, explicit transactions, versioned schema per part.

SQLite is the source of truth for every record. One connection per open vault; writes take
``BEGIN IMMEDIATE`` so that concurrent writers (threads or processes) queue on the busy timeout
instead of failing half-way with "database is locked", and readers never block in WAL mode.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sigmavault.errors import Corrupted, ReadOnly, StorageError, StorageFull, VaultClosed, VaultError, VaultLocked
from sigmavault.store.ioerrors import storage_error

__all__ = ["Cipher", "Database", "Migration"]

# A migration step is a list of SQL statements or a function given the connection inside the
# write transaction. Steps are applied in order; a part's version is the number applied.
Migration = Sequence[str] | Callable[[sqlite3.Connection], None]

_SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS sv_schema (part TEXT PRIMARY KEY, version INTEGER NOT NULL)"
_AUTOCHECKPOINT = 1000  # SQLite's default: a commit that leaves this many WAL pages checkpoints them
_BUSY_WORDS = ("database is locked", "database is busy", "database table is locked")
_CORRUPT_WORDS = ("malformed", "not a database", "corrupt")
_FULL_WORDS = ("database or disk is full",)
_IO_WORDS = ("disk i/o error", "unable to open database file", "attempt to write a readonly database")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return any(word in str(exc) for word in _BUSY_WORDS)


class Cipher(Protocol):
    """Seals record fields at rest (see sigmavault.crypto). ``aad`` binds a ciphertext to its place:
    parts pass ``f"{table}/{record_id}/{field}".encode()`` so a sealed value moved elsewhere fails to open."""

    def seal(self, aad: bytes, plaintext: bytes) -> bytes: ...

    def open(self, aad: bytes, sealed: bytes) -> bytes: ...


class Database:
    """A thread-safe wrapper around one SQLite connection in WAL mode.

    ``write()`` is a re-entrant transaction: nested uses join the outermost one, so a facade
    can span several parts in one atomic commit.
    """

    def __init__(self, path: Path, *, readonly: bool = False, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.readonly = readonly
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._depth = 0
        self._write_hooks: list[tuple[Callable[[], None], Callable[[], None] | None]] = []
        # NOTE: set by the facade when the vault is opened with a key; every part seals its
        # sensitive fields (text, metadata, payloads) with it when it is not None.
        self.cipher: Cipher | None = None
        self.immutable = False
        self._checkpointer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._connect(path, readonly, busy_timeout)
            self._setup(self._conn, readonly, busy_timeout)
        except sqlite3.OperationalError as exc:
            self._drop()
            if _is_busy(exc):
                raise VaultLocked(f"{path}: another process holds the vault busy; try again") from exc
            raise VaultError(f"{path}: cannot open the SQLite store: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self._drop()
            raise Corrupted(f"{path}: not a readable SQLite database ({exc}); restore a backup") from exc
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _setup(self, conn: sqlite3.Connection, readonly: bool, busy_timeout: float) -> None:
        """The connection's pragmas and the schema table, retried while another process holds a lock.

        NOTE: SQLite answers "database is locked" at once, without waiting on the busy timeout,
        where waiting could deadlock: two processes creating the same vault both read the new file
        and then both need its exclusive lock to switch it to WAL. Every statement here is
        idempotent, so the loser retries until ``busy_timeout`` has passed.
        """
        deadline = time.monotonic() + busy_timeout
        pause = 0.005
        while True:
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                if not readonly:
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if str(mode).lower() != "wal":
                        raise VaultError(f"{self.path}: could not switch SQLite to WAL mode (got {mode!r})")
                # NOTE: FULL makes each acknowledged commit durable across power loss; NORMAL could
                # lose the last commits, which the crash guarantee forbids for units and edges.
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA temp_store = MEMORY")
                conn.execute("PRAGMA cache_size = -65536")
                conn.execute("PRAGMA mmap_size = 268435456")
                if readonly:
                    conn.execute("PRAGMA query_only = 1")
                else:
                    conn.execute(_SCHEMA_TABLE)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 0.1)

    def _connect(self, path: Path, readonly: bool, busy_timeout: float) -> sqlite3.Connection:
        """The connection. A read-only vault in a directory this process cannot write opens with
        ``mode=ro`` (nothing is created), or as immutable where even that fails.

        NOTE: a WAL database needs its ``-shm`` file, which a read-only directory cannot hold; there
        no writer can exist either, so the file is read as an immutable snapshot. In a writable
        directory a frozen vault opens as before (query_only): a ``mode=ro`` connection there would
        leave ``-wal``/``-shm`` files behind that it may not remove on close.
        """

        def connect(target: str, uri: bool = False) -> sqlite3.Connection:
            return sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False, timeout=busy_timeout)

        if not readonly or os.access(path.parent, os.W_OK):
            return connect(str(path))
        uri = path.resolve().as_uri()
        conn = connect(f"{uri}?mode=ro", uri=True)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
        self.immutable = True
        return connect(f"{uri}?immutable=1", uri=True)

    # -- connection -------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise VaultClosed("the vault is closed; open it again with sigmavault.open(path)")
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        self._join_checkpoint()  # NOTE: its connection closes first, so ours is last and tidies the WAL
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def data_version(self) -> int:
        """Changes whenever another connection commits; cheap enough to call per search."""
        with self._lock:
            return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def add_write_hook(self, hook: Callable[[], None], *, on_rollback: Callable[[], None] | None = None) -> None:
        """Run ``hook`` at the start of every outermost write transaction (inside it).

        ``on_rollback`` runs when that transaction rolls back instead of committing, so a hook
        that moved buffered state into the transaction can put it back.
        """
        self._write_hooks.append((hook, on_rollback))

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def write(
        self, *, wait: bool = True, durable: bool = True, checkpoint_behind: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction; commits on success, rolls back on any exception.

        With ``wait=False`` a busy lock raises :class:`VaultLocked` at once instead of waiting.
        ``durable=False`` commits without the fsync (``synchronous=NORMAL``): the commit survives a
        process crash but an OS crash may lose it. Only for data the spec lets us lose (access counts).
        ``checkpoint_behind=True`` (a bulk write, as the outermost transaction): the WAL checkpoint
        its commit would run (copying every page it wrote into the database file, and an fsync) runs
        on a worker thread with its own connection instead. The commit is as durable either way: a
        checkpoint only moves committed pages, and a crash during it leaves them in the WAL.
        """
        if self.readonly:
            raise ReadOnly("this vault was opened read-only (frozen=True); open it without frozen to write")
        with self._lock:
            conn = self.conn
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            if checkpoint_behind:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            committed = False
            try:
                yield from self._outermost(conn, wait=wait)
                committed = True
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous = FULL")
                if checkpoint_behind:
                    conn.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT}")
            if committed and checkpoint_behind:
                self._checkpoint_behind()

    def _checkpoint_behind(self) -> None:
        """Run a PASSIVE WAL checkpoint on a worker thread (one at a time; a busy one is left to finish)."""
        if self._checkpointer is not None and self._checkpointer.is_alive():
            return  # NOTE: later commits' pages go with the next checkpoint (automatic or behind)
        self._checkpointer = threading.Thread(target=self._checkpoint, name="sigmavault-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout)
        except sqlite3.Error:
            return
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # NOTE: the pages stay in the WAL; the next automatic checkpoint moves them
        finally:
            conn.close()

    def _join_checkpoint(self) -> None:
        """Wait for a checkpoint running behind the writers (before closing, and in tests)."""
        worker = self._checkpointer
        if worker is not None:
            worker.join()

    def _outermost(self, conn: sqlite3.Connection, *, wait: bool) -> Iterator[sqlite3.Connection]:
        """Begin, run the write hooks, hand out the connection, then commit or roll back."""
        self._begin(conn, wait=wait)
        self._depth = 1
        try:
            for hook, _ in self._write_hooks:
                hook()
            yield conn
        except BaseException as exc:
            self._depth = 0
            self._rollback(conn)
            # NOTE: parts run statements on the yielded connection; a raw sqlite3 error
            # escaping them still reaches the caller as a VaultError.
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            if isinstance(exc, OSError):  # a part's file write inside the transaction
                raise storage_error(exc, self.path.parent, "writing the vault's files") from exc
            raise
        self._depth = 0
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise self._translate(exc) from exc

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for _, undo in self._write_hooks:
            if undo is not None:
                undo()

    def _begin(self, conn: sqlite3.Connection, *, wait: bool) -> None:
        if not wait:
            conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + self.busy_timeout
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    # NOTE: SQLite's own busy handler already waited busy_timeout; the loop only
                    # covers the rare SQLITE_BUSY_SNAPSHOT case that skips the handler.
                    if not _is_busy(exc) or not wait or time.monotonic() > deadline:
                        raise self._translate(exc) from exc
                    time.sleep(0.01)
        finally:
            if not wait:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several statements (a deferred read transaction)."""
        with self._lock:
            conn = self.conn
            outer = not (self._depth or conn.in_transaction)
            try:
                # NOTE: BEGIN and COMMIT inside the try: a damaged page can fail either of them.
                if outer:
                    conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    if outer and conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> VaultError:
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            return VaultLocked(
                f"{self.path}: another writer held the vault for more than {self.busy_timeout:.0f} s; "
                "retry, or raise busy_timeout in sigmavault.open()"
            )
        text = str(exc).lower()
        if any(word in text for word in _FULL_WORDS):
            return StorageFull(
                f"{self.path}: the disk is full ({exc}); free disk space and retry: nothing acknowledged was lost"
            )
        if any(word in text for word in _IO_WORDS):
            return StorageError(f"{self.path}: SQLite could not read or write its files ({exc})")
        if any(word in str(exc) for word in _CORRUPT_WORDS):
            return Corrupted(f"{self.path}: the SQLite store is damaged ({exc}); run `sigmavault check`")
        return VaultError(f"{self.path}: SQLite error: {exc}")

    # -- queries ----------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self.conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchone()
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    # -- schema -----------------------------------------------------------------------------

    def migrate(self, part: str, steps: Sequence[Migration]) -> int:
        """Bring ``part``'s tables to ``len(steps)``; returns the version now in force."""
        row = self.one("SELECT version FROM sv_schema WHERE part = ?", (part,)) if self._has_schema() else None
        current = int(row[0]) if row else 0
        if current > len(steps):
            raise VaultError(
                f"{self.path}: the '{part}' tables are at schema version {current}, newer than this "
                f"sigmavault knows ({len(steps)}); upgrade sigmavault to open this vault"
            )
        if current == len(steps):
            return current
        if self.readonly:
            raise ReadOnly(f"{self.path}: the '{part}' tables need a schema upgrade; open without frozen=True once")
        with self.write() as conn:
            row = conn.execute("SELECT version FROM sv_schema WHERE part = ?", (part,)).fetchone()
            current = int(row[0]) if row else 0
            for step in steps[current:]:
                if callable(step):
                    step(conn)
                else:
                    for statement in step:
                        conn.execute(statement)
            conn.execute(
                "INSERT INTO sv_schema (part, version) VALUES (?, ?) "
                "ON CONFLICT(part) DO UPDATE SET version = excluded.version",
                (part, len(steps)),
            )
        return len(steps)

    def _has_schema(self) -> bool:
        return self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sv_schema'") is not None

    def integrity_problems(self) -> list[str]:
        """SQLite's own ``PRAGMA integrity_check``; an empty list means healthy."""
        rows = self.all("PRAGMA integrity_check")
        messages = [str(r[0]) for r in rows]
        return [] if messages == ["ok"] else [f"sqlite: {m}" for m in messages]


def prune_schema(conn: sqlite3.Connection, keep: Sequence[str]) -> None:
    """Forget the schema records of every part not in ``keep`` (a reduced snapshot copy of a vault)."""
    conn.execute(f"DELETE FROM sv_schema WHERE part NOT IN ({','.join('?' * len(keep))})", list(keep))
