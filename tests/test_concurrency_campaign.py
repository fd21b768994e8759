"""Concurrency campaign (issue 10): 8 writer processes over mixed parts, 4 reader processes searching
with and without ``where``, and 8 threads sharing one ``Vault`` in this process, all at once. Zero
exceptions (none is documented for this workload: the busy timeout is far above its writes), zero
lost writes, and a vault that passes ``check()`` afterwards. Prints the figures."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import numpy as np
from conftest import id_vector, spawn_py

import sigmavault as sv
from sigmavault.kv import Fingerprint

WRITERS, READERS, THREADS, ROUNDS = 8, 4, 8, 12
FP = Fingerprint(model="conc", dtype="float32", layers=1, kv_heads=1, head_dim=4)

WRITER = """
import json, sys
import numpy as np
import sigmavault as sv
from conftest import id_vector
from sigmavault.kv import Fingerprint, KVArrays

path, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
fp = Fingerprint(model="conc", dtype="float32", layers=1, kv_heads=1, head_dim=4)
done = {"units": [], "sessions": [], "policies": [], "witness": [], "kv": [], "errors": []}
with sv.open(path) as vault:
    col = vault.collection("shared", embedder=None, metric="ip")
    print("ready", flush=True)
    sys.stdin.readline()  # everyone starts together
    for b in range(rounds):
        try:
            ids = [f"{name}-{b}-{j}" for j in range(3)]
            col.add(vectors=np.stack([id_vector(u) for u in ids]), ids=ids, texts=[f"{name} {b}"] * 3,
                    metadata={"w": name, "b": b})
            done["units"] += ids
            if b:
                vault.link(ids[0], f"{name}-{b - 1}-0", kind="prev")
                col.update(f"{name}-{b - 1}-1", metadata={"w": name, "b": b - 1, "seen": True})
            vault.sessions.open(f"{name}-s{b}", metadata={"b": b})
            done["sessions"].append(f"{name}-s{b}")
            vault.policies.put("rule", {"b": b}, embedding=np.ones(4) + b, policy_id=f"{name}-p{b}")
            done["policies"].append(f"{name}-p{b}")
            vault.witness.record({"request_id": f"{name}-r{b}", "total_ms": float(b), "model": name})
            done["witness"].append(f"{name}-r{b}")
            toks = np.random.default_rng(int(name[1:]) * 1000 + b).integers(0, 99, 12)
            keys, values = np.random.default_rng(b).standard_normal((2, 1, 1, 12, 4), dtype=np.float32)
            done["kv"].append([toks.tolist(), vault.kv.save_arrays(fp, toks, KVArrays(keys, values, "float32")).ref])
        except Exception as exc:
            done["errors"].append(f"{type(exc).__name__}: {exc}")
    vault.witness.flush()
print(json.dumps(done), flush=True)
"""

READER = """
import json, sys
import numpy as np
import sigmavault as sv
from pathlib import Path

path, stop = sys.argv[1], Path(sys.argv[2])
counts = {"searches": 0, "errors": []}
with sv.open(path) as vault:
    col = vault.collection("shared", embedder=None, metric="ip")
    print("ready", flush=True)
    sys.stdin.readline()
    rng = np.random.default_rng(int(sys.argv[3]))
    while not stop.exists():
        try:
            q = rng.standard_normal(16).astype(np.float32)
            for where in (None, {"b": {"$gte": 3}}, {"seen": True}):
                for hit in col.search(q, k=5, where=where):
                    col.get(hit.id, touch=False)
                counts["searches"] += 1
            vault.sessions.find(k=3)
            vault.policies.search("rule", np.ones(4), k=2)
            vault.witness.query(limit=5)
        except Exception as exc:
            counts["errors"].append(f"{type(exc).__name__}: {exc}")
print(json.dumps(counts), flush=True)
"""


def test_writers_readers_and_threads_at_once(tmp_path: Path) -> None:
    path, stop = tmp_path / "vault", tmp_path / "stop"
    with sv.open(path) as v:
        v.collection("shared", embedder=None, metric="ip")
    procs = [spawn_py(WRITER, str(path), f"w{i}", str(ROUNDS), stdin=True) for i in range(WRITERS)]
    procs += [spawn_py(READER, str(path), str(stop), str(i), stdin=True) for i in range(READERS)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    vault = sv.open(path)
    col = vault.collection("shared", embedder=None)
    thread_ids: list[str] = []
    thread_errors: list[str] = []
    go = threading.Barrier(THREADS + 1)

    def work(i: int) -> None:
        rng = np.random.default_rng(i)
        go.wait()
        for b in range(ROUNDS):
            try:
                if i % 2:
                    ids = [f"t{i}-{b}-{j}" for j in range(2)]
                    col.add(
                        vectors=np.stack([id_vector(u) for u in ids]), ids=ids, texts=["thread"] * 2, metadata={"b": b}
                    )
                    thread_ids.extend(ids)
                else:
                    col.search(rng.standard_normal(16), k=5, where={"b": {"$lt": 5}})
                    col.search(rng.standard_normal(16), k=5)
                    vault.sessions.find(k=2)
            except Exception as exc:
                thread_errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    go.wait()
    for t in threads:
        t.join()
    writers = []
    for p in procs[:WRITERS]:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        writers.append(json.loads(out.strip().splitlines()[-1]))
    stop.touch()
    readers = []
    for p in procs[WRITERS:]:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        readers.append(json.loads(out.strip().splitlines()[-1]))
    vault.close()
    errors = [e for w in writers for e in w["errors"]] + [e for r in readers for e in r["errors"]] + thread_errors
    assert not errors, errors[:5]
    with sv.open(path) as vault:
        report = vault.check()
        assert report.ok, report.problems
        col = vault.collection("shared", embedder=None)
        held = {u.id for u in col}
        expected = {u for w in writers for u in w["units"]} | set(thread_ids)
        assert held == expected
        for uid in sorted(expected)[::17]:
            np.testing.assert_array_equal(col.get(uid, touch=False).vector, id_vector(uid))
        assert {s for w in writers for s in w["sessions"]} <= {s.session_id for s in vault.sessions.find(states="all")}
        assert {p for w in writers for p in w["policies"]} <= {p.id for p in vault.policies.list(states="all")}
        assert vault.witness.count() == sum(len(w["witness"]) for w in writers)
        for w in writers:
            for tokens, ref in w["kv"][-2:]:
                assert vault.kv.load_ref_arrays(FP, ref)[1] == tokens
        figures = {
            "writer_processes": WRITERS,
            "reader_processes": READERS,
            "threads": THREADS,
            "units": len(held),
            "searches": sum(r["searches"] for r in readers),
            "exceptions": len(errors),
            "lost_writes": len(expected - held),
        }
    print(f"\nconcurrency campaign: {json.dumps(figures)}", file=sys.stderr)
