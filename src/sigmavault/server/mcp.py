"""The vault's operations as MCP tools (the official ``mcp`` SDK's ``MCPServer``).

The same server object runs on stdio (``sigmavault mcp PATH``) and as streamable HTTP at ``/mcp``
inside the FastAPI app, where the HTTP key's principal (put on the request by the app's auth
wrapper) picks the tenant's vault and its scope limits the tools a caller may use. Every tool is
one call of the facade; a sigmavault error comes back as an error result carrying
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, Literal, ParamSpec, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

import sigmavault as sv
from sigmavault import validate
from sigmavault.collection import DEFAULT
from sigmavault.errors import InvalidInput, VaultError
from sigmavault.server.state import collection

__all__ = ["TOOLS", "VaultResolver", "build_mcp", "single_vault"]

TOOLS = (
    "memory_add",
    "memory_search",
    "memory_get",
    "memory_update",
    "memory_delete",
    "memory_link",
    "memory_neighbors",
    "memory_conversation",
    "session_get",
    "kv_stats",
    "witness_query",
    "witness_stats",
)
# (context, scope) -> the vault this call may use; raises VaultError/PermissionError to refuse.
VaultResolver = Callable[[Context, str], sv.Vault]
P = ParamSpec("P")
R = TypeVar("R")
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


def _as_error_result(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a sigmavault error into an MCP error result with the one JSON error shape."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except VaultError as exc:
            raise ToolError(json.dumps({"error": exc.to_dict()})) from exc
        except PermissionError as exc:
            raise ToolError(json.dumps({"error": {"code": "forbidden", "message": str(exc)}})) from exc

    return wrapper


def build_mcp(resolve: VaultResolver, *, embedder: Any = DEFAULT) -> MCPServer:
    """An MCP server whose tools act on the vault ``resolve`` hands them for each call."""
    server = MCPServer(
        name="sigmavault",
        instructions="Long-term memory: add, search, link and read units; read sessions, KV and witness stats.",
        version=sv.__version__,
        log_level="WARNING",  # NOTE: the SDK configures logging at this level; INFO would log every request
    )

    def tool(annotations: ToolAnnotations) -> Callable[[Callable[P, R]], Callable[P, R]]:
        def register(fn: Callable[P, R]) -> Callable[P, R]:
            server.add_tool(_as_error_result(fn), name=fn.__name__, annotations=annotations)
            return fn

        return register

    def open_collection(ctx: Context, name: str, scope: str, *, create: bool = False) -> sv.Collection:
        return collection(resolve(ctx, scope), name, embedder=embedder, create=create)

    @tool(WRITE)
    def memory_add(
        ctx: Context,
        collection_name: str,
        texts: list[str] | None = None,
        vectors: list[list[float]] | None = None,
        metadata: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        conversation_id: str | None = None,
        parent_id: str | None = None,
    ) -> dict[str, Any]:
        """Store units (texts, vectors, or both) in a collection; returns their ids."""
        col = open_collection(ctx, collection_name, "write", create=True)
        found = col.add(
            texts, vectors=vectors, metadata=metadata, ids=ids, conversation_id=conversation_id, parent_id=parent_id
        )
        return {"ids": found}

    @tool(READ)
    def memory_search(
        ctx: Context,
        collection_name: str,
        query: str | None = None,
        vector: list[float] | None = None,
        k: int = 5,
        mode: Literal["vector", "text", "hybrid"] = "vector",
        where: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The k best units for a text (or a vector); mode text matches words, hybrid fuses both."""
        if (query is None) == (vector is None):
            raise InvalidInput("memory_search needs exactly one of query or vector")
        col = open_collection(ctx, collection_name, "read")
        hits = col.search(query if query is not None else [vector], k, mode=mode, where=where)
        return {"hits": [h.to_dict() for h in hits]}

    @tool(READ)
    def memory_get(ctx: Context, unit_id: str) -> dict[str, Any]:
        """One unit by id, whatever its collection."""
        return resolve(ctx, "read").get(unit_id).to_dict()

    @tool(WRITE)
    def memory_update(
        ctx: Context,
        collection_name: str,
        unit_id: str,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        state: Literal["active", "archived", "expired"] | None = None,
    ) -> dict[str, Any]:
        """Change a unit's text (re-embedded), metadata (replaced) or state."""
        col = open_collection(ctx, collection_name, "write")
        return col.update(unit_id, text=text, metadata=metadata, state=state).to_dict()

    @tool(DELETE)
    def memory_delete(ctx: Context, collection_name: str, unit_ids: list[str]) -> dict[str, Any]:
        """Remove units and their edges (all or none); returns how many."""
        col = resolve(ctx, "write").collection(collection_name, embedder=None, create=False)
        return {"deleted": col.delete(unit_ids)}

    @tool(WRITE)
    def memory_link(
        ctx: Context, source: str, target: str, kind: str = "related", weight: float = 1.0
    ) -> dict[str, Any]:
        """Add (or re-weight) an edge source -> target between two units."""
        resolve(ctx, "write").link(source, target, kind=kind, weight=weight)
        return {"source": source, "target": target, "kind": kind, "weight": weight}

    @tool(READ)
    def memory_neighbors(
        ctx: Context, unit_id: str, kind: str | None = None, direction: Literal["out", "in", "both"] = "out"
    ) -> dict[str, Any]:
        """Edges leaving, entering or touching a unit, heaviest first."""
        return {"edges": [e.to_dict() for e in resolve(ctx, "read").neighbors(unit_id, kind=kind, direction=direction)]}

    @tool(READ)
    def memory_conversation(ctx: Context, conversation_id: str) -> dict[str, Any]:
        """The units of a conversation in the order they were added."""
        return {"units": [u.to_dict() for u in resolve(ctx, "read").conversation(conversation_id)]}

    @tool(READ)
    def session_get(ctx: Context, session_id: str) -> dict[str, Any]:
        """A session by id (user, turns, KV reference, adapter, metadata)."""
        return resolve(ctx, "read").sessions.get(session_id).to_dict()

    @tool(READ)
    def kv_stats(ctx: Context) -> dict[str, Any]:
        """KV-cache hits, misses, hit rate and bytes per tier."""
        out: dict[str, Any] = resolve(ctx, "read").kv.stats()
        return out

    @tool(READ)
    def witness_query(
        ctx: Context,
        session_id: str | None = None,
        model: str | None = None,
        errors_only: bool = False,
        limit: int = 20,
        offset: int = 0,
        order: Literal["newest", "oldest"] = "newest",
    ) -> dict[str, Any]:
        """Witness (audit) entries matching the filters, a page at a time; ``next_offset`` is null on the last page."""
        # NOTE: pages like GET /v1/witness: one entry more than asked tells whether another page follows.
        limit = validate.integer(limit, "limit", lo=1, hi=10_000)
        found = resolve(ctx, "read").witness.query(
            session_id=session_id,
            model=model,
            errors_only=errors_only,
            limit=limit + 1,
            offset=offset,
            order=order,
            embeddings=False,
        )
        more = len(found) > limit
        return {"entries": [e.to_dict() for e in found[:limit]], "next_offset": offset + limit if more else None}

    @tool(READ)
    def witness_stats(
        ctx: Context, field: str = "total_ms", by: Literal["model", "time", "session_id", "error_type"] | None = "model"
    ) -> dict[str, Any]:
        """Count, mean and p50/p95/p99 of a numeric witness field per group."""
        return {"stats": resolve(ctx, "read").witness.stats(field, by=by)}

    return server


def single_vault(vault: sv.Vault) -> VaultResolver:
    """The resolver of ``sigmavault mcp PATH``: one vault, every scope (a local user runs it)."""

    def resolve(ctx: Context, scope: str) -> sv.Vault:
        return vault

    return resolve
