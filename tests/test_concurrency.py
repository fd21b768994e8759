"""Several writers and readers on one vault: processes and threads, no "database is locked" reaching
the caller, and a reader that sees another process's writes without reopening (PRAGMA data_version)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import id_vector, run_py, spawn_py

import sigmavault as sv

WRITER = """
import sys, time, json
import numpy as np
import sigmavault as sv
from conftest import id_vector

path, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
vault = sv.open(path)
col = vault.collection("shared", embedder=None, metric="ip")
time.sleep(max(0.0, start - time.time()))  # both writers begin together
written = []
for b in range(25):
    ids = [f"{name}-{b}-{j}" for j in range(4)]
    col.add(vectors=np.stack([id_vector(u) for u in ids]), ids=ids, texts=[f"{name} batch{b}"] * 4,
            metadata={"writer": name, "batch": b})
    if b:
        vault.link(ids[0], f"{name}-{b - 1}-0", kind="prev")
    col.get(ids[1])
    col.search(id_vector(ids[2]), k=3)
    written += ids
vault.close()
print(json.dumps(written))
"""


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "vault"  # NOTE: not created here: both children create it at the same moment
    start = time.time() + 1.5
    children = [spawn_py(WRITER, str(path), name, str(start)) for name in ("left", "right")]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert "locked" not in err.lower()
        results.append(json.loads(out.strip().splitlines()[-1]))
    with sv.open(path) as vault:
        assert vault.check().ok
        col = vault.collection("shared", embedder=None)
        units = {u.id: u for u in col}
        assert set(units) == set(results[0]) | set(results[1]) and len(units) == 200
        for uid in units:
            np.testing.assert_array_equal(col.get(uid, touch=False).vector, id_vector(uid))
        assert vault.path("left-24-0", "left-0-0", max_depth=30) == [f"left-{b}-0" for b in range(24, -1, -1)]
        assert {h.id for h in col.search("right batch7", mode="text", k=4)} == {f"right-7-{j}" for j in range(4)}
        # each writer read and searched its own units: the counts of both survived
        assert col.get("left-3-1", touch=False).access_count >= 1
        assert col.get("right-3-1", touch=False).access_count >= 1


CREATOR = """
import sys, time
from pathlib import Path
from sigmavault.store.sqlite import Database

folder, start, rounds = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
for r in range(rounds):
    time.sleep(max(0.0, start + 0.12 * r - time.time()))  # every process creates file r at once
    Database(folder / f"{r}.db", busy_timeout=10.0).close()
print("ok")
"""


def test_processes_creating_the_same_store_at_once_all_open_it(tmp_path: Path) -> None:
    # Two processes that create one SQLite file at once both read it, then both need its exclusive
    # lock to switch it to WAL: SQLite answers one of them "database is locked" without waiting. Four
    # processes create 25 fresh stores in step; before the open retried, 3-10% of such opens failed.
    start = time.time() + 1.0
    children = [spawn_py(CREATOR, str(tmp_path), str(start), "25") for _ in range(4)]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0 and out.strip() == "ok", err
    for r in range(25):
        conn = sqlite3.connect(tmp_path / f"{r}.db")
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [("sv_schema",)]
        finally:
            conn.close()


READER = """
import sys, json
import numpy as np
import sigmavault as sv
from conftest import HashingEmbedder

vault = sv.open(sys.argv[1])
docs = vault.collection("docs", embedder=HashingEmbedder())
docs.search("warm up the cache", k=1)
print("ready", flush=True)
for line in sys.stdin:
    query = json.loads(line)
    if "vector" in query:
        hits = docs.search(np.array(query["vector"], dtype=np.float32), k=3)
    else:
        hits = docs.search(query["text"], k=3, mode=query["mode"], states=query.get("states", "active"))
    print(json.dumps([h.id for h in hits]), flush=True)
"""


def test_a_reader_process_sees_another_process_writes(tmp_path: Path) -> None:
    from conftest import HashingEmbedder

    path = tmp_path / "vault"
    emb = HashingEmbedder()
    with sv.open(path) as vault:
        vault.collection("docs", embedder=emb).add(["the first note", "another old note"], ids=["n1", "n2"])
    reader = spawn_py(READER, str(path), stdin=True)
    assert reader.stdin is not None and reader.stdout is not None

    def ask(**query: object) -> list[str]:
        reader.stdin.write(json.dumps(query) + "\n")  # type: ignore[union-attr]
        reader.stdin.flush()  # type: ignore[union-attr]
        return json.loads(reader.stdout.readline())  # type: ignore[union-attr, no-any-return]

    try:
        assert reader.stdout.readline() == "ready\n"
        with sv.open(path) as vault:  # the writer: this process, a second connection
            docs = vault.collection("docs", embedder=emb)
            docs.add(["zebra crossing at midnight"], ids=["z"])
            assert ask(text="zebra midnight", mode="vector")[0] == "z"  # vector rows and state reloaded
            assert ask(text="zebra", mode="text") == ["z"]
            assert ask(vector=emb.embed(["zebra crossing at midnight"])[0].tolist())[0] == "z"
            docs.update("z", state="archived")
            assert "z" not in ask(text="zebra midnight", mode="vector")
            assert ask(text="zebra", mode="text", states="archived") == ["z"]
            docs.update("z", state="active")
            docs.update("z", text="quokka selfie")  # a new vector row: the map must grow
            assert ask(text="quokka selfie", mode="vector")[0] == "z"
            docs.delete("z")
            assert "z" not in ask(text="quokka selfie", mode="hybrid")
            for i in range(50):  # many small commits in a row, each visible at once
                docs.add([f"burst item {i} wombat{i}"], ids=[f"b{i}"])
            assert ask(text="wombat49", mode="text") == ["b49"]
            assert ask(text="burst item 49 wombat49", mode="vector")[0] == "b49"
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    assert reader.returncode == 0, reader.stderr.read() if reader.stderr else ""


def test_threads_and_a_second_handle_in_one_process(vault_path: Path) -> None:
    first = sv.open(vault_path)
    second = sv.open(vault_path)
    try:
        cols = [first.collection("t", embedder=None, metric="ip"), second.collection("t", embedder=None, metric="ip")]
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                col = cols[t % 2]
                for b in range(10):
                    ids = [f"t{t}-{b}-{j}" for j in range(3)]
                    col.add(vectors=np.stack([id_vector(u) for u in ids]), ids=ids)
                    hits = col.search(id_vector(ids[0]), k=1)
                    assert hits and hits[0].id == ids[0]  # own write visible at once, on either handle
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        for col in cols:
            assert len({u.id for u in col}) == 120
            assert col.search(id_vector("t3-9-2"), k=1)[0].id == "t3-9-2"
        assert first.check().ok
    finally:
        first.close()
        second.close()


HOLDER = """
import sys, time
import sigmavault as sv
vault = sv.open(sys.argv[1])
with vault.transaction():
    vault.collection("held", embedder=None).add(vectors=[[1.0, 0.0]], ids=["held"])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
vault.close()
"""


def test_a_writer_held_too_long_gives_vault_locked_not_sqlite_errors(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    with sv.open(path) as vault:
        vault.collection("c", embedder=None).add(vectors=[[0.0, 1.0]], ids=["before"])
    holder = spawn_py(HOLDER, str(path), "2.5")
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    with sv.open(path, busy_timeout=0.2) as vault:
        col = vault.collection("c", embedder=None)
        assert col.get("before", touch=False).id == "before"  # readers are never blocked (WAL)
        with pytest.raises(sv.VaultLocked):
            col.add(vectors=[[1.0, 1.0]], ids=["blocked"])
        with pytest.raises(sv.VaultLocked):
            vault.link("before", "before")
    holder.wait(timeout=30)
    assert holder.returncode == 0
    with sv.open(path) as vault:  # the holder committed; the refused writes left no trace
        assert {u.id for u in vault.collection("c", embedder=None)} == {"before"}
        assert vault.get("held").id == "held" and vault.neighbors("before") == []
        assert vault.check().ok


def test_a_writer_waits_for_a_short_holder_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    sv.open(path).close()
    holder = spawn_py(HOLDER, str(path), "0.5")
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    with sv.open(path) as vault:  # default busy timeout: it queues behind the holder
        vault.collection("c", embedder=None).add(vectors=[[1.0, 1.0]], ids=["waited"])
    holder.wait(timeout=30)
    got = run_py(
        """
        import sys, json, sigmavault as sv
        v = sv.open(sys.argv[1])
        print(json.dumps(sorted(u.id for n in v.collections() for u in v.collection(n, embedder=None))))
        """,
        str(path),
    )
    assert got == ["held", "waited"]
