"""``/v1/sessions``, ``/v1/policies`` and ``/v1/kv``: the runtime's parts, through the vault's facade."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field

import sigmavault as sv
from sigmavault.server.errors import ERROR_RESPONSES
from sigmavault.server.models import JSON, Body, Vector
from sigmavault.server.state import reader, writer

__all__ = ["router"]

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
Reader = Annotated[sv.Vault, Depends(reader)]
Writer = Annotated[sv.Vault, Depends(writer)]
States = str | list[str]


class OpenSession(Body):
    session_id: str | None = None
    user_id: str | None = None
    metadata: JSON | None = None
    context: Vector | None = None
    active_adapter: str | None = None
    kv_ref: str | None = None
    exist_ok: bool = False


class Touch(Body):
    turns: int = Field(1, ge=0)


class FindSessions(Body):
    user_id: str | None = None
    context: Vector | None = None
    k: int | None = Field(default=None, ge=1)
    states: States = "open"
    min_score: float | None = None


class Expire(Body):
    ttl_seconds: float = Field(ge=0)
    delete: bool = False


class PutPolicy(Body):
    kind: str
    params: JSON | None = None
    embedding: Vector | None = None
    confidence: float = 1.0
    source: str = "instant"
    policy_id: str | None = None


class SearchPolicies(Body):
    kind: str
    vector: Vector | None = None
    k: int = Field(5, ge=1, le=10_000)
    min_score: float | None = None
    min_confidence: float | None = None
    source: str | list[str] | None = None
    states: States = "active"


@router.post("/sessions", tags=["sessions"], status_code=201)
def open_session(body: OpenSession, vault: Writer) -> JSON:
    """Start a session (a fresh id unless one is given)."""
    return vault.sessions.open(
        body.session_id,
        user_id=body.user_id,
        metadata=body.metadata,
        context=body.context,
        active_adapter=body.active_adapter,
        kv_ref=body.kv_ref,
        exist_ok=body.exist_ok,
    ).to_dict()


@router.get("/sessions/{session_id}", tags=["sessions"])
def get_session(session_id: str, vault: Reader) -> JSON:
    """A session by id, whatever its state (session recovery)."""
    return vault.sessions.get(session_id).to_dict()


@router.post("/sessions/{session_id}/touch", tags=["sessions"])
def touch_session(session_id: str, body: Touch, vault: Writer) -> JSON:
    """Record activity on an open session: now is its last activity, plus ``turns`` turns."""
    return vault.sessions.touch(session_id, turns=body.turns).to_dict()


@router.post("/sessions/find", tags=["sessions"])
def find_sessions(body: FindSessions, vault: Reader) -> list[JSON]:
    """Sessions of a user and/or most similar to a context embedding."""
    found = vault.sessions.find(
        user_id=body.user_id, context=body.context, k=body.k, states=body.states, min_score=body.min_score
    )
    return [s.to_dict() for s in found]


@router.post("/sessions/expire", tags=["sessions"])
def expire_sessions(body: Expire, vault: Writer) -> dict[str, list[str]]:
    """Mark (or with ``delete``, remove) sessions idle longer than ``ttl_seconds``."""
    return {"ids": vault.sessions.expire(body.ttl_seconds, delete=body.delete)}


@router.post("/policies", tags=["policies"], status_code=201)
def put_policy(body: PutPolicy, vault: Writer) -> JSON:
    """Store a learned runtime parameter (an existing ``policy_id`` of the same kind is replaced)."""
    return vault.policies.put(
        body.kind,
        body.params,
        embedding=body.embedding,
        confidence=body.confidence,
        source=body.source,
        policy_id=body.policy_id,
    ).to_dict()


@router.get("/policies/{policy_id}", tags=["policies"])
def get_policy(policy_id: str, vault: Reader) -> JSON:
    """One policy entry by id."""
    return vault.policies.get(policy_id).to_dict()


@router.post("/policies/search", tags=["policies"])
def search_policies(body: SearchPolicies, vault: Reader) -> list[JSON]:
    """The ``k`` entries of ``kind`` most similar to ``vector`` (or most confident, without one)."""
    found = vault.policies.search(
        body.kind,
        body.vector,
        body.k,
        min_score=body.min_score,
        min_confidence=body.min_confidence,
        source=body.source,
        states=body.states,
    )
    return [p.to_dict() for p in found]


@router.get("/kv/stats", tags=["kv"])
def kv_stats(vault: Reader) -> JSON:
    """KV-cache counters (hits, misses, hit rate) and bytes per tier."""
    out: dict[str, Any] = vault.kv.stats()
    return out
