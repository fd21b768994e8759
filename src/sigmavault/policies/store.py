"""The policies part: learned runtime parameters, searched by kind and embedding similarity.

Entries of one kind share one embedding dimension. Search is exact cosine over a per-kind
matrix kept in memory (:class:`~sigmavault.store.freshness.VersionedCache`, so another
process's writes are seen at once). ``last_accessed`` is counted in memory and persisted with
the next write or within about two seconds (:mod:`~sigmavault.policies.access`).

At rest: params are sealed when the vault has a cipher; kind, source, confidence, state, times,
provenance ids and the vectors stay plain (SQL filters on them).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sigmavault import validate
from sigmavault.errors import DimensionMismatch, InvalidInput, NotFound, ReadOnly
from sigmavault.index import normalize, top_k
from sigmavault.policies.access import AccessLog
from sigmavault.policies.check import check_rows
from sigmavault.policies.cluster import greedy_dedupe, kmeans
from sigmavault.policies.merge import Member, merge_group, provenance_of
from sigmavault.policies.model import (
    SOURCES,
    Policy,
    check_confidence,
    check_id,
    check_k,
    check_kind,
    check_source,
    check_states,
    check_threshold,
    dump_params,
    embedding_vector,
    fisher_vector,
    new_policy_id,
)
from sigmavault.policies.schema import CLOCK, COLUMNS, MIGRATIONS, PART, TABLE
from sigmavault.store import Database
from sigmavault.store.freshness import VersionedCache
from sigmavault.store.sealed import open_text, seal_text
from sigmavault.types import CheckReport, Vector

__all__ = ["Policies"]

_COLS = COLUMNS
_CHUNK = 900
BankKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class _Bank:
    """Every entry of one kind with an embedding: ids, unit rows and the fields search filters on."""

    ids: tuple[str, ...]
    matrix: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    source: npt.NDArray[np.str_]
    active: npt.NDArray[np.bool_]


class Policies:
    """``vault.policies``: typed learned parameters of one vault (thread-safe; processes may share it)."""

    def __init__(self, db: Database, root: Path) -> None:
        self._db = db
        self.root = root
        present = db.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)) is not None
        if not db.readonly or present:
            db.migrate(PART, MIGRATIONS)
        # NOTE: a read-only vault made before policies existed has no tables: it reads as empty.
        self._ready = present or not db.readonly
        self._banks: VersionedCache[BankKey, _Bank] | None = (
            VersionedCache(db, CLOCK, capacity=256) if self._ready else None
        )
        self._access = AccessLog(db)

    def close(self) -> None:
        """Persist pending access times; idempotent."""
        self._access.flush()
        if self._banks is not None:
            self._banks.clear()

    # -- writes -----------------------------------------------------------------------------

    def put(
        self,
        kind: str,
        params: Any = None,
        *,
        embedding: Any = None,
        confidence: float = 1.0,
        source: str = "instant",
        fisher: Any = None,
        policy_id: str | None = None,
        provenance: Sequence[str] | None = None,
    ) -> Policy:
        """Store an entry; an existing ``policy_id`` (of the same kind) is replaced and made active again.

        ``provenance`` names what the entry was learned from (e.g. request ids); by default a new entry has
        none and a replaced one keeps its own.
        """
        kind = check_kind(kind)
        text = dump_params({} if params is None else params)
        emb = None if embedding is None else embedding_vector(embedding)
        conf = check_confidence(confidence)
        src = check_source(source)
        fish = None if fisher is None else fisher_vector(fisher)
        pid = new_policy_id() if policy_id is None else check_id(policy_id)
        given = None if provenance is None else _provenance(provenance)
        now = time.time()
        dim = None if emb is None else int(emb.shape[0])
        with self._writable().write() as (conn, changes):
            old = conn.execute(
                "SELECT kind, dim, created_at, provenance FROM policies WHERE pid = ?", (pid,)
            ).fetchone()
            if old is not None and old[0] != kind:
                raise InvalidInput(
                    f"policy {pid!r} is of kind {old[0]!r}, not {kind!r}; delete it first to change its kind"
                )
            if dim is not None:
                other = conn.execute(
                    "SELECT dim FROM policies WHERE kind = ? AND dim IS NOT NULL AND dim != ? AND pid != ? LIMIT 1",
                    (kind, dim, pid),
                ).fetchone()
                if other is not None:
                    raise DimensionMismatch(
                        f"policies of kind {kind!r} have {other[0]}-d embeddings, this one is {dim}-d; "
                        "use the same embedder for every entry of a kind"
                    )
            created = now if old is None else float(old[2])
            kept = given if given is not None else "[]" if old is None else old[3]
            self._insert(conn, pid, kind, text, emb, conf, src, fish, kept, created, now)
            changes[(kind, dim or 0)] = None
            if old is not None and old[1] is not None:
                changes[(kind, int(old[1]))] = None
        return Policy(
            id=pid,
            kind=kind,
            params=json.loads(text),
            confidence=conf,
            source=src,
            state="active",
            created_at=created,
            last_accessed=now,
            provenance=tuple(json.loads(kept)),
            embedding=_readonly(emb),
            fisher=_readonly(fish),
        )

    def _insert(
        self,
        conn: sqlite3.Connection,
        pid: str,
        kind: str,
        text: str,
        emb: Vector | None,
        conf: float,
        src: str,
        fish: Vector | None,
        provenance: str,
        created: float,
        now: float,
    ) -> None:
        conn.execute(
            f"INSERT OR REPLACE INTO policies ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, NULL, ?, ?)",
            (
                pid,
                kind,
                seal_text(self._db, f"policies/{pid}/params", text),
                None if emb is None else int(emb.shape[0]),
                None if emb is None else emb.tobytes(),
                conf,
                src,
                None if fish is None else fish.tobytes(),
                provenance,
                created,
                now,
            ),
        )

    def delete(self, policy_ids: str | Sequence[str]) -> int:
        """Remove entries for good; every id must exist (nothing is removed otherwise)."""
        ids = [check_id(p) for p in validate.ids(policy_ids, "policy_ids")]
        with self._writable().write() as (conn, changes):
            found: dict[str, tuple[str, int | None]] = {}
            for chunk in _chunks(ids):
                for pid, kind, dim in conn.execute(
                    f"SELECT pid, kind, dim FROM policies WHERE pid IN ({_marks(chunk)})", chunk
                ):
                    found[pid] = (kind, dim)
            missing = set(ids) - set(found)
            if missing:
                raise NotFound(f"no policy with id {sorted(missing)[0]!r}; nothing was deleted")
            for chunk in _chunks(ids):
                conn.execute(f"DELETE FROM policies WHERE pid IN ({_marks(chunk)})", chunk)
            for kind, dim in set(found.values()):
                changes[(kind, dim or 0)] = None
        self._access.forget(ids)
        return len(found)

    def _writable(self) -> VersionedCache[BankKey, _Bank]:
        if self._banks is None or self._db.readonly:
            raise ReadOnly("this vault was opened read-only (frozen=True); open it without frozen to write")
        return self._banks

    # -- reads ------------------------------------------------------------------------------

    def get(self, policy_id: str, *, touch: bool = True) -> Policy:
        """The entry with this id, in any state; counts as an access unless ``touch=False``."""
        check_id(policy_id)
        raw = self._db.one(f"SELECT {_COLS} FROM policies WHERE pid = ?", (policy_id,)) if self._ready else None
        if raw is None:
            raise NotFound(f"no policy with id {policy_id!r}")
        if touch:
            self._access.touch([policy_id])
        return self._policy(raw)

    def list(
        self, kind: str | None = None, *, states: str | Sequence[str] = "active", limit: int | None = None
    ) -> list[Policy]:
        """Entries (of one kind, or all), oldest first."""
        wanted = check_states(states)
        where: builtins.list[str] = [f"state IN ({_marks(wanted)})"]
        params: builtins.list[Any] = [*wanted]
        if kind is not None:
            where.append("kind = ?")
            params.append(check_kind(kind))
        tail = "" if limit is None else f" LIMIT {check_k(limit, 'limit')}"
        if not self._ready:
            return []
        rows = self._db.all(
            f"SELECT {_COLS} FROM policies WHERE {' AND '.join(where)} ORDER BY created_at, pid{tail}", params
        )
        return [self._policy(r) for r in rows]

    def kinds(self, *, states: str | Sequence[str] = "active") -> dict[str, int]:
        """How many entries each kind has (in the given states)."""
        wanted = check_states(states)
        if not self._ready:
            return {}
        rows = self._db.all(
            f"SELECT kind, COUNT(*) FROM policies WHERE state IN ({_marks(wanted)}) GROUP BY kind ORDER BY kind",
            wanted,
        )
        return {r[0]: int(r[1]) for r in rows}

    def count(self, kind: str | None = None, *, states: str | Sequence[str] = "active") -> int:
        if kind is None:
            return sum(self.kinds(states=states).values())
        return self.kinds(states=states).get(check_kind(kind), 0)

    def __len__(self) -> int:
        return self.count(states="all")

    def search(
        self,
        kind: str,
        vector: Any = None,
        k: int = 5,
        *,
        min_score: float | None = None,
        min_confidence: float | None = None,
        source: str | Sequence[str] | None = None,
        states: str | Sequence[str] = "active",
    ) -> builtins.list[Policy]:
        """The ``k`` entries of ``kind`` most similar to ``vector`` (exact cosine, ``Policy.score``).

        Without a vector, the ``k`` most confident entries. Returned entries count as accessed.
        """
        kind = check_kind(kind)
        check_k(k)
        wanted = check_states(states)
        sources = None
        if source is not None:
            checked = validate.choices(source, "source", SOURCES)
            sources = tuple(check_source(s) for s in ([checked] if isinstance(checked, str) else checked))
        floor = None if min_confidence is None else check_confidence(min_confidence)
        if min_score is not None:
            check_threshold(min_score, "min_score")
        if not self._ready:
            return []
        if vector is None:
            found = self._top_confident(kind, k, wanted, sources, floor)
        else:
            found = self._nearest(kind, embedding_vector(vector, what="query"), k, wanted, sources, floor, min_score)
        self._access.touch([p.id for p in found])
        return found

    def _top_confident(
        self, kind: str, k: int, wanted: tuple[str, ...], sources: tuple[str, ...] | None, floor: float | None
    ) -> builtins.list[Policy]:
        where = ["kind = ?", f"state IN ({_marks(wanted)})"]
        params: builtins.list[Any] = [kind, *wanted]
        if sources is not None:
            where.append(f"source IN ({_marks(sources)})")
            params += sources
        if floor is not None:
            where.append("confidence >= ?")
            params.append(floor)
        rows = self._db.all(
            f"SELECT {_COLS} FROM policies WHERE {' AND '.join(where)} "
            f"ORDER BY confidence DESC, last_accessed DESC, pid LIMIT {int(k)}",
            params,
        )
        return [self._policy(r) for r in rows]

    def _nearest(
        self,
        kind: str,
        query: Vector,
        k: int,
        wanted: tuple[str, ...],
        sources: tuple[str, ...] | None,
        floor: float | None,
        min_score: float | None,
    ) -> builtins.list[Policy]:
        dim = int(query.shape[0])
        assert self._banks is not None
        bank = self._banks.fetch((kind, dim), lambda: self._load_bank(kind, dim))
        if bank is None:
            other = self._db.one("SELECT dim FROM policies WHERE kind = ? AND dim IS NOT NULL LIMIT 1", (kind,))
            if other is not None:
                raise DimensionMismatch(f"policies of kind {kind!r} have {other[0]}-d embeddings, the query is {dim}-d")
            return []
        mask = bank.active if wanted == ("active",) else np.isin(np.where(bank.active, "active", "archived"), wanted)
        if sources is not None:
            mask = mask & np.isin(bank.source, sources)
        if floor is not None:
            mask = mask & (bank.confidence >= floor)
        scores = bank.matrix @ normalize(query.reshape(1, -1))[0]
        scores[~mask] = -np.inf
        best = [int(i) for i in top_k(scores.reshape(1, -1), k)[0] if np.isfinite(scores[i])]
        if min_score is not None:
            best = [i for i in best if scores[i] >= min_score]
        rows = self._rows([bank.ids[i] for i in best])
        return [self._policy(rows[bank.ids[i]], score=float(scores[i])) for i in best if bank.ids[i] in rows]

    def _load_bank(self, kind: str, dim: int) -> _Bank | None:
        rows = self._db.all(
            "SELECT pid, embedding, confidence, source, state FROM policies WHERE kind = ? AND dim = ? ORDER BY pid",
            (kind, dim),
        )
        if not rows:
            return None
        matrix = normalize(np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim))
        return _Bank(
            ids=tuple(r[0] for r in rows),
            matrix=matrix,
            confidence=np.array([r[2] for r in rows], dtype=np.float32),
            source=np.array([r[3] for r in rows], dtype=np.str_),
            active=np.array([r[4] == "active" for r in rows], dtype=bool),
        )

    def _rows(self, ids: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for chunk in _chunks(list(ids)):
            rows = self._db.all(f"SELECT {_COLS} FROM policies WHERE pid IN ({_marks(chunk)})", chunk)
            out.update((r[0], r) for r in rows)
        return out

    def _policy(self, raw: Sequence[Any], score: float | None = None) -> Policy:
        seen = self._access.seen(raw[0], float(raw[12]))
        return Policy(
            id=raw[0],
            kind=raw[1],
            params=json.loads(open_text(self._db, f"policies/{raw[0]}/params", raw[2])),
            confidence=float(raw[5]),
            source=raw[6],
            state=raw[8],
            created_at=float(raw[11]),
            last_accessed=seen,
            provenance=tuple(json.loads(raw[9])),
            replaced_by=raw[10],
            embedding=None if raw[4] is None else np.frombuffer(raw[4], dtype=np.float32),
            fisher=None if raw[7] is None else np.frombuffer(raw[7], dtype=np.float32),
            score=score,
        )

    # -- consolidation ----------------------------------------------------------------------

    def consolidate(
        self,
        kind: str,
        k: int,
        *,
        seed: int = 0,
        iterations: int = 100,
        remove: bool = False,
        source: str = "background",
    ) -> builtins.list[Policy]:
        """Cluster the kind's active entries (k-means++ on their embeddings) into ``k`` representatives.

        Each representative is a new active entry (see :func:`~sigmavault.policies.merge.merge_group`)
        whose ``provenance`` lists every id it stands for. Members are *archived* (state
        ``archived``, ``replaced_by`` = the representative) unless ``remove=True`` deletes them.
        Entries without an embedding are left alone. With at most ``k`` embedded entries nothing
        changes and those entries are returned. Seeded: the same entries (taken oldest first) and
        ``seed`` give the same bank. One transaction: all or nothing.
        """
        kind = check_kind(kind)
        check_k(k)
        check_k(iterations, "iterations")
        src = check_source(source)
        validate.integer(seed, "seed", lo=-(1 << 63), hi=(1 << 64) - 1), validate.flag(remove, "remove")
        with self._writable().write() as (conn, changes):
            members = self._members(conn, kind)
            if len(members) <= k:
                rows = self._rows([m.id for m in members])
                return [self._policy(rows[m.id]) for m in members]
            units = np.stack([m.unit for m in members])
            labels, _ = kmeans(units, k, seed=seed, iterations=iterations)
            now = time.time()
            made: builtins.list[str] = []
            for j in range(k):
                group = [members[i] for i in np.flatnonzero(labels == j)]
                rep = merge_group(group)
                pid = new_policy_id()
                self._insert(
                    conn,
                    pid,
                    kind,
                    dump_params(rep.params),
                    rep.embedding,
                    rep.confidence,
                    src,
                    rep.fisher,
                    json.dumps(list(rep.provenance)),
                    now,
                    now,
                )
                self._retire(conn, [m.id for m in group], pid, remove=remove)
                made.append(pid)
            changes[(kind, int(units.shape[1]))] = None
        rows = self._rows(made)
        return [self._policy(rows[pid]) for pid in made]

    def prune_duplicates(
        self, kind: str | None = None, *, threshold: float = 0.98, remove: bool = False
    ) -> builtins.list[str]:
        """Fold near-duplicate active entries (cosine >= ``threshold``) into one; returns the pruned ids.

        Within each kind the most confident entry (then the most recently used, then the oldest)
        is kept and absorbs its near duplicates: their ids join its ``provenance``, and they are
        archived with ``replaced_by`` set, or deleted with ``remove=True``.
        """
        check_threshold(threshold, "threshold"), validate.flag(remove, "remove")
        kinds = [check_kind(kind)] if kind is not None else list(self.kinds())
        pruned: builtins.list[str] = []
        with self._writable().write() as (conn, changes):
            for name in kinds:
                members = self._members(conn, name, order="confidence DESC, last_accessed DESC, created_at, pid")
                if len(members) < 2:
                    continue
                units = np.stack([m.unit for m in members])
                owner = greedy_dedupe(units, np.arange(len(members), dtype=np.int64), threshold)
                for keeper in np.unique(owner):
                    group = [members[int(i)] for i in np.flatnonzero(owner == keeper)]
                    if len(group) < 2:
                        continue
                    keep = members[int(keeper)]
                    absorbed = [m for m in group if m.id != keep.id]
                    conn.execute(
                        "UPDATE policies SET provenance = ? WHERE pid = ?",
                        (json.dumps(list(_merged(keep, absorbed))), keep.id),
                    )
                    self._retire(conn, [m.id for m in absorbed], keep.id, remove=remove)
                    pruned += [m.id for m in absorbed]
                changes[(name, int(units.shape[1]))] = None
        return sorted(pruned)

    def _members(self, conn: sqlite3.Connection, kind: str, *, order: str = "created_at, pid") -> builtins.list[Member]:
        rows = conn.execute(
            "SELECT pid, params, embedding, confidence, fisher, provenance FROM policies "
            f"WHERE kind = ? AND state = 'active' AND embedding IS NOT NULL ORDER BY {order}",
            (kind,),
        ).fetchall()
        out = []
        for pid, params, emb, conf, fish, prov in rows:
            unit = normalize(np.frombuffer(emb, dtype=np.float32).reshape(1, -1))[0]
            out.append(
                Member(
                    id=pid,
                    params=json.loads(open_text(self._db, f"policies/{pid}/params", params)),
                    unit=unit,
                    confidence=float(conf),
                    fisher=None if fish is None else np.frombuffer(fish, dtype=np.float32),
                    provenance=tuple(json.loads(prov)),
                )
            )
        return out

    def _retire(self, conn: sqlite3.Connection, ids: Sequence[str], by: str, *, remove: bool) -> None:
        for chunk in _chunks(list(ids)):
            if remove:
                conn.execute(f"DELETE FROM policies WHERE pid IN ({_marks(chunk)})", chunk)
            else:
                conn.execute(
                    f"UPDATE policies SET state = 'archived', replaced_by = ? WHERE pid IN ({_marks(chunk)})",
                    (by, *chunk),
                )

    def flush_access(self) -> None:
        """Persist the access times counted in memory (done anyway with the next write)."""
        self._access.flush()

    # -- health -----------------------------------------------------------------------------

    def check(self, report: CheckReport) -> None:
        """Every entry decodes and its vectors match their recorded shape; archived entries name a replacement."""
        if self._ready:
            check_rows(self._db, report)


def _merged(keep: Member, absorbed: Sequence[Member]) -> tuple[str, ...]:
    """The keeper's provenance after absorbing duplicates (its own id is not part of it)."""
    ids = set(keep.provenance) | set(provenance_of(absorbed))
    ids.discard(keep.id)
    return tuple(sorted(ids))


def _readonly(vec: Vector | None) -> Vector | None:
    if vec is None:
        return None
    out = vec.copy()
    out.flags.writeable = False
    return out


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _provenance(ids: Sequence[str]) -> str:
    """A provenance list as stored: JSON of distinct non-empty strings."""
    if isinstance(ids, str):
        raise InvalidInput("provenance must be a list of ids, not a single string")
    out = list(dict.fromkeys(ids))
    if not all(isinstance(i, str) and i for i in out):
        raise InvalidInput("provenance must hold non-empty strings")
    return json.dumps(out)
