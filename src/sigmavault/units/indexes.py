"""Each collection's ANN index: chosen, built, persisted, verified, caught up and compacted.

An index is derived data (DESIGN.md): losing one costs a rebuild, never a unit. The file
``<root>/index/<collection id>.<generation>.faiss`` is recorded in the ``ann_indexes`` table with
the row watermark it covers (``covers``), its size and SHA-256, written in the same transaction
that renames it into place. The file is checked against that row (size, checksum, FAISS type,
dimension, count): an IVF file before FAISS reads a byte; an HNSW file is memory-mapped after its
size check, its graph checked for anything FAISS could follow out of bounds, searched at once, and
its checksum confirmed on the background thread (see :meth:`IndexManager._load_small`). A missing,
stale or damaged file is rebuilt, reporting progress to the vault's reporter (the CLI draws it as
a bar).

No search loads, extends or builds an index: that work runs on one background thread
(``index.jobs``), scheduled by the write that needs it and by a search that finds the index
missing or behind. Until it is done a search answers from the index it has plus an exact scan
of the rows past it, or exactly over every row; :meth:`IndexManager.wait` blocks until it is
done, and closing a writable vault finishes it (the next open finds the index ready).

Rows added after the file was written (``covers`` up to the vector watermark) are searched
exactly beside the index; once there are more than :data:`TAIL_MAX` of them the index is
extended and written again. Deleted and retired rows stay in the index until a rebuild and are
filtered out at search time by the collection's row codes; when they pass :data:`DEAD_SHARE` of
the entries (or an IVF index has grown to :data:`GROWTH_REBUILD` times the rows its lists were
trained on) the next extension rebuilds it. ``compact()`` does the same on demand.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault.errors import Corrupted, InvalidInput, VaultError
from sigmavault.index.ann import KINDS, AnnIndex, BuildParams, QueryParams
from sigmavault.index.jobs import Jobs
from sigmavault.store import Database, Migration
from sigmavault.store.files import file_digest, publish, remove_file, remove_stale_temps, temp_path
from sigmavault.types import CheckReport, Reporter
from sigmavault.units.catalog import Catalog, RowState

__all__ = ["AUTO_MIN_ROWS", "CHOICES", "IndexConfig", "IndexManager", "Loaded", "keep_indexes"]

PART = "ann"
MIGRATIONS: list[Migration] = [
    [
        """CREATE TABLE ann_indexes (
            collection_id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            params TEXT NOT NULL,
            covers INTEGER NOT NULL,
            entries INTEGER NOT NULL,
            built_rows INTEGER NOT NULL,
            file TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            built_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
    ],
]

CHOICES = ("auto", "exact", *KINDS)
AUTO_MIN_ROWS = 20_000  # "auto" searches exactly below this many live vectors (it is fast and perfect there)
AUTO_KIND = "hnsw"  # and with this kind above (docs/architecture.md, "Index choice", has the numbers)
MIN_ANN_ROWS = 1_000  # every kind searches exactly below this many live vectors
SYNC_LOAD_BYTES = 256 << 20  # index files up to this size are verified and loaded by the first search
TAIL_MAX = 8_192  # rows past the index scanned exactly before the index is extended
DEAD_SHARE = 0.25  # rebuild when this share of the entries are deleted or retired rows
GROWTH_REBUILD = 4.0  # rebuild an IVF index holding this many times the rows its lists were trained on
_COLS = "kind, params, covers, entries, built_rows, file, bytes, sha256, built_at, updated_at"


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """A collection's index choice and defaults (stored in its config JSON under ``"index"``)."""

    kind: str = "auto"
    m: int = 32
    ef_construction: int = 40
    nlist: int = 0
    bits: int = 0
    ef: int = 0  # 0: by the index's size (index.ann.default_ef)
    nprobe: int = 0
    rerank: int = 0

    def __post_init__(self) -> None:
        if self.kind not in CHOICES:
            raise InvalidInput(f"index {self.kind!r}: use one of {', '.join(repr(c) for c in CHOICES)}")
        QueryParams(ef=self.ef, nprobe=self.nprobe, rerank=self.rerank)
        self.build_params("hnsw", "ip")

    @classmethod
    def of(cls, config: dict[str, Any]) -> IndexConfig:
        raw = config.get("index") or {}
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def build_params(self, kind: str, metric: str) -> BuildParams:
        return BuildParams(
            kind=kind, metric=metric, m=self.m, ef_construction=self.ef_construction, nlist=self.nlist, bits=self.bits
        )

    def query(self, *, ef: int | None = None, nprobe: int | None = None, rerank: int | None = None) -> QueryParams:
        return _query(self, ef, nprobe, rerank)


@lru_cache(maxsize=1024)
def _query(cfg: IndexConfig, ef: int | None, nprobe: int | None, rerank: int | None) -> QueryParams:
    """Per-search knobs over a collection's defaults (cached: built on every search otherwise)."""
    return QueryParams(
        ef=cfg.ef if ef is None else ef,
        nprobe=cfg.nprobe if nprobe is None else nprobe,
        rerank=cfg.rerank if rerank is None else rerank,
    )


@dataclass(slots=True)
class Loaded:
    """An index ready to search in this process, and what it covers."""

    ann: AnnIndex
    covers: int
    built_rows: int
    file: str | None  # None: held in memory only (a read-only vault)
    mmapped: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    config: Any = None  # the collection config object this was checked against (see prepare)
    digest: str | None = None  # SHA-256 of ``file`` as recorded (verified when ``verified``)
    verified: bool = True  # False: loaded on a search's thread, checksum confirmed by the background thread


@dataclass(slots=True)
class _Record:
    kind: str
    params: BuildParams
    covers: int
    entries: int
    built_rows: int
    file: str
    bytes: int
    sha256: str
    built_at: float
    updated_at: float


Progress = Callable[[int, int], None]


class IndexManager:
    """Owns the ``ann_indexes`` table and the loaded index of each collection in this process."""

    def __init__(self, db: Database, catalog: Catalog, root: Path, *, report: Reporter | None = None) -> None:
        self.db = db
        self.catalog = catalog
        self.dir = root / "index"
        # NOTE: where builds nobody asked for (at a search) report progress; a face draws it.
        self.report = report
        self._loaded: dict[int, Loaded] = {}
        self._configs: dict[int, tuple[Any, IndexConfig]] = {}
        self._lock = threading.RLock()
        self._build_lock = threading.RLock()  # NOTE: one build at a time, background or asked for
        self._epoch = 0  # bumped by forget/drop: a build that started before installs nothing
        self._jobs = Jobs()
        self._stop = threading.Event()
        self._failed: dict[int, int] = {}  # collection id -> rows when its background build failed
        self._rejected: dict[int, str | None] = {}  # collection id -> SHA-256 of a file that failed its checksum
        # collection id -> (file, SHA-256, the AnnIndex being read on a side thread): see prefetch()
        self._prefetched: dict[int, tuple[str, str | None, Future[AnnIndex]]] = {}
        self._has_table = True
        if db.readonly:
            self._has_table = db.one("SELECT 1 FROM sqlite_master WHERE name = 'ann_indexes'") is not None
        else:
            db.migrate(PART, MIGRATIONS)

    # -- choice -----------------------------------------------------------------------------

    def config(self, st: RowState) -> IndexConfig:
        """The collection's parsed index config (parsed again only when its JSON object changes)."""
        cached = self._configs.get(st.info.id)
        if cached is not None and cached[0] is st.info.config:
            return cached[1]
        cfg = IndexConfig.of(st.info.config)
        self._configs[st.info.id] = (st.info.config, cfg)
        return cfg

    def kind_for(self, st: RowState) -> str:
        """``"exact"`` or the ANN kind this collection searches with at its current size."""
        cfg = self.config(st)
        if cfg.kind == "exact" or st.rows < MIN_ANN_ROWS:
            return "exact"
        live = int(np.count_nonzero(st.codes[: st.rows]))
        if live < MIN_ANN_ROWS:
            return "exact"
        if cfg.kind == "auto":
            return AUTO_KIND if live >= AUTO_MIN_ROWS else "exact"
        return cfg.kind

    def prepare(self, st: RowState) -> Loaded | None:
        """The index to search ``st`` with now, or None for exact; never loads or builds on this thread.

        What is missing (no index loaded in this process, too many rows past it, another kind
        asked for) is scheduled on the background thread; meanwhile the search answers from the
        loaded index plus an exact scan of the rows past it, or exactly over every row.
        """
        cid = st.info.id
        h = self._loaded.get(cid)
        # NOTE: the hot path of every search: same config object, nothing to catch up. The kind
        # cannot have changed meanwhile: it depends on the config and on a row count that only grows.
        if h is not None and h.config is st.info.config and h.covers <= st.rows <= h.covers + TAIL_MAX:
            return h
        kind = self.kind_for(st)
        if kind == "exact":
            return None
        params = self.config(st).build_params(kind, st.info.metric)
        if h is not None and (not _same(h.ann.params, params) or h.covers > st.rows):
            h = None
        if h is None:
            h = self._load_small(st, params)
        if h is None or st.rows > h.covers + TAIL_MAX:
            self._schedule(st)
        elif h.config is not st.info.config:
            h.config = st.info.config  # NOTE: a query knob changed; the index still serves
        return h

    def prefetch(self, cid: int, dim: int | None, rows: int) -> None:
        """Start reading ``cid``'s recorded HNSW file on a side thread, if it is not loaded yet.

        NOTE: reopening a large collection costs its row states (0.45 s at 1M units, on the first
        search's thread) and its index file (map + structure check, 0.25 s at 1M); begun when the
        collection is asked for, the second overlaps the first and the first search takes it from
        here (:meth:`_load`). Only the file is read on the side thread (no SQLite): the record was
        read here, and every check that needs the row states still runs at the search.
        """
        # NOTE: asked for on every vault.collection() call: a collection too small for an index (or one
        # whose index is loaded or being read) costs no query here.
        if not dim or rows < MIN_ANN_ROWS or cid in self._loaded or cid in self._prefetched:
            return
        rec = self._record(cid)
        if rec is None or rec.kind != "hnsw" or self._rejected.get(cid) == rec.sha256:
            return
        path = self.dir / rec.file
        done: Future[AnnIndex] = Future()

        def read() -> None:
            try:
                if path.stat().st_size != rec.bytes:
                    raise Corrupted(f"{path}: its size differs from the one recorded when it was written")
                ann = AnnIndex.load(path, rec.params, dim, mmap=True)
                if ann.ntotal != rec.entries:
                    raise Corrupted(f"{path}: holds {ann.ntotal} vectors, {rec.entries} were recorded")
                ann.check_structure()
                done.set_result(ann)
            except BaseException as exc:  # handed to the search that takes it
                done.set_exception(exc)

        self._prefetched[cid] = (rec.file, rec.sha256, done)
        threading.Thread(target=read, name="sigmavault-index-read", daemon=True).start()

    def _load_small(self, st: RowState, params: BuildParams) -> Loaded | None:
        """The recorded index if it can be loaded on a search's thread, else None.

        NOTE: checking a file costs its SHA-256 (about 1.5 GB/s here). An HNSW file is memory
        mapped and its graph checked for anything FAISS could follow out of bounds
        (:meth:`AnnIndex.check_structure`, 0.06 s at 1M), so it serves at once and its checksum
        is confirmed on the background thread (0.45 s at 1M); if that fails the index is dropped
        and rebuilt, and searches answer exactly meanwhile. Until then a damage the structure check
        cannot see changes only which candidates are refined: every score is exact, every hit's
        vector checked against its CRC. Other kinds are read whole, so a file under
        :data:`SYNC_LOAD_BYTES` is verified here (cheaper than the exact scan the search would run
        otherwise) and a larger one on the background thread while searches answer exactly.
        """
        cid = st.info.id
        if self._jobs.busy(cid):
            return None
        rec = self._record(cid)
        if rec is None or not _same(rec.params, params):
            return None
        lazy = rec.kind == "hnsw" and self._rejected.get(cid) != rec.sha256
        if not lazy and rec.bytes > SYNC_LOAD_BYTES:
            return None
        try:
            h = self._load(st, rec, verify=not lazy)
        except Corrupted:
            return None  # NOTE: rebuilt on the background thread, which finds the same fault
        if not h.verified or self._worn(st, h, upto=h.covers):
            self._schedule(st)
        h.config = st.info.config
        with self._lock:
            return self._loaded.setdefault(st.info.id, h)

    def wait(self, st: RowState) -> None:
        """Schedule what ``st`` needs (load, extend, build) and block until the background thread did it."""
        if self.kind_for(st) == "exact":
            return
        self._failed.pop(st.info.id, None)
        self.prepare(st)
        self._jobs.wait(st.info.id)

    def _schedule(self, st: RowState) -> None:
        cid = st.info.id
        # NOTE: a job already running may have started from an older state (or be discarded by
        # a rollback): one more is queued behind it, and costs nothing when there is nothing to do.
        if self._jobs.queued(cid) or self._failed.get(cid) == st.rows:
            return
        self._jobs.schedule(cid, lambda: self._refresh(cid))

    def _refresh(self, cid: int) -> None:
        """On the background thread: bring the collection's index up to date (load, extend or build)."""
        if self._stop.is_set():
            return
        try:
            st = self.catalog.state(cid)
        except VaultError:
            return  # NOTE: the collection was dropped, or the vault is closing
        try:
            self.ensure(st)
        except _Cancelled:
            return
        except BaseException as exc:
            self._failed[cid] = st.rows  # NOTE: no retry at every search; the next write retries
            warnings.warn(f"sigmavault: could not index {st.info.name!r}: {exc}", stacklevel=2)
            raise

    def ensure(self, st: RowState) -> Loaded | None:
        """Load, extend or rebuild the collection's index on this thread (None: searched exactly)."""
        kind = self.kind_for(st)
        if kind == "exact":
            return None
        cid = st.info.id
        params = self.config(st).build_params(kind, st.info.metric)
        # NOTE: the database is read before and written after the build, never under self._lock
        # (a thread inside vault.transaction() holds the database lock and may want self._lock);
        # the build itself runs under self._build_lock only, so searches never wait for it.
        rec = self._record(cid)
        with self._build_lock:
            with self._lock:
                h = self._loaded.get(cid)
                epoch = self._epoch
            if h is not None and not h.verified:
                h = self._confirm(st, h)
            if h is not None and _same(h.ann.params, params) and h.covers <= st.rows <= h.covers + TAIL_MAX:
                if self._worn(st, h, upto=h.covers):
                    fresh, built = self._build(st, params, reason="compaction (deleted rows or growth)"), True
                else:
                    fresh, built = h, None
            elif h is None or not _same(h.ann.params, params) or h.covers > st.rows:
                fresh, built = self._open(st, params, rec)
            else:
                fresh, built = self._catch_up(st, h, rec)
            fresh.config = st.info.config
            with self._lock:
                if epoch != self._epoch:
                    return None  # NOTE: forgotten meanwhile (a rollback, a drop): this build is stale
                self._loaded[cid] = fresh
                self._prefetched.pop(cid, None)  # NOTE: a side read not taken by then is stale
        # NOTE: written outside self._build_lock: a thread in vault.transaction() holding the
        # database lock may be waiting for the build lock (compact()).
        if built is not None:
            try:
                self._persist(st, fresh, built=built)
            except (VaultError, OSError) as exc:
                # NOTE: the index is a cache: a search still answers from memory; the next
                # process that opens the vault builds it again.
                warnings.warn(f"sigmavault: could not save the index of {st.info.name!r}: {exc}", stacklevel=3)
        return fresh

    # -- open / build (called under self._build_lock; no database access here) --------------------

    def _open(self, st: RowState, params: BuildParams, rec: _Record | None) -> tuple[Loaded, bool | None]:
        """Load the recorded index, or build one; the flag says what to persist (None: nothing)."""
        reason = "no index file yet"
        if rec is not None and _same(rec.params, params):
            try:
                h = self._load(st, rec)
            except Corrupted as exc:
                reason = f"index file rejected: {exc}"
            else:
                if self._worn(st, h, upto=h.covers):
                    return self._build(st, params, reason="compaction (deleted rows or growth)"), True
                if st.rows - h.covers > TAIL_MAX:
                    return self._catch_up(st, h, rec)
                return h, None
        elif rec is not None:
            reason = f"index settings changed ({rec.kind} -> {params.kind})"
        return self._build(st, params, reason=reason), True

    def _load(self, st: RowState, rec: _Record, *, verify: bool = True) -> Loaded:
        """The recorded index, its checksum verified first; ``verify=False`` (HNSW): its structure only.

        An unverified index is marked so (``Loaded.verified``); :meth:`_confirm` checks it later.
        """
        path = self.dir / rec.file
        if not path.exists():
            raise Corrupted(f"{path} is missing")
        if verify:
            size, digest = file_digest(path)
            if size != rec.bytes or digest != rec.sha256:
                raise Corrupted(f"{path}: size or checksum differs from the one recorded when it was written")
        elif path.stat().st_size != rec.bytes:
            raise Corrupted(f"{path}: its size differs from the one recorded when it was written")
        if rec.covers > st.rows:
            raise Corrupted(f"{path}: covers {rec.covers} rows but the collection has {st.rows}")
        read = self._prefetched.pop(st.info.id, None)
        if not verify and read is not None and read[:2] == (rec.file, rec.sha256):
            ann = read[2].result()  # NOTE: the same checks as below, run on the side thread
        else:
            ann = AnnIndex.load(path, rec.params, st.info.dim or 0, mmap=True)
            if ann.ntotal != rec.entries:
                raise Corrupted(f"{path}: holds {ann.ntotal} vectors, {rec.entries} were recorded")
            if not verify:
                ann.check_structure()
        mmapped = rec.kind == "hnsw"
        return Loaded(ann, rec.covers, rec.built_rows, rec.file, mmapped=mmapped, digest=rec.sha256, verified=verify)

    def _confirm(self, st: RowState, h: Loaded) -> Loaded | None:
        """On the background thread: ``h`` once its file's checksum is confirmed; None (dropped) if it fails."""
        assert h.file is not None
        path = self.dir / h.file
        try:
            ok = file_digest(path)[1] == h.digest
        except OSError:
            ok = False
        if ok:
            h.verified = True
            return h
        self._rejected[st.info.id] = h.digest
        with self._lock:
            if self._loaded.get(st.info.id) is h:
                del self._loaded[st.info.id]
        warnings.warn(
            f"sigmavault: the index file of {st.info.name!r} fails its checksum; it is rebuilt, and searches "
            "answer exactly meanwhile",
            stacklevel=2,
        )
        return None

    def _build(self, st: RowState, params: BuildParams, *, reason: str, progress: Progress | None = None) -> Loaded:
        """A new index over every row with a live unit (not yet persisted)."""
        covers = st.rows
        rows = np.flatnonzero(st.codes[:covers] != 0).astype(np.int64)
        if len(rows) == 0:
            raise InvalidInput(f"collection {st.info.name!r} has no vectors to index")
        label = f"indexing {st.info.name} ({params.kind}, {len(rows):,} vectors): {reason}"
        with self._progress(label, progress) as bar:
            ann = AnnIndex.build(st.matrix(), rows, params, progress=bar)
        return Loaded(ann, covers, len(rows), None, mmapped=False)

    def _catch_up(self, st: RowState, h: Loaded, rec: _Record | None) -> tuple[Loaded, bool | None]:
        """Add the rows past ``h.covers`` to a copy of the index (another process may have done it)."""
        if rec is not None and rec.file != h.file and _same(rec.params, h.ann.params) and rec.covers > h.covers:
            try:
                newer = self._load(st, rec)
            except Corrupted:
                pass
            else:
                if st.rows - newer.covers <= TAIL_MAX:
                    return newer, None
                h = newer
        covers = st.rows
        params = self.config(st).build_params(h.ann.params.kind, st.info.metric)
        if self._worn(st, h, upto=covers):
            return self._build(st, params, reason="compaction (deleted rows or growth)"), True
        try:
            ann = self._owned_copy(h)
        except Corrupted as exc:
            return self._build(st, params, reason=f"index file rejected: {exc}"), True
        tail = np.flatnonzero(st.codes[h.covers : covers] != 0).astype(np.int64) + h.covers
        label = f"indexing {st.info.name}: adding {len(tail):,} new vectors to its {ann.params.kind} index"
        with self._progress(label, None) as bar:
            ann.add(st.matrix(), tail, progress=bar)
        return Loaded(ann, covers, h.built_rows, None, mmapped=False), False

    def _owned_copy(self, h: Loaded) -> AnnIndex:
        import faiss

        if not h.mmapped:
            return AnnIndex(faiss.clone_index(h.ann.index), h.ann.params, h.ann.dim)
        # NOTE: a memory-mapped FAISS index cannot grow (FAISS aborts); read an owned copy instead,
        # checked against the digest it was loaded with.
        assert h.file is not None
        path = self.dir / h.file
        if not path.exists() or file_digest(path)[1] != h.digest:
            raise Corrupted(f"{path} was removed or changed while in use")
        return AnnIndex.load(path, h.ann.params, h.ann.dim, mmap=False)

    def _worn(self, st: RowState, h: Loaded, *, upto: int) -> bool:
        """Whether ``h``, extended to cover ``upto`` rows, is due for a rebuild (dead rows, or growth)."""
        dead = max(0, h.ann.ntotal - int(np.count_nonzero(st.codes[: h.covers] != 0)))
        entries = h.ann.ntotal + int(np.count_nonzero(st.codes[h.covers : upto] != 0))
        if entries and dead / entries > DEAD_SHARE:
            return True
        return h.ann.params.kind == "ivf-rabitq" and entries > GROWTH_REBUILD * max(1, h.built_rows)

    def rebuild(self, st: RowState, params: BuildParams, *, reason: str, progress: Progress | None = None) -> Loaded:
        """Build the collection's index from scratch over its rows with a live unit, and persist it."""
        with self._build_lock:
            h = self._build(st, params, reason=reason, progress=progress)
            h.config = st.info.config
            with self._lock:
                self._loaded[st.info.id] = h
        self._persist(st, h, built=True)
        return h

    def _persist(self, st: RowState, h: Loaded, *, built: bool) -> None:
        """Write ``h`` as a new generation and record it; a read-only vault keeps it in memory."""
        if self.db.readonly or not self._has_table:
            return
        cid = st.info.id
        name = f"{cid}.{time.time_ns():x}.faiss"
        path = self.dir / name
        with temp_path(path) as tmp:
            h.ann.save(tmp)
            size, digest = file_digest(tmp)
            now = time.time()
            with self.db.write() as conn:
                old = conn.execute("SELECT built_at FROM ann_indexes WHERE collection_id = ?", (cid,)).fetchone()
                built_at = now if built or old is None else float(old[0])
                publish(tmp, path)
                conn.execute(
                    f"INSERT OR REPLACE INTO ann_indexes (collection_id, {_COLS}) VALUES ({', '.join('?' * 11)})",
                    (
                        cid,
                        h.ann.params.kind,
                        json.dumps(h.ann.params.to_dict(), sort_keys=True),
                        h.covers,
                        h.ann.ntotal,
                        h.built_rows,
                        name,
                        size,
                        digest,
                        built_at,
                        now,
                    ),
                )
                # NOTE: under the write lock no other process is between rename and commit, so every
                # unreferenced generation of this collection is garbage (a crash's leftover or ours).
                for stale in self.dir.glob(f"{cid}.*.faiss"):
                    if stale.name != name:
                        remove_file(stale)
        h.file = name
        h.digest = digest

    # -- maintenance ------------------------------------------------------------------------

    def compact(self, st: RowState, *, progress: Progress | None = None) -> dict[str, Any]:
        """Rebuild the collection's index without its deleted rows (no-op for exact collections)."""
        kind = self.kind_for(st)
        if kind == "exact":
            self.drop(st.info.id)
            return {"collection": st.info.name, "index": "exact", "rebuilt": False}
        before = self._record(st.info.id)
        params = self.config(st).build_params(kind, st.info.metric)
        h = self.rebuild(st, params, reason="compact", progress=progress)
        remove_stale_temps(self.dir)
        return {
            "collection": st.info.name,
            "index": kind,
            "rebuilt": True,
            "entries_before": before.entries if before else 0,
            "entries": h.ann.ntotal,
            "covers": h.covers,
        }

    def drop(self, cid: int) -> None:
        """Forget a collection's index (its kind changed to exact, or it is being replaced)."""
        with self._lock:
            self._loaded.pop(cid, None)
            self._prefetched.pop(cid, None)
            self._epoch += 1
        if self.db.readonly or not self._has_table:
            return
        with self.db.write() as conn:
            conn.execute("DELETE FROM ann_indexes WHERE collection_id = ?", (cid,))
            for stale in self.dir.glob(f"{cid}.*.faiss"):
                remove_file(stale)

    def info(self, st: RowState) -> dict[str, Any]:
        """What the collection searches with and what its index file covers (for stats and the CLI)."""
        rec = self._record(st.info.id)
        cfg = IndexConfig.of(st.info.config)
        out: dict[str, Any] = {"configured": cfg.kind, "active": self.kind_for(st), "vector_rows": st.rows}
        if rec is not None:
            live = int(np.count_nonzero(st.codes[: rec.covers] != 0))
            out["file"] = {
                "name": rec.file,
                "kind": rec.kind,
                "params": rec.params.to_dict(),
                "covers": rec.covers,
                "entries": rec.entries,
                "dead_entries": max(0, rec.entries - live),
                "bytes": rec.bytes,
                "built_at": rec.built_at,
                "updated_at": rec.updated_at,
                "pending_rows": max(0, st.rows - rec.covers),
            }
        h = self._loaded.get(st.info.id)
        if h is not None:
            out["loaded"] = {"covers": h.covers, "entries": h.ann.ntotal, "mmapped": h.mmapped, "verified": h.verified}
        if st.info.id in self._prefetched:
            out["reading"] = True  # NOTE: its file is being read beside the first search (prefetch)
        if self._jobs.busy(st.info.id):
            # NOTE: an index loaded on a search's thread has its checksum confirmed by a job, not built
            out["verifying" if h is not None and not h.verified else "building"] = True
        return out

    def check(self, report: CheckReport) -> None:
        """Index files are caches: a bad one is a note (rebuilt on next search), never a problem."""
        if not self._has_table:
            return
        for cid, file, size, digest in self.db.all("SELECT collection_id, file, bytes, sha256 FROM ann_indexes"):
            path = self.dir / file
            if not path.exists():
                report.notes.append(f"index: {file} (collection id {cid}) is missing; rebuilt on next search")
            elif file_digest(path) != (size, digest):
                report.notes.append(f"index: {file} (collection id {cid}) fails its checksum; rebuilt on next search")

    def forget(self) -> None:
        """Drop the loaded indexes (an enclosing transaction that recorded some rolled back)."""
        with self._lock:
            self._loaded.clear()
            self._prefetched.clear()
            self._epoch += 1

    def close(self) -> None:
        """Finish the background work first (a writable vault then opens with its index ready)."""
        if self.db.readonly:
            self._stop.set()  # NOTE: an in-memory index dies with the process: stop at the next chunk
        self._jobs.close()
        self.forget()

    # -- helpers ----------------------------------------------------------------------------

    def _record(self, cid: int) -> _Record | None:
        if not self._has_table:
            return None
        row = self.db.one(f"SELECT {_COLS} FROM ann_indexes WHERE collection_id = ?", (cid,))
        if row is None:
            return None
        try:
            params = BuildParams.from_dict(json.loads(row[1]))
        except (ValueError, TypeError, InvalidInput):
            return None
        return _Record(row[0], params, *row[2:])

    @contextmanager
    def _progress(self, label: str, given: Progress | None) -> Iterator[Progress]:
        """The caller's callback, else one reporting ``label`` to the vault's reporter; stops a closing build."""
        report, stop = self.report, self._stop

        def update(done: int, total: int) -> None:
            if stop.is_set():
                raise _Cancelled
            if given is not None:
                given(done, total)
            elif report is not None:
                report(label, done, total)

        yield update


class _Cancelled(Exception):
    """A background build stopped at a chunk boundary because the vault is closing."""


def keep_indexes(conn: sqlite3.Connection, cids: Sequence[int]) -> None:
    """In a snapshot copy (inside the caller's transaction): forget the index records of other collections."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'ann_indexes'").fetchone() is None:
        return
    conn.execute(f"DELETE FROM ann_indexes WHERE collection_id NOT IN ({','.join('?' * len(cids))})", list(cids))


def _same(a: BuildParams, b: BuildParams) -> bool:
    """Whether an index built with ``a`` serves a collection asking for ``b`` (0 = automatic = any)."""
    if b.nlist == 0 or a.nlist == 0:
        a, b = replace(a, nlist=0), replace(b, nlist=0)
    if b.bits == 0 or a.bits == 0:
        a, b = replace(a, bits=0), replace(b, bits=0)
    return a == b
