"""Semantic hashes: SimHash signatures, vectorised Hamming similarity, and find_similar on a vault."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import unit_vectors

import sigmavault as sv
from sigmavault.index import BITS, hamming_similarity, hyperplanes, signatures
from sigmavault.index import simhash as simhash_module


def test_signatures_are_deterministic_64_bit_and_sign_based() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((50, 24)).astype(np.float32)
    planes = hyperplanes(24, seed=42)
    assert BITS >= 64 and planes.shape == (24, BITS)
    np.testing.assert_array_equal(planes, hyperplanes(24, seed=42))
    sigs = signatures(vecs, planes)
    assert sigs.dtype == np.uint64 and sigs.shape == (50,)
    np.testing.assert_array_equal(sigs, signatures(vecs * 3.5, planes))  # scale does not matter
    for v, s in zip(vecs[:5], sigs[:5], strict=True):
        bits = (v @ planes) > 0
        assert int(s) == sum(1 << i for i in range(BITS) if bits[i])
    assert not np.array_equal(sigs, signatures(vecs, hyperplanes(24, seed=43)))


def test_hamming_similarity_matches_a_python_reference() -> None:
    rng = np.random.default_rng(1)
    sigs = rng.integers(0, 2**64, size=500, dtype=np.uint64)
    probe = int(sigs[7])
    ref = [1 - bin(int(s) ^ probe).count("1") / 64 for s in sigs]
    np.testing.assert_allclose(hamming_similarity(sigs, probe), ref)
    assert hamming_similarity(sigs, probe)[7] == 1.0


def test_popcount_fallback_for_numpy_1(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    sigs = rng.integers(0, 2**64, size=300, dtype=np.uint64)
    fast = hamming_similarity(sigs, 12345)
    monkeypatch.delattr(simhash_module.np, "bitwise_count", raising=False)
    np.testing.assert_array_equal(hamming_similarity(sigs, 12345), fast)


def test_similarity_estimates_the_angle() -> None:
    rng = np.random.default_rng(3)
    planes = hyperplanes(64, seed=9)
    a = unit_vectors(rng, 400, 64)
    noise = unit_vectors(rng, 400, 64)
    for mix in (0.1, 0.5, 1.0):
        b = a + mix * noise
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        cos = np.clip((a * b).sum(axis=1), -1, 1)
        expected = 1 - np.arccos(cos) / np.pi
        sa, sb = signatures(a, planes), signatures(b, planes)
        got = np.array([hamming_similarity(sb[i : i + 1], int(sa[i]))[0] for i in range(400)])
        assert abs(got.mean() - expected.mean()) < 0.02  # unbiased estimate, averaged over 400 pairs


def test_find_similar_finds_planted_near_duplicates(vault: sv.Vault) -> None:
    rng = np.random.default_rng(4)
    col = vault.collection("dups", embedder=None)
    base = unit_vectors(rng, 40, 128)
    noise = rng.standard_normal((40, 128)).astype(np.float32) * 0.01  # about 6 degrees
    randoms = unit_vectors(rng, 2000, 128)
    col.add(vectors=base, ids=[f"b{i}" for i in range(40)])
    col.add(vectors=base + noise, ids=[f"d{i}" for i in range(40)])
    col.add(vectors=randoms, ids=[f"r{i}" for i in range(2000)])
    for i in range(40):
        found = col.find_similar(f"b{i}", threshold=0.85)
        assert [h.id for h in found][:1] == [f"d{i}"], found[:3]
        assert all(not h.id.startswith("r") for h in found)  # random vectors sit near 0.5
        assert f"b{i}" not in {h.id for h in found}  # never itself
        assert all(0.85 <= h.score <= 1.0 for h in found)
    by_vector = col.find_similar(base[3] + noise[3] * 0.5, threshold=0.85)
    assert {"b3", "d3"} <= {h.id for h in by_vector}
    assert len(col.find_similar("b0", threshold=0.0, k=5)) == 5
    scores = [h.score for h in col.find_similar("b0", threshold=0.0)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 2079
    col.delete("d0")
    assert "d0" not in {h.id for h in col.find_similar("b0", threshold=0.0)}


def test_semantic_hash_is_stored_per_unit(vault: sv.Vault) -> None:
    rng = np.random.default_rng(5)
    col = vault.collection("h", embedder=None)
    vecs = unit_vectors(rng, 10, 32)
    ids = col.add(vectors=vecs)
    planes = vault._catalog.state(col._id).planes
    assert planes is not None
    assert [col.get(i, touch=False).semantic_hash for i in ids] == [int(s) for s in signatures(vecs, planes)]
    with pytest.raises(sv.InvalidInput):
        col.find_similar(ids[0], threshold=1.5)
