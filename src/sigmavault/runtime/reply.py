"""What one turn returns: :class:`Reply`, its text, token counts, latency breakdown and the context used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sigmavault.types import Hit

__all__ = ["LATENCY_KEYS", "Reply"]

# The steps a turn times, in milliseconds; ttft_ms runs from the call to the first generated token.
LATENCY_KEYS = (
    "embed_ms", "retrieval_ms", "kv_load_ms", "prefill_ms", "decode_ms", "kv_save_ms", "total_ms", "ttft_ms",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reply:
    """One turn's answer.

    ``prompt_tokens`` counts the whole prompt; ``cached_tokens`` of them came from the vault's KV store (no
    prefill); ``completion_tokens`` were generated. ``latency`` holds :data:`LATENCY_KEYS` (plus the steps
    the runtime also times: ``routing_ms``, ``remember_ms``, ``session_ms``, ``witness_ms``). ``routing`` is
    the routing decision (``policy``: an id or ``"default"``) and the generation settings used.
    """

    text: str
    request_id: str
    session_id: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    latency: dict[str, float]
    context: list[Hit]
    routing: dict[str, Any] = field(default_factory=dict)
    quality: float | None = None
    output_ids: list[int] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields (without the output ids)."""
        return {
            "text": self.text,
            "request_id": self.request_id,
            "session_id": self.session_id,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "latency": dict(self.latency),
            "context": [h.to_dict() for h in self.context],
            "routing": dict(self.routing),
            "quality": self.quality,
        }
