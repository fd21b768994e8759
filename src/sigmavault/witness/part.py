"""``vault.witness``: record one audit entry per request without waiting, search and aggregate them.

``record()`` validates and queues (see writer.py); reads first flush what this process queued,
so a query sees every entry recorded before it. Filters shared by the read methods (keyword
arguments): ``since``/``until`` (UTC ms or datetime; since inclusive, until exclusive),
``session_id``, ``model``, ``quality_below``/``quality_above`` (strict), ``errors_only``,
``error_type``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from sigmavault import validate
from sigmavault.embed import as_embedder, check_matrix
from sigmavault.errors import Corrupted, EmbedderUnavailable, InvalidInput, NotFound, ReadOnly, VaultClosed, VaultError
from sigmavault.store import Database
from sigmavault.store.files import file_digest
from sigmavault.types import CheckReport, Vector
from sigmavault.witness import aggregate, archive, chain, query
from sigmavault.witness.entry import WitnessEntry, WitnessHit, normalize, now_ms
from sigmavault.witness.query import Filters, Order
from sigmavault.witness.records import decode
from sigmavault.witness.schema import MIGRATIONS, PART
from sigmavault.witness.writer import Overflow, Writer, WriterConfig

__all__ = ["Witness"]

_DAY_MS = 86_400_000


class Witness:
    """The witness log of one vault (``vault.witness``). Thread-safe; the writer thread starts lazily."""

    def __init__(self, db: Database, root: Path) -> None:
        self._db = db
        self._root = root
        self._config = WriterConfig()
        self._writer: Writer | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        try:
            db.migrate(PART, MIGRATIONS)
            self._ready = True
        except ReadOnly:
            self._ready = False  # NOTE: a frozen vault that never held a witness log reads as empty.

    # -- writing ----------------------------------------------------------------------------

    def configure(
        self,
        *,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        queue_size: int | None = None,
        overflow: Overflow | None = None,
    ) -> WriterConfig:
        """Change batching (entries per transaction, seconds between writes) and back-pressure.

        ``overflow="block"`` (default) makes ``record()`` wait while ``queue_size`` entries are
        queued; ``"drop"`` discards the entry instead, counts it (``status()["dropped"]``, and
        persisted as ``dropped_total``) and makes ``record()`` return None. Takes effect at once.
        """
        new = WriterConfig(
            batch_size=self._config.batch_size if batch_size is None else batch_size,
            flush_interval=self._config.flush_interval if flush_interval is None else flush_interval,
            queue_size=self._config.queue_size if queue_size is None else queue_size,
            overflow=self._config.overflow if overflow is None else overflow,
        )
        new.validate()
        for name in new.__slots__:
            setattr(self._config, name, getattr(new, name))
        return self._config

    def record(self, entry: WitnessEntry | Mapping[str, Any]) -> str | None:
        """Queue one entry and return its request id at once (None if the ``drop`` policy dropped it).

        Raises InvalidInput on a malformed entry (nothing is queued). The entry is persisted by
        the background writer within ``flush_interval`` seconds; call ``flush()`` to wait for it.
        """
        item = normalize(entry)
        writer = self._writer or self._start()
        return item[0] if writer.put(item) else None

    def _start(self) -> Writer:
        with self._start_lock:
            if self._closed:
                raise VaultClosed("the witness log is closed; open the vault again to record")
            if self._db.readonly:
                raise ReadOnly("this vault was opened read-only (frozen=True); open it without frozen to record")
            if self._writer is None:
                self._writer = Writer(self._db, self._config)
            return self._writer

    def flush(self) -> None:
        """Wait until every entry recorded so far by this process is committed."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Drain the queue and stop the writer (idempotent). Called by ``vault.close()``."""
        with self._start_lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()

    def status(self) -> dict[str, Any]:
        """Counters: stored entries and batches, archives, queue, drops (this process and in total)."""
        w = self._writer
        out: dict[str, Any] = {
            "queued": 0 if w is None else w.queued,
            "dropped": 0 if w is None else w.dropped,
            "persisted": 0 if w is None else w.persisted,
            "writer": "idle" if w is None else ("error: " + str(w.error) if w.error else "running"),
            "config": {n: getattr(self._config, n) for n in self._config.__slots__},
        }
        if not self._ready:
            return {"entries": 0, "batches": 0, "archives": 0, "archived_entries": 0, "dropped_total": 0, **out}
        self._sync()
        with self._db.read() as conn:
            entries = conn.execute("SELECT COUNT(*) FROM witness_entries").fetchone()[0]
            batches = conn.execute("SELECT COUNT(*) FROM witness_batches").fetchone()[0]
            files, archived = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(entries), 0) FROM witness_archives"
            ).fetchone()
            dropped = conn.execute("SELECT value FROM witness_state WHERE key = 'dropped'").fetchone()
        return {
            "entries": int(entries), "batches": int(batches), "archives": int(files), "archived_entries": int(archived),
            "dropped_total": int(dropped[0]) if dropped else 0, **out,
        }  # fmt: skip

    def head(self) -> str | None:
        """Hex SHA-256 of the newest batch: pin it elsewhere to make a rewritten chain detectable."""
        if not self._ready:
            return None
        self._sync()
        row = self._db.one("SELECT hash FROM witness_batches ORDER BY id DESC LIMIT 1")
        return None if row is None else bytes(row[0]).hex()

    # -- reading ----------------------------------------------------------------------------

    def _sync(self) -> None:
        w = self._writer
        if w is not None and w.pending:
            w.flush()

    def query(
        self,
        *,
        since: Any = None,
        until: Any = None,
        session_id: str | None = None,
        model: str | None = None,
        quality_below: float | None = None,
        quality_above: float | None = None,
        errors_only: bool = False,
        error_type: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        order: Order = "newest",
        embeddings: bool = True,
    ) -> list[WitnessEntry]:
        """Entries matching every given filter, newest first (``order="oldest"`` for the reverse)."""
        filters = Filters(
            since=since, until=until, session_id=session_id, model=model, quality_below=quality_below,
            quality_above=quality_above, errors_only=errors_only, error_type=error_type,
        )  # fmt: skip
        if not self._ready:
            return []
        self._sync()
        with self._db.read() as conn:
            rows = query.select(conn, filters, order=order, limit=limit, offset=offset)
        return [decode(r, self._db.cipher, embeddings=embeddings) for r in rows]

    def export_otel(self, tracer_provider: Any = None, *, limit: int | None = None, **filters: Any) -> int:
        """Send entries (oldest first, matching ``filters``) as OpenTelemetry GenAI spans; returns how many.

        ``tracer_provider`` defaults to OpenTelemetry's global one; point it at an OTLP exporter to feed
        Phoenix, Langfuse or any collector. Needs the ``otel`` extra. See :mod:`sigmavault.witness.otel`.
        """
        from sigmavault.witness.otel import export

        return export(self.query(limit=limit, order="oldest", embeddings=False, **filters), tracer_provider)

    def tail(self, n: int = 20, **filters: Any) -> list[WitnessEntry]:
        """The ``n`` newest entries, oldest of them first (like ``tail``)."""
        return list(reversed(self.query(limit=n, embeddings=False, **filters)))

    def get(self, request_id: str) -> WitnessEntry:
        """The entry with ``request_id`` (the newest, if it was recorded more than once)."""
        found = self._by_request(request_id)
        if found is None:
            raise NotFound(f"no witness entry with request_id {request_id!r}")
        return found

    def _by_request(self, request_id: str) -> WitnessEntry | None:
        if not self._ready:
            return None
        self._sync()
        with self._db.read() as conn:
            rows = query.select(conn, Filters(request_id=request_id), limit=1)
        return decode(rows[0], self._db.cipher) if rows else None

    def count(self, **filters: Any) -> int:
        """How many entries match the filters (see the module docstring)."""
        where, params = _filters(filters).sql()
        if not self._ready:
            return 0
        self._sync()
        return int(self._db.one(f"SELECT COUNT(*) FROM witness_entries e WHERE {where}", params)[0])

    def similar(
        self,
        *,
        text: str | None = None,
        vector: Any = None,
        request_id: str | None = None,
        on: Literal["query", "response"] = "query",
        k: int = 10,
        embedder: Any = None,
        **filters: Any,
    ) -> list[WitnessHit]:
        """The ``k`` entries whose query (or response) embedding is closest by cosine to the probe.

        The probe is exactly one of: ``text`` (embedded with ``embedder``, a callable or
        Embedder: the one that made the stored embeddings), ``vector``, or ``request_id`` (that
        entry's own embedding; the entry itself is left out). Exact search over all candidates.
        """
        validate.choice(on, "on", ("query", "response")), validate.integer(k, "k", lo=1)
        given = [p for p in (text, vector, request_id) if p is not None]
        if len(given) != 1:
            raise InvalidInput("similar() needs exactly one probe: text=..., vector=... or request_id=...")
        flt = _filters(filters)
        exclude = None
        if text is not None:
            probe = self._embed(text, embedder)
        elif vector is not None:
            probe = check_matrix(vector, rows=1, what="vector")[0]
        else:
            entry = self.get(str(request_id))
            found = entry.query_embedding if on == "query" else entry.response_embedding
            if found is None:
                raise InvalidInput(f"entry {request_id!r} has no {on} embedding to compare with")
            probe, exclude = found, entry.seq
        if not self._ready:
            return []
        self._sync()
        with self._db.read() as conn:
            ranked = query.nearest(conn, probe, flt, on=on, k=k, exclude=exclude)
            rows = query.rows_by_seq(conn, [seq for seq, _ in ranked])
        return [WitnessHit(score=s, entry=decode(rows[seq], self._db.cipher)) for seq, s in ranked if seq in rows]

    def similar_errors(self, **kwargs: Any) -> list[WitnessHit]:
        """``similar()`` among failed entries only: "requests like this one that failed"."""
        kwargs["errors_only"] = True
        return self.similar(**kwargs)

    def _embed(self, text: str, embedder: Any) -> Vector:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("text must be a non-empty string")
        if embedder is None:
            raise EmbedderUnavailable(
                "similar(text=...) needs embedder=...: pass the embedder that made the stored embeddings"
            )
        emb = as_embedder(embedder)
        try:
            raw = emb.embed([text])
        except VaultError:
            raise
        except Exception as exc:
            raise EmbedderUnavailable(f"the embedder failed: {type(exc).__name__}: {exc}") from exc
        vec: Vector = check_matrix(raw, rows=1, what="embedder output")[0]
        return vec

    # -- aggregates -------------------------------------------------------------------------

    def stats(
        self,
        field: str = "total_ms",
        by: str | Sequence[str] | None = "model",
        percentiles: Sequence[float] = (50, 95, 99),
        *,
        bucket: Any = "1h",
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """Count, mean, min, max and percentiles (numpy's linear method) of a numeric field per group.

        ``by``: None, or any of "model", "time" (buckets of ``bucket``, e.g. "15m", "1h", "1d"),
        "session_id", "error_type", or a list of them. Entries without the field are left out.
        """
        flt = _filters(filters)
        if not self._ready:
            return []
        self._sync()
        with self._db.read() as conn:
            return aggregate.stats(conn, flt, field=field, by=by, percentiles=percentiles, bucket=bucket)

    def quality_trend(
        self, *, bucket: Any = "1h", percentiles: Sequence[float] = (50,), **filters: Any
    ) -> list[dict[str, Any]]:
        """Quality per time bucket (count, mean, percentiles), oldest bucket first."""
        return self.stats("quality", by="time", percentiles=percentiles, bucket=bucket, **filters)

    def model_usage(self, **filters: Any) -> list[dict[str, Any]]:
        """Per model: requests, share, errors, tokens, mean quality and latency; busiest first."""
        flt = _filters(filters)
        if not self._ready:
            return []
        self._sync()
        with self._db.read() as conn:
            return aggregate.model_usage(conn, flt)

    # -- retention --------------------------------------------------------------------------

    def archive(
        self, *, older_than_days: float, chunk: int = 50_000, progress: Callable[[int, int], None] | None = None
    ) -> archive.ArchiveResult:
        """Move entries older than ``older_than_days`` to gzip JSONL files under ``<vault>/witness-archive/``.

        Each file is written durably before its entries leave the hot store, in one transaction
        per ``chunk`` entries; hot entries plus archived entries always equal what was written.
        """
        if isinstance(older_than_days, bool) or not isinstance(older_than_days, int | float) or older_than_days < 0:
            raise InvalidInput(f"older_than_days must be a non-negative number, got {older_than_days!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise InvalidInput(f"chunk must be a positive integer, got {chunk!r}")
        if self._db.readonly:
            raise ReadOnly("this vault was opened read-only (frozen=True); open it without frozen to archive")
        self._sync()
        cutoff = now_ms() - int(older_than_days * _DAY_MS)
        return archive.archive(self._db, self._root, cutoff_ms=cutoff, chunk=chunk, progress=progress)

    def archives(self) -> list[dict[str, Any]]:
        """The archive files, oldest first: file, entries, seq and time ranges, bytes, sha256."""
        if not self._ready:
            return []
        cols = ("file", "entries", "first_seq", "last_seq", "min_ts", "max_ts", "bytes", "sha256", "created_ms")
        rows = self._db.all(f"SELECT {', '.join(cols)} FROM witness_archives ORDER BY id")
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def read_archive(self, name: str, *, embeddings: bool = False) -> Iterator[WitnessEntry]:
        """The entries of an archive file (a name from ``archives()`` or a path), in order."""
        validate.flag(embeddings, "embeddings")
        path = archive.archive_path(self._root, validate.path(name, "name"))
        if self._ready and path.parent == self._root / archive.ARCHIVE_DIR:
            self._verify_recorded(path)
        for row in archive.read_rows(path):
            try:
                entry = decode(row, self._db.cipher, embeddings=embeddings)
            except VaultError:
                raise
            except Exception as exc:
                # NOTE: a damaged file is read line by line and its gzip checksum is only checked at
                # its end, so a damaged row (say a vector of 17 bytes) can reach decode() first.
                raise Corrupted(f"{path}: an entry cannot be read ({type(exc).__name__}: {exc})") from exc
            yield entry

    def _verify_recorded(self, path: Path) -> None:
        """Refuse an archive of this vault whose bytes differ from the checksum recorded when it was written.

        NOTE: checked before decoding, so every flipped byte is found the same way, including those
        gzip's own CRC cannot see (its header) and those that break the deflate stream first.
        """
        row = self._db.one("SELECT sha256 FROM witness_archives WHERE file = ?", (path.name,))
        if row is None:
            return
        try:
            digest = file_digest(path)[1]
        except OSError as exc:
            raise Corrupted(f"{path}: archive cannot be read ({exc})") from exc
        if digest != row[0]:
            raise Corrupted(f"{path}: archive does not match its recorded checksum; restore it from a backup")

    # -- health -----------------------------------------------------------------------------

    def check(self, report: CheckReport) -> None:
        """Verify the hash chain against every entry, and each archive file against its checksum."""
        if not self._ready:
            report.notes.append("witness: no witness tables (never used)")
            return
        if self._writer is not None:
            try:
                self._sync()
            except VaultError as exc:
                report.problems.append(f"witness: queued entries cannot be persisted: {exc}")
        with self._db.read() as conn:
            problems, counts = chain.verify(conn)
            recorded = conn.execute("SELECT file, entries, bytes, sha256 FROM witness_archives ORDER BY id").fetchall()
            stray = archive.orphans(conn, self._root)
            dropped = conn.execute("SELECT value FROM witness_state WHERE key = 'dropped'").fetchone()
        report.problems.extend(problems)
        folder = self._root / archive.ARCHIVE_DIR
        for name, entries, size, digest in recorded:
            path = folder / name
            if not path.is_file():
                report.problems.append(f"witness: archive {name} is missing; its {entries} entries are lost")
            elif path.stat().st_size != size or file_digest(path)[1] != digest:
                report.problems.append(f"witness: archive {name} does not match its recorded checksum")
        for path in stray:
            report.notes.append(f"witness: {path.name} is left from an interrupted archive step (entries still hot)")
        note = f"witness: {counts['entries']} entries in {counts['batches']} batches verified by hash chain"
        if counts["linkage_only"]:
            note += f" ({counts['linkage_only']} fully archived batches by linkage only)"
        report.notes.append(note)
        if dropped and dropped[0]:
            report.notes.append(f"witness: {dropped[0]} entries were dropped by the overflow policy (queue full)")


def _filters(kw: Mapping[str, Any]) -> Filters:
    try:
        return Filters(**kw)
    except TypeError:
        known = "since, until, session_id, model, quality_below, quality_above, errors_only, error_type"
        raise InvalidInput(f"unknown filter(s) {sorted(kw)}; filters are: {known}") from None
