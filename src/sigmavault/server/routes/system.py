"""Health, stats, check, metrics and the dashboard's data: the operator's routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

import sigmavault as sv
from sigmavault.server.errors import ERROR_RESPONSES
from sigmavault.server.metrics import vault_metrics
from sigmavault.server.models import JSON
from sigmavault.server.state import admin, hub_of, principal_of, reader

__all__ = ["router"]

router = APIRouter(tags=["system"], responses=ERROR_RESPONSES)
Reader = Annotated[sv.Vault, Depends(reader)]
Admin = Annotated[sv.Vault, Depends(admin)]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: answers without a key and without touching a vault."""
    return {"status": "ok", "version": sv.__version__}


@router.get("/v1/stats")
def stats(vault: Reader) -> JSON:
    """Units per collection, edges and bytes on disk."""
    out: JSON = vault.stats()
    out.pop("path", None)  # NOTE: the server's directory layout is not the client's business
    return out


@router.post("/v1/check")
def check(vault: Admin) -> JSON:
    """Verify the whole store (SQLite integrity, vector files, indexes, every part); can take a while."""
    return vault.check().to_dict()


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, vault: Admin) -> PlainTextResponse:
    """Prometheus text exposition: per-route requests and latency, plus the caller's vault counters."""
    lines = request.app.state.metrics.render() + vault_metrics(vault)
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/v1/dashboard")
def dashboard(request: Request, vault: Reader) -> JSON:
    """Everything the dashboard draws, in one call: collections, KV, witness latency over time, recent errors."""
    tenant = principal_of(request).tenant
    cols = [{"name": n, "units": len(vault.collection(n, embedder=None, create=False))} for n in vault.collections()]
    kv: dict[str, Any] = vault.kv.stats()
    latency = vault.witness.stats("total_ms", by="time", bucket="1m", percentiles=(50, 95, 99))
    errors = [e for e in hub_of(request).errors if e["tenant"] == tenant]
    return {
        "collections": cols,
        "kv": {
            "hit_rate": kv["hit_rate"],
            "hits": kv["hits"],
            "misses": kv["misses"],
            "bytes": {"ram": kv["ram"]["bytes"], "disk": kv["disk"].get("bytes", 0)},
        },
        "witness": {"latency": latency[-60:], "status": vault.witness.status()},
        "errors": errors[-20:],
    }
