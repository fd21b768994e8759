"""One turn per session at a time, with no lock kept for a session that has no turn running or waiting."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["SessionLocks"]


class _SessionLock:
    """One session's turn lock and how many turns hold or await it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class SessionLocks:
    """Per-session turn locks, reference-counted.

    A turn reads the session's history and writes the next one, so turns of one session run one at a
    time. A session's lock lives while a turn holds or awaits it: a long-running server keeps no lock per
    session it ever saw.
    """

    def __init__(self) -> None:
        self._locks: dict[str, _SessionLock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        """Wait for ``session_id``'s lock and hold it for the ``with`` block."""
        with self._guard:
            held = self._locks.setdefault(session_id, _SessionLock())
            held.users += 1
        try:
            with held.lock:
                yield
        finally:
            with self._guard:
                held.users -= 1
                if held.users == 0:
                    del self._locks[session_id]

    def __len__(self) -> int:
        """How many sessions have a turn running or waiting."""
        with self._guard:
            return len(self._locks)
