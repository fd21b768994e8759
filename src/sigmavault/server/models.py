"""Request and response bodies of the HTTP API (they are also its OpenAPI schema).

Vectors travel as JSON lists of numbers, or for bulk as ``*_b64``: base64 of little-endian float32
rows, row after row (``dim`` says the row length where the collection does not know it yet).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sigmavault.errors import InvalidInput

__all__ = [
    "AddUnits",
    "CollectionOut",
    "CreateCollection",
    "DeleteUnits",
    "EdgeOut",
    "HitOut",
    "Link",
    "SearchRequest",
    "SimilarRequest",
    "UnitOut",
    "UpdateUnit",
    "decode_vectors",
]

JSON = dict[str, Any]
Vector = list[float]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IndexParams(Body):
    """ANN defaults stored with the collection (see ``Vault.collection``)."""

    ef: int | None = Field(default=None, ge=1)
    nprobe: int | None = Field(default=None, ge=1)
    rerank: int | None = Field(default=None, ge=1)
    m: int | None = Field(default=None, ge=2)
    ef_construction: int | None = Field(default=None, ge=1)
    nlist: int | None = Field(default=None, ge=1)
    bits: int | None = Field(default=None, ge=1)


class CreateCollection(Body):
    name: str = Field(min_length=1, max_length=200)
    embedder: Literal["default", "none"] = "default"
    metric: Literal["cosine", "ip", "l2"] = "cosine"
    index: Literal["auto", "exact", "hnsw", "ivf-rabitq"] | None = None
    params: IndexParams = Field(default_factory=lambda: IndexParams())


class CollectionOut(BaseModel):
    name: str
    units: int
    dim: int | None
    metric: str
    embedder: str | None
    index: JSON | None = None


class AddUnits(Body):
    texts: list[str] | None = None
    vectors: list[Vector] | None = None
    vectors_b64: str | None = Field(default=None, description="base64 of little-endian float32 rows")
    dim: int | None = Field(
        default=None, ge=1, description="row length of vectors_b64 for a collection with no vectors yet"
    )
    ids: list[str] | None = None
    metadata: JSON | list[JSON] | None = None
    kind: str | list[str] = "unit"
    conversation_id: str | list[str | None] | None = None
    parent_id: str | list[str | None] | None = None
    kv_ref: str | list[str | None] | None = None


class IdsOut(BaseModel):
    ids: list[str]


class UnitOut(BaseModel):
    id: str
    collection: str
    text: str | None
    metadata: JSON
    kind: str
    state: str
    created_at: float
    accessed_at: float
    access_count: int
    conversation_id: str | None
    parent_id: str | None
    semantic_hash: int
    kv_ref: str | None
    vector: Vector | None = None


class UpdateUnit(Body):
    text: str | None = None
    metadata: JSON | None = None
    state: Literal["active", "archived", "expired", "corrupted"] | None = None
    vector: Vector | None = None
    kv_ref: str | None = None


class DeleteUnits(Body):
    ids: list[str] = Field(min_length=1)


class CountOut(BaseModel):
    count: int


class SearchRequest(Body):
    query: str | None = Field(default=None, description="a text (embedded, or matched by words in text/hybrid mode)")
    vector: Vector | None = None
    vector_b64: str | None = None
    k: int = Field(10, ge=1, le=10_000)
    mode: Literal["vector", "text", "hybrid"] = "vector"
    where: JSON | None = None
    states: str | list[str] = "active"
    ef: int | None = Field(default=None, ge=1)
    nprobe: int | None = Field(default=None, ge=1)
    rerank: int | None = Field(default=None, ge=1)


class HitOut(BaseModel):
    id: str
    score: float
    text: str | None
    metadata: JSON


class SimilarRequest(Body):
    id: str | None = None
    vector: Vector | None = None
    threshold: float = Field(0.85, ge=0.0, le=1.0)
    k: int | None = Field(default=None, ge=1)


class Link(Body):
    source: str
    target: str | list[str]
    kind: str = "related"
    weight: float = 1.0


class EdgeOut(BaseModel):
    source: str
    target: str
    kind: str
    weight: float
    created_at: float


def decode_vectors(b64: str, dim: int | None) -> np.ndarray:
    """Rows from base64 little-endian float32; ``dim`` is the row length."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("vectors_b64 is not valid base64") from None
    if dim is None:
        raise InvalidInput("vectors_b64 needs dim=... (the collection holds no vectors yet)")
    if len(raw) == 0 or len(raw) % (4 * dim):
        raise InvalidInput(f"vectors_b64 holds {len(raw)} bytes, not a whole number of {dim}-d float32 rows")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, dim)
