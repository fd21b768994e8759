"""What one running server holds: its vault(s), its keys, and the per-request dependencies.

``Hub`` opens a vault lazily per tenant (``--tenants``: ``ROOT/<tenant>``; otherwise the one vault
at ROOT, whatever the key's tenant) and closes them at shutdown. The dependencies ``reader``,
``writer`` and ``admin`` authenticate the request, check the key's scope and hand the handler the
vault of the key's tenant: a handler can reach no other vault.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import Request
from starlette.exceptions import HTTPException

import sigmavault as sv
from sigmavault.collection import DEFAULT
from sigmavault.embed import DEFAULT_NAME
from sigmavault.server.keys import KeyRing, Principal, check_tenant

__all__ = ["LOCAL", "Hub", "ServerConfig", "admin", "collection", "hub_of", "principal_of", "reader", "writer"]

LOCAL = Principal("local", "default", "admin")  # who a request is when the server has no keys


@dataclass(slots=True)
class ServerConfig:
    """How a server was started (``sigmavault serve`` flags, or ``create_app`` arguments)."""

    path: Path
    keys: Path | None = None
    tenants: bool = False
    embedder: Any = DEFAULT


@dataclass(slots=True)
class Hub:
    """The open vaults of one server process, by tenant, plus its recent errors for the dashboard."""

    config: ServerConfig
    keyring: KeyRing | None
    _vaults: dict[str, sv.Vault] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    errors: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))

    @classmethod
    def start(cls, config: ServerConfig) -> Hub:
        keyring = None if config.keys is None else KeyRing(config.keys)
        hub = cls(config, keyring)
        if not config.tenants:
            hub.vault(LOCAL)  # NOTE: open now, so a bad path fails at start instead of on the first request
        return hub

    def vault(self, principal: Principal) -> sv.Vault:
        """The vault this principal may use (opened on first use)."""
        name = check_tenant(principal.tenant) if self.config.tenants else ""
        with self._lock:
            found = self._vaults.get(name)
            if found is None:
                found = sv.open(self.config.path / name if name else self.config.path)
                self._vaults[name] = found
            return found

    def opened(self, principal: Principal) -> sv.Vault | None:
        """The principal's vault if it is open already (no disk access: safe on the event loop)."""
        return self._vaults.get(principal.tenant if self.config.tenants else "")

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <key>`` header; 401 when keys are on and it fails."""
        if self.keyring is None:
            return LOCAL
        scheme, _, key = (authorization or "").partition(" ")
        principal = self.keyring.verify(key.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise HTTPException(
                401,
                "this server needs 'Authorization: Bearer <key>' with a valid key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return principal

    def close(self) -> None:
        with self._lock:
            vaults, self._vaults = list(self._vaults.values()), {}
        for vault in vaults:
            vault.close()


def collection(vault: sv.Vault, name: str, *, embedder: Any, create: bool = False) -> sv.Collection:
    """The collection ``name`` with the server's embedder where it is the one that collection uses.

    A collection of the caller's own vectors, or one embedded by another model, gets no embedder:
    text then fails with a clear EmbedderUnavailable instead of a dimension mismatch.
    """
    plain = vault.collection(name, embedder=None, create=create)
    info = plain.info
    if embedder is None or (info.dim is not None and info.embedder != _name_of(embedder)):
        return plain
    return vault.collection(name, embedder=embedder)


def _name_of(embedder: Any) -> str | None:
    return DEFAULT_NAME if embedder is DEFAULT else getattr(embedder, "name", None)


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def principal_of(request: Request) -> Principal:
    """Authenticate once per request (cached on the request's state)."""
    found: Principal | None = getattr(request.state, "principal", None)
    if found is None:
        found = hub_of(request).authenticate(request.headers.get("authorization"))
        request.state.principal = found
    return found


async def _vault_for(request: Request, scope: str) -> sv.Vault:
    principal = principal_of(request)
    if not principal.allows(scope):
        raise HTTPException(403, f"this key has scope {principal.scope!r}; this request needs {scope!r}")
    hub = hub_of(request)
    found = hub.opened(principal)
    if found is None:  # NOTE: opening a vault touches the disk: never on the event loop
        found = await anyio.to_thread.run_sync(hub.vault, principal)
    return found


# NOTE: the dependencies are async (a dict lookup and a scope check) so that a request costs one hop
# to the thread pool (its handler), not two: under load each hop waits for a thread's turn on a core.
async def reader(request: Request) -> sv.Vault:
    """Dependency: the caller's vault, for a request that only reads."""
    return await _vault_for(request, "read")


async def writer(request: Request) -> sv.Vault:
    """Dependency: the caller's vault, for a request that writes."""
    return await _vault_for(request, "write")


async def admin(request: Request) -> sv.Vault:
    """Dependency: the caller's vault, for operator requests (check, metrics)."""
    return await _vault_for(request, "admin")


def env_config() -> ServerConfig:
    """The config ``sigmavault serve --workers N`` hands each worker process through the environment."""
    keys = os.environ.get("SIGMAVAULT_SERVE_KEYS")
    return ServerConfig(
        path=Path(os.environ["SIGMAVAULT_SERVE_PATH"]),
        keys=Path(keys) if keys else None,
        tenants=os.environ.get("SIGMAVAULT_SERVE_TENANTS") == "1",
    )
