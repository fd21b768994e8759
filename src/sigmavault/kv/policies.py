"""Eviction policies for the RAM tier: which chunk leaves first when the byte budget is full.

``lru``   least recently used (the default: prefixes are reused in bursts, e.g. a conversation).
``lfu``   least frequently used, ties to the least recent (a few hot system prompts).
``cost``  GreedyDual-Size-Frequency: keeps chunks that save the most prefill per byte
          (``hits * tokens / bytes``), aged by a clock so that old favourites do leave.
"""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod
from collections import OrderedDict

from sigmavault.errors import InvalidInput

__all__ = ["POLICIES", "Policy", "make_policy"]


class Policy(ABC):
    """Tracks the keys resident in a tier and names the next one to evict."""

    @abstractmethod
    def add(self, key: bytes, *, size: int, cost: int) -> None: ...

    @abstractmethod
    def touch(self, key: bytes) -> None: ...

    @abstractmethod
    def remove(self, key: bytes) -> None: ...

    @abstractmethod
    def victim(self) -> bytes:
        """The key to evict next (still resident until ``evict``); the tier is non-empty."""

    def evict(self, key: bytes) -> None:
        """Forget ``key`` because it was evicted (``remove`` is for explicit discards)."""
        self.remove(key)


class LRU(Policy):
    def __init__(self) -> None:
        self._order: OrderedDict[bytes, None] = OrderedDict()

    def add(self, key: bytes, *, size: int, cost: int) -> None:
        self._order[key] = None
        self._order.move_to_end(key)

    def touch(self, key: bytes) -> None:
        if key in self._order:
            self._order.move_to_end(key)

    def remove(self, key: bytes) -> None:
        self._order.pop(key, None)

    def victim(self) -> bytes:
        return next(iter(self._order))


class _HeapPolicy(Policy):
    """A min-heap of priorities with lazy deletion: stale entries are skipped when popped."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, bytes]] = []
        self._live: dict[bytes, tuple[float, int]] = {}
        self._tick = itertools.count()

    @abstractmethod
    def _priority(self, key: bytes) -> float: ...

    def _push(self, key: bytes) -> None:
        entry = (self._priority(key), next(self._tick))
        self._live[key] = entry
        heapq.heappush(self._heap, (*entry, key))
        if len(self._heap) > 4 * len(self._live) + 64:
            # NOTE: compaction keeps the heap O(resident) however many touches happen.
            self._heap = [(p, t, k) for k, (p, t) in self._live.items()]
            heapq.heapify(self._heap)

    def remove(self, key: bytes) -> None:
        self._live.pop(key, None)

    def victim(self) -> bytes:
        while True:
            priority, tick, key = self._heap[0]
            if self._live.get(key) == (priority, tick):
                return key
            heapq.heappop(self._heap)


class LFU(_HeapPolicy):
    def __init__(self) -> None:
        super().__init__()
        self._hits: dict[bytes, int] = {}

    def _priority(self, key: bytes) -> float:
        return float(self._hits[key])

    def add(self, key: bytes, *, size: int, cost: int) -> None:
        self._hits[key] = self._hits.get(key, 0) + 1
        self._push(key)

    def touch(self, key: bytes) -> None:
        if key in self._live:
            self._hits[key] += 1
            self._push(key)

    def remove(self, key: bytes) -> None:
        super().remove(key)
        self._hits.pop(key, None)


class CostAware(_HeapPolicy):
    """GDSF: priority = clock + hits * cost / size; the clock rises to each evicted priority."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = 0.0
        self._meta: dict[bytes, tuple[int, int, int]] = {}  # hits, size, cost

    def _priority(self, key: bytes) -> float:
        hits, size, cost = self._meta[key]
        return self._clock + hits * max(cost, 1) / max(size, 1)

    def add(self, key: bytes, *, size: int, cost: int) -> None:
        hits = self._meta[key][0] + 1 if key in self._meta else 1
        self._meta[key] = (hits, size, cost)
        self._push(key)

    def touch(self, key: bytes) -> None:
        if key in self._live:
            hits, size, cost = self._meta[key]
            self._meta[key] = (hits + 1, size, cost)
            self._push(key)

    def evict(self, key: bytes) -> None:
        entry = self._live.get(key)
        if entry is not None:
            self._clock = max(self._clock, entry[0])  # NOTE: ages everything that stays resident
        self.remove(key)

    def remove(self, key: bytes) -> None:
        super().remove(key)
        self._meta.pop(key, None)


POLICIES: dict[str, type[Policy]] = {"lru": LRU, "lfu": LFU, "cost": CostAware}


def make_policy(name: str) -> Policy:
    cls = POLICIES.get(name)
    if cls is None:
        raise InvalidInput(f"unknown eviction policy {name!r}; use one of {', '.join(POLICIES)}")
    return cls()
