"""One background thread running keyed jobs (index builds), at most one per key, waited on by key.

Knows nothing about units or collections: a job is a callable filed under an integer key.
Scheduling a key that is already queued does nothing (the queued job will see the newest
state when it runs); scheduling a key whose job is running queues it once more, so work that
arrived during a build is picked up after it. :meth:`Jobs.wait` blocks until a key has no job
queued or running and re-raises what the last one raised; :meth:`Jobs.close` runs what is
queued, then stops the thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

__all__ = ["Jobs"]


class Jobs:
    """A lazily started daemon thread working through keyed jobs in arrival order."""

    def __init__(self, name: str = "sigmavault-index") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._queue: deque[int] = deque()
        self._work: dict[int, Callable[[], None]] = {}
        self._running: int | None = None
        self._errors: dict[int, BaseException] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, key: int, job: Callable[[], None]) -> bool:
        """Queue ``job`` under ``key`` unless one is queued already; False once closed."""
        with self._cond:
            if self._closed:
                return False
            if key not in self._work:
                self._queue.append(key)
            self._work[key] = job
            self._errors.pop(key, None)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
            return True

    def queued(self, key: int) -> bool:
        """Whether ``key`` has a job waiting to start."""
        return key in self._work

    def busy(self, key: int) -> bool:
        """Whether ``key`` has a job queued or running."""
        return key in self._work or self._running == key

    def wait(self, key: int) -> None:
        """Block until ``key`` has no job queued or running; re-raise the last one's exception."""
        with self._cond:
            while key in self._work or self._running == key:
                self._cond.wait()
            error = self._errors.pop(key, None)
        if error is not None:
            raise error

    def close(self) -> None:
        """Run the queued jobs to the end, then stop the thread (idempotent)."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                key = self._queue.popleft()
                job = self._work.pop(key)
                self._running = key
            try:
                job()
            except BaseException as exc:  # NOTE: kept for wait(); the thread must survive any job
                with self._cond:
                    self._errors[key] = exc
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()
