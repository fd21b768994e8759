"""No search builds an index: the work runs on a background thread, and searches meanwhile answer
exactly (or from the previous index plus an exact scan of the newer rows). Each build is held at a
known point through the vault's progress reporter, so every test sees it in flight, without sleeps."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from conftest import spawn_py

import sigmavault as sv
from sigmavault.units.indexes import TAIL_MAX

DIM = 32


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((50, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 50, n)] + 0.7 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


DATA = vectors(4000, seed=1)
QUERIES = vectors(20, seed=2)
IDS = [f"u{i}" for i in range(len(DATA))]


def exact(data: np.ndarray, ids: list[str], k: int = 10) -> list[list[str]]:
    order = np.argsort(-(QUERIES @ data.T), axis=1, kind="stable")[:, :k]
    return [[ids[j] for j in row] for row in order]


class Gate:
    """A progress reporter that holds the background build at its first report until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.heard: list[tuple[str, int, int]] = []

    def __call__(self, label: str, done: int, total: int) -> None:
        self.heard.append((label, done, total))
        self.started.set()
        assert self.release.wait(timeout=120), "the test never released the build"


def test_an_add_builds_in_the_background_and_searches_meanwhile_are_exact(tmp_path: Path) -> None:
    gate = Gate()
    with sv.open(tmp_path / "v", progress=gate) as vault:
        col = vault.collection("c", embedder=None, index="hnsw")
        col.add(vectors=DATA, ids=IDS)
        assert gate.started.wait(timeout=120)  # the add started the build; it is held at its first report
        info = col.index_info()
        assert info["building"] is True and "loaded" not in info and "file" not in info
        found = [[h.id for h in hits] for hits in col.search_batch(QUERIES, 10)]
        single = [h.id for h in col.search(QUERIES[0], 10)]
        assert found == exact(DATA, IDS) and single == found[0]  # exact answers, not blocked by the build
        gate.release.set()
        info = col.wait_index()
        assert "building" not in info and info["loaded"]["entries"] == len(DATA)
        assert info["file"]["covers"] == len(DATA)
    assert {label for label, _, _ in gate.heard} == {"indexing c (hnsw, 4,000 vectors): no index file yet"}


def test_a_search_during_an_extension_uses_the_old_index_plus_an_exact_tail(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        vault.collection("c", embedder=None, index="ivf-rabitq").add(vectors=DATA, ids=IDS)
    gate = Gate()
    extra = vectors(TAIL_MAX + 10, seed=3)
    extra[:3] = QUERIES[:3]  # each the exact match of its query
    with sv.open(path, progress=gate) as vault:
        col = vault.collection("c", embedder=None)
        assert col.index_info()["file"]["covers"] == len(DATA)  # built at the first session's close
        col.add(vectors=extra, ids=[f"x{i}" for i in range(len(extra))])
        assert gate.started.wait(timeout=120)
        assert [h[0].id for h in col.search_batch(QUERIES[:3], 1)] == ["x0", "x1", "x2"]
        assert col.search(QUERIES[1], 1)[0].id == "x1"
        info = col.index_info()
        assert info["building"] is True and info["loaded"]["covers"] == len(DATA)
        gate.release.set()
        info = col.wait_index()
    rows = len(DATA) + len(extra)
    assert info["loaded"]["covers"] == rows and info["file"]["covers"] == rows
    assert any("adding 8,202 new vectors" in label for label, _, _ in gate.heard)


def test_close_during_a_build_finishes_it_and_the_next_open_needs_no_work(tmp_path: Path) -> None:
    path = tmp_path / "v"
    started = threading.Event()
    with sv.open(path, progress=lambda label, done, total: started.set()) as vault:
        col = vault.collection("c", embedder=None, index="hnsw")
        col.add(vectors=DATA, ids=IDS)
        assert started.wait(timeout=120)
    # NOTE: close() returned only after the build was written
    with sv.open(path, progress=lambda *a: (_ for _ in ()).throw(AssertionError("no build expected"))) as vault:
        col = vault.collection("c", embedder=None)
        hits = col.search_batch(QUERIES, 10)
        info = col.index_info()
        assert info["loaded"]["covers"] == len(DATA) and "building" not in info
    truth = exact(DATA, IDS)
    recall = np.mean([len({h.id for h in f} & set(t)) / 10 for f, t in zip(hits, truth, strict=True)])
    assert recall >= 0.95


def test_a_crash_in_the_middle_of_a_build_leaves_a_usable_vault(tmp_path: Path) -> None:
    path = tmp_path / "v"
    proc = spawn_py(
        """
        import os, sys, numpy as np, sigmavault as sv
        rng = np.random.default_rng(1)
        centers = rng.standard_normal((50, 32)).astype(np.float32)
        x = centers[rng.integers(0, 50, 4000)] + 0.7 * rng.standard_normal((4000, 32)).astype(np.float32)
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

        def die(label, done, total):
            if done > 0:  # the vectors are in the index, nothing is written yet
                os._exit(9)

        with sv.open(sys.argv[1], progress=die) as vault:
            vault.collection("c", embedder=None, index="hnsw").add(vectors=x, ids=[f"u{i}" for i in range(4000)])
        """,
        str(path),
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 9, err
    assert not list((path / "index").glob("*.faiss"))
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        assert len(col) == len(DATA)
        assert [[h.id for h in hits] for hits in col.search_batch(QUERIES, 10)] == exact(DATA, IDS)
        info = col.wait_index()
        assert info["file"]["covers"] == len(DATA) and vault.check().ok
    assert len(list((path / "index").glob("*.faiss"))) == 1


def test_search_batch_returns_vectors_when_asked(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        col = vault.collection("c", embedder=None)
        col.add(vectors=DATA[:50], ids=IDS[:50])
        plain = col.search_batch(QUERIES[:3], 4)
        full = col.search_batch(QUERIES[:3], 4, include=("vector",))
        assert [[h.id for h in hs] for hs in full] == [[h.id for h in hs] for hs in plain]
        assert all(h.vector is None for hs in plain for h in hs)
        for hits in full:
            for h in hits:
                np.testing.assert_allclose(h.vector, DATA[int(h.id[1:])], rtol=1e-6)
        try:
            col.search_batch(QUERIES[:1], 4, include=("text",))  # type: ignore[arg-type]
        except sv.InvalidInput:
            pass
        else:
            raise AssertionError("include=('text',) was accepted")
