"""One shard of a sharded collection: a normal vault directory and the process that serves it.

``Shard`` is a plain class; :mod:`.sharded` turns it into a Ray actor (``ray.remote(Shard)``), so Ray
places it, restarts it (``max_restarts``) and routes calls to it. Its constructor opens (or creates)
the vault, which is all a restart needs: a vault reopened after a crash is consistent, because
every write was durable on return (see docs/architecture.md, "why shards are whole vaults").
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import sigmavault as sv
from sigmavault.collection import IndexChoice
from sigmavault.types import CheckReport, Hit, Unit

__all__ = ["Shard"]


class Shard:
    """The collection ``name`` in the vault at ``path``, with the calls the driver scatters to it."""

    def __init__(self, path: str, name: str, metric: str, index: str | None, index_params: Mapping[str, int]) -> None:
        self.path = Path(path)
        self.vault = sv.open(self.path)
        # NOTE: the manifest's choices are checked by Vault.collection as any caller's are.
        choice = cast("IndexChoice | None", index)
        params = cast("dict[str, Any]", dict(index_params))
        self.collection = self.vault.collection(name, embedder=None, metric=metric, index=choice, **params)

    def pid(self) -> int:
        """The serving process (tests and operators use it to find, stop or kill a shard)."""
        return os.getpid()

    def count(self) -> int:
        return len(self.collection)

    def add(
        self,
        vectors: Any,
        ids: list[str],
        texts: list[str] | None,
        metadata: list[dict[str, Any]] | None,
    ) -> list[str]:
        return self.collection.add(texts, vectors=vectors, ids=ids, metadata=metadata)

    def search(self, query: Any, k: int, options: Mapping[str, Any]) -> list[Hit]:
        return self.collection.search(query, k, **options)

    def search_timed(self, query: Any, k: int, options: Mapping[str, Any]) -> tuple[list[Hit], float]:
        """``search`` and the seconds it took inside this process (benchmarks split off the RPC cost)."""
        start = time.perf_counter()
        hits = self.collection.search(query, k, **options)
        return hits, time.perf_counter() - start

    def search_batch(self, queries: Any, k: int, options: Mapping[str, Any]) -> list[list[Hit]]:
        return self.collection.search_batch(queries, k, **options)

    def get(self, unit_id: str) -> Unit:
        return self.collection.get(unit_id)

    def update(self, unit_id: str, changes: Mapping[str, Any]) -> Unit:
        return self.collection.update(unit_id, **changes)

    def delete(self, unit_ids: Sequence[str]) -> int:
        return self.collection.delete(list(unit_ids))

    def stats(self) -> dict[str, Any]:
        stats = self.vault.stats()
        index = self.collection.index_info()["active"]
        return {
            "path": str(self.path),
            "pid": os.getpid(),
            "index": index,
            **stats["collections"][self.collection.name],
        }

    def check(self) -> CheckReport:
        return self.vault.check()

    def close(self) -> None:
        self.vault.close()
