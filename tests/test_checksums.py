"""Per-row vector checksums (issue 10, defect 4): every flipped bit in a vector row is found by check(),
by get() of that unit, and by any search that would return it; none changes an answer silently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sigmavault as sv
from sigmavault.store.vectors import HEADER_SIZE

DIM = 16


def _flip(path: Path, offset: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("trial", range(40))
def test_every_flipped_bit_in_a_vector_row_is_found(tmp_path: Path, trial: int) -> None:
    rng = np.random.default_rng(trial)
    path = tmp_path / "v"
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None, metric="ip")
        ids = col.add(vectors=rng.standard_normal((30, DIM)), texts=[f"t{i}" for i in range(30)])
        cid = col.info.id
    row = int(rng.integers(0, 30))
    # NOTE: low mantissa bits included: those change no sign, so the semantic hash alone missed them
    _flip(path / "vectors" / f"{cid}.f32", HEADER_SIZE + row * DIM * 4 + int(rng.integers(0, DIM * 4)),
          int(rng.integers(0, 8)))
    with sv.open(path) as vault:
        report = vault.check()
        assert not report.ok and any("fail their checksum" in p for p in report.problems), report
        col = vault.collection("c", embedder=None)
        with pytest.raises(sv.Corrupted):
            col.get(ids[row])
        probe = np.asarray(np.frombuffer((path / "vectors" / f"{cid}.f32").read_bytes(), "<f4",
                                         count=DIM, offset=HEADER_SIZE + row * DIM * 4))
        if np.isfinite(probe).all() and np.any(probe):
            with pytest.raises(sv.Corrupted):
                col.search(probe, k=30)  # every row is a hit: the damaged one must not be scored silently
        others = [u for i, u in enumerate(ids) if i != row]
        assert all(col.get(u, touch=False).vector is not None for u in others)
