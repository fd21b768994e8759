"""Batch semantics: upsert, get_many, delete by ids (missing ignored or raised) and by filter,
drop_collection, and idempotent ingest that resumes after an interrupted run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import HashingEmbedder, unit_vectors

import sigmavault as sv
from sigmavault.errors import InvalidInput, NotFound


def test_upsert_replaces_existing_and_adds_new_in_one_call(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vecs = unit_vectors(rng, 4, 8)
    with sv.open(tmp_path / "v") as vault:
        docs = vault.collection("docs", embedder=None)
        docs.add(["a", "b", "c"], vectors=vecs[:3], ids=["x", "y", "z"], metadata=[{"n": 1}, {"n": 2}, {"n": 3}])
        vault.link("x", "y")
        assert docs.upsert(["a2", "w"], vectors=vecs[2:4], ids=["x", "w"], metadata={"n": 9}) == ["x", "w"]
        x = docs.get("x")
        assert (x.text, x.metadata, len(docs)) == ("a2", {"n": 9}, 4)
        np.testing.assert_allclose(x.vector, vecs[2], atol=1e-6)
        assert docs.search(vecs[2], k=2)[0].id in {"x", "z"}
        assert [e.target for e in vault.neighbors("x")] == ["y"]  # edges name the id: they stay
        # an id held by another collection: nothing at all is written
        other = vault.collection("other", embedder=None)
        with pytest.raises(InvalidInput, match="another collection"):
            other.upsert(["p", "q"], vectors=vecs[:2], ids=["new", "z"])
        assert len(other) == 0 and docs.get("z").text == "c"
        # a bad row in the batch leaves the replaced unit as it was
        with pytest.raises(InvalidInput):
            docs.upsert(["a3", "bad"], vectors=vecs[:2], ids=["x", "v"], metadata=[{}, {"bad": object()}])
        assert docs.get("x").text == "a2" and len(docs) == 4
        assert vault.check().ok
    with sv.open(tmp_path / "v") as vault:
        assert vault.collection("docs").get("x").text == "a2"


def test_get_many_and_delete_semantics(tmp_path: Path) -> None:
    vecs = unit_vectors(np.random.default_rng(2), 5, 8)
    with sv.open(tmp_path / "v") as vault:
        docs = vault.collection("docs", embedder=None)
        docs.add(vectors=vecs, ids=list("abcde"), metadata=[{"n": i} for i in range(5)])
        vault.collection("other", embedder=None).add(vectors=vecs[:1], ids=["o"])
        assert [u.id for u in docs.get_many(["e", "nope", "a", "a", "o"])] == ["e", "a"]
        assert docs.get_many(["a"])[0].vector is not None
        assert docs.get_many([]) == []
        with pytest.raises(NotFound, match="nope"):
            docs.delete(["a", "nope"])
        assert len(docs) == 5  # refused as a whole
        assert docs.delete(["a", "nope", "o"], missing="ignore") == 1
        assert vault.get("o").id == "o"  # another collection's unit is never touched
        assert docs.delete(where={"n": {"$gte": 3}}) == 2
        assert sorted(u.id for u in docs) == ["b", "c"]
        with pytest.raises(InvalidInput):
            docs.delete()
        with pytest.raises(InvalidInput):
            docs.delete(["b"], missing="maybe")  # type: ignore[arg-type]
        assert vault.check().ok


def test_drop_collection_removes_everything_and_never_reuses_its_id(tmp_path: Path) -> None:
    vecs = unit_vectors(np.random.default_rng(3), 3, 8)
    with sv.open(tmp_path / "v") as vault:
        docs = vault.collection("docs", embedder=None)
        docs.add(vectors=vecs, ids=["a", "b", "c"])
        keep = vault.collection("keep", embedder=None)
        keep.add(vectors=vecs[:1], ids=["k"])
        vault.link("k", "a")
        old_id = docs.info.id
        old_file = tmp_path / "v" / "vectors" / f"{old_id}.f32"
        assert old_file.exists()
        assert vault.drop_collection("docs") == 3
        assert vault.collections() == ["keep"] and not old_file.exists()
        assert vault.neighbors("k") == []
        with pytest.raises(NotFound):
            vault.drop_collection("docs")
        assert vault.drop_collection("docs", missing="ignore") == 0
        again = vault.collection("docs", embedder=None)
        assert again.info.id > keep.info.id > old_id
        assert len(again) == 0
        again.add(vectors=unit_vectors(np.random.default_rng(4), 1, 4), ids=["a"])  # another dimension is fine
        assert vault.check().ok
    with sv.open(tmp_path / "v") as vault:
        assert vault.collections() == ["keep", "docs"] and vault.check().ok


class _FailingAfter(HashingEmbedder):
    """The test embedder, failing once ``limit`` texts have been embedded (an interrupted run)."""

    name = HashingEmbedder.name

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.seen = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += len(texts)
        if self.seen > self.limit:
            raise KeyboardInterrupt
        return super().embed(texts)


def test_ingest_is_idempotent_and_resumes(tmp_path: Path) -> None:
    docs = [{"text": f"document number {i} about topic {i % 7}", "metadata": {"i": i}} for i in range(60)]
    docs[5]["id"] = "five"
    with sv.open(tmp_path / "v") as vault:
        with pytest.raises(KeyboardInterrupt):
            vault.collection("docs", embedder=_FailingAfter(25)).ingest(docs, batch_size=10)
        col = vault.collection("docs", embedder=HashingEmbedder())
        assert len(col) == 20  # two batches committed before the interruption
        counts = col.ingest(docs, batch_size=10)
        assert counts == {"added": 40, "replaced": 0, "unchanged": 20}
        assert len(col) == 60 and col.get("five").metadata == {"i": 5}
        assert col.ingest(docs) == {"added": 0, "replaced": 0, "unchanged": 60}
        changed = [*docs[:59], {**docs[59], "metadata": {"i": 59, "new": True}}]
        assert col.ingest(changed) == {"added": 1, "replaced": 0, "unchanged": 59}  # no key: new content, new unit
        keyed = [{"text": "v1", "key": "notes/a.md"}]
        assert col.ingest(keyed) == {"added": 1, "replaced": 0, "unchanged": 0}
        assert col.ingest([{"text": "v2", "key": "notes/a.md"}]) == {"added": 0, "replaced": 1, "unchanged": 0}
        with pytest.raises(InvalidInput, match="document 1"):
            col.ingest([{"text": "ok"}, {"text": 3}])
