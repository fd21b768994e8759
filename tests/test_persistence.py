"""Persistence: what one process wrote, a NEW process reads back identically (units, vectors, metadata,
edges, states, access counts, search results); and check() on healthy and on damaged vaults."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import HashingEmbedder, run_py, unit_vectors

import sigmavault as sv
from sigmavault.units import integrity

# The same dump code runs here and in the child process, so both sides read the vault alike.
DUMP = """
import json
import numpy as np
import sigmavault as sv
from conftest import HashingEmbedder

def dump(vault, queries, search_first):
    # NOTE: search hits count as accesses; the writer searches before it reads the counts, the
    # reader after, so both see the same counts.
    docs = vault.collection("docs", embedder=HashingEmbedder())
    raw = vault.collection("raw", embedder=None)
    out = {"units": {}, "edges": [], "search": {}, "stats": {}}
    if search_first:
        searches(out, vault, docs, raw, queries)
    for col in (docs, raw):
        for u in col:
            full = col.get(u.id, touch=False)
            out["units"][u.id] = [
                u.collection, u.text, u.metadata, u.kind, u.state.value, u.created_at, u.accessed_at,
                u.access_count, u.conversation_id, u.parent_id, str(u.semantic_hash), u.kv_ref,
                full.vector.tolist(),
            ]
        out["stats"][col.name] = [len(col), col.dim, vault.stats()["collections"][col.name]["embedder"]]
    for uid in sorted(out["units"]):
        out["edges"] += [[e.source, e.target, e.kind, e.weight, e.created_at] for e in vault.neighbors(uid)]
    if not search_first:
        searches(out, vault, docs, raw, queries)
    out["chain"] = vault.chain("reply-3")
    out["conversation"] = [u.id for u in vault.conversation("conv-A")]
    return out

def searches(out, vault, docs, raw, queries):
    for q in queries:
        for mode in ("vector", "text", "hybrid"):
            hits = docs.search(q, k=5, mode=mode, states="all" if mode == "text" else "active")
            out["search"][f"{mode}:{q}"] = [[h.id, h.score, h.text, h.metadata] for h in hits]
    vq = np.linspace(-1, 1, 8, dtype=np.float32)
    out["search"]["raw"] = [[h.id, h.score] for h in raw.search(vq, k=4, where={"group": {"$in": [0, 2]}})]
    out["similar"] = [[h.id, h.score] for h in docs.find_similar("reply-0", threshold=0.0, k=5)]
"""

QUERIES = ["river water flows", "mountain snow", "old books library"]

TEXTS = [
    "The river water flows to the sea",
    "Snow covers the mountain in winter",
    "The library keeps old books and maps",
    "Water in the mountain river is cold",
    "Maps of the sea are in the old library",
    "A winter storm brings snow",
]


def _build(path: Path) -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(DUMP, ns)
    rng = np.random.default_rng(11)
    with sv.open(path) as vault:
        docs = vault.collection("docs", embedder=HashingEmbedder())
        ids = docs.add(TEXTS, metadata=[{"i": i, "tags": {"even": i % 2 == 0}} for i in range(len(TEXTS))], kind="note")
        docs.add(
            ["question one", "answer one", "question two", "answer two"],
            ids=["reply-0", "reply-1", "reply-2", "reply-3"],
            conversation_id="conv-A",
            parent_id=[None, "reply-0", "reply-1", "reply-2"],
            kv_ref=["kv-0", None, None, "kv-3"],
        )
        raw = vault.collection("raw", embedder=None)
        raw_ids = raw.add(vectors=unit_vectors(rng, 30, 8), metadata=[{"group": i % 3} for i in range(30)])
        vault.link(ids[0], ids[3], kind="semantic", weight=0.9)
        vault.link(ids[2], [ids[4], raw_ids[0]], kind="causal", weight=0.4)
        vault.link("reply-3", "reply-0", kind="summary")
        docs.update(ids[5], state="archived")
        docs.update(ids[1], metadata={"i": 1, "edited": True})
        raw.update(raw_ids[1], state="expired")
        raw.delete(raw_ids[2])
        for _ in range(3):
            docs.get(ids[0])
        docs.search("river", mode="text")
        expected: dict[str, Any] = ns["dump"](vault, QUERIES, True)
        expected["got_three_times"] = ids[0]
    return expected


def _dump_in_child(path: Path) -> Any:
    return run_py(
        DUMP + f"\nimport sys\nwith sv.open(sys.argv[1]) as v:\n    print(json.dumps(dump(v, {QUERIES!r}, False)))\n",
        str(path),
    )


def test_a_new_process_reads_back_everything(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    expected = _build(path)
    got = _dump_in_child(path)
    assert set(got["units"]) == set(expected["units"]) and len(got["units"]) == 39
    for uid, fields in expected["units"].items():
        assert got["units"][uid][:6] == fields[:6], uid
        assert got["units"][uid][6] == pytest.approx(fields[6]) and got["units"][uid][7] == fields[7]
        assert got["units"][uid][8:] == fields[8:], uid  # vectors bit-identical (float32 -> JSON exact)
    assert got["edges"] == expected["edges"] and len(got["edges"]) == 4
    assert got["search"] == expected["search"]  # ids, scores, texts, metadata: identical
    assert got["stats"] == expected["stats"] == {"docs": [10, 64, "hashing-test-embedder"], "raw": [29, 8, None]}
    assert got["similar"] == expected["similar"]
    assert got["chain"] == ["reply-3", "reply-2", "reply-1", "reply-0"]
    assert got["conversation"] == ["reply-0", "reply-1", "reply-2", "reply-3"]
    assert got["units"][expected["got_three_times"]][7] >= 3  # counted in a batch, written at close


def test_writes_from_a_child_are_seen_here_and_survive_another_reopen(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    with sv.open(path) as vault:
        vault.collection("raw", embedder=None).add(vectors=np.eye(4, dtype=np.float32), ids=["a", "b", "c", "d"])
    run_py(
        """
        import sys, numpy as np, json, sigmavault as sv
        with sv.open(sys.argv[1]) as v:
            raw = v.collection("raw", embedder=None)
            raw.add(vectors=np.array([[1, 1, 0, 0]], dtype=np.float32), ids=["e"], metadata={"from": "child"})
            raw.update("a", state="archived")
            raw.delete("d")
            v.link("e", "b", kind="child-made", weight=0.25)
            raw.get("b"); raw.get("b")
        print(json.dumps("ok"))
        """,
        str(path),
    )
    with sv.open(path) as vault:
        raw = vault.collection("raw", embedder=None)
        assert [u.id for u in raw] == ["a", "b", "c", "e"]
        assert raw.get("e", touch=False).metadata == {"from": "child"}
        assert raw.get("a", touch=False).state is sv.State.ARCHIVED
        assert raw.get("b", touch=False).access_count == 2
        assert [(e.target, e.kind, e.weight) for e in vault.neighbors("e")] == [("b", "child-made", 0.25)]
        assert raw.search(np.array([1, 1, 0, 0], dtype=np.float32), k=1)[0].id == "e"
        assert vault.check().ok


def test_frozen_open_in_a_child_reads_but_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    with sv.open(path) as vault:
        vault.collection("docs", embedder=HashingEmbedder()).add(["alpha beta"], ids=["x"])
    got = run_py(
        """
        import sys, json, sigmavault as sv
        from conftest import HashingEmbedder
        v = sv.open(sys.argv[1], frozen=True)
        docs = v.collection("docs", embedder=HashingEmbedder())
        out = {"hit": docs.search("alpha", k=1)[0].id, "text": docs.search("beta", mode="text")[0].id}
        for name, call in [("add", lambda: docs.add(["x"])), ("link", lambda: v.link("x", "x")),
                           ("update", lambda: docs.update("x", metadata={})), ("delete", lambda: docs.delete("x"))]:
            try:
                call()
                out[name] = "wrote"
            except sv.ReadOnly:
                out[name] = "ReadOnly"
        out["check"] = v.check().ok
        v.close()
        print(json.dumps(out))
        """,
        str(path),
    )
    assert got == {
        "hit": "x",
        "text": "x",
        "add": "ReadOnly",
        "link": "ReadOnly",
        "update": "ReadOnly",
        "delete": "ReadOnly",
        "check": True,
    }
    with sv.open(path) as vault:
        assert len(vault.collection("docs", embedder=None)) == 1


def test_vault_ids_differ_between_vaults(tmp_path: Path) -> None:
    for name in ("one", "two"):
        sv.open(tmp_path / name).close()
    ids = {
        sqlite3.connect(tmp_path / n / "vault.db")
        .execute("SELECT value FROM vault_meta WHERE key='vault_id'")
        .fetchone()[0]
        for n in ("one", "two")
    }
    assert len(ids) == 2


# -- check() ------------------------------------------------------------------------------------


def _small_vault(path: Path) -> tuple[list[str], Path]:
    rng = np.random.default_rng(8)
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        ids = col.add(vectors=unit_vectors(rng, 20, 16), texts=[f"text number {i}" for i in range(20)])
        vault.link(ids[0], ids[1])
        assert vault.check().ok and vault.check().problems == []
        cid = vault._catalog.find("c").id  # type: ignore[union-attr]
    return ids, path / "vectors" / f"{cid}.f32"


def test_check_detects_a_flipped_byte_in_a_vector_file(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    _, vec_file = _small_vault(path)
    data = bytearray(vec_file.read_bytes())
    data[64 + 5 * 64 + 4 * 3 + 3] ^= 0x40  # the exponent byte of one float of row 5: a large change
    vec_file.write_bytes(bytes(data))
    with sv.open(path) as vault:
        report = vault.check()
    assert not report.ok and any("semantic hash" in p for p in report.problems)


def test_check_detects_a_truncated_vector_file(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    _, vec_file = _small_vault(path)
    with vec_file.open("r+b") as f:
        f.truncate(64 + 10 * 64 + 7)
    with sv.open(path) as vault:  # opening must still work, so that check() can say what is wrong
        report = vault.check()
        assert not report.ok and any("holds 10 rows, 20 are committed" in p for p in report.problems)
        with pytest.raises(sv.Corrupted):
            vault.collection("c", embedder=None).search(np.ones(16, dtype=np.float32))


def test_check_detects_a_dangling_edge_and_an_orphan_parent(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    ids, _ = _small_vault(path)
    with sqlite3.connect(path / "vault.db") as conn:
        integrity.register(conn)  # NOTE: an edit that keeps the record checksum right: the parent check must find it
        conn.execute("INSERT INTO edges VALUES (?, 'ghost', 'related', 1.0, 0)", (ids[3],))
        conn.execute("UPDATE units SET parent_id = 'nobody' WHERE uid = ?", (ids[4],))
    with sv.open(path) as vault:
        problems = vault.check().problems
    assert any("ghost" in p and "does not exist" in p for p in problems)
    assert any("nobody" in p for p in problems)


def test_check_detects_an_fts_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    ids, _ = _small_vault(path)
    with sqlite3.connect(path / "vault.db") as conn:  # text changed behind the index's back
        integrity.register(conn)  # NOTE: keeps the record checksum right, so the FTS check is what must see it
        conn.execute("UPDATE units SET text = 'something else entirely' WHERE uid = ?", (ids[2],))
    with sv.open(path) as vault:
        assert any(p.startswith("fts:") for p in vault.check().problems)
    path2 = tmp_path / "vault2"
    ids, _ = _small_vault(path2)
    with sqlite3.connect(path2 / "vault.db") as conn:  # a unit row vanished, its index entry did not
        conn.execute("DELETE FROM units WHERE uid = ?", (ids[5],))
    with sv.open(path2) as vault:
        assert any(p.startswith("fts:") for p in vault.check().problems)


def test_check_notes_a_crash_tail_which_the_next_writable_open_cuts(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    _, vec_file = _small_vault(path)
    size = vec_file.stat().st_size
    with vec_file.open("ab") as f:
        f.write(b"\x01" * (3 * 64 + 10))  # rows written, crash before the commit
    with sv.open(path, frozen=True) as vault:
        report = vault.check()
        assert report.ok and any("uncommitted tail" in n for n in report.notes)
    assert vec_file.stat().st_size > size
    with sv.open(path) as vault:
        assert not any("tail" in n for n in vault.check().notes) and vec_file.stat().st_size == size
