"""Bad input: every case raises the right VaultError subclass and leaves what was stored untouched."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import HashingEmbedder, run_py, snapshot, unit_vectors

import sigmavault as sv


@pytest.fixture
def filled(vault: sv.Vault, embedder: HashingEmbedder) -> Iterator[tuple[sv.Vault, sv.Collection, sv.Collection]]:
    docs = vault.collection("docs", embedder=embedder)
    docs.add(
        ["alpha note", "beta note", "gamma note"],
        ids=["a", "b", "c"],
        metadata=[{"n": 1}, {"n": 2}, {"n": 3}],
        parent_id=[None, "a", "b"],
        conversation_id="conv",
    )
    raw = vault.collection("raw", embedder=None)
    raw.add(vectors=unit_vectors(np.random.default_rng(0), 4, 8), ids=["r0", "r1", "r2", "r3"])
    vault.link("a", "b", kind="next", weight=0.5)
    vault.link("b", "r0")
    yield vault, docs, raw


def _vector_file_bytes(vault: sv.Vault) -> dict[str, bytes]:
    """The committed part of every vector file (a failed add may leave an uncommitted tail)."""
    out = {}
    for name in vault.collections():
        info = vault._catalog.find(name)
        assert info is not None
        if info.dim:
            path = vault.root / "vectors" / f"{info.id}.f32"
            out[name] = path.read_bytes()[: 64 + info.watermark * info.dim * 4]
    return out


NAN = np.full(8, np.nan, dtype=np.float32)
INF = np.array([np.inf] + [0.0] * 7, dtype=np.float32)

# (what, expected error, call(vault, docs, raw))
CASES: list[tuple[str, type[sv.VaultError], Callable[[sv.Vault, sv.Collection, sv.Collection], Any]]] = [
    # wrong dimensions
    ("add wrong dim", sv.DimensionMismatch, lambda v, d, r: r.add(vectors=np.ones((2, 5)))),
    ("search wrong dim", sv.DimensionMismatch, lambda v, d, r: r.search(np.ones(9))),
    ("update wrong dim", sv.DimensionMismatch, lambda v, d, r: r.update("r1", vector=np.ones(3))),
    ("find_similar wrong dim", sv.DimensionMismatch, lambda v, d, r: r.find_similar(np.ones(3))),
    (
        "embedder changes dim",
        sv.DimensionMismatch,
        lambda v, d, r: v.collection("docs", embedder=lambda ts: np.ones((len(ts), 7))).add(["x y"]),
    ),
    ("1-d vectors for many", sv.InvalidInput, lambda v, d, r: r.add(vectors=np.ones(8))),
    ("3-d vectors", sv.InvalidInput, lambda v, d, r: r.add(vectors=np.ones((1, 2, 8)))),
    ("not numbers", sv.InvalidInput, lambda v, d, r: r.add(vectors=[["a"] * 8])),
    ("vectors not a sequence", sv.InvalidInput, lambda v, d, r: r.add(vectors=5)),
    # unknown ids
    ("get unknown", sv.NotFound, lambda v, d, r: d.get("zz")),
    ("vault get unknown", sv.NotFound, lambda v, d, r: v.get("zz")),
    ("get from other collection", sv.NotFound, lambda v, d, r: d.get("r0")),
    ("update unknown", sv.NotFound, lambda v, d, r: d.update("zz", metadata={"x": 1})),
    ("update other collection", sv.NotFound, lambda v, d, r: d.update("r0", metadata={"x": 1})),
    ("delete one unknown of two", sv.NotFound, lambda v, d, r: d.delete(["a", "zz"])),
    ("delete other collection", sv.NotFound, lambda v, d, r: d.delete(["r0"])),
    ("link unknown target", sv.NotFound, lambda v, d, r: v.link("a", ["c", "zz"])),
    ("link unknown source", sv.NotFound, lambda v, d, r: v.link("zz", "a")),
    ("neighbors unknown", sv.NotFound, lambda v, d, r: v.neighbors("zz")),
    ("path unknown", sv.NotFound, lambda v, d, r: v.path("a", "zz")),
    ("chain unknown", sv.NotFound, lambda v, d, r: v.chain("zz")),
    ("find_similar unknown", sv.NotFound, lambda v, d, r: d.find_similar("zz")),
    ("unknown parent", sv.NotFound, lambda v, d, r: d.add(["x"], parent_id="zz")),
    # bad where clauses
    ("where unknown op", sv.InvalidFilter, lambda v, d, r: d.search("alpha", where={"n": {"$like": 1}})),
    ("where $gt list", sv.InvalidFilter, lambda v, d, r: r.search(np.ones(8), where={"n": {"$gt": ["x"]}})),
    ("where not mapping", sv.InvalidFilter, lambda v, d, r: d.search("alpha", mode="text", where=["n"])),
    ("where $in empty", sv.InvalidFilter, lambda v, d, r: d.all(where={"n": {"$in": []}})),
    ("where bad key", sv.InvalidFilter, lambda v, d, r: d.search("alpha", mode="hybrid", where={"n'; drop": 1})),
    # NaN and infinite vectors
    ("add NaN", sv.InvalidInput, lambda v, d, r: r.add(vectors=np.stack([np.ones(8), NAN]))),
    ("add inf", sv.InvalidInput, lambda v, d, r: r.add(vectors=[INF])),
    ("search NaN", sv.InvalidInput, lambda v, d, r: r.search(NAN)),
    ("update NaN", sv.InvalidInput, lambda v, d, r: r.update("r1", vector=NAN)),
    ("find_similar NaN", sv.InvalidInput, lambda v, d, r: r.find_similar(NAN)),
    (
        "embedder NaN",
        sv.InvalidInput,
        lambda v, d, r: v.collection("docs", embedder=lambda ts: np.full((len(ts), 64), np.nan)).add(["x"]),
    ),
    ("zero vector in cosine", sv.InvalidInput, lambda v, d, r: r.add(vectors=np.zeros((1, 8)))),
    # empty text
    ("add empty text", sv.EmptyText, lambda v, d, r: d.add(["fine", ""])),
    ("add blank text", sv.EmptyText, lambda v, d, r: d.add(["   \n"])),
    ("add non-string text", sv.EmptyText, lambda v, d, r: d.add([None])),  # type: ignore[list-item]
    ("update empty text", sv.EmptyText, lambda v, d, r: d.update("a", text="")),
    ("search empty text", sv.EmptyText, lambda v, d, r: d.search("  ")),
    # duplicate ids
    ("duplicate in one call", sv.InvalidInput, lambda v, d, r: d.add(["x", "y"], ids=["n1", "n1"])),
    ("duplicate of stored", sv.InvalidInput, lambda v, d, r: d.add(["x", "y"], ids=["new", "b"])),
    ("duplicate across collections", sv.InvalidInput, lambda v, d, r: r.add(vectors=np.ones((1, 8)), ids=["a"])),
    # other malformed arguments
    ("no texts nor vectors", sv.InvalidInput, lambda v, d, r: d.add()),
    ("ids count", sv.InvalidInput, lambda v, d, r: d.add(["x", "y"], ids=["only-one"])),
    ("empty id", sv.InvalidInput, lambda v, d, r: d.add(["x"], ids=[""])),
    ("metadata count", sv.InvalidInput, lambda v, d, r: d.add(["x", "y"], metadata=[{}])),
    ("metadata not mapping", sv.InvalidInput, lambda v, d, r: d.add(["x"], metadata=[["k"]])),
    ("metadata NaN", sv.InvalidInput, lambda v, d, r: d.add(["x", "y"], metadata=[{}, {"v": math.nan}])),
    ("metadata not JSON", sv.InvalidInput, lambda v, d, r: d.add(["x"], metadata={"v": object()})),
    ("update metadata not JSON", sv.InvalidInput, lambda v, d, r: d.update("a", metadata={"v": b"bytes"})),
    ("kind not a string", sv.InvalidInput, lambda v, d, r: d.add(["x"], kind={"a": 1})),  # type: ignore[arg-type]
    ("conversation not a string", sv.InvalidInput, lambda v, d, r: d.add(["x"], conversation_id=[5])),  # type: ignore[list-item]
    (
        "parent later in batch",
        sv.InvalidInput,
        lambda v, d, r: d.add(["x", "y"], ids=["p1", "p2"], parent_id=["p2", None]),
    ),
    ("bad state", sv.InvalidInput, lambda v, d, r: d.update("a", state="deleted")),
    ("bad search state", sv.InvalidInput, lambda v, d, r: d.search("alpha", states=["gone"])),
    ("k zero", sv.InvalidInput, lambda v, d, r: d.search("alpha", k=0)),
    ("k not int", sv.InvalidInput, lambda v, d, r: d.search("alpha", k=2.5)),  # type: ignore[arg-type]
    ("bad mode", sv.InvalidInput, lambda v, d, r: d.search("alpha", mode="fuzzy")),  # type: ignore[arg-type]
    ("text mode with vector", sv.InvalidInput, lambda v, d, r: r.search(np.ones(8), mode="text")),
    ("threshold", sv.InvalidInput, lambda v, d, r: d.find_similar("a", threshold=-0.1)),
    ("edge kind", sv.InvalidInput, lambda v, d, r: v.link("a", "c", kind="has space")),
    ("edge weight NaN", sv.InvalidInput, lambda v, d, r: v.link("a", "c", weight=math.nan)),
    ("edge weight inf", sv.InvalidInput, lambda v, d, r: v.link("a", "c", weight=math.inf)),
    ("direction", sv.InvalidInput, lambda v, d, r: v.neighbors("a", direction="up")),  # type: ignore[arg-type]
    ("max_depth", sv.InvalidInput, lambda v, d, r: v.path("a", "c", max_depth=-1)),
    ("collection name", sv.InvalidInput, lambda v, d, r: v.collection("no spaces allowed")),
    ("collection metric", sv.InvalidInput, lambda v, d, r: v.collection("new", metric="hamming")),
    ("metric of existing", sv.InvalidInput, lambda v, d, r: v.collection("raw", metric="l2")),
    ("embedder not callable", sv.InvalidInput, lambda v, d, r: v.collection("docs", embedder=42)),
    # embedders
    ("no embedder for text", sv.EmbedderUnavailable, lambda v, d, r: r.add(["text needs an embedder"])),
    (
        "embedder raises",
        sv.EmbedderUnavailable,
        lambda v, d, r: v.collection("docs", embedder=lambda ts: 1 / 0).add(["x"]),
    ),
]


@pytest.mark.parametrize(("what", "error", "call"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_and_changes_nothing(filled: Any, what: str, error: type[sv.VaultError], call: Any) -> None:
    vault, docs, raw = filled
    before, files = snapshot(vault), _vector_file_bytes(vault)
    with pytest.raises(error) as info:
        result = call(vault, docs, raw)
        if hasattr(result, "__next__"):
            list(result)
    assert isinstance(info.value, sv.VaultError) and str(info.value)  # a message that says what was wrong
    assert snapshot(vault) == before, what
    assert _vector_file_bytes(vault) == files
    report = vault.check()
    assert report.ok, report.problems


def test_errors_are_one_hierarchy() -> None:
    assert issubclass(sv.InvalidFilter, sv.InvalidInput) and issubclass(sv.InvalidInput, ValueError)
    assert issubclass(sv.DimensionMismatch, sv.InvalidInput) and issubclass(sv.EmptyText, sv.InvalidInput)
    assert issubclass(sv.NotFound, KeyError) and str(sv.NotFound("no unit with id 'x'")) == "no unit with id 'x'"
    for name in sv.errors.__all__:
        assert issubclass(getattr(sv, name), sv.VaultError)


def test_a_closed_vault_refuses_everything(vault_path: Path, embedder: HashingEmbedder) -> None:
    vault = sv.open(vault_path)
    docs = vault.collection("docs", embedder=embedder)
    docs.add(["kept"], ids=["k"])
    vault.close()
    vault.close()  # idempotent
    assert vault.closed
    calls: list[Callable[[], Any]] = [
        lambda: vault.collection("docs"),
        lambda: vault.get("k"),
        lambda: vault.link("k", "k"),
        lambda: vault.neighbors("k"),
        lambda: vault.stats(),
        lambda: vault.check(),
        lambda: vault.path("k", "k"),
        lambda: docs.add(["x"]),
        lambda: docs.get("k"),
        lambda: docs.search("kept"),
        lambda: docs.update("k", metadata={}),
        lambda: docs.delete("k"),
        lambda: list(docs),
        lambda: docs.find_similar("k"),
        lambda: len(docs),
    ]
    for call in calls:
        with pytest.raises(sv.VaultClosed):
            call()
    with sv.open(vault_path) as again:
        assert again.get("k").text == "kept"


def test_mismatched_embedder_dimension_on_reopen(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        vault.collection("docs", embedder=HashingEmbedder(64)).add(["built with 64 dims"], ids=["x"])
    with sv.open(vault_path) as vault:
        before = snapshot(vault)
        with pytest.raises(sv.DimensionMismatch, match="64-d"):
            vault.collection("docs", embedder=HashingEmbedder(32))  # dim known up front
        lazy = vault.collection("docs", embedder=lambda ts: HashingEmbedder(32).embed(ts))  # dim learnt on use
        with pytest.raises(sv.DimensionMismatch):
            lazy.add(["another"])
        with pytest.raises(sv.DimensionMismatch):
            lazy.search("query")
        assert snapshot(vault) == before
        assert vault.collection("docs", embedder=None).search(HashingEmbedder(64).embed(["built"])[0])[0].id == "x"
    # a reopen without the custom embedder says which one to pass
    with sv.open(vault_path) as vault, pytest.raises(sv.EmbedderUnavailable, match="hashing-test-embedder"):
        vault.collection("docs").add(["text"])


def test_opening_what_is_not_a_vault(tmp_path: Path) -> None:
    with pytest.raises(sv.NotFound):
        sv.open(tmp_path / "missing", create=False)
    with pytest.raises(sv.NotFound):
        sv.open(tmp_path / "missing", frozen=True)
    assert not (tmp_path / "missing").exists()
    a_file = tmp_path / "file"
    a_file.write_text("hello")
    with pytest.raises(sv.InvalidInput):
        sv.open(a_file)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "vault.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sv.Corrupted):
        sv.open(garbage)


def test_a_failed_write_keeps_pending_access_counts(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        raw = vault.collection("raw", embedder=None)
        raw.add(vectors=np.eye(3, dtype=np.float32), ids=["x", "y", "z"])
        raw.get("x")
        raw.get("x")  # two accesses waiting for the next write to carry them
        with pytest.raises(sv.InvalidInput):
            raw.add(vectors=np.eye(3, dtype=np.float32)[:1], ids=["y"])  # rolled back after taking them
        assert raw.get("x", touch=False).access_count == 2
    count = run_py(
        "import sys, json, sigmavault as sv\nv = sv.open(sys.argv[1])\n"
        "print(json.dumps(v.collection('raw', embedder=None).get('x', touch=False).access_count))",
        str(vault_path),
    )
    assert count == 2


def test_frozen_vault_refuses_writes_with_read_only(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        vault.collection("raw", embedder=None).add(vectors=np.eye(2, dtype=np.float32), ids=["p", "q"])
    with sv.open(vault_path, frozen=True) as vault:
        raw = vault.collection("raw", embedder=None)
        before = snapshot(vault)
        for call in (
            lambda: raw.add(vectors=np.eye(2)[:1]),
            lambda: vault.link("p", "q"),
            lambda: raw.update("p", state="archived"),
            lambda: raw.delete("p"),
            lambda: vault.collection("new", embedder=None),
        ):
            with pytest.raises(sv.ReadOnly):
                call()
        assert raw.get("p").id == "p"  # reads (even counted ones) still work
        assert snapshot(vault) == before
