"""A full disk (issue 10, defect 3): on a real, small tmpfs mounted by the test, writes to every part
fail with StorageFull (never a bare OSError), nothing acknowledged is lost, and once space returns the
vault opens, passes check() and takes writes again."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sigmavault as sv
from sigmavault.errors import StorageFull, VaultError
from sigmavault.kv import Fingerprint, KVArrays

FP = Fingerprint(model="diskfull-test", dtype="float32", layers=2, kv_heads=2, head_dim=16)
DIM = 256


def _mount(point: Path, size: str, *, remount: bool = False) -> None:
    opts = f"remount,size={size}" if remount else f"size={size}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], check=True, capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root); the full-disk test cannot run here")
    point = tmp_path / "fs"
    point.mkdir()
    try:
        _mount(point, "1600k")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"this machine refuses to mount a tmpfs even as root ({exc}); the full-disk test cannot run")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def _fill(write: object, limit: int) -> tuple[list[object], StorageFull]:
    """Call ``write(i)`` until it raises StorageFull; return what it acknowledged and the error."""
    acked: list[object] = []
    for i in range(limit):
        try:
            acked.append(write(i))  # type: ignore[operator]
        except StorageFull as exc:
            return acked, exc
    raise AssertionError(f"{limit} writes fitted on a 1.6 MB filesystem")


def test_full_disk_raises_storage_full_and_loses_nothing(small_fs: Path) -> None:
    rng = np.random.default_rng(5)
    path = small_fs / "vault"
    vault = sv.open(path)
    col = vault.collection("c", embedder=None)
    vectors: dict[str, np.ndarray] = {}

    def add(i: int) -> list[str]:
        batch = rng.standard_normal((16, DIM)).astype(np.float32)
        ids = col.add(vectors=batch, texts=[f"unit {i} {j}" for j in range(16)], metadata={"i": i})
        for uid, v in zip(ids, batch, strict=True):
            vectors[uid] = v / np.linalg.norm(v)
        return ids

    added, err = _fill(add, 10_000)
    assert added and err.code == "storage_full" and "free disk space" in str(err)

    def save(i: int) -> str | None:
        keys, values = rng.standard_normal((2, 2, 2, 64, 16), dtype=np.float32)
        return vault.kv.save_arrays(FP, rng.integers(0, 5000, 64), KVArrays(keys, values, "float32")).ref

    # NOTE: the units filled the disk; KV chunks need their own space, so free a little for them first.
    _mount(small_fs, "1800k", remount=True)
    saved, kv_err = _fill(save, 10_000)
    assert kv_err.code == "storage_full"
    outcomes: dict[str, int] = {}
    for i in range(50):  # every other part fails the same way, never with a bare OSError
        for call in (
            lambda i=i: vault.sessions.open(f"s{i}", metadata={"pad": "x" * 4000}),
            lambda i=i: vault.link(added[0][0], [u for ids in added[1:] for u in ids], kind=f"k{i}"),
            lambda: vault.policies.put("rule", {"pad": "z" * 4000}),
            lambda: col.add(vectors=rng.standard_normal((64, DIM)), texts=["late"] * 64),
        ):
            try:
                call()
                outcomes["ok"] = outcomes.get("ok", 0) + 1
            except VaultError as exc:  # StorageFull, or e.g. a session id taken by an earlier success
                assert exc.code != "vault_error", exc
                outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
    print("disk-full outcomes:", outcomes, "units acknowledged:", sum(map(len, added)), "kv saves:", len(saved))
    assert outcomes.get("storage_full", 0) >= 100

    _mount(small_fs, "64m", remount=True)  # space returns
    vault.close()
    with sv.open(path) as again:
        report = again.check()
        assert report.ok, report.problems
        col = again.collection("c", embedder=None)
        for ids in added:
            for uid in ids:
                np.testing.assert_allclose(col.get(uid, touch=False).vector, vectors[uid], rtol=1e-6)
        for ref in saved:
            assert ref is not None and again.kv.load_ref_arrays(FP, ref)[0].tokens >= 1
        assert len(col.add(vectors=rng.standard_normal((4, DIM)), texts=["after"] * 4)) == 4
        assert again.check().ok


def test_a_bulk_add_that_fills_the_disk_in_its_writer_thread_raises_and_leaves_nothing(small_fs: Path) -> None:
    """Vectors of a bulk add are written block by block on a worker thread; a block that does not fit
    fails the add with StorageFull (the later blocks are drained, not left waiting), nothing is stored."""
    rng = np.random.default_rng(6)
    path = small_fs / "vault"
    vault = sv.open(path)
    col = vault.collection("c", embedder=None)
    rows = 5 * 8192  # NOTE: five blocks (2.6 MB of 16-d rows) for three buffers on a 1.6 MB filesystem
    with pytest.raises(StorageFull):
        col.add(vectors=rng.standard_normal((rows, 16)).astype(np.float32), ids=[f"u{i}" for i in range(rows)])
    assert len(col) == 0
    vault.close()
    _mount(small_fs, "64m", remount=True)
    with sv.open(path) as vault:
        assert len(vault.collection("c", embedder=None)) == 0
        assert vault.check().ok
        col = vault.collection("c", embedder=None)
        col.add(vectors=rng.standard_normal((5000, 16)).astype(np.float32), ids=[f"v{i}" for i in range(5000)])
        assert len(col) == 5000 and vault.check().ok
