"""What frameworks need from search and metadata: a query with both a vector and a text (hybrid
on bring-your-own-vectors collections), vectors in hits, scores inside their documented range,
and metadata types that loaders produce (datetime, numpy scalars, UUID, Decimal, sets, tuples)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from conftest import unit_vectors

import sigmavault as sv
from sigmavault.errors import EmptyText, InvalidFilter, InvalidInput


def _byo(tmp_path: Path) -> tuple[sv.Vault, sv.Collection, np.ndarray]:
    vecs = unit_vectors(np.random.default_rng(7), 4, 16)
    vault = sv.open(tmp_path / "v")
    col = vault.collection("byo", embedder=None)
    col.add(
        [
            "sourdough bread with wild yeast",
            "granite is an igneous rock",
            "the moon orbits the earth",
            "rye bread and yeast",
        ],
        vectors=vecs,
        ids=["bread", "rock", "moon", "rye"],
    )
    return vault, col, vecs


def test_hybrid_with_vector_and_text_on_a_byo_collection(tmp_path: Path) -> None:
    vault, col, vecs = _byo(tmp_path)
    with vault:
        hits = col.search(vector=vecs[1], text="yeast bread", mode="hybrid", k=4)
        ids = [h.id for h in hits]
        assert set(ids[:3]) == {"rock", "bread", "rye"} and ids[3] == "moon"  # both rankings count
        # the same through the positional query plus the other keyword
        assert [h.id for h in col.search(vecs[1], text="yeast bread", mode="hybrid", k=4)] == ids
        assert [h.id for h in col.search(vector=vecs[2], k=1)] == ["moon"]
        assert [h.id for h in col.search(text="igneous", mode="text")] == ["rock"]
        with pytest.raises(InvalidInput, match="needs a text"):
            col.search(vector=vecs[0], mode="hybrid")
        with pytest.raises(InvalidInput, match="needs a query"):
            col.search()
        with pytest.raises(InvalidInput, match="once"):
            col.search("bread", text="bread", mode="text")
        with pytest.raises(EmptyText):
            col.search(vector=vecs[0], text=" ", mode="hybrid")


def test_hits_carry_vectors_and_cosine_scores_stay_in_range(tmp_path: Path) -> None:
    vault, col, vecs = _byo(tmp_path)
    with vault:
        for i in range(4):
            (top,) = col.search(vecs[i] * 3.0, k=1, include=("vector",))
            assert -1.0 <= top.score <= 1.0 and top.score == pytest.approx(1.0, abs=1e-6)
            np.testing.assert_allclose(top.vector, vecs[i], atol=1e-6)
            assert top.to_dict()["vector"] == pytest.approx(vecs[i].tolist(), abs=1e-6)
        plain = col.search(vecs[0], k=2)
        assert all(h.vector is None and "vector" not in h.to_dict() for h in plain)
        fused = col.search(vector=vecs[0], text="bread", mode="hybrid", k=2, include=("vector",))
        assert all(h.vector is not None for h in fused)
        with pytest.raises(InvalidInput):
            col.search(vecs[0], include="vector")  # type: ignore[arg-type]


def test_metadata_types_round_trip_as_documented(tmp_path: Path) -> None:
    when = dt.datetime(2024, 5, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    uid = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    meta = {
        "when": when,
        "day": dt.date(2024, 5, 1),
        "n": np.int64(3),
        "x": np.float32(0.5),
        "ok": np.bool_(True),
        "id": uid,
        "price": Decimal("9.25"),
        "tags": {"b", "a"},
        "pair": (1, 2),
        "arr": np.arange(3),
    }
    vecs = unit_vectors(np.random.default_rng(8), 3, 8)
    with sv.open(tmp_path / "v") as vault:
        col = vault.collection("m", embedder=None)
        col.add(
            ["", None, "third"],
            vectors=vecs,
            ids=["a", "b", "c"],
            metadata=[
                meta,
                {"when": dt.datetime(2024, 4, 1, 0, 0)},
                {"when": dt.datetime(2024, 6, 1, tzinfo=dt.UTC)},
            ],
        )
        assert col.get("a").metadata == {
            "when": "2024-05-01T12:30:00.000000+00:00",
            "day": "2024-05-01",
            "n": 3,
            "x": 0.5,
            "ok": True,
            "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "price": 9.25,
            "tags": ["a", "b"],
            "pair": [1, 2],
            "arr": [0, 1, 2],
        }
        assert col.get("a").text == "" and col.get("b").text is None  # empty text is fine with a vector
        after = {"when": {"$gte": dt.datetime(2024, 5, 1, tzinfo=dt.UTC)}}
        assert sorted(u.id for u in col.all(where=after)) == ["a", "c"]
        assert [u.id for u in col.all(where={"when": {"$lt": dt.date(2024, 5, 1)}})] == ["b"]
        assert [u.id for u in col.all(where={"id": uid, "n": np.int64(3)})] == ["a"]
        with pytest.raises(InvalidInput, match="JSON"):
            col.add(vectors=vecs[:1], metadata={"bad": b"bytes"})
        with pytest.raises(InvalidInput):
            col.add(vectors=vecs[:1], metadata={"bad": Decimal("NaN")})
        with pytest.raises(InvalidFilter):
            col.all(where={"when": {"$gt": b"x"}})
        with pytest.raises(EmptyText):
            vault.collection("t", embedder=None).add([""])  # nothing to embed and no vector
