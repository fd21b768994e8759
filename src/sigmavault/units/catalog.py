"""The collection catalogue and each collection's in-memory row state.

A collection's vectors live in ``vectors/<collection id>.f32`` (row = ``units.vec_row``). Beside
the map, each open collection keeps two small arrays indexed by row: the unit's lifecycle code
(0 = no live unit) and its SimHash signature. They are derived from SQLite on load and kept in
step with this process's writes; a commit by another process (seen through ``data_version``)
makes them reload.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sigmavault.errors import Corrupted, DimensionMismatch, InvalidInput, NotFound
from sigmavault.index import METRICS, hyperplanes
from sigmavault.store import Database, VectorFile
from sigmavault.store.files import remove_file
from sigmavault.store.vectors import HEADER_SIZE
from sigmavault.types import State, Vector

__all__ = ["STATE_CODES", "Catalog", "CollectionInfo", "RowState", "Snapshot"]

STATE_CODES = {State.ACTIVE: 1, State.ARCHIVED: 2, State.EXPIRED: 3, State.CORRUPTED: 4}
# NOTE: one fixed seed, so signatures of the same vector agree across collections, vaults and
# machines (a bundle or migration reproduces them). Stored per collection so it can change later.
SIMHASH_SEED = 20261124
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(slots=True)
class CollectionInfo:
    """One row of the catalogue."""

    id: int
    name: str
    dim: int | None
    metric: str
    embedder: str | None
    hash_seed: int
    watermark: int
    config: dict[str, Any]
    created_at: float


@dataclass(slots=True)
class RowState:
    """Per-row lifecycle codes and signatures of one collection, plus its vector file."""

    info: CollectionInfo
    vectors: VectorFile | None
    codes: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))
    hashes: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, np.uint64))
    planes: npt.NDArray[np.float32] | None = None
    loaded_version: int = -1

    @property
    def rows(self) -> int:
        return self.info.watermark

    def matrix(self) -> Vector:
        """The committed vectors, (watermark, dim), straight from the map."""
        if self.vectors is None:
            return np.empty((0, self.info.dim or 0), dtype=np.float32)
        return self.vectors.view(self.info.watermark)

    def mask(self, states: tuple[State, ...]) -> npt.NDArray[np.bool_]:
        return state_mask(self.codes, states)

    def snapshot(self) -> Snapshot:
        """The committed rows as one reader sees them, every array cut to the same length.

        NOTE: a writer (another thread) moves the watermark and then grows ``codes`` and ``hashes``
        one after the other; each is replaced, never resized in place, so the arrays read here stay
        valid, and cutting them to the shortest gives rows that all three describe. Rows a query
        of SQLite may return past ``len(snapshot)`` were committed after it and must be ignored.
        """
        codes, hashes = self.codes, self.hashes
        matrix = self.matrix()
        n = min(len(matrix), len(codes), len(hashes))
        return Snapshot(matrix[:n], codes[:n], hashes[:n])

    def grow(self, rows: int) -> None:
        """Make room for ``rows`` rows; called by writers only, under the database write lock."""
        codes, hashes = self.codes, self.hashes
        if len(codes) < rows:
            self.codes = np.concatenate([codes, np.zeros(rows - len(codes), np.int8)])
        if len(hashes) < rows:
            self.hashes = np.concatenate([hashes, np.zeros(rows - len(hashes), np.uint64)])


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Vectors, lifecycle codes and signatures of the same committed rows (see RowState.snapshot)."""

    matrix: Vector
    codes: npt.NDArray[np.int8]
    hashes: npt.NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.codes)

    def mask(self, states: tuple[State, ...]) -> npt.NDArray[np.bool_]:
        return state_mask(self.codes, states)

    def covered(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``rows`` (from SQLite) that this snapshot covers; later commits are dropped."""
        return rows[(rows >= 0) & (rows < len(self.codes))]


def state_mask(codes: npt.NDArray[np.int8], states: tuple[State, ...]) -> npt.NDArray[np.bool_]:
    """Rows whose lifecycle code is one of ``states``."""
    if states == (State.ACTIVE,):
        return np.equal(codes, 1)
    return np.isin(codes, [STATE_CODES[s] for s in states])


def _info(row: Any) -> CollectionInfo:
    return CollectionInfo(
        id=row[0],
        name=row[1],
        dim=row[2],
        metric=row[3],
        embedder=row[4],
        hash_seed=row[5],
        watermark=row[6],
        config=json.loads(row[7]),
        created_at=row[8],
    )


_COLS = "id, name, dim, metric, embedder, hash_seed, watermark, config, created_at"


class Catalog:
    """Creates, finds and loads collections; owns their vector files."""

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.vector_dir = root / "vectors"
        self._states: dict[int, RowState] = {}
        self._lock = threading.RLock()

    # -- catalogue --------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [r[0] for r in self.db.all("SELECT name FROM collections ORDER BY id")]

    def infos(self) -> list[CollectionInfo]:
        """Every collection's catalogue row, oldest first (one statement: one consistent moment)."""
        return [_info(r) for r in self.db.all(f"SELECT {_COLS} FROM collections ORDER BY id")]

    def find(self, name: str) -> CollectionInfo | None:
        row = self.db.one(f"SELECT {_COLS} FROM collections WHERE name = ?", (name,))
        return _info(row) if row else None

    def by_id(self, cid: int) -> CollectionInfo:
        row = self.db.one(f"SELECT {_COLS} FROM collections WHERE id = ?", (cid,))
        if row is None:
            raise NotFound(f"collection id {cid} does not exist")
        return _info(row)

    def create(self, name: str, *, dim: int | None, metric: str, embedder: str | None) -> CollectionInfo:
        if not name or not set(name) <= _NAME_CHARS or len(name) > 128:
            raise InvalidInput(f"collection name {name!r}: use 1-128 letters, digits, '_', '-' or '.'")
        if metric not in METRICS:
            raise InvalidInput(f"metric {metric!r}: use one of {', '.join(METRICS)}")
        with self.db.write() as conn:
            found = self.find(name)
            if found is not None:
                return found
            cid = int(
                conn.execute(
                    "SELECT MAX(COALESCE((SELECT MAX(id) FROM collections), 0), "
                    "COALESCE((SELECT MAX(id) FROM collections_retired), 0)) + 1"
                ).fetchone()[0]
            )
            conn.execute(
                "INSERT INTO collections (id, name, dim, metric, embedder, hash_seed, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cid, name, dim, metric, embedder, SIMHASH_SEED, time.time()),
            )
        info = self.find(name)
        assert info is not None
        return info

    def drop(self, cid: int) -> None:
        """Retire a collection's catalogue row; call inside the write transaction that removed its units.

        Its id is never reused. The vector file goes with :meth:`remove_files` after the commit.
        """
        info = self.by_id(cid)
        self.db.execute(
            "INSERT INTO collections_retired (id, name, dropped_at) VALUES (?, ?, ?)", (cid, info.name, time.time())
        )
        self.db.execute("DELETE FROM collections WHERE id = ?", (cid,))

    def remove_files(self, cid: int) -> None:
        """Close and delete a dropped collection's vector file (a crash before this leaves an orphan file
        that no collection will ever read: ids are not reused)."""
        with self._lock:
            st = self._states.pop(cid, None)
        if st is not None and st.vectors is not None:
            st.vectors.close()
        remove_file(self.vector_dir / f"{cid}.f32")

    def set_dim(self, info: CollectionInfo, dim: int) -> None:
        """Fix a collection's dimension at its first vectors; call inside a write transaction."""
        self.db.execute("UPDATE collections SET dim = ? WHERE id = ? AND dim IS NULL", (dim, info.id))
        info.dim = dim

    def set_config(self, info: CollectionInfo, config: dict[str, Any]) -> None:
        """Replace a collection's config JSON (e.g. its index choice), here and in the cached state."""
        with self.db.write():
            self.db.execute(
                "UPDATE collections SET config = ? WHERE id = ?", (json.dumps(config, sort_keys=True), info.id)
            )
        info.config = config
        with self._lock:
            st = self._states.get(info.id)
            if st is not None:
                st.info.config = config

    def set_embedder(self, info: CollectionInfo, name: str) -> None:
        self.db.execute("UPDATE collections SET embedder = ? WHERE id = ?", (name, info.id))
        info.embedder = name

    # -- row state --------------------------------------------------------------------------

    def state(self, cid: int) -> RowState:
        """The loaded row state of a collection, reloaded if another process committed since."""
        # NOTE: never hold self._lock while calling the database: a thread inside a write
        # transaction holds the database lock and then asks for this one (lock-order deadlock).
        version = self.db.data_version()
        with self._lock:
            st = self._states.get(cid)
            if st is not None and st.loaded_version == version:
                return st
        fresh = self._load(cid, version, st)
        with self._lock:
            current = self._states.get(cid)
            if current is not None and current is not st and current.loaded_version == version:
                # another thread loaded the same version meanwhile: keep one, close the other's file
                if fresh.vectors is not None and fresh.vectors is not current.vectors:
                    fresh.vectors.close()
                return current
            self._states[cid] = fresh
            return fresh

    def cached(self, cid: int, row: int) -> RowState | None:
        """The loaded row state of ``cid`` if it already covers vector row ``row``, without a query.

        NOTE: rows below a committed watermark never change (writes append; a crash tail lies past
        it; dropped collections' ids are not reused), so a state loaded earlier serves a row that
        a record read now points at, whatever another process committed since. A state forgotten
        after a rollback (loaded_version -1) may describe rows that were never committed: not served.
        """
        with self._lock:
            st = self._states.get(cid)
        if st is None or st.vectors is None or st.loaded_version < 0 or not 0 <= row < st.info.watermark:
            return None
        return st

    def fresh_info(self, cid: int) -> CollectionInfo:
        """The catalogue row as of now; inside a write transaction this sees every other commit."""
        return self.state(cid).info

    @contextmanager
    def guard(self, cid: int) -> Iterator[None]:
        """Forget the cached state of ``cid`` if the enclosed write fails (it may be half-applied)."""
        try:
            yield
        except BaseException:
            with self._lock:
                st = self._states.get(cid)
                if st is not None:
                    st.loaded_version = -1
            raise

    def _load(self, cid: int, version: int, old: RowState | None) -> RowState:
        # NOTE: one snapshot for the catalogue row and the unit rows; read apart, a commit by
        # another process in between would show units past the watermark just read.
        with self.db.read():
            return self._load_snapshot(cid, version, old)

    def _load_snapshot(self, cid: int, version: int, old: RowState | None) -> RowState:
        info = self.by_id(cid)
        vectors = old.vectors if old is not None and old.info.dim == info.dim else None
        if vectors is None and info.dim:
            vectors = self.open_vectors(info)
        st = RowState(info=info, vectors=vectors, loaded_version=version)
        st.grow(info.watermark)
        rows, codes, hashes = self._row_columns(info, cid)
        if len(rows):
            if rows.max() >= info.watermark or rows.min() < 0:
                raise Corrupted(f"collection {info.name!r}: a unit points past the vector watermark; run check")
            st.codes[rows] = codes.astype(np.int8)
            st.hashes[rows] = hashes.view(np.uint64)
        if info.dim:
            st.planes = hyperplanes(info.dim, info.hash_seed)
        return st

    def _row_columns(self, info: CollectionInfo, cid: int) -> tuple[npt.NDArray[np.int64], ...]:
        """``(vec_row, state code, semantic_hash)`` of every unit of ``cid`` with a vector, as arrays.

        NOTE: SQLite joins each column into one text and numpy parses it in C: no Python object per
        row. At 1M units this is 0.45 s against 0.85 s for numpy reading the cursor row by row
        (which made reopen + first query miss its 0.5 s budget). A NULL (an unknown state maps to
        one) is left out of its column by group_concat, so the lengths disagree: damage.
        """
        case = " ".join(f"WHEN '{s.value}' THEN {c}" for s, c in STATE_CODES.items())
        with self.db.read() as conn:
            found = conn.execute(
                f"SELECT count(*), group_concat(vec_row), group_concat(CASE state {case} END), "
                "group_concat(semantic_hash) FROM units WHERE collection_id = ? AND vec_row IS NOT NULL",
                (cid,),
            ).fetchone()
        count, texts = int(found[0]), found[1:]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # NOTE: numpy warns (and stops) at text it cannot parse
                cols = tuple(np.fromstring(t, dtype=np.int64, sep=",") if t else np.zeros(0, np.int64) for t in texts)
        except (TypeError, ValueError, OverflowError, DeprecationWarning) as exc:
            raise Corrupted(
                f"collection {info.name!r}: a unit record is damaged ({exc}); run `sigmavault check`"
            ) from exc
        if any(len(c) != count for c in cols):
            raise Corrupted(
                f"collection {info.name!r}: a unit record is damaged (a NULL or unreadable row, state or "
                "signature); run `sigmavault check`"
            )
        return cols

    def open_vectors(self, info: CollectionInfo) -> VectorFile:
        assert info.dim is not None
        self.vector_dir.mkdir(parents=True, exist_ok=True)
        path = self.vector_dir / f"{info.id}.f32"
        vf = VectorFile(path, info.dim, readonly=self.db.readonly)
        if vf.rows_on_disk() < info.watermark:
            raise Corrupted(
                f"{path}: holds {vf.rows_on_disk()} rows but {info.watermark} are committed; "
                "the vector file was truncated or replaced"
            )
        return vf

    def ensure_vectors(self, st: RowState, dim: int) -> VectorFile:
        """The collection's vector file, creating it (and fixing the dimension) on first use."""
        if st.info.dim is None:
            self.set_dim(st.info, dim)
            st.planes = hyperplanes(dim, st.info.hash_seed)
        elif st.info.dim != dim:
            raise DimensionMismatch(f"collection {st.info.name!r} holds {st.info.dim}-d vectors, got {dim}-d")
        if st.vectors is None:
            st.vectors = self.open_vectors(st.info)
        return st.vectors

    def row_vector(self, st: RowState, row: int) -> Vector:
        """A copy of one committed row of ``st``'s vectors."""
        matrix = st.matrix()
        if not 0 <= row < len(matrix):
            raise Corrupted(
                f"collection {st.info.name!r}: vector row {row} is past the {len(matrix)} committed rows; "
                "run `sigmavault check`"
            )
        return np.array(matrix[row])

    def committed(self, st: RowState, rows: int) -> None:
        """Record that this process committed rows up to ``rows``; keeps the cache current.

        NOTE: ``st.loaded_version`` stays as read inside the write transaction: our own commit
        does not change ``data_version``, and re-reading it here would hide a commit that another
        process made in the meantime.
        """
        st.info.watermark = rows
        st.grow(rows)

    def forget(self) -> None:
        """Drop every cached row state (an enclosing transaction rolled back)."""
        with self._lock:
            for st in self._states.values():
                st.loaded_version = -1

    def truncate_tails(self) -> list[str]:
        """Cut crash tails past each watermark, under the write lock; returns what was cut."""
        cut: list[str] = []
        for name in self.names():
            info = self.find(name)
            if info is None or not info.dim:
                continue
            path = self.vector_dir / f"{info.id}.f32"
            if not path.exists():
                continue
            try:
                vf = self.open_vectors(info)
            except Corrupted:
                continue  # NOTE: left as found for check() to report; cutting could lose evidence
            try:
                if path.stat().st_size > HEADER_SIZE + info.watermark * vf.row_bytes:
                    with self.db.write():
                        vf.truncate(self.by_id(info.id).watermark)
                    cut.append(name)
            finally:
                vf.close()
        return cut

    def close(self) -> None:
        with self._lock:
            for st in self._states.values():
                if st.vectors is not None:
                    st.vectors.close()
            self._states.clear()
