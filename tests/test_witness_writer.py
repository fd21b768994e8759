"""The witness writer: what readers see of entries in flight, the chain format, and what record() admits."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sigmavault as sv
from sigmavault.witness import chain
from sigmavault.witness.chain import batch_hash
from sigmavault.witness.records import digest


def test_a_query_waits_for_entries_the_writer_took_but_has_not_committed(vault: sv.Vault) -> None:
    w = vault.witness
    w.configure(batch_size=1, flush_interval=3600)
    w.record({"request_id": "first"})
    w.flush()
    writer = w._writer
    assert writer is not None
    taken, release, flushing = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:  # on the writer thread, between taking the entry and committing it
        taken.set()
        release.wait()

    def flush() -> None:
        flushing.set()
        real_flush()

    real_flush = writer.flush
    writer.before_commit = hold
    writer.flush = flush  # type: ignore[method-assign]
    # the writer goes on only once the reader asked for a flush: a reader that skipped it would count 1
    releaser = threading.Thread(target=lambda: (flushing.wait(), release.set()))
    releaser.start()
    try:
        w.record({"request_id": "second"})  # a full batch: the writer takes it and stops in hold()
        taken.wait()
        assert writer.queued == 0  # out of the queue, not committed
        counted = w.count()
    finally:
        flushing.set()
        release.set()
        releaser.join()
        writer.before_commit = None
    assert counted == 2
    assert [e.request_id for e in w.query(order="oldest")] == ["first", "second"]


def test_entry_digests_and_batch_hashes_keep_their_format() -> None:
    # NOTE: computed by the writer before its per-record path was rewritten; a vault written by any
    # version must keep verifying, so these bytes may never change.
    rows = [
        (7, "req-1", "s1", 1700000000123, "m-a", 0.75, 1.5, 2.0, 0.25, 40.0, 44.0, 120, 30, None, 0,
         '{"c":["u1","u2"],"r":{"t":0.7}}', np.arange(4, dtype="<f4").tobytes(), None),
        (8, "r\u00e9q", None, 5, None, None, None, None, None, None, None, None, None, "Timeout", 1,
         b"\x01sealed", None, b"\x00" * 8),
        (9, "x", None, 0, None, -0.0, 0.0, None, None, None, None, 0, None, None, 0, None, None, None),
    ]  # fmt: skip
    assert [digest(r).hex() for r in rows] == [
        "40c0ff67348d14dee07f9da22e7a05693faa3ba74c3aac56a04f8de2fcec0d78",
        "55436149e3c9a4aa21fce4323a8173a5595ef113ab15d47100915e7274dd321f",
        "c20662a7a417ec10d7146ca6915bfdecaa29d77008454611e17558ead5bfcbb0",
    ]
    chained = batch_hash(bytes(32), 1, 7, 3, b"".join(digest(r) for r in rows))
    assert chained.hex() == "f173d77bee882239e55618e0b51cc0cbb4cc7e1dbe73598ac747c172a5854ad0"
    for bad in ((*rows[0][:3], "late", *rows[0][4:]), (*rows[0][:1], b"bytes-id", *rows[0][2:]), rows[0][:10]):
        with pytest.raises(TypeError):
            digest(bad)


def test_commits_of_every_size_keep_one_valid_chain(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        w = vault.witness
        w.configure(batch_size=7, flush_interval=3600, queue_size=100_000)
        total = 0
        for size in (1, 2, 3, 1024, 1025, 2500, 9000, 77):  # one commit each (9000: two commits)
            for i in range(size):
                w.record({"request_id": f"r{total + i}", "model": f"m{i % 3}", "total_ms": float(i)})
            w.flush()
            total += size
        assert w.count() == total and w.status()["persisted"] == total
        report = vault.check()
        assert report.ok, report.problems
        oldest = w.query(order="oldest", limit=None, embeddings=False)
        assert [e.seq for e in oldest] == list(range(1, total + 1))
        assert [e.request_id for e in oldest] == [f"r{i}" for i in range(total)]


def test_two_writers_on_one_vault_chain_after_each_other(vault_path: Path) -> None:
    # each writer builds its rows from the chain head it saw last; the other one moved it meanwhile
    with sv.open(vault_path) as a, sv.open(vault_path) as b:
        for round_ in range(3):
            for vault, name in ((a, "a"), (b, "b")):
                for i in range(5):
                    vault.witness.record({"request_id": f"{name}{round_}-{i}", "model": name})
                vault.witness.flush()
        report = a.check()
        assert report.ok, report.problems
        ids = [e.request_id for e in b.witness.query(order="oldest", limit=None)]
        assert ids == [f"{n}{r}-{i}" for r in range(3) for n in "ab" for i in range(5)]


@pytest.mark.parametrize(
    "entry",
    [
        {"request_id": "lone \ud800 surrogate"},  # UTF-8 cannot hold it, so SQLite could never store it
        {"session_id": "s\udfff"},
        {"model": "m\ud800"},
        {"error_type": "E\ud800"},
        {"request_id": "nul\0"},
        {"request_id": "x" * 1025},
        {"prompt_tokens": 1 << 63},  # beyond SQLite's signed 64-bit integers
        {"completion_tokens": -1},
        {"quality": float("inf")},
        {"total_ms": np.float64("nan")},
        {"retrieval_ms": True},
        {"error_message": 42},
        {"routing": {"x": float("nan")}},
        {"routing": {"x": [1.0, float("inf")]}},
        {"routing": {"x": {"nested": 1}}},
        {"routing": {1: "int key"}},
    ],
)
def test_what_the_writer_could_not_store_is_refused_by_record(vault: sv.Vault, entry: dict[str, Any]) -> None:
    w = vault.witness
    with pytest.raises(sv.InvalidInput):
        w.record(entry)
    assert w.record({"request_id": "fine"}) == "fine"
    w.flush()  # the writer was never handed the bad entry
    assert w.count() == 1 and w.status()["writer"] == "running"


def test_values_outside_plain_json_are_stored_and_read_back(vault: sv.Vault) -> None:
    w = vault.witness
    routing = {"big": 1 << 70, "k\udfff": "v\ud800", "f": np.float32(0.5), "n": np.int64(3), "b": np.bool_(True)}
    rid = w.record({
        "request_id": "odd", "quality": np.float32(0.25), "total_ms": 3, "prompt_tokens": np.int64(12),
        "timestamp": 1_700_000_000_000.0, "context_ids": ("u\ud800", "u2"), "routing": routing,
        "error_message": "bad \ud800 byte\0",
    })  # fmt: skip
    e = w.get(str(rid))
    assert (e.quality, e.total_ms, e.prompt_tokens, e.timestamp) == (0.25, 3.0, 12, 1_700_000_000_000)
    assert type(e.total_ms) is float and type(e.prompt_tokens) is int
    assert e.context_ids == ("u\ud800", "u2") and e.error_message == "bad \ud800 byte\0"
    assert e.routing == {"big": 1 << 70, "k\udfff": "v\ud800", "f": 0.5, "n": 3, "b": True}
    assert vault.check().ok


def test_every_damaged_byte_of_an_archive_reads_as_corrupted(vault_path: Path) -> None:
    # NOTE: every position, not a few picked ones, so the outcome cannot depend on how the file compressed
    with sv.open(vault_path) as vault:
        w = vault.witness
        rng = np.random.default_rng(3)
        for i in range(4):
            w.record({
                "request_id": f"r{i}", "timestamp": 1_600_000_000_000 + i, "total_ms": float(i), "model": "m",
                "query_embedding": rng.random(4), "context_ids": [f"u{i}"], "error_message": "x" if i else None,
            })  # fmt: skip
        assert w.archive(older_than_days=1).entries == 4
        name = w.archives()[0]["file"]
        inside = vault_path / "witness-archive" / name
        pristine = inside.read_bytes()
        expected = [e.to_dict(embeddings=True) for e in w.read_archive(name, embeddings=True)]
        outside = vault_path.parent / "copy.jsonl.gz"
        for pos in range(len(pristine)):
            data = bytearray(pristine)
            data[pos] ^= 0x55
            outside.write_bytes(bytes(data))
            try:  # a copy has no recorded checksum: gzip's own checks and the parser's, translated
                read = [e.to_dict(embeddings=True) for e in w.read_archive(str(outside), embeddings=True)]
            except (sv.Corrupted, sv.InvalidInput):
                continue
            assert read == expected, pos  # a byte gzip ignores (its header's time or OS): nothing changed
        for pos in range(0, len(pristine), 7):  # the vault's own file is checked against its checksum first
            data = bytearray(pristine)
            data[pos] ^= 0x55
            inside.write_bytes(bytes(data))
            with pytest.raises(sv.Corrupted):
                list(w.read_archive(name))
        inside.write_bytes(pristine)
        assert vault.check().ok


def _entries(n: int, rng: np.random.Generator, *, vectors: bool) -> list[dict[str, Any]]:
    """Entries with every kind of column: NULL numbers, non-ASCII text, payloads, errors, embeddings."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        e: dict[str, Any] = {
            "request_id": f"r\u00e9{i}" if i % 7 == 0 else f"r{i}",
            "session_id": None if i % 5 == 0 else f"s{i % 13}",
            "model": None if i % 6 == 0 else ("m\u00fc", "m2", "m3")[i % 3],
            "quality": None if i % 4 == 0 else float(rng.random()),
            "total_ms": float(rng.lognormal(5, 1)),
            "prompt_tokens": None if i % 3 == 0 else int(rng.integers(1 << 40)),
            "context_ids": [] if i % 2 else ["u1", "b\u2603"],
            "routing": None if i % 8 == 0 else {"t": 0.5, "big": 1 << 70} if i % 11 == 0 else {"t": 0.7},
            "error_type": "Timeout" if i % 9 == 0 else None,
            "error_message": "boom \u00e9" if i % 10 == 0 else None,
        }
        if i % 12 in (1, 5, 7, 11):  # every number present (with quality and prompt_tokens above)
            e.update(embedding_ms=1.5, retrieval_ms=0.0, routing_ms=2.25, generation_ms=3.0, completion_tokens=7)
        if vectors and i % 4 == 1:
            e["query_embedding"] = rng.random(4).astype(np.float32)
        out.append(e)
    return out


@pytest.mark.parametrize("vectors", [False, True])
def test_the_writers_digests_are_those_of_the_stored_rows(vault: sv.Vault, vectors: bool) -> None:
    # NOTE: the writer computes digests inline (a fast path for rows without NULL numbers); each must be
    # exactly records.digest() of the row read back, or check() would report tampering.
    w = vault.witness
    w.configure(batch_size=50, flush_interval=3600, queue_size=100_000)
    for e in _entries(300, np.random.default_rng(1), vectors=vectors):
        w.record(e)
    w.flush()
    with vault._db.read() as conn:  # the chain's own check: every entry's digest against its batch
        problems, counts = chain.verify(conn)
    assert problems == [] and counts["entries"] == 300 and counts["batches"] >= 6
    got = {e.request_id: e for e in w.query(order="oldest", limit=None, embeddings=True)}
    assert got["r\u00e90"].context_ids == ("u1", "b\u2603") and got["r11"].routing == {"t": 0.5, "big": 1 << 70}
    assert got["r10"].error_message == "boom \u00e9" and got["r9"].error_type == "Timeout" and got["r9"].failed
    assert (got["r1"].query_embedding is not None) == vectors and got["r2"].query_embedding is None


def test_statements_respect_a_low_sqlite_parameter_limit(vault: sv.Vault) -> None:
    w = vault.witness
    w.configure(batch_size=10, flush_interval=3600, queue_size=100_000)
    w.record({"request_id": "first"})
    w.flush()
    writer = w._writer
    assert writer is not None
    # a build with a lower limit than the default: at most 6 entry rows (15 parameters) per statement
    writer._db.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
    for e in _entries(123, np.random.default_rng(2), vectors=True):
        w.record(e)
    w.flush()
    assert w.count() == 124 and vault.check().ok


def test_full_batches_are_written_without_a_flush(vault: sv.Vault) -> None:
    # whether the writer waits idle (woken by record()) or polls a queue that is not empty
    w = vault.witness
    w.configure(batch_size=5, flush_interval=3600)
    for i in range(23):
        w.record({"request_id": f"r{i}"})
    writer = w._writer
    assert writer is not None
    deadline = time.monotonic() + 60  # liveness only: the batches are due at once, not after the hour
    while writer.persisted < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.persisted >= 20
    w.flush()
    assert w.count() == 23


def test_a_lone_entry_is_written_after_flush_interval_without_a_flush(vault: sv.Vault) -> None:
    w = vault.witness
    w.configure(batch_size=1000, flush_interval=0.05)
    for i in range(3):  # arriving, then nothing more: the writer stops polling and waits out the interval
        w.record({"request_id": f"r{i}"})
    writer = w._writer
    assert writer is not None
    deadline = time.monotonic() + 60  # liveness only
    while writer.persisted < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.persisted == 3 and writer.queued == 0
