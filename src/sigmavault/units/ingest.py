"""Idempotent ingest: the id a document gets, and whether the stored unit already holds it.

A document's id is its ``id`` when given; otherwise it is derived from the collection name and
its ``key`` (a file's path: a changed file keeps its id and replaces its unit) or, without a key,
from its whole content (changed content is a new unit). A re-run then finds what it stored
before, and an interrupted run resumes where its last committed batch ended.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sigmavault.errors import InvalidInput
from sigmavault.types import Unit
from sigmavault.units.records import dumps

__all__ = ["prepare", "same"]


def prepare(collection: str, i: int, doc: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(id, row)`` of document ``i``; the row holds text, metadata, kind, conversation_id, parent_id."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("text"), str):
        raise InvalidInput(f"document {i}: expected a mapping with a string 'text'")
    meta = doc.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise InvalidInput(f"document {i}: metadata must be a mapping")
    row = {
        "text": doc["text"],
        "metadata": dict(meta),
        "kind": doc.get("kind") or "unit",
        "conversation_id": doc.get("conversation_id"),
        "parent_id": doc.get("parent_id"),
    }
    if doc.get("id") is not None:
        return str(doc["id"]), row
    basis = {"key": str(doc["key"])} if doc.get("key") is not None else row
    canonical = json.dumps(basis, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(f"{collection}\0{canonical}".encode()).hexdigest()[:32], row


def same(unit: Unit, row: Mapping[str, Any]) -> bool:
    """Whether a stored unit already holds an ingest row (metadata compared as stored, through JSON)."""
    stored_meta: dict[str, Any] = json.loads(dumps(row["metadata"]))
    return bool(
        unit.text == row["text"]
        and unit.kind == row["kind"]
        and unit.conversation_id == row["conversation_id"]
        and unit.parent_id == row["parent_id"]
        and unit.metadata == stored_meta
    )
