"""The RAM tier: encoded chunk payloads under a byte budget that is never exceeded.

The tier holds payloads as stored (packed codes for q8/q4), so its bytes shrink with the codec.
It is a cache in front of the disk tier: every chunk it holds is already on disk, so evicting
one never loses it. A payload larger than the whole budget is simply not cached.
"""

from __future__ import annotations

import threading

from sigmavault.errors import InvalidInput
from sigmavault.kv.policies import Policy, make_policy

__all__ = ["RamTier"]


class RamTier:
    """A thread-safe byte-budgeted map ``key -> payload`` with a pluggable eviction policy."""

    def __init__(self, budget: int, policy: str = "lru") -> None:
        self._lock = threading.Lock()
        self._items: dict[bytes, bytes] = {}
        self._policy: Policy = make_policy(policy)
        self.policy_name = policy
        self.budget = _budget(budget)
        self.used = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: bytes) -> bool:
        return key in self._items

    def get(self, key: bytes) -> bytes | None:
        """The payload (and a touch for the policy), or ``None``."""
        with self._lock:
            payload = self._items.get(key)
            if payload is not None:
                self._policy.touch(key)
            return payload

    def put(self, key: bytes, payload: bytes, *, cost: int) -> bool:
        """Cache ``payload``, evicting as needed; ``cost`` is the prefill it saves (tokens)."""
        size = len(payload)
        with self._lock:
            if key in self._items:
                self._policy.touch(key)
                return True
            if size > self.budget:
                return False
            self._make_room(size)
            self._items[key] = payload
            self.used += size
            self._policy.add(key, size=size, cost=cost)
            return True

    def discard(self, key: bytes) -> None:
        with self._lock:
            payload = self._items.pop(key, None)
            if payload is not None:
                self.used -= len(payload)
                self._policy.remove(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._policy = make_policy(self.policy_name)
            self.used = 0

    def reconfigure(self, *, budget: int | None = None, policy: str | None = None) -> None:
        """Change the budget (evicting down to it) or the policy (keeping resident payloads)."""
        with self._lock:
            if policy is not None and policy != self.policy_name:
                fresh = make_policy(policy)
                for key, payload in self._items.items():
                    fresh.add(key, size=len(payload), cost=1)
                self._policy, self.policy_name = fresh, policy
            if budget is not None:
                self.budget = _budget(budget)
                self._make_room(0)

    def _make_room(self, size: int) -> None:
        while self._items and self.used + size > self.budget:
            victim = self._policy.victim()
            self._policy.evict(victim)
            self.used -= len(self._items.pop(victim))
            self.evictions += 1


def _budget(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"a RAM budget is a number of bytes >= 0, got {value!r}")
    return value
