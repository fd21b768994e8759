"""Step timing for a turn: ``with clock("name"):`` blocks recorded in a latency dict, in milliseconds."""

from __future__ import annotations

import time

__all__ = ["Clock", "Timed", "ms"]


class Clock:
    """Times ``with clock("name"):`` blocks into a latency dict (milliseconds)."""

    def __init__(self, into: dict[str, float]) -> None:
        self._into = into

    def __call__(self, name: str, *, add: bool = False) -> Timed:
        return Timed(self._into, name, add)


class Timed:
    """One timed block: on exit its duration is stored (or, with ``add``, added) under its name."""

    def __init__(self, into: dict[str, float], name: str, add: bool) -> None:
        self._into, self._name, self._add = into, name, add
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        took = ms(time.perf_counter() - self._start)
        self._into[self._name] = round(self._into.get(self._name, 0.0) + took, 3) if self._add else took


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded to the microsecond."""
    return round(seconds * 1000.0, 3)
