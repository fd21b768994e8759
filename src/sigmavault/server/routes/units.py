"""``/v1/collections``: collections, their units, search and near-duplicates."""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

import sigmavault as sv
from sigmavault.errors import InvalidInput
from sigmavault.server.errors import ERROR_RESPONSES
from sigmavault.server.models import (
    AddUnits,
    CollectionOut,
    CountOut,
    CreateCollection,
    DeleteUnits,
    HitOut,
    IdsOut,
    SearchRequest,
    SimilarRequest,
    UnitOut,
    UpdateUnit,
    decode_vectors,
)
from sigmavault.server.state import collection, hub_of, reader, writer

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["units"], responses=ERROR_RESPONSES)
Reader = Annotated[sv.Vault, Depends(reader)]
Writer = Annotated[sv.Vault, Depends(writer)]


def _collection(request: Request, vault: sv.Vault, name: str, *, create: bool = False) -> sv.Collection:
    return collection(vault, name, embedder=hub_of(request).config.embedder, create=create)


def _describe(col: sv.Collection, *, index: bool = False) -> dict[str, Any]:
    info = col.info
    out: dict[str, Any] = {
        "name": col.name,
        "units": len(col),
        "dim": info.dim,
        "metric": info.metric,
        "embedder": info.embedder,
    }
    if index:
        out["index"] = col.index_info()
    return out


def _where(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        raise InvalidInput('where must be a JSON object, e.g. {"topic": "a"}') from None
    if not isinstance(found, dict):
        raise InvalidInput('where must be a JSON object, e.g. {"topic": "a"}')
    return found


@router.get("/collections", response_model=list[CollectionOut])
def list_collections(vault: Reader) -> list[dict[str, Any]]:
    """Every collection with its unit count, dimension, metric and embedder."""
    return [_describe(vault.collection(n, embedder=None, create=False)) for n in vault.collections()]


@router.post("/collections", response_model=CollectionOut, status_code=201)
def create_collection(body: CreateCollection, request: Request, vault: Writer) -> dict[str, Any]:
    """Create a collection (or change an existing one's index choice) with its metric and index."""
    embedder = None if body.embedder == "none" else hub_of(request).config.embedder
    params: dict[str, Any] = body.params.model_dump(exclude_none=True)
    col = vault.collection(body.name, embedder=embedder, metric=body.metric, index=body.index, **params)
    return _describe(col, index=True)


@router.get("/collections/{name}", response_model=CollectionOut)
def get_collection(name: str, vault: Reader) -> dict[str, Any]:
    """One collection, with how its vector search runs (index kind and coverage)."""
    return _describe(vault.collection(name, embedder=None, create=False), index=True)


@router.post("/collections/{name}/units", response_model=IdsOut, status_code=201)
def add_units(name: str, body: AddUnits, request: Request, vault: Writer) -> dict[str, Any]:
    """Add units (texts, vectors, or both) in one batch; the collection is created on first use."""
    col = _collection(request, vault, name, create=True)
    vectors: Any = body.vectors
    if body.vectors_b64 is not None:
        if vectors is not None:
            raise InvalidInput("give vectors or vectors_b64, not both")
        vectors = decode_vectors(body.vectors_b64, body.dim or col.dim)
    elif vectors is not None:
        vectors = _matrix(vectors)
    ids = col.add(
        body.texts,
        vectors=vectors,
        ids=body.ids,
        metadata=body.metadata,
        kind=body.kind,
        conversation_id=body.conversation_id,
        parent_id=body.parent_id,
        kv_ref=body.kv_ref,
    )
    return {"ids": ids}


def _matrix(rows: list[list[float]]) -> np.ndarray:
    if len({len(r) for r in rows}) > 1:
        raise InvalidInput("vectors must all have the same length")
    with np.errstate(over="ignore"):  # NOTE: a value beyond float32 becomes inf, which add/search reject clearly
        return np.asarray(rows, dtype=np.float32)


@router.get("/collections/{name}/units", response_model=list[UnitOut], response_model_exclude_unset=True)
def list_units(
    name: str,
    vault: Reader,
    where: Annotated[str | None, Query(description="a JSON filter on metadata")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Units in insertion order (without vectors), paged."""
    col = vault.collection(name, embedder=None, create=False)
    out = []
    for i, unit in enumerate(col.all(where=_where(where))):
        if i >= offset + limit:
            break
        if i >= offset:
            out.append(unit.to_dict())
    return out


@router.get("/collections/{name}/units/{unit_id}", response_model=UnitOut, response_model_exclude_unset=True)
def get_unit(name: str, unit_id: str, vault: Reader, vectors: bool = False) -> dict[str, Any]:
    """One unit; its stored vector with ``vectors=true``."""
    return vault.collection(name, embedder=None, create=False).get(unit_id).to_dict(vectors=vectors)


@router.patch("/collections/{name}/units/{unit_id}", response_model=UnitOut, response_model_exclude_unset=True)
def update_unit(name: str, unit_id: str, body: UpdateUnit, request: Request, vault: Writer) -> dict[str, Any]:
    """Change a unit's text (re-embedded), metadata (replaced), state, vector or kv_ref."""
    col = _collection(request, vault, name)
    vector = None if body.vector is None else _matrix([body.vector])
    unit = col.update(
        unit_id, text=body.text, metadata=body.metadata, state=body.state, vector=vector, kv_ref=body.kv_ref
    )
    return unit.to_dict()


@router.delete("/collections/{name}/units/{unit_id}", status_code=204)
def delete_unit(name: str, unit_id: str, vault: Writer) -> Response:
    """Remove a unit and its edges."""
    vault.collection(name, embedder=None, create=False).delete(unit_id)
    return Response(status_code=204)


@router.post("/collections/{name}/units/delete", response_model=CountOut)
def delete_units(name: str, body: DeleteUnits, vault: Writer) -> dict[str, Any]:
    """Remove several units at once (all or none: an unknown id removes nothing)."""
    return {"count": vault.collection(name, embedder=None, create=False).delete(body.ids)}


@router.post("/collections/{name}/search", response_model=list[HitOut])
def search(name: str, body: SearchRequest, request: Request, vault: Reader) -> JSONResponse:
    """The ``k`` best units for a text or a vector (``mode``: vector, text or hybrid)."""
    col = _collection(request, vault, name)
    given = [q for q in (body.query, body.vector, body.vector_b64) if q is not None]
    if len(given) != 1:
        raise InvalidInput("search needs exactly one of query, vector or vector_b64")
    query: Any = body.query
    if body.vector is not None:
        query = _matrix([body.vector])
    elif body.vector_b64 is not None:
        query = decode_vectors(body.vector_b64, col.dim)
    hits = col.search(
        query,
        body.k,
        mode=body.mode,
        where=body.where,
        states=body.states,
        ef=body.ef,
        nprobe=body.nprobe,
        rerank=body.rerank,
    )
    # NOTE: a Response skips re-validating what to_dict() made (response_model still documents it): the hot path
    return JSONResponse([h.to_dict() for h in hits])


@router.post("/collections/{name}/similar", response_model=list[HitOut])
def find_similar(name: str, body: SimilarRequest, vault: Reader) -> list[dict[str, Any]]:
    """Near duplicates by SimHash of a unit (``id``) or of a ``vector``."""
    col = vault.collection(name, embedder=None, create=False)
    if (body.id is None) == (body.vector is None):
        raise InvalidInput("find_similar needs exactly one of id or vector")
    probe: Any = body.id if body.id is not None else _matrix([body.vector or []])
    return [h.to_dict() for h in col.find_similar(probe, body.threshold, k=body.k)]


@router.get("/units/{unit_id}", response_model=UnitOut, response_model_exclude_unset=True)
def get_any_unit(unit_id: str, vault: Reader) -> dict[str, Any]:
    """A unit by id, whatever its collection."""
    return vault.get(unit_id).to_dict()
