"""``/v1`` graph routes: link, unlink, neighbors, path, chain and conversation."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

import sigmavault as sv
from sigmavault.server.errors import ERROR_RESPONSES
from sigmavault.server.models import CountOut, EdgeOut, Link, UnitOut
from sigmavault.server.state import reader, writer

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["graph"], responses=ERROR_RESPONSES)
Reader = Annotated[sv.Vault, Depends(reader)]
Writer = Annotated[sv.Vault, Depends(writer)]


@router.post("/links", response_model=CountOut, status_code=201)
def link(body: Link, vault: Writer) -> dict[str, Any]:
    """Add an edge ``source -> target`` (or one to each of several targets); re-linking updates the weight."""
    vault.link(body.source, body.target, kind=body.kind, weight=body.weight)
    return {"count": 1 if isinstance(body.target, str) else len(body.target)}


@router.delete("/links", response_model=CountOut)
def unlink(vault: Writer, source: str, target: str, kind: str | None = None) -> dict[str, Any]:
    """Remove edges ``source -> target`` (of one kind, or all); answers how many there were."""
    return {"count": vault.unlink(source, target, kind=kind)}


@router.get("/units/{unit_id}/neighbors", response_model=list[EdgeOut])
def neighbors(
    unit_id: str, vault: Reader, kind: str | None = None, direction: Literal["out", "in", "both"] = "out"
) -> list[dict[str, Any]]:
    """Edges leaving, entering or touching a unit, heaviest first."""
    return [e.to_dict() for e in vault.neighbors(unit_id, kind=kind, direction=direction)]


@router.get("/path")
def path(
    vault: Reader,
    source: str,
    target: str,
    max_depth: Annotated[int, Query(ge=1, le=16)] = 4,
    kind: str | None = None,
    directed: bool = True,
) -> dict[str, list[str] | None]:
    """The shortest chain of ids from ``source`` to ``target`` (``null`` when none within ``max_depth``)."""
    return {"path": vault.path(source, target, max_depth=max_depth, kind=kind, directed=directed)}


@router.get("/units/{unit_id}/chain")
def chain(unit_id: str, vault: Reader) -> dict[str, list[str]]:
    """The unit and its ancestors by ``parent_id``, ending at the root."""
    vault.get(unit_id)  # NOTE: an unknown id is a 404, not a chain of one
    return {"chain": vault.chain(unit_id)}


@router.get("/conversations/{conversation_id}", response_model=list[UnitOut], response_model_exclude_unset=True)
def conversation(conversation_id: str, vault: Reader) -> list[dict[str, Any]]:
    """The units of a conversation, in the order they were added."""
    return [u.to_dict() for u in vault.conversation(conversation_id)]
