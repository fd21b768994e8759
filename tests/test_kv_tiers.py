"""KV tiers: the RAM budget is never exceeded, policies evict what they promise, the disk tier
has its own budget, and evicting from RAM never loses a chunk that is on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sigmavault as sv
from sigmavault.errors import InvalidInput
from sigmavault.kv import Fingerprint, KVArrays
from sigmavault.kv.tiers import RamTier

FP = Fingerprint(model="tiers-test", dtype="float32", layers=2, kv_heads=2, head_dim=8)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 30), st.integers(0, 400), st.integers(1, 64)),
        st.tuples(st.just("get"), st.integers(0, 30), st.just(0), st.just(0)),
        st.tuples(st.just("discard"), st.integers(0, 30), st.just(0), st.just(0)),
        st.tuples(st.just("budget"), st.integers(0, 2000), st.just(0), st.just(0)),
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(policy=st.sampled_from(["lru", "lfu", "cost"]), budget=st.integers(0, 1500), operations=ops)
def test_ram_budget_is_never_exceeded_under_random_load(policy: str, budget: int, operations: list) -> None:
    tier = RamTier(budget, policy)
    for op, k, size, cost in operations:
        key = k.to_bytes(4, "little")
        if op == "put":
            was_in = key in tier
            stored = tier.put(key, bytes(size), cost=cost)
            assert stored == (was_in or size <= tier.budget) and stored == (key in tier)
        elif op == "get":
            assert (tier.get(key) is not None) == (key in tier)
        elif op == "discard":
            tier.discard(key)
            assert key not in tier
        else:
            tier.reconfigure(budget=k)
        assert tier.used <= tier.budget
        assert tier.used == sum(len(payload) for payload in tier._items.values())


def test_lru_evicts_the_least_recently_used() -> None:
    tier = RamTier(300, "lru")
    for k in b"abc":
        tier.put(bytes([k]), bytes(100), cost=1)
    tier.get(b"a")
    tier.put(b"d", bytes(100), cost=1)
    assert b"b" not in tier and {b"a", b"c", b"d"} <= set(tier._items)
    assert tier.evictions == 1


def test_lfu_evicts_the_least_frequently_used() -> None:
    tier = RamTier(300, "lfu")
    for k in b"abc":
        tier.put(bytes([k]), bytes(100), cost=1)
    for _ in range(3):
        tier.get(b"a")
        tier.get(b"b")
    tier.get(b"c")
    tier.put(b"d", bytes(100), cost=1)
    assert b"c" not in tier and b"a" in tier and b"b" in tier


def test_cost_policy_keeps_the_most_prefill_per_byte() -> None:
    tier = RamTier(1000, "cost")
    tier.put(b"dense", bytes(200), cost=256)  # e.g. a q4 chunk: many tokens per byte
    tier.put(b"fat", bytes(700), cost=256)  # a native chunk of the same tokens
    tier.put(b"new", bytes(200), cost=256)
    assert b"fat" not in tier and b"dense" in tier and b"new" in tier


def test_unknown_policy_and_bad_budget_are_clear_errors() -> None:
    with pytest.raises(InvalidInput):
        RamTier(10, "mru")
    with pytest.raises(InvalidInput):
        RamTier(-1)


def kv_for(seed: int, tokens: int) -> KVArrays:
    rng = np.random.default_rng(seed)
    shape = (FP.layers, FP.kv_heads, tokens, FP.head_dim)
    keys, values = rng.standard_normal((2, *shape), dtype=np.float32)
    return KVArrays(keys, values, "float32")


def test_ram_eviction_never_loses_a_chunk_on_disk(vault_path: Path) -> None:
    prompts = {seed: np.random.default_rng(seed).integers(0, 1000, 100) for seed in range(6)}
    with sv.open(vault_path) as vault:
        vault.kv.configure(chunk_tokens=32, ram_bytes=5000)  # a chunk is ~4.3 KB: one fits
        for seed, ids in prompts.items():
            vault.kv.save_arrays(FP, ids, kv_for(seed, 100))
            assert vault.kv.stats()["ram"]["bytes"] <= 5000
        for seed, ids in prompts.items():
            kv, n = vault.kv.load_arrays(FP, ids)
            assert n == 99 and kv is not None
            assert np.array_equal(kv.keys, kv_for(seed, 100).keys[:, :, :99])
        stats = vault.kv.stats()
        assert stats["ram_evictions"] > 0 and stats["disk_hits"] > 0 and stats["ram"]["bytes"] <= 5000


def test_disk_budget_evicts_least_recent_prefixes_deepest_first(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        vault.kv.configure(chunk_tokens=32)
        ids = {s: np.random.default_rng(s).integers(0, 1000, 96) for s in range(3)}
        vault.kv.save_arrays(FP, ids[0], kv_for(0, 96))
        chunk_bytes = vault.kv.stats()["disk"]["bytes"] // 3
        vault.kv.configure(disk_bytes=int(chunk_bytes * 6.5))
        vault.kv.save_arrays(FP, ids[1], kv_for(1, 96))
        vault.kv.load_arrays(FP, ids[0])  # prefix 0 is now more recent than prefix 1
        saved = vault.kv.save_arrays(FP, ids[2], kv_for(2, 96))
        disk = vault.kv.stats()["disk"]
        assert disk["bytes"] <= disk["budget"] and saved.evicted == 3
        assert vault.kv.lookup(FP, ids[0]) == 95 and vault.kv.lookup(FP, ids[2]) == 95
        assert vault.kv.lookup(FP, ids[1]) == 0
        # a lower budget evicts at once: the least recent prefix (0) loses its deepest chunks first
        vault.kv.configure(disk_bytes=int(chunk_bytes * 4.5))
        assert vault.kv.lookup(FP, ids[0]) == 32 and vault.kv.lookup(FP, ids[2]) == 95
        assert vault.kv.stats()["disk_evictions"] == 5
