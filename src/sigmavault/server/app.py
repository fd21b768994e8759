"""The FastAPI app of ``sigmavault serve``: HTTP under ``/v1``, MCP at ``/mcp``, dashboard at ``/``.

Handlers are plain (sync) functions, so FastAPI runs them in its thread pool and the event loop
never waits on SQLite, FAISS or an embedder. Each one is a call of the public facade.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from mcp.server.mcpserver import Context
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import sigmavault as sv
from sigmavault.collection import DEFAULT
from sigmavault.embed import MiniLM, available
from sigmavault.errors import InvalidInput, VaultError
from sigmavault.server import errors
from sigmavault.server.mcp import build_mcp
from sigmavault.server.metrics import Metrics, MetricsMiddleware
from sigmavault.server.routes import graph, parts, system, units, witness
from sigmavault.server.state import Hub, ServerConfig, env_config

__all__ = ["DASHBOARD_DIR", "app_from_env", "create_app", "is_loopback"]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _McpGate:
    """Authenticates ``/mcp`` requests with the same keys as ``/v1`` and hands the principal to the tools."""

    def __init__(self, app: ASGIApp, hub: Hub) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            principal = self.hub.authenticate(headers.get("authorization"))
        except HTTPException as exc:
            await errors.error_response(exc.status_code, "unauthorized", str(exc.detail), exc.headers)(
                scope, receive, send
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _http_resolver(hub: Hub) -> Any:
    def resolve(ctx: Context, scope: str) -> sv.Vault:
        request = ctx.request_context.request
        principal = getattr(getattr(request, "state", None), "principal", None)
        if principal is None:
            raise PermissionError("this MCP call carries no authenticated key")
        if not principal.allows(scope):
            raise PermissionError(f"this key has scope {principal.scope!r}; this tool needs {scope!r}")
        return hub.vault(principal)

    return resolve


def _warm_embedder(embedder: Any) -> threading.Thread | None:
    """Load the default embedding model on a background thread, so the first request does not wait for it.

    The model is shared by the whole process (every vault and collection using the default), so it
    stays warm for the server's life. A load that fails is left for the first request to report.
    """
    if embedder is not DEFAULT or not available():
        return None

    def load() -> None:
        with contextlib.suppress(VaultError, OSError, RuntimeError):
            MiniLM().warm()

    thread = threading.Thread(target=load, name="sigmavault-embedder-warm", daemon=True)
    thread.start()
    return thread


def create_app(
    path: str | os.PathLike[str],
    *,
    keys: str | os.PathLike[str] | None = None,
    tenants: bool = False,
    embedder: Any = DEFAULT,
    host: str = "127.0.0.1",
    warm: bool = False,
) -> FastAPI:
    """The server app for the vault at ``path`` (or, with ``tenants``, one vault per tenant under it).

    ``keys`` is a keys file (see :mod:`sigmavault.server.keys`); without one every request acts as
    an admin of the one vault, which is why a keyless app refuses a non-loopback ``host``.
    ``embedder`` is what collections with text use (the default MiniLM unless given); with ``warm``
    (``sigmavault serve``) the default model loads at start, in the background, and stays loaded.
    """
    if keys is None and not is_loopback(host):
        raise InvalidInput(
            f"refusing to serve on {host} without keys: anyone who can reach it could read and "
            "write the vault; pass --keys FILE (see 'sigmavault keys add') or bind 127.0.0.1"
        )
    if tenants and keys is None:
        raise InvalidInput("--tenants needs --keys: the key says which tenant a request belongs to")
    config = ServerConfig(Path(path), Path(keys) if keys is not None else None, tenants, embedder)
    hub = Hub.start(config)
    mcp_server = build_mcp(_http_resolver(hub), embedder=embedder)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=is_loopback(host),
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    # NOTE: stateless, so any worker process can answer any MCP request (--workers N).
    mcp_server.streamable_http_app(stateless_http=True, json_response=True, transport_security=security, host=host)
    manager = mcp_server.session_manager

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.embedder_warm = _warm_embedder(embedder) if warm else None
        try:
            async with manager.run():
                yield
        finally:
            await anyio.to_thread.run_sync(hub.close)

    app = FastAPI(
        title="sigmavault",
        version=sv.__version__,
        lifespan=lifespan,
        description="ΣVAULT over HTTP: units, graph, sessions, policies, witness and KV stats.",
    )
    app.state.hub = hub
    app.state.metrics = Metrics()
    errors.install(app)
    for module in (units, graph, parts, witness, system):
        app.include_router(module.router)
    app.router.routes.append(
        Route("/mcp", endpoint=_McpGate(StreamableHTTPASGIApp(manager), hub), methods=["GET", "POST", "DELETE"])
    )
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR), name="dashboard")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(DASHBOARD_DIR / "index.html")

    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def app_from_env() -> FastAPI:
    """The app each ``--workers N`` process builds (uvicorn imports it by name; the CLI sets the environment)."""
    config = env_config()
    host = os.environ.get("SIGMAVAULT_SERVE_HOST", "127.0.0.1")
    return create_app(config.path, keys=config.keys, tenants=config.tenants, host=host, warm=True)
