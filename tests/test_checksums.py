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
    _flip(
        path / "vectors" / f"{cid}.f32",
        HEADER_SIZE + row * DIM * 4 + int(rng.integers(0, DIM * 4)),
        int(rng.integers(0, 8)),
    )
    with sv.open(path) as vault:
        report = vault.check()
        assert not report.ok and any("fail their checksum" in p for p in report.problems), report
        col = vault.collection("c", embedder=None)
        with pytest.raises(sv.Corrupted):
            col.get(ids[row])
        probe = np.asarray(
            np.frombuffer(
                (path / "vectors" / f"{cid}.f32").read_bytes(), "<f4", count=DIM, offset=HEADER_SIZE + row * DIM * 4
            )
        )
        if np.isfinite(probe).all() and np.any(probe):
            with pytest.raises(sv.Corrupted):
                col.search(probe, k=30)  # every row is a hit: the damaged one must not be scored silently
        others = [u for i, u in enumerate(ids) if i != row]
        assert all(col.get(u, touch=False).vector is not None for u in others)


def test_a_flipped_value_inside_a_unit_record_is_found(tmp_path: Path) -> None:
    """SQLite checks page structure, not values: the record checksum finds a changed kind or metadata."""
    path = tmp_path / "v"
    with sv.open(path) as vault:
        col = vault.collection("c", embedder=None)
        ids = col.add(
            vectors=np.eye(3, DIM) + 0.1,
            texts=["a", "b", "c"],
            kind=["unit", "zqxkindmarker", "unit"],
            metadata=[{}, {"tag": "zqxmetamarker"}, {}],
        )
    data = (path / "vault.db").read_bytes()
    for marker in (b"zqxkindmarker", b"zqxmetamarker"):
        assert data.count(marker) == 1
        broken = tmp_path / marker.decode()
        broken.mkdir()
        (broken / "vault.db").write_bytes(data.replace(marker, marker.replace(b"zqx", b"zqy")))
        for name in ("vectors",):
            (broken / name).mkdir()
            for f in (path / name).iterdir():
                (broken / name / f.name).write_bytes(f.read_bytes())
        with sv.open(broken) as vault:
            report = vault.check()
            assert any("records fail their checksum" in p for p in report.problems), report
            with pytest.raises(sv.Corrupted):
                vault.get(ids[1])
            assert vault.get(ids[0]).text == "a"


def test_record_checksums_hold_when_sqlite_parses_the_time_one_ulp_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's decimal parser is not always correctly rounded; a unit added at such a moment still checks."""
    import random
    import sqlite3
    import time

    conn, rng = sqlite3.connect(":memory:"), random.Random(5)
    odd = next(
        t
        for t in (1.8e9 + rng.random() * 1e6 for _ in range(2_000_000))
        if conn.execute(f"SELECT {t!r}").fetchone()[0] != t
    )
    monkeypatch.setattr(time, "time", lambda: odd)
    with sv.open(tmp_path / "v") as vault:
        col = vault.collection("c", embedder=None)
        uid = col.add(vectors=np.ones((1, DIM)), texts=["at an odd moment"])[0]
        assert col.get(uid, touch=False).text == "at an odd moment"
        assert vault.check().ok


# Field values whose reprs differ in quoting, escaping, sign or type, for the bulk record checksums.
_FIELD_VALUES = [None, 0, 1, -1, 2**70, True, 0.0, -0.0, 1.5, 1764691234.123456, float("inf"), "", "a'b", 'a"b']
_FIELD_VALUES += ["a'\"b", "%s %r %%", "line\nbreak\x00", "é\u2028", "\ud800", b"\x00'", "unit", "x" * 40]


@pytest.mark.parametrize("seed", range(5))
def test_bulk_record_checksums_equal_the_repr_of_each_row(seed: int) -> None:
    """unit_crcs and crcs_of_rows print constant columns once; their CRCs must equal repr() row by row."""
    import random
    from itertools import repeat

    from sigmavault.units import integrity

    rng = random.Random(seed)
    for _ in range(400):
        n = rng.randint(1, 6)
        columns = [[rng.choice(_FIELD_VALUES)] * n if rng.random() < 0.5 else rng.choices(_FIELD_VALUES, k=n)]
        columns += [
            [rng.choice(_FIELD_VALUES)] * n if rng.random() < 0.6 else rng.choices(_FIELD_VALUES, k=n) for _ in range(9)
        ]
        rows = list(zip(*columns, strict=True))
        expected = [integrity.unit_crc(*row) for row in rows]
        assert integrity.crcs_of(rows) == expected
        assert integrity.crcs_of_rows([(*row, "extra") for row in rows]) == expected
        assert integrity.unit_crcs(*columns) == expected
        constants = [repeat(c[0]) if i and len({repr(v) for v in c}) == 1 else c for i, c in enumerate(columns)]
        assert integrity.unit_crcs(*constants) == expected
