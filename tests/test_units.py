"""Units: add / get / update / delete, lifecycle states, access statistics, provenance fields."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import HashingEmbedder, unit_vectors

import sigmavault as sv
from sigmavault.index import signatures
from sigmavault.units import new_ids


def test_add_texts_and_get_every_field(vault: sv.Vault, embedder: HashingEmbedder) -> None:
    docs = vault.collection("docs", embedder=embedder)
    before = time.time()
    ids = docs.add(
        ["Water boils at 100 C", "Ice melts at 0 C"],
        metadata=[{"topic": "physics", "n": 1}, {"topic": "physics", "n": 2}],
        kind="fact",
        conversation_id="conv-1",
        kv_ref=["kv-a", None],
    )
    assert len(ids) == 2 and len(set(ids)) == 2
    u = docs.get(ids[0], touch=False)
    assert (u.id, u.collection, u.text, u.kind, u.state) == (
        ids[0],
        "docs",
        "Water boils at 100 C",
        "fact",
        sv.State.ACTIVE,
    )
    assert u.metadata == {"topic": "physics", "n": 1}
    assert u.conversation_id == "conv-1" and u.parent_id is None and u.kv_ref == "kv-a"
    assert docs.get(ids[1], touch=False).kv_ref is None
    assert before - 1 <= u.created_at <= time.time() + 1 and u.accessed_at == pytest.approx(u.created_at)
    assert u.access_count == 0
    # the stored vector is the embedding, unit-normalised, and the semantic hash is its SimHash
    expected = embedder.embed(["Water boils at 100 C"])[0]
    assert u.vector is not None and u.vector.dtype == np.float32
    np.testing.assert_allclose(u.vector, expected / np.linalg.norm(expected), atol=1e-6)
    planes = vault._catalog.state(docs._id).planes
    assert planes is not None
    assert u.semantic_hash == int(signatures(u.vector, planes)[0])
    assert vault.get(ids[1]).text == "Ice melts at 0 C"  # vault-wide lookup
    assert len(docs) == 2 and docs.dim == embedder.dim
    assert vault.stats()["collections"]["docs"]["embedder"] == embedder.name


def test_add_own_vectors_and_ids(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("vecs", embedder=None, metric="ip")
    vecs = rng.standard_normal((5, 8)).astype(np.float32)
    ids = col.add(vectors=vecs, ids=[f"v{i}" for i in range(5)], metadata={"shared": True})
    assert ids == [f"v{i}" for i in range(5)]
    for i, uid in enumerate(ids):
        u = col.get(uid, touch=False)
        assert u.text is None and u.metadata == {"shared": True}
        np.testing.assert_array_equal(u.vector, vecs[i])  # ip collections store vectors as given
    assert [u.id for u in col] == ids  # iteration is insertion order


def test_per_unit_lists_and_parents_within_a_batch(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("c", embedder=None)
    ids = col.add(
        vectors=unit_vectors(rng, 3, 4),
        ids=["a", "b", "c"],
        parent_id=[None, "a", "b"],
        conversation_id=["x", "x", None],
        kind=["q", "a", "q"],
    )
    got = [col.get(i, touch=False) for i in ids]
    assert [u.parent_id for u in got] == [None, "a", "b"]
    assert [u.conversation_id for u in got] == ["x", "x", None]
    assert [u.kind for u in got] == ["q", "a", "q"]


def test_batches_commit_in_order_and_report_progress(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("b", embedder=None)
    seen: list[tuple[int, int]] = []
    ids = col.add(vectors=unit_vectors(rng, 10, 4), batch_size=3, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]
    assert [u.id for u in col] == ids


def test_update_text_metadata_state_vector_kv_ref(vault: sv.Vault, embedder: HashingEmbedder) -> None:
    docs = vault.collection("docs", embedder=embedder)
    uid, other = docs.add(["alpha bravo", "charlie delta"], metadata=[{"v": 1}, {"v": 2}])
    old_vec = docs.get(uid, touch=False).vector
    updated = docs.update(uid, text="echo foxtrot", metadata={"v": 10, "new": "yes"})
    assert updated.text == "echo foxtrot" and updated.metadata == {"v": 10, "new": "yes"}
    assert not np.allclose(updated.vector, old_vec)  # re-embedded
    assert [h.id for h in docs.search("foxtrot", mode="text")] == [uid]
    assert docs.search("bravo", mode="text") == []  # the old words left the text index
    assert docs.search("echo foxtrot", k=1)[0].id == uid
    docs.update(uid, state="archived")
    assert docs.get(uid, touch=False).state is sv.State.ARCHIVED
    docs.update(uid, state=sv.State.ACTIVE, kv_ref="kv-9")
    assert docs.get(uid, touch=False).kv_ref == "kv-9"
    vec = np.zeros(embedder.dim, dtype=np.float32)
    vec[3] = 2.0
    docs.update(uid, vector=vec)  # a bring-your-own vector keeps the text
    u = docs.get(uid, touch=False)
    assert u.text == "echo foxtrot" and u.vector is not None and u.vector[3] == pytest.approx(1.0)
    assert docs.get(other, touch=False).metadata == {"v": 2}  # the neighbour is untouched
    assert vault.check().ok


def test_lifecycle_states_gate_search(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("s", embedder=None)
    vecs = unit_vectors(rng, 4, 8)
    ids = col.add(vectors=vecs, texts=["red apple", "red car", "red sky", "red wine"])
    for uid, state in zip(ids[1:], ["archived", "expired", "corrupted"], strict=True):
        col.update(uid, state=state)
    assert {h.id for h in col.search(vecs[1], k=4)} == {ids[0]}
    assert {h.id for h in col.search("red", mode="text", k=4)} == {ids[0]}
    assert {h.id for h in col.search(vecs[1], k=4, states="all")} == set(ids)
    assert {h.id for h in col.search("red", mode="text", k=4, states=["archived", "expired"])} == set(ids[1:3])
    assert vault.stats()["collections"]["s"]["by_state"] == {"active": 1, "archived": 1, "expired": 1, "corrupted": 1}


def test_delete_removes_units_everywhere(vault: sv.Vault, embedder: HashingEmbedder) -> None:
    docs = vault.collection("docs", embedder=embedder)
    ids = docs.add(["one apple", "two apples", "three pears"])
    assert docs.delete([ids[0], ids[0]]) == 1  # duplicates in the list count once
    with pytest.raises(sv.NotFound):
        docs.get(ids[0])
    assert len(docs) == 2 and [u.id for u in docs] == ids[1:]
    assert ids[0] not in {h.id for h in docs.search("one apple", k=3)}
    assert ids[0] not in {h.id for h in docs.search("apple", mode="text", k=3)}
    assert ids[0] not in {h.id for h in docs.find_similar(ids[1], threshold=0.0)}
    assert docs.delete(ids[1:]) == 2 and len(docs) == 0
    assert vault.check().ok


def test_access_statistics_on_get_and_search(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("a", embedder=None)
    vecs = unit_vectors(rng, 3, 8)
    ids = col.add(vectors=vecs, texts=["kiwi", "mango", "papaya"])
    created = col.get(ids[0], touch=False).accessed_at
    time.sleep(0.01)
    col.get(ids[0])
    vault.get(ids[0])
    u = col.get(ids[0], touch=False)
    assert u.access_count == 2 and u.accessed_at > created
    col.search(vecs[1], k=1)  # a vector hit counts
    col.search("papaya", mode="text")  # a text hit counts
    counts = {i: col.get(i, touch=False).access_count for i in ids}
    assert counts == {ids[0]: 2, ids[1]: 1, ids[2]: 1}
    vault._units.flush_access()  # persisted in a batch: the counts survive the flush unchanged
    assert {i: col.get(i, touch=False).access_count for i in ids} == counts


def test_collections_are_separate_spaces(vault: sv.Vault, rng: np.random.Generator) -> None:
    a = vault.collection("a", embedder=None)
    b = vault.collection("b", embedder=None)
    a.add(vectors=unit_vectors(rng, 2, 4), ids=["a1", "a2"])
    b.add(vectors=unit_vectors(rng, 2, 16), ids=["b1", "b2"])
    assert (a.dim, b.dim) == (4, 16) and vault.collections() == ["a", "b"]
    with pytest.raises(sv.NotFound):
        a.get("b1")
    with pytest.raises(sv.NotFound):
        vault.collection("missing", create=False)
    assert {h.id for h in a.search(unit_vectors(rng, 1, 4)[0], k=5)} == {"a1", "a2"}


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_other_metrics_score_as_documented(vault: sv.Vault, rng: np.random.Generator, metric: str) -> None:
    col = vault.collection("m", embedder=None, metric=metric)
    vecs = rng.standard_normal((20, 6)).astype(np.float32)
    ids = col.add(vectors=vecs)
    q = rng.standard_normal(6).astype(np.float32)
    ref = vecs @ q if metric == "ip" else -((vecs - q) ** 2).sum(axis=1)
    hits = col.search(q, k=5)
    assert [h.id for h in hits] == [ids[i] for i in np.argsort(-ref)[:5]]
    np.testing.assert_allclose([h.score for h in hits], np.sort(ref)[::-1][:5], rtol=1e-4, atol=1e-4)


def test_new_ids_are_unique_and_sort_by_time() -> None:
    first = new_ids(1000)
    time.sleep(0.002)
    second = new_ids(3)
    assert len(set(first)) == 1000 and first == sorted(first)
    assert max(first) < min(second)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in first)


def test_transaction_groups_writes_and_rolls_back_all(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("t", embedder=None)
    col.add(vectors=unit_vectors(rng, 2, 4), ids=["keep1", "keep2"])
    with pytest.raises(sv.NotFound), vault.transaction():
        col.add(vectors=unit_vectors(rng, 2, 4), ids=["gone1", "gone2"])
        vault.link("keep1", "gone1")
        vault.link("keep1", "nobody")  # fails: everything in the transaction is undone
    assert [u.id for u in col] == ["keep1", "keep2"]
    assert vault.neighbors("keep1") == []
    assert {h.id for h in col.search(unit_vectors(rng, 1, 4)[0], k=10)} == {"keep1", "keep2"}
    with vault.transaction():
        col.add(vectors=unit_vectors(rng, 1, 4), ids=["new"])
        vault.link("keep1", "new", kind="next")
    assert [e.target for e in vault.neighbors("keep1")] == ["new"]
    assert vault.check().ok


def test_large_adds_write_vectors_alongside_the_inserts(vault: sv.Vault, rng: np.random.Generator) -> None:
    col = vault.collection("big", embedder=None, metric="ip")
    first = rng.standard_normal((6000, 8)).astype(np.float32)
    col.add(vectors=first, ids=[f"a{i}" for i in range(6000)])
    second = rng.standard_normal((5000, 8)).astype(np.float32)
    with pytest.raises(sv.InvalidInput, match="a4999"):  # the last id collides: the whole batch is refused
        col.add(vectors=second, ids=[f"b{i}" for i in range(4999)] + ["a4999"])
    assert len(col) == 6000 and vault.check().ok
    col.add(vectors=second, ids=[f"b{i}" for i in range(5000)])
    np.testing.assert_array_equal(col.get("b4999", touch=False).vector, second[4999])
    np.testing.assert_array_equal(col.get("a0", touch=False).vector, first[0])
    ids = [f"a{i}" for i in range(6000)] + [f"b{i}" for i in range(5000)]
    best = int(np.argmax(np.vstack([first, second]) @ second[123]))
    assert col.search(second[123], k=1)[0].id == ids[best]  # the refused batch left no rows behind
    assert len(col) == 11000 and vault.check().ok


def test_a_bulk_add_is_committed_and_listed_before_its_checkpoint_runs(tmp_path: Path) -> None:
    """An add of >= 4096 units writes its vectors and checkpoints its WAL behind the caller; another
    process sees every unit at once, listings decode them batch-wise, and check() finds them whole."""
    from conftest import run_py

    n = 5000
    vecs = unit_vectors(np.random.default_rng(5), n, 16)
    ids = [f"b{i:05d}" for i in range(n)]
    meta = [{"i": i, "tag": "x" if i % 2 else "y", "w": i / 7} for i in range(n)]
    with sv.open(tmp_path / "v") as vault:
        col = vault.collection("bulk", embedder=None)
        col.add([f"text {i}" for i in ids], vectors=vecs, ids=ids, metadata=meta, kind=["a", "b"] * (n // 2))
        seen = run_py(
            "import sys, json, sigmavault as sv\nv = sv.open(sys.argv[1], frozen=True)\n"
            "c = v.collection('bulk', embedder=None)\n"
            "print(json.dumps([[u.id, u.metadata, u.kind] for u in c]))",
            str(tmp_path / "v"),
        )
        assert seen == [[u, m, "a" if i % 2 == 0 else "b"] for i, (u, m) in enumerate(zip(ids, meta, strict=True))]
        listed = list(col)
        assert [u.id for u in listed] == ids and [u.metadata for u in listed] == meta
        assert listed[7].text == "text b00007" and listed[7].conversation_id is None
        assert vault.check().ok


def test_build_unit_makes_the_same_frozen_unit_as_the_constructor() -> None:
    """The bulk-load builder fills every field of Unit; the result is a Unit, equal and frozen."""
    import dataclasses

    from sigmavault.types import Unit, build_unit

    values = ("u1", "col", "text", {"a": 1}, "unit", sv.State.ACTIVE, 1.5, 2.5, 3, "conv", "parent", 7, "kv")
    built, made = build_unit(*values), Unit(*values)
    assert type(built) is Unit and built == made and repr(built) == repr(made)
    assert [getattr(built, f.name) for f in dataclasses.fields(Unit)] == [*values, None]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.text = "changed"  # type: ignore[misc]
    assert dataclasses.replace(built, text="other").text == "other" and built.to_dict() == made.to_dict()


@pytest.mark.parametrize("seed", range(4))
def test_dumps_all_writes_the_bytes_of_the_standard_encoder(seed: int) -> None:
    """Batches dumps_all hands to orjson must come out byte for byte as json's compact encoder writes them."""
    import json
    import random

    from sigmavault.errors import InvalidInput
    from sigmavault.units.encode import dumps, dumps_all

    rng = random.Random(seed)
    reference = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    values = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 0.0, -0.0, 1e-4, 0.5, 1 / 3, 123.456, 9.999999999999998e15]
    values += ["", "plain", 'q"uote', "back\\slash", "\n\t\b\f\r\x00\x1f\x7f", "é\u2028😀"]
    rare = [2**64, 1e-5, 1e16, 1e300, "\ud800"]  # each sends its whole batch to the stdlib encoder
    for _ in range(300):
        pool = values + (rare if rng.random() < 0.3 else [])
        batch = [
            {rng.choice(["a", "b", "ключ", 'k"']): rng.choice(pool) for _ in range(rng.randint(0, 4))}
            for _ in range(rng.randint(1, 5))
        ]
        if rng.random() < 0.5:
            batch[-1] = {"float": rng.uniform(-1e6, 1e6), "small": rng.uniform(1e-4, 1e-3), "exp": rng.random() * 1e-6}
        assert dumps_all(batch) == [reference.encode(m) for m in batch] == [dumps(m) for m in batch]
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidInput):
            dumps_all([{"ok": 1.5}, {"x": bad}])


def test_listing_reads_back_metadata_numbers_exactly(tmp_path: Path) -> None:
    """A listing decodes metadata in bulk (orjson where it agrees with json): big integers stay ints."""
    vault = sv.open(tmp_path / "v")
    col = vault.collection("c", embedder=None)
    metas = [
        {"i": 2**70, "neg": -(2**63), "f": 0.1, "e": 1e-7, "big": 1.5e300, "text": "é😀\n"},
        {"i": 12345678901234567890, "u64": 2**64 - 1},
        {"i": 10**18 - 1, "n": None, "b": True},
    ]
    vectors = unit_vectors(np.random.default_rng(0), len(metas) + 1, 8)
    ids = [f"u{i}" for i in range(len(metas))] + ["plain"]
    col.add([f"t{i}" for i in range(len(ids))], vectors=vectors, ids=ids, metadata=[*metas, {"i": 7}])
    # NOTE: one batch of all (a 20-digit run sends it to json) and one batch per unit (orjson where it may)
    for listing in (list(col), list(col._ctx.units.iter_units(cid=col._id, batch=1))):
        listed = {u.id: u.metadata for u in listing}
        for i, meta in enumerate(metas):
            assert listed[f"u{i}"] == meta
            assert [type(v) for v in listed[f"u{i}"].values()] == [type(v) for v in meta.values()]
        assert listed["plain"] == {"i": 7} and type(listed["plain"]["i"]) is int
    vault.close()
