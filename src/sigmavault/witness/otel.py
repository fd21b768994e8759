"""Witness entries as OpenTelemetry spans, named and attributed by the GenAI semantic conventions.

One entry becomes one ``chat {model}`` span covering the turn (from ``timestamp`` for ``total_ms``) with
``gen_ai.*`` attributes (operation, provider, model, conversation id, response id, token usage with KV
reuse as ``gen_ai.usage.cache_read.input_tokens``, request settings, retrieval documents as JSON with ids
and scores, the data source) and ``error.type`` plus an error status on failures; what the conventions do
not cover goes under ``sigmavault.*``. Needs the ``otel`` extra (``opentelemetry-api``; an SDK to export).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sigmavault.errors import VaultError
from sigmavault.witness.entry import WitnessEntry

__all__ = ["PROVIDER", "attributes", "configured_provider", "emit", "export"]

PROVIDER = "transformers"  # gen_ai.provider.name of a model run in-process with transformers
_REQUEST = {
    "settings.max_new_tokens": "gen_ai.request.max_tokens",
    "settings.temperature": "gen_ai.request.temperature",
    "settings.top_p": "gen_ai.request.top_p",
    "settings.top_k": "gen_ai.request.top_k",
}
_LATENCY = ("kv_load_ms", "prefill_ms", "decode_ms", "kv_save_ms", "ttft_ms")


def _api() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        raise VaultError("OpenTelemetry export needs the otel extra: pip install 'sigmavault[otel]'") from None
    return trace


def attributes(entry: WitnessEntry) -> dict[str, Any]:
    """The span attributes of one entry (values are str, bool, int, float or lists of one of them)."""
    routing = dict(entry.routing or {})
    out: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": str(routing.get("provider", PROVIDER)),
    }
    if entry.request_id:
        out["gen_ai.response.id"] = entry.request_id
    if entry.model:
        out["gen_ai.request.model"] = entry.model
        out["gen_ai.response.model"] = entry.model
    if entry.session_id:
        out["gen_ai.conversation.id"] = entry.session_id
    if entry.prompt_tokens is not None:
        out["gen_ai.usage.input_tokens"] = int(entry.prompt_tokens)
    if entry.completion_tokens is not None:
        out["gen_ai.usage.output_tokens"] = int(entry.completion_tokens)
    if isinstance(routing.get("cached_tokens"), int):
        out["gen_ai.usage.cache_read.input_tokens"] = routing["cached_tokens"]
    for key, name in _REQUEST.items():
        value = routing.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    if isinstance(routing.get("collection"), str):
        out["gen_ai.data_source.id"] = routing["collection"]
    if entry.context_ids:
        scores = routing.get("context_scores")
        docs = [
            {"id": uid, **({"score": scores[i]} if isinstance(scores, list) and i < len(scores) else {})}
            for i, uid in enumerate(entry.context_ids)
        ]
        out["gen_ai.retrieval.documents"] = json.dumps(docs)
    if isinstance(routing.get("user_id"), str):
        out["user.id"] = routing["user_id"]
    if entry.error_type:
        out["error.type"] = entry.error_type
    if entry.quality is not None:
        out["sigmavault.quality"] = float(entry.quality)
    if "policy" in routing:
        out["sigmavault.routing.policy"] = str(routing["policy"])
    for name in ("embedding_ms", "retrieval_ms", "routing_ms", "generation_ms", "total_ms"):
        value = getattr(entry, name)
        if value is not None:
            out[f"sigmavault.latency.{name}"] = float(value)
    for name in _LATENCY:
        if isinstance(routing.get(name), int | float):
            out[f"sigmavault.latency.{name}"] = float(routing[name])
    return out


def emit(tracer: Any, entry: WitnessEntry) -> None:
    """Record ``entry`` as one finished span on ``tracer`` (start and end from the entry's own times)."""
    trace = _api()
    start_ms = entry.timestamp or 0
    start = int(start_ms) * 1_000_000
    end = start + int((entry.total_ms or 0.0) * 1_000_000)
    span = tracer.start_span(
        f"chat {entry.model}" if entry.model else "chat",
        kind=trace.SpanKind.INTERNAL,
        attributes=attributes(entry),
        start_time=start,
    )
    if entry.failed:
        span.set_status(trace.Status(trace.StatusCode.ERROR, entry.error_message or entry.error_type or "error"))
    span.end(end_time=end)


def export(entries: Iterable[WitnessEntry], tracer_provider: Any = None) -> int:
    """Emit every entry as a span through ``tracer_provider`` (the global one by default); returns the count.

    The provider's span processors are flushed at the end, so an exporter has received every span on return.
    """
    trace = _api()
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    tracer = provider.get_tracer("sigmavault.witness")
    n = 0
    for entry in entries:
        emit(tracer, entry)
        n += 1
    flush = getattr(provider, "force_flush", None)
    if callable(flush):
        flush()
    return n


def configured_provider() -> Any:
    """OpenTelemetry's global tracer provider once an application has set one, else ``None`` (or no otel)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider
