"""Turning search rows into hits (units.read): metadata decoded exactly as stored, no dict shared
between hits, and damaged records or vector rows refused rather than returned."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import unit_vectors

import sigmavault as sv
from sigmavault.units.integrity import register
from sigmavault.units.read import load_meta, verify_rows


def test_load_meta_reads_what_json_loads_reads() -> None:
    big = '{"n":123456789012345678901234567890,"x":-0.0,"s":"\\u00e9\\ud83d\\ude00"}'
    for stored in ('{"a":1}', big, ' {"a": [1, 2.5, null, true]} ', '{"a":1,"a":2}', '{"k":"\\ud800"}'):
        assert load_meta(stored) == json.loads(stored)
    assert load_meta(big)["n"] == 123456789012345678901234567890  # exact: never read as a float
    first, second = load_meta("{}"), load_meta("{}")
    assert first == {} and first is not second  # every hit owns its dict
    for damaged in ('{"a":1} x', '{"a":', "[1, 2]", '"text"', ""):
        with pytest.raises(ValueError):
            load_meta(damaged)


def test_verify_rows_finds_a_changed_row_and_skips_unchecked_ones() -> None:
    import zlib

    matrix = unit_vectors(np.random.default_rng(0), 50, 16)
    found = [(r, f"u{r}", None, "{}", zlib.crc32(matrix[r].tobytes())) for r in (3, 7, 49)]
    verify_rows(matrix, found)
    verify_rows(matrix[::2], [(1, "u", None, "{}", None)])  # no CRC stored (an older vault): not checked
    strided = matrix[:, :8]  # not contiguous: checked through a copy, same CRCs
    verify_rows(strided, [(2, "u2", None, "{}", zlib.crc32(np.ascontiguousarray(strided[2]).tobytes()))])
    damaged = matrix.copy()
    damaged[7, 5] = np.nextafter(damaged[7, 5], np.float32(2))
    with pytest.raises(sv.Corrupted, match="'u7'"):
        verify_rows(damaged, found)


def test_batch_hits_of_the_same_unit_do_not_share_metadata(vault: sv.Vault) -> None:
    col = vault.collection("c", embedder=None)
    vectors = unit_vectors(np.random.default_rng(1), 200, 16)
    meta = [{"i": i, "big": 2**70 + i, "tags": ["x"]} for i in range(200)]
    ids = col.add(vectors=vectors, metadata=meta)
    lists = col.search_batch(np.stack([vectors[4], vectors[4], vectors[9]]), k=5)
    assert [h.id for h in lists[0]] == [h.id for h in lists[1]] and lists[0][0].id == ids[4]
    assert lists[0][0].metadata == {"i": 4, "big": 2**70 + 4, "tags": ["x"]}
    lists[0][0].metadata["i"] = -1
    assert lists[1][0].metadata["i"] == 4
    assert col.search(vectors[4], k=1)[0].metadata == meta[4]
    one = col.search(vectors[9], k=3)
    assert [h.metadata["i"] for h in one] == [ids.index(h.id) for h in one]


def test_a_search_hit_with_a_damaged_metadata_record_raises(vault_path: Path) -> None:
    vectors = unit_vectors(np.random.default_rng(2), 50, 16)
    with sv.open(vault_path) as vault:
        ids = vault.collection("c", embedder=None).add(vectors=vectors, metadata=[{"i": i} for i in range(50)])
    conn = sqlite3.connect(vault_path / "vault.db")
    register(conn)  # NOTE: the record-checksum trigger calls it
    with conn:
        conn.execute("UPDATE units SET metadata = '[1,2]' WHERE uid = ?", (ids[10],))
    conn.close()
    with sv.open(vault_path) as vault:
        col = vault.collection("c", embedder=None)
        assert col.search(vectors[20], k=1)[0].id == ids[20]
        with pytest.raises(sv.Corrupted, match="search hit is damaged"):
            col.search(vectors[10], k=1)
