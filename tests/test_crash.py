"""Crash safety: a child process writing in a loop is killed with SIGKILL at random moments (30 kills
in all). After every kill the vault opens, check() passes, every acknowledged write is there exactly
as written, and a write in flight at the kill is either wholly there or wholly absent."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
from conftest import id_vector, spawn_py

import sigmavault as sv

ADD_LOOP = """
import sys
import numpy as np
import sigmavault as sv
from conftest import id_vector

path, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
vault = sv.open(path)
col = vault.collection("crash", embedder=None, metric="ip")
print("ready", flush=True)
i = 0
while True:
    ids = [f"s{seed}-{i + j}" for j in range(int(rng.integers(1, 6)))]
    i += len(ids)
    print("a", *ids, flush=True)
    col.add(vectors=np.stack([id_vector(u) for u in ids]), ids=ids,
            texts=[f"unit {u} of run {seed}" for u in ids], metadata={"seed": seed})
    print("A", *ids, flush=True)  # acknowledged: add() returned
"""

MIXED_LOOP = """
import random, sys
import numpy as np
import sigmavault as sv
from conftest import id_vector

path, seed = sys.argv[1], int(sys.argv[2])
r = random.Random(seed)
vault = sv.open(path)
col = vault.collection("mixed", embedder=None, metric="ip")
alive = {u.id: u.metadata["n"] for u in col}
print("ready", flush=True)

def say(*words):
    print(*words, flush=True)

i = 0
while True:
    roll = r.random()
    if roll < 0.35 or len(alive) < 4:
        ids = [f"m{seed}-{i + j}" for j in range(3)]
        i += 3
        say("a", *ids)
        col.add(vectors=np.stack([id_vector(u, 0) for u in ids]), ids=ids, metadata={"n": 0},
                texts=[f"mixed unit {u}" for u in ids])
        alive.update(dict.fromkeys(ids, 0))
        say("A", *ids)
    elif roll < 0.6:
        a, b = r.sample(sorted(alive), 2)
        say("l", a, b)
        vault.link(a, b, kind="k")
        say("L", a, b)
    elif roll < 0.85:
        u = r.choice(sorted(alive))
        n = alive[u] + 1
        say("u", u, n)
        col.update(u, metadata={"n": n}, vector=id_vector(u, n))  # one atomic change of both
        alive[u] = n
        say("U", u, n)
    else:
        u = r.choice(sorted(alive))
        say("d", u)
        col.delete(u)
        del alive[u]
        say("D", u)
"""


def _kill_at_random(code: str, path: Path, seed: int, r: random.Random, *, work: float = 0.3) -> list[list[str]]:
    """Run ``code`` until SIGKILL (up to ``work`` s after it is ready); return its complete output lines."""
    child = spawn_py(code, str(path), str(seed))
    assert child.stdout is not None
    if seed % 3 == 0:
        time.sleep(r.uniform(0.0, 0.6))  # anywhere: during start-up, open, or writing
    else:
        ready = child.stdout.readline()
        assert ready == "ready\n", (ready, child.stderr.read() if child.stderr else "")
        time.sleep(r.uniform(0.0, work))
    child.send_signal(signal.SIGKILL)
    # NOTE: read through child.stdout, not communicate(): readline() above may have buffered
    # lines that communicate() (which reads the raw pipe) would never see.
    out = child.stdout.read()
    err = child.stderr.read() if child.stderr else ""
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, f"the child died on its own:\n{err}"
    complete = out if out.endswith("\n") else out[: out.rfind("\n") + 1]
    return [line.split() for line in complete.splitlines() if line and line != "ready"]


def _in_flight(lines: list[list[str]]) -> list[str] | None:
    """The write announced last but never acknowledged (the one the kill interrupted), if any."""
    return lines[-1] if lines and lines[-1][0].islower() else None


def test_sigkill_during_adds_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    r = random.Random(20261124)
    acked: list[str] = []
    kills = 0
    for seed in range(22):
        lines = _kill_at_random(ADD_LOOP, path, seed, r)
        kills += 1
        acked += [u for words in lines if words[0] == "A" for u in words[1:]]
        flight = _in_flight(lines)
        with sv.open(path) as vault:
            report = vault.check()
            assert report.ok, report.problems
            if not acked and "crash" not in vault.collections():
                continue
            col = vault.collection("crash", embedder=None)
            present = {u.id for u in col}
            assert set(acked) <= present, sorted(set(acked) - present)[:5]
            unknown = present - set(acked)
            if flight is not None and flight[0] == "a" and unknown:
                assert unknown == set(flight[1:])  # the interrupted batch committed: all of it
                acked += flight[1:]
            else:
                assert not unknown
            for uid in [u for words in lines if words[0] == "A" for u in words[1:]]:
                u = col.get(uid, touch=False)
                assert u.vector is not None and np.array_equal(u.vector, id_vector(uid)), uid
                assert u.text is not None and u.metadata == {"seed": seed}
            for hit in col.search(id_vector(acked[-1]), k=1, mode="vector"):
                assert hit.id in set(acked)
    assert kills == 22 and len(acked) > 50  # the kills landed amid real work


def _verify_mixed(vault: sv.Vault, model: dict[str, Any], lines: list[list[str]]) -> None:
    alive: dict[str, int] = model["alive"]
    for words in lines:
        if words[0] == "A":
            alive.update(dict.fromkeys(words[1:], 0))
        elif words[0] == "U":
            alive[words[1]] = int(words[2])
        elif words[0] == "L":
            model["links"].add((words[1], words[2]))
        elif words[0] == "D":
            alive.pop(words[1])
            model["gone"].add(words[1])
    flight = _in_flight(lines)
    col = vault.collection("mixed", embedder=None)
    present = {u.id: u for u in col}
    if flight is not None:  # the interrupted write: wholly there or wholly absent, then known
        op, args = flight[0], flight[1:]
        if op == "a":
            there = [u in present for u in args]
            assert all(there) or not any(there), there
            if all(there):
                alive.update(dict.fromkeys(args, 0))
        elif op == "u" and present[args[0]].metadata["n"] == int(args[1]):
            alive[args[0]] = int(args[1])
        elif op == "d" and args[0] not in present:
            alive.pop(args[0])
            model["gone"].add(args[0])
        elif op == "l" and any(e.target == args[1] for e in vault.neighbors(args[0])):
            model["links"].add((args[0], args[1]))
    assert set(present) == set(alive), set(present) ^ set(alive)
    assert not model["gone"] & set(present)
    for uid, n in alive.items():
        u = col.get(uid, touch=False)
        assert u.metadata == {"n": n}, (uid, u.metadata, n)
        assert u.vector is not None and np.array_equal(u.vector, id_vector(uid, n)), uid  # same commit
    for a, b in model["links"]:
        if a in alive and b in alive:
            assert any(e.target == b and e.kind == "k" for e in vault.neighbors(a)), (a, b)


def test_sigkill_during_link_update_delete_keeps_every_acknowledged_change(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    r = random.Random(7)
    model: dict[str, Any] = {"alive": {}, "links": set(), "gone": set()}
    ops: set[str] = set()
    for seed in range(1, 9):
        lines = _kill_at_random(MIXED_LOOP, path, seed, r, work=0.5)
        ops |= {words[0] for words in lines}
        with sv.open(path) as vault:
            report = vault.check()
            assert report.ok, report.problems
            if "mixed" in vault.collections():
                _verify_mixed(vault, model, lines)
    assert {"A", "L", "U", "D"} <= ops  # every kind of write was acknowledged at least once
    assert len(model["alive"]) > 10
