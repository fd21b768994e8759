"""Bundles under real processes: export while another process writes, imports killed with SIGKILL."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
from conftest import spawn_py

import sigmavault as sv

WRITER = """
import sys, time, numpy as np, sigmavault as sv
rng = np.random.default_rng(5)
with sv.open(sys.argv[1]) as vault:
    docs = vault.collection("docs", embedder=None)
    print("ready", flush=True)
    for b in range(100000):
        with vault.transaction():  # a batch and its edges commit together
            ids = docs.add([f"batch {b} unit {i}" for i in range(50)], vectors=rng.standard_normal((50, 16)),
                           ids=[f"b{b}-{i}" for i in range(50)])
            vault.link(ids[0], ids[1:], kind="batch")
        time.sleep(0.002)  # NOTE: SQLite's busy wait is not fair; a writer that never pauses starves the export
"""


def test_export_while_another_process_writes_is_consistent(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    sv.open(path).close()
    child = spawn_py(WRITER, str(path))
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        reports = []
        for i in range(3):
            reports.append(sv.bundle.export(path, tmp_path / f"b{i}.tar"))
            time.sleep(0.2)
    finally:
        child.kill()
        child.wait()
    sizes = []
    for i, report in enumerate(reports):
        sv.bundle.import_bundle(tmp_path / f"b{i}.tar", tmp_path / f"copy{i}")
        with sv.open(tmp_path / f"copy{i}") as vault:
            assert vault.check().ok
            docs = vault.collection("docs", embedder=None)
            n = len(docs)
            assert n % 50 == 0 and vault.stats()["edges"] == n // 50 * 49  # whole batches, with their edges
            for unit in list(docs)[:: max(1, n // 20)]:
                assert docs.get(unit.id, touch=False).vector is not None
            sizes.append(n)
        assert report.generation == i + 1
    assert sizes == sorted(sizes) and sizes[-1] > 0


IMPORTER = """
import sys, sigmavault as sv
print("ready", flush=True)
while True:
    for name in ("a.tar", "b.tar"):
        sv.bundle.import_bundle(sys.argv[1] + "/" + name, sys.argv[1] + "/replica", overwrite=True)
"""


def test_an_import_killed_at_any_moment_leaves_one_whole_vault(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("a", 3000), ("b", 5000)):
        with sv.open(tmp_path / name) as vault:
            vault.collection("docs", embedder=None).add(vectors=rng.standard_normal((n, 64)))
        sv.bundle.export(tmp_path / name, tmp_path / f"{name}.tar")
    sv.bundle.import_bundle(tmp_path / "a.tar", tmp_path / "replica")
    for delay in (0.15, 0.4, 0.7):
        child = spawn_py(IMPORTER, str(tmp_path))
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        with sv.open(tmp_path / "replica") as vault:
            assert len(vault.collection("docs", embedder=None)) in (3000, 5000)
            assert vault.check().ok
    sv.bundle.import_bundle(tmp_path / "b.tar", tmp_path / "replica", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a.tar", "b", "b.tar", "replica"]  # leftovers collected
