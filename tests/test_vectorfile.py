"""The on-disk formats: vector files (header, rows, crash tails) and self-checking blob files.

Fuzz-ish: random bytes, flipped bits and truncations fed to the readers must raise Corrupted,
never anything else, and never hand out damaged data."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sigmavault as sv
from sigmavault.store import VectorFile, read_blob, write_blob
from sigmavault.store.vectors import HEADER_SIZE

MAGIC = b"SVTEST\x00\x01"
DIM = 6


def _vector_file(path: Path, rows: int = 3) -> np.ndarray:
    data = np.arange(rows * DIM, dtype=np.float32).reshape(rows, DIM)
    vf = VectorFile(path, DIM)
    vf.write_rows(0, data)
    vf.close()
    return data


def test_rows_round_trip_through_the_map(tmp_path: Path) -> None:
    path = tmp_path / "v.f32"
    vf = VectorFile(path, DIM)
    assert vf.rows_on_disk() == 0 and vf.view(0).shape == (0, DIM)
    first = np.random.default_rng(0).standard_normal((4, DIM)).astype(np.float32)
    vf.write_rows(0, first)
    view = vf.view(4)
    np.testing.assert_array_equal(view, first)
    assert not view.flags.writeable
    vf.write_rows(4, first[:2] * 2)
    np.testing.assert_array_equal(vf.view(6)[4:], first[:2] * 2)  # the map grows with the file
    np.testing.assert_array_equal(view, first)  # an older view stays valid
    with pytest.raises(sv.DimensionMismatch):
        vf.write_rows(6, np.ones((1, DIM + 1), dtype=np.float32))
    with pytest.raises(sv.Corrupted):
        vf.view(7)  # more rows than the file holds
    vf.truncate(5)
    assert vf.rows_on_disk() == 5 and path.stat().st_size == HEADER_SIZE + 5 * DIM * 4
    vf.close()
    again = VectorFile(path, DIM, readonly=True)
    np.testing.assert_array_equal(again.view(5)[:4], first)
    again.close()


def test_header_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "v.f32"
    _vector_file(path)
    with pytest.raises(sv.Corrupted, match="catalogue says"):
        VectorFile(path, DIM + 1)
    with pytest.raises(sv.Corrupted, match="missing"):
        VectorFile(tmp_path / "absent.f32", DIM, readonly=True)
    head = bytearray(path.read_bytes())
    head[8:12] = struct.pack("<I", 99)
    path.write_bytes(bytes(head))
    with pytest.raises(sv.Corrupted, match="newer"):
        VectorFile(path, DIM)


def test_every_single_bit_flip_in_the_header_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "v.f32"
    _vector_file(path)
    good = path.read_bytes()
    for bit in range(HEADER_SIZE * 8):
        damaged = bytearray(good)
        damaged[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(sv.Corrupted):
            VectorFile(path, DIM, readonly=True).close()


@pytest.mark.parametrize("size", [1, 7, 15, 16, 40, 63])
def test_a_truncated_header_is_caught(tmp_path: Path, size: int) -> None:
    path = tmp_path / "v.f32"
    _vector_file(path)
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(sv.Corrupted):
        VectorFile(path, DIM)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.binary(min_size=0, max_size=HEADER_SIZE + 3 * DIM * 4), readonly=st.booleans())
def test_fuzz_random_vector_file_bytes(tmp_path: Path, head: bytes, readonly: bool) -> None:
    path = tmp_path / "fuzz.f32"
    path.write_bytes(head)
    try:
        vf = VectorFile(path, DIM, readonly=readonly)
    except sv.Corrupted:
        return
    # opened: only an empty file (made fresh) or a valid header can get here
    try:
        assert head == b"" or head[:8] == b"SVVECTR\x00"
        view = vf.view(vf.rows_on_disk())
        assert view.shape[1] == DIM
    finally:
        vf.close()


def test_a_crash_tail_is_only_cut_past_the_watermark(tmp_path: Path) -> None:
    path = tmp_path / "v.f32"
    data = _vector_file(path, rows=3)
    with path.open("ab") as f:
        f.write(b"\x7f" * (2 * DIM * 4 + 5))  # two whole rows and a torn one: an unreferenced tail
    vf = VectorFile(path, DIM)
    assert vf.rows_on_disk() == 5
    vf.truncate(3)
    np.testing.assert_array_equal(vf.view(3), data)
    assert path.stat().st_size == HEADER_SIZE + 3 * DIM * 4
    vf.close()


# -- blob files ---------------------------------------------------------------------------------


def test_blob_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "b.blob"
    n = write_blob(path, b"payload bytes", magic=MAGIC, version=1, flags=3)
    assert n == path.stat().st_size
    assert read_blob(path, magic=MAGIC) == (1, 3, b"payload bytes")
    write_blob(path, b"", magic=MAGIC)
    assert read_blob(path, magic=MAGIC) == (1, 0, b"")
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.blob"]  # no temp files left
    with pytest.raises(ValueError):
        write_blob(path, b"x", magic=b"short")


def test_blob_readers_refuse_what_they_cannot_trust(tmp_path: Path) -> None:
    path = tmp_path / "b.blob"
    write_blob(path, b"0123456789" * 10, magic=MAGIC)
    with pytest.raises(sv.Corrupted, match="magic"):
        read_blob(path, magic=b"OTHERMAG")
    write_blob(path, b"x", magic=MAGIC, version=2)
    with pytest.raises(sv.Corrupted, match="newer"):
        read_blob(path, magic=MAGIC, max_version=1)
    assert read_blob(path, magic=MAGIC, max_version=2)[2] == b"x"
    with pytest.raises(sv.Corrupted, match="missing"):
        read_blob(tmp_path / "nope.blob", magic=MAGIC)
    (tmp_path / "dir.blob").mkdir()
    with pytest.raises(sv.Corrupted):
        read_blob(tmp_path / "dir.blob", magic=MAGIC)


def test_every_bit_flip_and_truncation_of_a_blob_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "b.blob"
    write_blob(path, bytes(range(16)), magic=MAGIC, flags=1)
    good = path.read_bytes()
    for bit in range(len(good) * 8):  # header included: flags and version are covered by the digest
        damaged = bytearray(good)
        damaged[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(sv.Corrupted):
            read_blob(path, magic=MAGIC, max_version=2**32 - 1)
    for size in range(len(good)):
        path.write_bytes(good[:size])
        with pytest.raises(sv.Corrupted):
            read_blob(path, magic=MAGIC)
    path.write_bytes(good + b"\0")
    with pytest.raises(sv.Corrupted):
        read_blob(path, magic=MAGIC)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(max_size=300),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 400)),
    noise=st.binary(max_size=400),
)
def test_fuzz_damaged_blobs(
    tmp_path: Path, payload: bytes, flips: list[tuple[int, int]], cut: int | None, noise: bytes
) -> None:
    path = tmp_path / "f.blob"
    write_blob(path, payload, magic=MAGIC)
    data = bytearray(path.read_bytes())
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if cut is not None:
        data = data[:cut]
    for blob in (bytes(data), noise):
        path.write_bytes(blob)
        try:
            version, flags, got = read_blob(path, magic=MAGIC)
        except sv.Corrupted:
            continue
        # only an undamaged file passes; XOR flips that cancel out restore it exactly
        assert blob == path.read_bytes() and (version, flags, got) == (1, 0, payload)


def test_a_vault_with_a_damaged_vector_header_opens_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "vault"
    with sv.open(path) as vault:
        vault.collection("c", embedder=None).add(vectors=np.eye(4, dtype=np.float32), ids=list("abcd"))
    vec_file = next((path / "vectors").iterdir())
    with vec_file.open("r+b") as f:
        f.seek(0)
        f.write(b"GARBAGE!")
    os.sync()
    with sv.open(path) as vault:
        report = vault.check()
        assert not report.ok and any("bad magic" in p for p in report.problems)
        with pytest.raises(sv.Corrupted):
            vault.collection("c", embedder=None).search(np.ones(4, dtype=np.float32))
        assert vault.collection("c", embedder=None).all().__next__().id == "a"  # records still readable
