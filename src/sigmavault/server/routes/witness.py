"""``/v1/witness``: record, query (paged), aggregate, and tail the audit log live (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

import sigmavault as sv
from sigmavault.errors import InvalidInput
from sigmavault.server.errors import ERROR_RESPONSES
from sigmavault.server.models import JSON
from sigmavault.server.state import reader, writer

__all__ = ["router"]

router = APIRouter(prefix="/v1/witness", tags=["witness"], responses=ERROR_RESPONSES)
Reader = Annotated[sv.Vault, Depends(reader)]
Writer = Annotated[sv.Vault, Depends(writer)]
POLL_SECONDS = 0.2
_TAIL_WINDOW = 10_000


@router.post("", status_code=201)
def record(body: JSON | list[JSON], vault: Writer) -> dict[str, list[str | None]]:
    """Record one entry (or a list); answers their request ids (queued, persisted within the flush interval)."""
    entries = body if isinstance(body, list) else [body]
    return {"request_ids": [vault.witness.record(e) for e in entries]}


@router.get("")
def query(
    vault: Reader,
    since: Annotated[int | None, Query(ge=0, description="UTC ms, inclusive")] = None,
    until: Annotated[int | None, Query(ge=0, description="UTC ms, exclusive")] = None,
    session_id: str | None = None,
    model: str | None = None,
    quality_below: float | None = None,
    quality_above: float | None = None,
    errors_only: bool = False,
    error_type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    order: Literal["newest", "oldest"] = "newest",
) -> JSON:
    """Entries matching every filter, a page at a time; ``next_offset`` is null on the last page."""
    found = vault.witness.query(
        since=since,
        until=until,
        session_id=session_id,
        model=model,
        quality_below=quality_below,
        quality_above=quality_above,
        errors_only=errors_only,
        error_type=error_type,
        limit=limit + 1,
        offset=offset,
        order=order,
        embeddings=False,
    )
    more = len(found) > limit
    return {"entries": [e.to_dict() for e in found[:limit]], "next_offset": offset + limit if more else None}


@router.get("/stats")
def stats(
    vault: Reader,
    field: str = "total_ms",
    by: Annotated[str, Query(description="comma-separated: model, time, session_id, error_type; or none")] = "model",
    bucket: str = "1h",
    percentiles: Annotated[str, Query(description="comma-separated, e.g. 50,95,99")] = "50,95,99",
    since: Annotated[int | None, Query(ge=0)] = None,
    until: Annotated[int | None, Query(ge=0)] = None,
) -> list[JSON]:
    """Count, mean, min, max and percentiles of a numeric field per group."""
    groups = None if by in ("", "none") else [g.strip() for g in by.split(",")]
    try:
        pct = [float(p) for p in percentiles.split(",") if p.strip()]
    except ValueError:
        raise InvalidInput(f"percentiles must be comma-separated numbers, got {percentiles!r}") from None
    out: list[JSON] = vault.witness.stats(field, by=groups, percentiles=pct, bucket=bucket, since=since, until=until)
    return out


@router.get("/status")
def status(vault: Reader) -> JSON:
    """Stored entries, batches, archives; this process's queue depth and drops."""
    out: JSON = vault.witness.status()
    return out


def _newer(vault: sv.Vault, after: int) -> list[Any]:
    """Entries with ``seq > after`` among the newest (by timestamp), oldest first.

    NOTE: reads 100 newest entries per poll, more only while all of them are new, so an idle tail
    costs one small query; an entry recorded now with a timestamp far in the past is not tailed.
    """
    limit = 100
    while True:
        recent = vault.witness.query(limit=limit, embeddings=False)
        fresh = [e for e in recent if e.seq is not None and e.seq > after]
        if len(fresh) < len(recent) or len(recent) < limit or limit >= _TAIL_WINDOW:
            return sorted(fresh, key=lambda e: e.seq or 0)
        limit *= 10


def _last_seq(vault: sv.Vault) -> int:
    return max((e.seq or 0 for e in vault.witness.query(limit=100, embeddings=False)), default=0)


@router.get("/stream", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def stream(request: Request, vault: Reader) -> StreamingResponse:
    """Entries recorded from now on, as Server-Sent Events (``event: entry``, JSON data), until the client leaves.

    The stream opens with a ``: ready`` comment once it has noted where the log ends.
    """
    start = await anyio.to_thread.run_sync(_last_seq, vault)

    async def events() -> AsyncIterator[str]:
        after = start
        yield ": ready\n\n"
        while not await request.is_disconnected():
            fresh = await anyio.to_thread.run_sync(_newer, vault, after)
            for entry in fresh:
                after = max(after, entry.seq or 0)
                yield f"event: entry\nid: {entry.seq}\ndata: {json.dumps(entry.to_dict())}\n\n"
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
