"""Prometheus metrics: request counts and latencies per route, and the vault's own counters.

Hand-written text exposition (format 0.0.4), so the server needs no metrics library: a few
counters and one histogram per route, kept under a lock by an ASGI middleware.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

import sigmavault as sv

__all__ = ["BUCKETS", "Metrics", "MetricsMiddleware", "vault_metrics"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**kv: Any) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in kv.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Per-route request counters and latency histograms of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counts[(method, route, status)] += 1
            counts = self._buckets.setdefault((method, route), [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._sums[(method, route)] += seconds

    def render(self) -> list[str]:
        with self._lock:
            counts = dict(self._counts)
            buckets = {k: list(v) for k, v in self._buckets.items()}
            sums = dict(self._sums)
        lines = [
            "# HELP sigmavault_http_requests_total HTTP requests answered, by method, route and status.",
            "# TYPE sigmavault_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(counts.items()):
            lines.append(f"sigmavault_http_requests_total{_labels(method=method, route=route, status=status)} {n}")
        lines += [
            "# HELP sigmavault_http_request_duration_seconds Time to answer a request, by method and route.",
            "# TYPE sigmavault_http_request_duration_seconds histogram",
        ]
        for (method, route), per in sorted(buckets.items()):
            for bound, n in zip((*BUCKETS, "+Inf"), per, strict=True):
                labels = _labels(method=method, route=route, le=bound)
                lines.append(f"sigmavault_http_request_duration_seconds_bucket{labels} {n}")
            lines.append(
                f"sigmavault_http_request_duration_seconds_sum{_labels(method=method, route=route)} "
                f"{sums[(method, route)]:.6f}"
            )
            lines.append(
                f"sigmavault_http_request_duration_seconds_count{_labels(method=method, route=route)} {per[-1]}"
            )
        return lines


class MetricsMiddleware:
    """Times every HTTP request and counts it under its route template (``/v1/collections/{name}``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/mcp" if scope["path"].startswith("/mcp") else "other")
            self.metrics.observe(scope["method"], path, status, time.perf_counter() - start)


def vault_metrics(vault: sv.Vault) -> list[str]:
    """Gauges of one vault: units per collection, KV hit rate and bytes per tier, witness queue and drops."""
    lines = ["# HELP sigmavault_units Units stored, by collection.", "# TYPE sigmavault_units gauge"]
    for name in vault.collections():
        n = len(vault.collection(name, embedder=None, create=False))
        lines.append(f"sigmavault_units{_labels(collection=name)} {n}")
    kv = vault.kv.stats()
    lines += [
        "# HELP sigmavault_kv_hit_rate Share of KV lookups that found a cached prefix.",
        "# TYPE sigmavault_kv_hit_rate gauge",
        f"sigmavault_kv_hit_rate {kv['hit_rate']:.6f}",
        "# HELP sigmavault_kv_lookups_total KV lookups, by outcome.",
        "# TYPE sigmavault_kv_lookups_total counter",
        f'sigmavault_kv_lookups_total{{outcome="hit"}} {kv["hits"]}',
        f'sigmavault_kv_lookups_total{{outcome="miss"}} {kv["misses"]}',
        "# HELP sigmavault_kv_bytes KV-cache bytes held, by tier.",
        "# TYPE sigmavault_kv_bytes gauge",
        f'sigmavault_kv_bytes{{tier="ram"}} {kv["ram"]["bytes"]}',
        f'sigmavault_kv_bytes{{tier="disk"}} {kv["disk"].get("bytes", 0)}',
    ]
    w = vault.witness.status()
    lines += [
        "# HELP sigmavault_witness_entries Witness entries stored.",
        "# TYPE sigmavault_witness_entries gauge",
        f"sigmavault_witness_entries {w['entries']}",
        "# HELP sigmavault_witness_queue_depth Witness entries queued in this process, not yet written.",
        "# TYPE sigmavault_witness_queue_depth gauge",
        f"sigmavault_witness_queue_depth {w['queued']}",
        "# HELP sigmavault_witness_dropped_total Witness entries dropped by the overflow policy (all processes).",
        "# TYPE sigmavault_witness_dropped_total counter",
        f"sigmavault_witness_dropped_total {w['dropped_total']}",
    ]
    return lines
