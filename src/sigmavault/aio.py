"""The async API: ``vault = await sv.aopen(path)``, ``docs = await vault.collection("docs")``,
``await docs.asearch("query")``.

Every call runs the synchronous method on a bounded thread pool owned by the vault (``workers``
threads), so an event loop never blocks on disk, SQLite or FAISS, and many tasks share a few
threads. SQLite, FAISS and the embedders release the GIL while they work, so searches from
concurrent tasks overlap; writes queue on the vault's write lock as they do from threads.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sigmavault.collection import Collection
from sigmavault.errors import InvalidInput
from sigmavault.types import CheckReport, Edge, Hit, Unit
from sigmavault.vault import Vault
from sigmavault.vault import open as open_vault

__all__ = ["AsyncCollection", "AsyncVault", "aopen"]

T = TypeVar("T")


async def aopen(path: str | os.PathLike[str], *, workers: int | None = None, **options: Any) -> AsyncVault:
    """Open a vault for asyncio code; ``options`` are those of :func:`sigmavault.open`.

    ``workers`` bounds the threads that run its calls (default: ``min(8, CPUs + 2)``).
    """
    n = min(8, (os.cpu_count() or 1) + 2) if workers is None else workers
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidInput(f"workers must be a positive integer, got {workers!r}")
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="sigmavault-aio")
    try:
        vault = await asyncio.get_running_loop().run_in_executor(pool, functools.partial(open_vault, path, **options))
    except BaseException:
        pool.shutdown(wait=False)
        raise
    return AsyncVault(vault, pool)


class _Pooled:
    """Runs blocking calls on the vault's pool."""

    _pool: ThreadPoolExecutor

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))


class AsyncVault(_Pooled):
    """A :class:`~sigmavault.Vault` for asyncio; ``sync`` is the vault itself (for quick reads)."""

    def __init__(self, vault: Vault, pool: ThreadPoolExecutor) -> None:
        self.sync = vault
        self._pool = pool

    @property
    def root(self) -> Path:
        return self.sync.root

    async def __aenter__(self) -> AsyncVault:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the vault (after the calls already running) and stop its threads."""
        await self._run(self.sync.close)
        self._pool.shutdown(wait=True)

    async def collection(self, name: str, **options: Any) -> AsyncCollection:
        """The collection ``name`` (created on first use); ``options`` as :meth:`Vault.collection`."""
        return AsyncCollection(await self._run(self.sync.collection, name, **options), self._pool)

    async def aget(self, unit_id: str) -> Unit:
        return await self._run(self.sync.get, unit_id)

    async def alink(self, a: str, b: str | Sequence[str], **options: Any) -> None:
        await self._run(self.sync.link, a, b, **options)

    async def aneighbors(self, unit_id: str, **options: Any) -> list[Edge]:
        return await self._run(self.sync.neighbors, unit_id, **options)

    async def adrop_collection(self, name: str, **options: Any) -> int:
        return await self._run(self.sync.drop_collection, name, **options)

    async def astats(self) -> dict[str, Any]:
        return await self._run(self.sync.stats)

    async def acheck(self) -> CheckReport:
        return await self._run(self.sync.check)

    async def arun(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Any other blocking call (``vault.sync.sessions.open``, ...) on the vault's threads."""
        return await self._run(fn, *args, **kwargs)


class AsyncCollection(_Pooled):
    """A :class:`~sigmavault.Collection` for asyncio: each ``a``-method awaits its synchronous twin."""

    def __init__(self, collection: Collection, pool: ThreadPoolExecutor) -> None:
        self.sync = collection
        self.name = collection.name
        self._pool = pool

    async def aadd(self, texts: Any = None, **options: Any) -> list[str]:
        return await self._run(self.sync.add, texts, **options)

    async def aupsert(self, texts: Any = None, **options: Any) -> list[str]:
        return await self._run(self.sync.upsert, texts, **options)

    async def aingest(self, docs: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, int]:
        return await self._run(self.sync.ingest, docs, **options)

    async def aupdate(self, unit_id: str, **options: Any) -> Unit:
        return await self._run(self.sync.update, unit_id, **options)

    async def adelete(self, unit_ids: str | Sequence[str] | None = None, **options: Any) -> int:
        return await self._run(self.sync.delete, unit_ids, **options)

    async def aget(self, unit_id: str, **options: Any) -> Unit:
        return await self._run(self.sync.get, unit_id, **options)

    async def aget_many(self, unit_ids: Sequence[str], **options: Any) -> list[Unit]:
        return await self._run(self.sync.get_many, unit_ids, **options)

    async def asearch(self, query: Any = None, k: int = 10, **options: Any) -> list[Hit]:
        return await self._run(self.sync.search, query, k, **options)

    async def asearch_batch(self, queries: Any, k: int = 10, **options: Any) -> list[list[Hit]]:
        return await self._run(self.sync.search_batch, queries, k, **options)

    async def alen(self) -> int:
        return await self._run(self.sync.__len__)
