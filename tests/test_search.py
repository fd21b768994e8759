"""Search: exact vector search against numpy brute force, BM25 text search, hybrid rank fusion,
state gating, deletions, access statistics; and the real MiniLM default embedder end to end."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import HashingEmbedder, unit_vectors

import sigmavault as sv
from sigmavault.embed import MiniLM
from sigmavault.units.search import RRF_K


def _brute(matrix: np.ndarray, q: np.ndarray, k: int, eligible: np.ndarray) -> tuple[list[int], np.ndarray]:
    scores = matrix @ (q / np.linalg.norm(q))
    scores = np.where(eligible, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[: min(k, int(eligible.sum()))]
    return order.tolist(), scores[order]


def test_exact_vector_search_equals_numpy_brute_force(vault: sv.Vault) -> None:
    rng = np.random.default_rng(5)
    col = vault.collection("v", embedder=None)
    matrix = unit_vectors(rng, 3000, 32)
    ids = col.add(vectors=matrix, batch_size=1000)
    eligible = np.ones(len(ids), dtype=bool)
    for q in rng.standard_normal((15, 32)).astype(np.float32):
        want, scores = _brute(matrix, q, 10, eligible)
        hits = col.search(q, k=10)
        assert [h.id for h in hits] == [ids[i] for i in want]
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
    # archived and deleted units drop out of the reference and the search alike
    archived = list(range(3, 3000, 6))
    deleted = list(range(0, 3000, 6))
    with vault.transaction():
        for i in archived:
            col.update(ids[i], state="archived")
        col.delete([ids[i] for i in deleted])
    eligible[archived] = False
    eligible[deleted] = False
    for q in rng.standard_normal((10, 32)).astype(np.float32):
        want, scores = _brute(matrix, q, 20, eligible)
        assert [h.id for h in col.search(q, k=20)] == [ids[i] for i in want]
    assert vault.check().ok


def test_k_larger_than_collection_and_empty_collection(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("small", embedder=None)
    assert col.search(rng.standard_normal(4), k=3) == []
    ids = col.add(vectors=unit_vectors(rng, 3, 4))
    assert sorted(h.id for h in col.search(rng.standard_normal(4), k=50)) == sorted(ids)
    col.update(ids[0], state="expired")
    assert len(col.search(rng.standard_normal(4), k=50)) == 2


def test_updated_vector_is_found_at_its_new_place(vault: sv.Vault) -> None:
    col = vault.collection("u", embedder=None)
    eye = np.eye(8, dtype=np.float32)
    ids = col.add(vectors=eye[:4])
    col.update(ids[0], vector=eye[6])
    assert col.search(eye[6], k=1)[0].id == ids[0]
    assert ids[0] not in [h.id for h in col.search(eye[0], k=4) if h.score > 0.5]
    assert [h.id for h in col.search(eye[0], k=10)].count(ids[0]) == 1  # the retired row is never a hit


def test_text_search_bm25_keywords_and_stemming(vault: sv.Vault, embedder: HashingEmbedder) -> None:
    docs = vault.collection("t", embedder=embedder)
    ids = docs.add(
        [
            "Water boils at 100 degrees at sea level",
            "The boiling point of water drops at altitude",
            "Ice is frozen water",
            "Mountains are tall",
            "Rust has no garbage collector",
        ]
    )
    hits = docs.search("boiling water", mode="text", k=5)
    assert {h.id for h in hits[:2]} == {ids[0], ids[1]}  # both mention boil* and water
    assert ids[2] in {h.id for h in hits} and ids[3] not in {h.id for h in hits}
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert hits[0].text is not None and hits[0].metadata == {}
    assert [h.id for h in docs.search("garbage", mode="text")] == [ids[4]]
    assert docs.search("zebra", mode="text") == []
    assert docs.search("!!! ???", mode="text") == []  # no words: no hits, no FTS syntax error
    assert docs.search('water" OR NOT "x', mode="text")  # quotes and operators are just words


def test_hybrid_is_reciprocal_rank_fusion(vault: sv.Vault, embedder: HashingEmbedder) -> None:
    docs = vault.collection("h", embedder=embedder)
    docs.add([f"note {i} about gardening tomatoes" for i in range(5)] + ["quantum tomatoes", "quantum physics"])
    query = "quantum tomatoes"
    by_vec = docs.search(query, k=20)
    by_text = docs.search(query, k=20, mode="text")
    fused: dict[str, float] = {}
    for hits in (by_vec, by_text):
        for rank, h in enumerate(hits, start=1):
            fused[h.id] = fused.get(h.id, 0.0) + 1 / (RRF_K + rank)
    hybrid = docs.search(query, k=4, mode="hybrid")
    assert len(hybrid) == 4
    assert [h.score for h in hybrid] == pytest.approx(sorted(fused.values(), reverse=True)[:4])
    assert hybrid[0].id == by_text[0].id == by_vec[0].id  # "quantum tomatoes" wins every list
    assert {h.id for h in hybrid} <= set(fused)


def test_search_hits_count_as_accesses(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("acc", embedder=None)
    vecs = unit_vectors(rng, 5, 8)
    ids = col.add(vectors=vecs, texts=[f"word{i}" for i in range(5)])
    col.search(vecs[0], k=2)
    col.search("word3", mode="text")
    counts = [col.get(i, touch=False).access_count for i in ids]
    assert counts[3] >= 1 and sum(counts) == 3 and counts[0] == 1


def test_real_minilm_default_embedder_finds_the_paraphrase(tmp_path: Path, minilm: MiniLM) -> None:
    with sv.open(tmp_path / "m") as vault:
        docs = vault.collection("docs")  # the default embedder
        assert docs.embedder is minilm
        ids = docs.add(
            [
                "The cat sat on the mat all afternoon.",
                "Interest rates rose by a quarter point at the central bank meeting.",
                "A recipe for sourdough bread needs flour, water, salt and a starter.",
                "The football match ended in a draw after extra time.",
            ]
        )
        hits = docs.search("the monetary authority increased borrowing costs", k=2)
        assert hits[0].id == ids[1] and hits[0].score > hits[1].score
        assert docs.search("how do I bake a loaf?", k=1)[0].id == ids[2]
        assert docs.dim == 384 and vault.stats()["collections"]["docs"]["embedder"] == "all-MiniLM-L6-v2"
        near = docs.add(["A cat was sitting on the mat for the whole afternoon."])[0]
        assert ids[0] in {h.id for h in docs.find_similar(near, threshold=0.75)}
    with sv.open(tmp_path / "m") as vault:  # reopened: the default embedder is picked again
        hits = vault.collection("docs").search("a kitten resting on a rug", k=2, mode="hybrid")
        assert {h.id for h in hits} == {ids[0], near}
