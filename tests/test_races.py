"""Reads racing writes on one vault (issue 10, defect 1): a filtered search, a get or a similar-search
taken while another thread (or process) adds must see one consistent state, never a raw IndexError or
ValueError, and every hit must be a unit that is really there."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np
from conftest import spawn_py

import sigmavault as sv

ROUNDS = 300


def _reader(col: sv.Collection, stop: threading.Event, errors: list[BaseException], seen: list[int]) -> None:
    q = np.ones(16, dtype=np.float32)
    try:
        while not stop.is_set():
            for where in ({"x": None}, {"x": 1}, None):
                hits = col.search(q, k=5, where=where)
                seen.append(len(hits))
                for h in hits:
                    with contextlib.suppress(sv.NotFound):  # documented: deleted by the writer since the search
                        assert col.get(h.id, touch=False).vector is not None
            col.search_batch(np.ones((2, 16), dtype=np.float32), k=3, where={"x": 1}, states="all")
            col.find_similar(np.ones(16, dtype=np.float32), threshold=0.5, k=3)
    except BaseException as exc:  # NOTE: handed to the test thread, which fails with it
        errors.append(exc)


def test_filtered_search_and_get_race_adds_in_one_process(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    with sv.open(tmp_path / "v") as vault:
        col = vault.collection("c", embedder=None)
        col.add(vectors=rng.random((3, 16)) + 0.1, texts=["t"] * 3, metadata={"x": 1})
        stop, errors, seen = threading.Event(), [], []
        readers = [threading.Thread(target=_reader, args=(col, stop, errors, seen)) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            for i in range(ROUNDS):
                ids = col.add(vectors=rng.random((3, 16)) + 0.1, texts=["t"] * 3, metadata={"x": i % 2})
                if i % 10 == 0:
                    col.update(ids[0], vector=rng.random(16) + 0.1)
                if i % 15 == 0:
                    col.delete(ids[1])
                if errors:
                    break
        finally:
            stop.set()
            for t in readers:
                t.join()
        assert not errors, repr(errors[0])
        assert seen and max(seen) == 5


WRITER = """
import sys
import numpy as np
import sigmavault as sv

rng = np.random.default_rng(11)
with sv.open(sys.argv[1]) as vault:
    col = vault.collection("c", embedder=None)
    print("ready", flush=True)
    for i in range(int(sys.argv[2])):
        col.add(vectors=rng.random((3, 16)) + 0.1, texts=["t"] * 3, metadata={"x": i % 2})
print("done", flush=True)
"""


def test_filtered_search_races_adds_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        col.add(vectors=np.ones((3, 16)), texts=["t"] * 3, metadata={"x": 1})
        child = spawn_py(WRITER, str(path), str(ROUNDS))
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        q = np.ones(16, dtype=np.float32)
        searches = 0
        while child.poll() is None:
            for h in col.search(q, k=5, where={"x": None}):
                assert col.get(h.id, touch=False).text == "t"
            col.search(q, k=5, where={"x": 1})
            searches += 1
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert searches > 0
        assert len(col) == 3 + 3 * ROUNDS
        assert vault.check().ok
