"""The transformers glue of a turn: when the first token came, and which keyword takes a restored cache."""

from __future__ import annotations

import functools
import time
from typing import Any

__all__ = ["FirstToken", "cache_keyword"]


class FirstToken:
    """A ``generate`` streamer that notes when the first new token arrives and forwards to another streamer.

    ``generate`` hands a streamer the prompt first, then each new token; the second ``put`` is therefore
    the end of prefill (the time to first token, without the steps before generation).
    """

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.at: float | None = None
        self._puts = 0

    def put(self, value: Any) -> None:
        self._puts += 1
        if self._puts == 2 and self.at is None:
            self.at = time.perf_counter()
        if self.inner is not None:
            self.inner.put(value)

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()


@functools.cache
def cache_keyword() -> str:
    """``cache`` on transformers releases that renamed ``past_key_values`` (it warns), else ``past_key_values``."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "cache" if (major, minor) >= (5, 24) else "past_key_values"
