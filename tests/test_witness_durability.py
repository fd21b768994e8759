"""The witness log across processes and crashes: drain on close, SIGKILL, tampering, archives, CLI."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_py, spawn_py

import sigmavault as sv
from sigmavault.cli import witness as witness_cli
from sigmavault.witness.entry import now_ms

DAY = 86_400_000

RECORD_THEN_CLOSE = """
import sys, json
import numpy as np
import sigmavault as sv
vault = sv.open(sys.argv[1])
w = vault.witness
# NOTE: nothing is written before close(): no full batch ever, and the timer is an hour.
w.configure(batch_size=100_000, flush_interval=3600)
rng = np.random.default_rng(7)
for i in range(1234):
    w.record({"request_id": f"r{i:05d}", "total_ms": float(i), "model": "m", "query_embedding": rng.random(8)})
queued = len(w._writer._queue)  # (status() would flush)
vault.close()
print(json.dumps({"queued_at_close": queued}))
"""


def test_entries_recorded_just_before_close_are_there_after_reopen(vault_path: Path) -> None:
    out = run_py(RECORD_THEN_CLOSE, str(vault_path))
    assert out["queued_at_close"] == 1234  # all of them were still in the queue when close() began
    with sv.open(vault_path) as vault:
        w = vault.witness
        assert w.count() == 1234
        entries = w.query(order="oldest", limit=None)
        assert [e.request_id for e in entries] == [f"r{i:05d}" for i in range(1234)]
        assert [e.total_ms for e in entries] == [float(i) for i in range(1234)]
        expected = np.random.default_rng(7).random((1234, 8)).astype(np.float32)
        assert np.array_equal(np.stack([e.query_embedding for e in entries]), expected)  # type: ignore[misc]
        report = vault.check()
        assert report.ok, report.problems


WRITE_LOOP = """
import sys
import sigmavault as sv
vault = sv.open(sys.argv[1])
w = vault.witness
w.configure(batch_size=50, flush_interval=0.01)
i = 0
while True:
    for _ in range(37):
        w.record({"request_id": f"r{i:07d}", "total_ms": float(i), "context_ids": [f"u{i}"], "error_message": "x"})
        i += 1
    w.flush()
    print(i, flush=True)  # acknowledged: every entry below i is committed
"""


@pytest.mark.parametrize("acks", [3, 40])
def test_sigkilled_writer_loses_at_most_the_unflushed_batch(vault_path: Path, acks: int) -> None:
    sv.open(vault_path).close()
    proc = spawn_py(WRITE_LOOP, str(vault_path))
    assert proc.stdout is not None
    acked = 0
    for _ in range(acks):
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "child ended"
        acked = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with sv.open(vault_path) as vault:
        report = vault.check()
        assert report.ok, report.problems
        w = vault.witness
        n = w.count()
        assert n >= acked
        # what survived is exactly a prefix of what was recorded, in order, intact
        entries = w.query(order="oldest", limit=None, embeddings=False)
        assert [e.request_id for e in entries] == [f"r{i:07d}" for i in range(n)]
        assert all(e.context_ids == (f"u{i}",) and e.total_ms == float(i) for i, e in enumerate(entries))
        w.record({"request_id": "after-crash"})  # the chain continues after the crash
    with sv.open(vault_path) as vault:
        assert vault.witness.count() == n + 1 and vault.check().ok


CONCURRENT_WRITER = """
import sys
import sigmavault as sv
with sv.open(sys.argv[1]) as vault:
    w = vault.witness
    w.configure(batch_size=7, flush_interval=0.005)
    for i in range(600):
        w.record({"request_id": f"{sys.argv[2]}-{i:04d}", "model": sys.argv[2], "total_ms": float(i)})
"""


def test_two_processes_recording_at_once_keep_one_valid_chain(vault_path: Path) -> None:
    sv.open(vault_path).close()
    procs = [spawn_py(CONCURRENT_WRITER, str(vault_path), name) for name in ("p1", "p2")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    with sv.open(vault_path) as vault:
        report = vault.check()
        assert report.ok, report.problems
        for name in ("p1", "p2"):
            mine = vault.witness.query(model=name, order="oldest", limit=None, embeddings=False)
            assert [e.request_id for e in mine] == [f"{name}-{i:04d}" for i in range(600)]


def _fill(vault: sv.Vault, n: int = 250) -> None:
    rng = np.random.default_rng(3)
    w = vault.witness
    w.configure(batch_size=50)
    for i in range(n):
        w.record(
            {
                "request_id": f"r{i:04d}",
                "model": f"m{i % 2}",
                "total_ms": float(i),
                "quality": 0.5,
                "query_embedding": rng.random(8),
                "context_ids": ["a"],
                "timestamp": now_ms() - (n - i) * 1000,
            }
        )
    w.flush()


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        ("UPDATE witness_entries SET total_ms = 0.5 WHERE request_id = 'r0042'", "entry 43 (request r0042)"),
        ("UPDATE witness_blobs SET query_vec = zeroblob(32) WHERE seq = 120", "entry 120"),
        ('UPDATE witness_blobs SET payload = \'{"c":["forged"]}\' WHERE seq = 7', "entry 7"),
        ("UPDATE witness_models SET name = 'other' WHERE name = 'm1'", "was changed after it was written"),
        ("UPDATE witness_entries SET prompt_tokens = 'many' WHERE seq = 5", "entry 5 (request r0004)"),
        ("DELETE FROM witness_entries WHERE seq = 200", "deleted outside archive()"),
        ("UPDATE witness_batches SET digests = zeroblob(length(digests)) WHERE id = 2", "batch 2"),
        ("UPDATE witness_batches SET hash = zeroblob(32) WHERE id = 3", "batch 4 does not follow"),
        (
            "INSERT INTO witness_entries (seq, request_id, ts_ms, failed) VALUES (100000, 'forged', 1, 0)",
            "belong to no batch",
        ),
    ],
)
def test_a_tampered_witness_row_is_reported_by_check(vault_path: Path, sql: str, expect: str) -> None:
    with sv.open(vault_path) as vault:
        _fill(vault)
        assert vault.check().ok
    con = sqlite3.connect(vault_path / "vault.db")
    with con:
        assert con.execute(sql).rowcount == 1
    con.close()
    with sv.open(vault_path) as vault:
        report = vault.check()
        assert not report.ok
        assert any(expect in p for p in report.problems), report.problems


def test_archive_moves_old_entries_and_keeps_counts_consistent(vault_path: Path) -> None:
    now = now_ms()
    ages = [10, 9, 6, 5, 4, 2, 1, 0]  # days
    with sv.open(vault_path) as vault:
        w = vault.witness
        w.configure(batch_size=7)
        rng = np.random.default_rng(5)
        for i in range(400):
            age = ages[i % len(ages)]
            w.record(
                {
                    "request_id": f"r{i:04d}",
                    "timestamp": now - age * DAY - i,
                    "total_ms": float(i),
                    "model": "m",
                    "query_embedding": rng.random(16),
                    "context_ids": [f"u{i}"],
                    "routing": {"temperature": 0.5},
                    "error_type": "E" if i % 9 == 0 else None,
                }
            )
        old = {f"r{i:04d}" for i in range(400) if ages[i % len(ages)] > 3}
        done: list[tuple[int, int]] = []
        result = w.archive(older_than_days=3, chunk=60, progress=lambda d, t: done.append((d, t)))
        assert result.entries == len(old) and len(result.files) == -(-len(old) // 60)
        assert done[-1] == (len(old), len(old))
        status = w.status()
        assert status["entries"] == 400 - len(old) and status["archived_entries"] == len(old)
        assert status["entries"] + status["archived_entries"] == 400
        assert w.count(until=now - 3 * DAY) == 0
        archived = [e for a in w.archives() for e in w.read_archive(a["file"], embeddings=True)]
        assert {e.request_id for e in archived} == old
        e = next(x for x in archived if x.request_id == "r0009")
        assert (e.error_type, e.context_ids, e.routing, e.total_ms) == ("E", ("u9",), {"temperature": 0.5}, 9.0)
        assert e.query_embedding is not None and e.query_embedding.shape == (16,)
        assert sum(a["entries"] for a in w.archives()) == len(old)
        report = vault.check()
        assert report.ok, report.problems
        # the chain still verifies and keeps growing after archiving
        w.record({"request_id": "new"})
        assert w.archive(older_than_days=3).entries == 0
        assert vault.check().ok
        # an archive file that does not match its checksum is reported, and reading it raises Corrupted
        # (never zlib.error), wherever the flipped byte lies: gzip header, deflate stream, CRC trailer
        first = vault_path / "witness-archive" / w.archives()[0]["file"]
        pristine = first.read_bytes()
        for pos in (4, 12, len(pristine) // 2, len(pristine) - 9, len(pristine) - 5, len(pristine) - 1):
            data = bytearray(pristine)
            data[pos] ^= 0xFF
            first.write_bytes(bytes(data))
            bad = vault.check()
            assert any("does not match its recorded checksum" in p for p in bad.problems), pos
            with pytest.raises(sv.Corrupted):
                list(w.read_archive(first.name))
            if pos > 12:  # a copy outside the vault has no recorded checksum: gzip's own checks, translated
                copy = vault_path.parent / "copy.jsonl.gz"
                copy.write_bytes(bytes(data))
                with pytest.raises(sv.Corrupted):
                    list(w.read_archive(str(copy)))


def test_an_interrupted_archive_step_leaves_no_duplicates(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        _fill(vault, n=20)
        w = vault.witness
        folder = vault_path / "witness-archive"
        folder.mkdir()
        # what a crash between writing the file and committing the deletion leaves behind
        stray = folder / "witness-000000000001-000000000020.jsonl.gz"
        stray.write_bytes(gzip.compress(b'{"format": "sigmavault-witness-archive", "version": 1, "entries": 20}\n'))
        report = vault.check()
        assert report.ok and any("interrupted archive step" in n for n in report.notes)
        assert w.archives() == [] and w.count() == 20  # the stray file is not counted
        result = w.archive(older_than_days=0)
        assert result.entries == 20 and w.count() == 0
        assert [a["entries"] for a in w.archives()] == [20]
        assert vault.check().ok


def _cli(*argv: str) -> Any:
    parser = argparse.ArgumentParser()
    witness_cli.register(parser.add_subparsers(required=True))
    args = parser.parse_args(["witness", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = args.handler(args)
    assert code == 0
    return json.loads(out.getvalue())


def test_cli_tail_query_stats_and_archive(vault_path: Path) -> None:
    with sv.open(vault_path) as vault:
        w = vault.witness
        now = now_ms()
        for i in range(30):
            w.record(
                {
                    "request_id": f"r{i:02d}",
                    "timestamp": now - (30 - i) * DAY // 3,
                    "model": f"m{i % 2}",
                    "total_ms": float(i),
                    "quality": i / 30,
                    "error_type": "Timeout" if i % 5 == 0 else None,
                    "query_embedding": [1.0, float(i), 0.0],
                }
            )
    path = str(vault_path)
    tail = _cli("tail", path, "-n", "3", "--json")
    assert [r["request_id"] for r in tail] == ["r27", "r28", "r29"]
    errors = _cli("query", path, "--errors", "--model", "m0", "--oldest", "--json")
    assert [r["request_id"] for r in errors] == ["r00", "r10", "r20"]
    recent = _cli("query", path, "--since", "2d", "--json", "--limit", "100")
    assert {r["request_id"] for r in recent} == {"r25", "r26", "r27", "r28", "r29"}
    like = _cli("query", path, "--like", "r10", "--limit", "2", "--json")
    assert [r["request_id"] for r in like] == ["r11", "r09"] and like[0]["score"] > 0.99
    stats = _cli("stats", path, "--percentiles", "50,99", "--json")
    assert [g["model"] for g in stats["groups"]] == ["m0", "m1"]
    assert stats["groups"][0]["p50"] == float(np.percentile(np.arange(0, 30, 2, dtype=float), 50))
    assert stats["status"]["dropped_total"] == 0 and stats["status"]["entries"] == 30
    usage = _cli("stats", path, "--usage", "--json")
    assert {u["model"]: u["errors"] for u in usage["usage"]} == {"m0": 3, "m1": 3}
    moved = _cli("archive", path, "--older-than-days", "5.1", "--json")
    assert moved["archived"] == 15
    listed = _cli("archive", path, "--list", "--json")
    assert sum(a["entries"] for a in listed) == 15
    read = _cli("archive", path, "--read", listed[0]["file"], "--json")
    assert [r["request_id"] for r in read] == [f"r{i:02d}" for i in range(15)]
    assert _cli("stats", path, "--json")["status"]["archived_entries"] == 15
