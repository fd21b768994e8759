"""The async API under asyncio: many concurrent tasks over a bounded pool see the same results as
the synchronous API, writes from concurrent tasks all land, and errors arrive as the same
VaultError subclasses."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import unit_vectors

import sigmavault as sv
from sigmavault.aio import AsyncVault


def test_many_concurrent_tasks(tmp_path: Path) -> None:
    vecs = unit_vectors(np.random.default_rng(11), 200, 16)

    async def scenario() -> None:
        async with await sv.aopen(tmp_path / "v", workers=4) as vault:
            assert isinstance(vault, AsyncVault)
            docs = await vault.collection("docs", embedder=None)
            # 20 concurrent writers, 10 units each
            await asyncio.gather(
                *[
                    docs.aadd(
                        [f"unit {i}" for i in range(j, j + 10)],
                        vectors=vecs[j : j + 10],
                        ids=[str(i) for i in range(j, j + 10)],
                        metadata=[{"i": i} for i in range(j, j + 10)],
                    )
                    for j in range(0, 200, 10)
                ]
            )
            assert await docs.alen() == 200
            # 200 concurrent searches: each finds its own vector first, as the sync API does
            results = await asyncio.gather(*[docs.asearch(vecs[i], k=3) for i in range(200)])
            assert [hits[0].id for hits in results] == [str(i) for i in range(200)]
            assert results[7] == docs.sync.search(vecs[7], k=3)
            threads = {t.name for t in threading.enumerate() if t.name.startswith("sigmavault-aio")}
            assert 1 <= len(threads) <= 4  # the pool is bounded
            assert [u.id for u in await docs.aget_many(["5", "nope", "6"])] == ["5", "6"]
            await docs.aupsert(["new five"], vectors=vecs[5:6], ids=["5"])
            assert (await docs.aget("5")).text == "new five"
            assert await docs.adelete(where={"i": {"$gte": 100}}) == 100
            with pytest.raises(sv.NotFound):
                await docs.aget("150")
            hybrid = await docs.asearch(vector=vecs[3], text="unit 3", mode="hybrid", k=1)
            assert hybrid[0].id == "3"
            assert (await vault.acheck()).ok
            assert await vault.adrop_collection("docs") == 100
        with pytest.raises(sv.VaultClosed):
            vault.sync.collections()

    asyncio.run(scenario())


def test_aopen_errors_are_vault_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(sv.NotFound):
            await sv.aopen(tmp_path / "missing", create=False)
        with pytest.raises(sv.InvalidInput):
            await sv.aopen(tmp_path / "v", workers=0)

    asyncio.run(scenario())
