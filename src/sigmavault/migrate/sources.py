"""Readers of the legacy JSON layouts (see docs: JSON knowledge directory, RSU manifest).

Each reader turns a source into :class:`Source`: records ready to store as units, edges, and
a ``reconstruct`` that rebuilds a source record from a migrated unit, so validation can compare
the SHA-256 of every record on both sides. Files are only ever opened for reading.

Mapping, JSON knowledge directory (``concepts.json``, ``associations.json``, ``embeddings.json``):
a concept becomes a unit with its id, ``content`` as text, every other field as metadata (and
``created`` / ``last_accessed`` / ``access_count`` also as the unit's own times and count), and
its embedding as the vector; an association becomes an edge ``source -> target`` of kind
``assoc_type`` and its weight (its confidence and times have no place on an edge and are
reported as dropped).

Mapping, RSU manifest: an entry becomes a unit of kind ``rsu`` with no text (the original store
never persisted its payload; ``has_content: false`` in the metadata says so), the whole entry
as metadata, ``status`` as state, ``conversation_id`` and ``parent_rsu_id`` as the unit's
conversation and parent, and its 64-bit ``semantic_hash`` as a 64-d vector of ±1 (bit i set ->
+1), so vector search ranks RSUs by Hamming similarity of their hashes. Parent -> child links
(``parent_rsu_id`` and ``child_rsu_ids``) become edges of kind ``child``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault.errors import InvalidInput
from sigmavault.types import State, Unit, Vector

__all__ = ["EdgeRecord", "Record", "Source", "hash_vector", "read_source"]

JSON_KNOWLEDGE = "json-knowledge"
RSU_MANIFEST = "rsu-manifest"
_EDGE_FIELDS = {"source_id", "target_id", "assoc_type", "weight"}
_STATE_NAMES = {s.value for s in State}


@dataclass(slots=True)
class Record:
    """One source record as a unit-to-be, with the exact source record for its checksum."""

    id: str
    text: str | None
    metadata: dict[str, Any]
    vector: Vector
    kind: str
    state: State = State.ACTIVE
    created_at: float | None = None
    accessed_at: float | None = None
    access_count: int = 0
    conversation_id: str | None = None
    parent_id: str | None = None
    original: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EdgeRecord:
    source: str
    target: str
    kind: str
    weight: float


@dataclass(slots=True)
class Source:
    """A parsed legacy store: what to migrate, what cannot be, and how to read a unit back."""

    layout: str
    path: Path
    files: list[Path]
    records: list[Record]
    edges: list[EdgeRecord]
    dim: int | None
    embedder: str | None
    default_collection: str
    reconstruct: Callable[[Unit], dict[str, Any]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
    dropped_fields: list[str] = field(default_factory=list)

    def matrix(self) -> Vector:
        if not self.records:
            return np.empty((0, self.dim or 0), dtype=np.float32)
        return np.stack([r.vector for r in self.records])


def _load_json(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InvalidInput(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc}") from None


def read_source(path: str | os.PathLike[str]) -> Source:
    """Detect the layout at ``path`` (a knowledge directory, or an RSU manifest file) and read it."""
    src = Path(path)
    if src.is_dir():
        if (src / "concepts.json").is_file():
            return _read_knowledge(src)
        manifests = [p for p in sorted(src.glob("*.json")) if _looks_like_rsu(p)]
        if len(manifests) == 1:
            return _read_rsu(manifests[0])
        raise InvalidInput(
            f"{src}: no concepts.json (JSON knowledge directory) and no single RSU manifest (*.json with 'entries')"
        )
    if src.is_file():
        return _read_rsu(src)
    raise InvalidInput(f"{src} does not exist")


def _looks_like_rsu(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"entries"' in head


# -- JSON knowledge directory -----------------------------------------------------------------


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _vector(value: Any) -> Vector | None:
    """A finite float32 vector from a JSON list of numbers, or None."""
    if not isinstance(value, list) or not value:
        return None
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if raw.ndim != 1 or raw.dtype.kind not in "fi":
        return None  # NOTE: refuses strings ("1.5"), booleans and nested lists that numpy would coerce
    vec = raw.astype(np.float32)
    return vec if np.isfinite(vec).all() else None


def _read_knowledge(root: Path) -> Source:
    concepts = _load_json(root / "concepts.json")
    if not isinstance(concepts, dict):
        raise InvalidInput(f"{root / 'concepts.json'}: expected an object keyed by concept id")
    files = [root / "concepts.json"]
    vectors: dict[str, Any] = {}
    provider = None
    if (root / "embeddings.json").is_file():
        files.append(root / "embeddings.json")
        emb = _load_json(root / "embeddings.json")
        if not isinstance(emb, dict) or not isinstance(emb.get("embeddings", {}), dict):
            raise InvalidInput(f"{root}/embeddings.json: expected {{'provider': ..., 'embeddings': {{id: vector}}}}")
        vectors = emb.get("embeddings", {})
        provider = emb.get("provider") if isinstance(emb.get("provider"), str) else None
    records: list[Record] = []
    skipped: list[dict[str, str]] = []
    dim: int | None = None
    for cid, rec in concepts.items():
        if not isinstance(rec, dict):
            skipped.append({"id": str(cid), "reason": "record is not an object"})
            continue
        vec = _vector(vectors.get(cid))
        if vec is None:
            skipped.append({"id": cid, "reason": "no usable embedding in embeddings.json"})
            continue
        if dim is None:
            dim = len(vec)
        if len(vec) != dim or not vec.any():
            skipped.append({"id": cid, "reason": f"embedding has {len(vec)} values (expected {dim}) or is all zeros"})
            continue
        content = rec.get("content")
        text = content if isinstance(content, str) and content.strip() else None
        meta = {k: v for k, v in rec.items() if not (k == "content" and text is not None)}
        records.append(
            Record(
                id=cid,
                text=text,
                metadata=meta,
                vector=vec,
                kind="concept",
                created_at=float(rec["created"]) if _finite(rec.get("created")) else None,
                accessed_at=float(rec["last_accessed"]) if _finite(rec.get("last_accessed")) else None,
                access_count=int(rec["access_count"]) if isinstance(rec.get("access_count"), int) else 0,
                original=rec,
            )
        )
    edges, dropped = _associations(root, {r.id for r in records}, skipped, files)

    def reconstruct(unit: Unit) -> dict[str, Any]:
        out = dict(unit.metadata)
        if unit.text is not None:
            out["content"] = unit.text
        return out

    return Source(
        layout=JSON_KNOWLEDGE,
        path=root,
        files=files,
        records=records,
        edges=edges,
        dim=dim,
        embedder=provider,
        default_collection="concepts",
        reconstruct=reconstruct,
        skipped=skipped,
        dropped_fields=dropped,
    )


def _associations(
    root: Path, known: set[str], skipped: list[dict[str, str]], files: list[Path]
) -> tuple[list[EdgeRecord], list[str]]:
    path = root / "associations.json"
    if not path.is_file():
        return [], []
    files.append(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected an object keyed by 'source:target'")
    edges: dict[tuple[str, str, str], EdgeRecord] = {}
    dropped: set[str] = set()
    for key, rec in data.items():
        if not isinstance(rec, dict):
            skipped.append({"id": f"association {key}", "reason": "record is not an object"})
            continue
        src, _, dst = str(key).partition(":")
        src, dst = rec.get("source_id", src), rec.get("target_id", dst)
        kind, weight = rec.get("assoc_type", "semantic"), rec.get("weight", 1.0)
        if src not in known or dst not in known:
            skipped.append({"id": f"association {key}", "reason": "an end is not a migrated concept"})
            continue
        if not isinstance(kind, str) or not _finite(weight):
            skipped.append({"id": f"association {key}", "reason": "assoc_type or weight is malformed"})
            continue
        dropped.update(set(rec) - _EDGE_FIELDS)
        edges[(src, kind, dst)] = EdgeRecord(src, dst, kind, float(weight))
    return list(edges.values()), sorted(f"associations.{k}" for k in dropped)


# -- RSU manifest -----------------------------------------------------------------------------


def hash_vector(semantic_hash: int) -> Vector:
    """The 64-d ±1 vector standing for a 64-bit semantic hash (bit i set -> +1); cosine = 1 - 2·hamming/64."""
    h = int(semantic_hash) & ((1 << 64) - 1)
    bits = np.array([(h >> i) & 1 for i in range(64)], dtype=np.float32)
    return bits * 2.0 - 1.0


def _timestamp(value: Any) -> float | None:
    if _finite(value):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _read_rsu(path: Path) -> Source:
    data = _load_json(path)
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise InvalidInput(f"{path}: expected an RSU manifest {{'entries': {{rsu_id: entry}}}}")
    records: dict[str, Record] = {}
    skipped: list[dict[str, str]] = []
    for rid, entry in entries.items():
        if not isinstance(entry, dict):
            skipped.append({"id": str(rid), "reason": "entry is not an object"})
            continue
        sh = entry.get("semantic_hash")
        status = entry.get("status", "active")
        if not isinstance(sh, int) or isinstance(sh, bool) or not -(1 << 63) <= sh < (1 << 64):
            skipped.append({"id": rid, "reason": "semantic_hash is not a 64-bit integer"})
            continue
        if status not in _STATE_NAMES:
            skipped.append({"id": rid, "reason": f"status {status!r} is not one of {sorted(_STATE_NAMES)}"})
            continue
        conv = entry.get("conversation_id")
        records[rid] = Record(
            id=rid,
            text=None,
            metadata={**entry, "has_content": False},
            vector=hash_vector(sh),
            kind="rsu",
            state=State(status),
            created_at=_timestamp(entry.get("created_at")),
            accessed_at=_timestamp(entry.get("last_accessed")),
            access_count=int(entry["access_count"]) if isinstance(entry.get("access_count"), int) else 0,
            conversation_id=conv if isinstance(conv, str) else None,
            original=entry,
        )
    edges: dict[tuple[str, str], EdgeRecord] = {}
    notes: list[dict[str, str]] = []
    for rid, rec in records.items():
        parent = rec.original.get("parent_rsu_id")
        if isinstance(parent, str) and parent in records and parent != rid:
            rec.parent_id = parent
            edges[(parent, rid)] = EdgeRecord(parent, rid, "child", 1.0)
        elif parent is not None:
            notes.append({"id": rid, "reason": f"parent_rsu_id {parent!r} is not a migrated entry (kept in metadata)"})
        for child in rec.original.get("child_rsu_ids") or []:
            if isinstance(child, str) and child in records and child != rid:
                edges[(rid, child)] = EdgeRecord(rid, child, "child", 1.0)
    ordered = _parents_first(records, notes)

    def reconstruct(unit: Unit) -> dict[str, Any]:
        return {k: v for k, v in unit.metadata.items() if k != "has_content"}

    return Source(
        layout=RSU_MANIFEST,
        path=path,
        files=[path],
        records=ordered,
        edges=list(edges.values()),
        dim=64,
        embedder=None,
        default_collection="rsu",
        reconstruct=reconstruct,
        skipped=skipped,
        notes=notes,
    )


def _parents_first(records: dict[str, Record], notes: list[dict[str, str]]) -> list[Record]:
    """Order records so every parent precedes its children; a parent cycle is cut (and reported)."""
    out: list[Record] = []
    placed: set[str] = set()
    for rec in records.values():
        chain: list[Record] = []
        node: Record | None = rec
        seen: set[str] = set()
        while node is not None and node.id not in placed:
            if node.id in seen:
                cut = chain[-1]
                notes.append({"id": cut.id, "reason": "parent_rsu_id forms a cycle; this parent link was cut"})
                cut.parent_id = None
                break
            seen.add(node.id)
            chain.append(node)
            node = records.get(node.parent_id) if node.parent_id else None
        for item in reversed(chain):
            if item.id not in placed:
                placed.add(item.id)
                out.append(item)
    return out
