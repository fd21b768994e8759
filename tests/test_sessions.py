"""vault.sessions: durable per-conversation state, recovered by id, found by user or context, expired by TTL."""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sigmavault as sv
from sigmavault.cli.sessions import parse_duration
from sigmavault.cli.sessions import register as register_cli

T0 = 1_700_000_000.0


def run_py(code: str, *args: str) -> str:
    """Run ``code`` in a fresh Python process (a real restart); returns its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_lifecycle_open_update_touch_close(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        s = vault.sessions
        ctx = np.arange(1, 9, dtype=np.float32)
        first = s.open(user_id="alice", metadata={"lang": "en"}, context=ctx, kv_ref="kv:abc", now=T0)
        assert first.state == "open" and first.turn_count == 0 and first.created_at == first.last_active == T0
        assert len(first.session_id) == 24 and first.session_id in s
        got = s.get(first.session_id)
        assert got == first and np.array_equal(got.context, ctx)

        touched = s.touch(first.session_id, now=T0 + 5)
        touched = s.touch(first.session_id, turns=2, now=T0 + 9)
        assert (touched.turn_count, touched.last_active) == (3, T0 + 9)

        upd = s.update(first.session_id, metadata={"lang": "fr"}, active_adapter="lora-7", kv_ref=None, context=None)
        assert upd.metadata == {"lang": "fr"} and upd.active_adapter == "lora-7"
        assert upd.kv_ref is None and upd.context is None and upd.turn_count == 3 and upd.user_id == "alice"
        assert s.get(first.session_id) == upd

        closed = s.close(first.session_id)
        assert closed.state == "closed"
        with pytest.raises(sv.InvalidInput, match="closed"):
            s.touch(first.session_id)
        assert s.update(first.session_id, state="open").state == "open"

        named = s.open("chat-42", user_id="bob")
        assert named.session_id == "chat-42"
        with pytest.raises(sv.InvalidInput, match="already exists"):
            s.open("chat-42")
        assert s.open("chat-42", exist_ok=True, user_id="ignored") == named
        assert s.counts() == {"open": 2, "closed": 0, "expired": 0} and len(s) == 2
        assert s.delete("chat-42") == 1 and "chat-42" not in s
        assert vault.check().ok


def test_sessions_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        s = vault.sessions
        a = s.open("a", user_id="u1", metadata={"topic": "gpu", "n": [1, 2]}, context=[0.5, -1.0, 2.0], now=T0)
        s.touch("a", turns=4, now=T0 + 60)
        s.open("b", user_id="u2", active_adapter="ad-1", kv_ref="prefix:9", now=T0 + 1)
        s.close("b")
        expected = {x.session_id: x.to_dict(vectors=True) for x in s.find(states="all")}
        assert a.session_id in expected and len(expected) == 2

    out = run_py(
        """
        import json, sys, sigmavault as sv
        with sv.open(sys.argv[1]) as vault:
            found = vault.sessions.find(states="all")
            print(json.dumps({x.session_id: x.to_dict(vectors=True) for x in found}))
            vault.sessions.touch("a", now=2_000_000_000.0)
        """,
        str(path),
    )
    assert json.loads(out) == expected
    with sv.open(path) as vault:  # and the child's write is here
        assert vault.sessions.get("a").turn_count == 5
        assert vault.sessions.get("a").last_active == 2_000_000_000.0


def test_expire_marks_or_removes_exactly_the_idle(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        s = vault.sessions
        idle = {f"idle-{i}" for i in range(4)}
        for i, sid in enumerate(sorted(idle)):
            s.open(sid, now=T0 - 1000 - i)
        s.open("boundary", now=T0 - 600)  # idle exactly the TTL: not longer, so kept
        s.open("busy", now=T0 - 5000)
        s.touch("busy", now=T0 - 10)
        s.open("closed-old", now=T0 - 900)
        s.close("closed-old")
        s.open("fresh", now=T0)
        s.get("idle-0")  # cached: must not be served stale after expiry

        gone = s.expire(600, now=T0)
        assert set(gone) == idle | {"closed-old"}
        assert {x.session_id for x in s.find(states="expired")} == idle | {"closed-old"}
        assert s.get("idle-0").state == "expired"
        assert {x.session_id for x in s.find(states="open")} == {"boundary", "busy", "fresh"}
        assert s.expire(600, now=T0) == []  # already expired ones are not reported twice

        removed = s.expire(30, now=T0, delete=True)
        assert set(removed) == idle | {"closed-old", "boundary"}
        assert {x.session_id for x in s.find(states="all")} == {"busy", "fresh"}
        with pytest.raises(sv.NotFound):
            s.get("idle-0")
        with pytest.raises(sv.InvalidInput):
            s.expire(-1)


def test_find_by_user_and_by_context_similarity(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    dim = 32
    query = unit(rng.normal(size=dim))
    with sv.open(tmp_path / "v") as vault:
        s = vault.sessions
        for i in range(60):
            s.open(f"noise-{i}", user_id=f"user-{i % 3}", context=rng.normal(size=dim), now=T0 + i)
        planted = {}
        for i, noise in enumerate((0.01, 0.03, 0.06)):
            vec = query + noise * rng.normal(size=dim)
            planted[f"near-{i}"] = vec
            s.open(f"near-{i}", user_id="user-1", context=vec, now=T0 + 100 + i)
        s.open("other-dim", user_id="user-1", context=rng.normal(size=dim + 1))
        s.open("no-context", user_id="user-1")

        hits = s.find(context=query, k=3)
        assert [h.session_id for h in hits] == ["near-0", "near-1", "near-2"]
        for h in hits:
            assert h.score == pytest.approx(float(unit(planted[h.session_id]) @ query), abs=1e-5)
        assert all(h.score >= 0.9 for h in hits)
        assert [h.session_id for h in s.find(context=query, k=2, user_id="user-1")] == ["near-0", "near-1"]
        assert s.find(context=query, k=3, user_id="user-0")[0].session_id.startswith("noise-")
        assert {h.session_id for h in s.find(context=query, min_score=0.9)} == set(planted)

        mine = s.find(user_id="user-1")
        assert len(mine) == 20 + 3 + 2
        assert [m.last_active for m in mine] == sorted((m.last_active for m in mine), reverse=True)
        assert [m.session_id for m in s.find(user_id="user-1", k=2)] == ["no-context", "other-dim"]
        s.close("near-0")
        assert "near-0" not in {h.session_id for h in s.find(context=query, k=3)}
        assert s.find(context=query, k=1, states=["open", "closed"])[0].session_id == "near-0"
        assert s.find(user_id="nobody") == []


def test_bad_input_raises_and_leaves_data_intact(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        s = vault.sessions
        s.open("keep", user_id="u", metadata={"a": 1}, context=[1.0, 2.0], now=T0)
        before = s.get("keep").to_dict(vectors=True)
        bad_calls: list[Any] = [
            lambda: s.open("x", metadata=["not", "a", "mapping"]),
            lambda: s.open("x", metadata={"v": float("nan")}),
            lambda: s.open("x", context=[0.0, 0.0]),
            lambda: s.open("x", context=[1.0, float("inf")]),
            lambda: s.open("", user_id="u"),
            lambda: s.open("keep"),
            lambda: s.update("keep", state="sleeping"),
            lambda: s.update("keep", turn_count=-1),
            lambda: s.update("keep", metadata={"bad": object()}),
            lambda: s.update("keep", context=[[1.0, 2.0], [3.0, 4.0]]),
            lambda: s.touch("keep", turns=-2),
            lambda: s.touch("keep", now=float("nan")),
            lambda: s.find(k=0),
            lambda: s.find(states="asleep"),
            lambda: s.get(123),
        ]
        for call in bad_calls:
            with pytest.raises(sv.InvalidInput):
                call()
        for call in (
            lambda: s.get("missing"),
            lambda: s.touch("missing"),
            lambda: s.update("missing", kv_ref="r"),
            lambda: s.close("missing"),
            lambda: s.delete(["keep", "missing"]),
        ):
            with pytest.raises(sv.NotFound):
                call()
        assert "x" not in s
        assert s.get("keep").to_dict(vectors=True) == before
    with sv.open(tmp_path / "v") as vault:
        assert vault.sessions.get("keep").to_dict(vectors=True) == before
        assert vault.check().ok


def test_cache_sees_other_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        s = vault.sessions
        s.open("shared", user_id="u", metadata={"v": 1})
        s.open("other")
        assert s.get("shared").metadata == {"v": 1}
        assert s.get("other").turn_count == 0
        assert len(s._cache) == 2  # both are now served from memory

        run_py(
            """
            import sys, sigmavault as sv
            with sv.open(sys.argv[1]) as vault:
                vault.sessions.update("shared", metadata={"v": 2}, kv_ref="kv:new")
                vault.sessions.delete("other")
            """,
            str(path),
        )
        got = s.get("shared")
        assert got.metadata == {"v": 2} and got.kv_ref == "kv:new"
        with pytest.raises(sv.NotFound):
            s.get("other")

        # A commit by another process to another part leaves the session cache warm.
        s.get("shared")
        run_py(
            """
            import sys, sigmavault as sv
            with sv.open(sys.argv[1]) as vault:
                vault.policies.put("router", {"w": 1})
            """,
            str(path),
        )
        assert s.get("shared").metadata == {"v": 2} and len(s._cache) == 1


def test_rolled_back_outer_transaction_leaves_no_stale_cache(tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        s = vault.sessions
        s.open("t", metadata={"v": 1})
        s.get("t")
        with pytest.raises(RuntimeError), vault._db.write():
            s.update("t", metadata={"v": 2})
            assert s.get("t").metadata == {"v": 2}  # inside the transaction it sees its own write
            raise RuntimeError("abort the outer transaction")
        assert s.get("t").metadata == {"v": 1}
        with vault._db.write():
            s.touch("t")
        assert s.get("t").turn_count == 1


def test_read_only_vault_without_session_tables_reads_empty(tmp_path: Path) -> None:
    path = tmp_path / "v"
    sv.open(path).close()  # a vault whose sessions part was never built
    with sv.open(path, frozen=True) as vault:
        assert vault.sessions.find(states="all") == [] and len(vault.sessions) == 0
        with pytest.raises(sv.NotFound):
            vault.sessions.get("any")
        with pytest.raises(sv.ReadOnly):
            vault.sessions.open("x")
        assert vault.check().ok


class XorCipher:
    """A trivial reversible test cipher; binds the aad so a value moved elsewhere fails to open."""

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        return aad + b"|" + bytes(b ^ 0x5A for b in plaintext)

    def open(self, aad: bytes, sealed: bytes) -> bytes:
        head, _, body = sealed.partition(b"|")
        if head != aad:
            raise sv.Corrupted("sealed value does not belong here")
        return bytes(b ^ 0x5A for b in body)


def test_metadata_is_sealed_when_the_vault_has_a_cipher(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        vault._db.cipher = XorCipher()
        vault.sessions.open("enc", user_id="u", metadata={"secret": "launch codes"})
        assert vault.sessions.get("enc").metadata == {"secret": "launch codes"}
    raw = sqlite3.connect(path / "vault.db").execute("SELECT metadata FROM sessions WHERE sid = 'enc'").fetchone()[0]
    assert isinstance(raw, bytes) and b"launch codes" not in raw
    with sv.open(path) as vault:
        with pytest.raises(sv.VaultError, match="encrypted"):
            vault.sessions.get("enc")
        assert any("sealed" in n for n in vault.check().notes)
        vault._db.cipher = XorCipher()
        assert vault.sessions.get("enc").metadata == {"secret": "launch codes"}


def test_check_reports_a_damaged_context(tmp_path: Path) -> None:
    path = tmp_path / "v"
    with sv.open(path) as vault:
        vault.sessions.open("ok", context=[1.0, 2.0])
        vault.sessions.open("bad", context=[1.0, 2.0])
    with sqlite3.connect(path / "vault.db") as conn:
        conn.execute("UPDATE sessions SET context = x'010203' WHERE sid = 'bad'")
    with sv.open(path) as vault:
        report = vault.check()
        assert not report.ok and any("bad" in p and "context" in p for p in report.problems)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(args)
    assert ns.handler(ns) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_list_show_expire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "v")
    with sv.open(path) as vault:
        vault.sessions.open("old", user_id="u1", now=T0)
        vault.sessions.open("new", user_id="u2", metadata={"k": "v"})
    listed = cli(["sessions", "list", path, "--json"], capsys)
    assert [x["session_id"] for x in listed["sessions"]] == ["new", "old"] and listed["counts"]["open"] == 2
    assert [x["session_id"] for x in cli(["sessions", "list", path, "--user", "u1", "--json"], capsys)["sessions"]] == [
        "old"
    ]
    assert cli(["sessions", "show", path, "new", "--json"], capsys)["metadata"] == {"k": "v"}
    expired = cli(["sessions", "expire", path, "--ttl", "1d", "--json"], capsys)
    assert expired["sessions"] == ["old"] and expired["ttl_seconds"] == 86400
    assert parse_duration("90") == 90 and parse_duration("30m") == 1800 and parse_duration("2h") == 7200
    with pytest.raises(sv.InvalidInput):
        parse_duration("soon")


def test_concurrent_threads_keep_cache_and_store_in_step(tmp_path: Path) -> None:
    import threading

    with sv.open(tmp_path / "v") as vault:
        s = vault.sessions
        s.open("hot")
        seen: list[int] = []

        def writer() -> None:
            for _ in range(50):
                s.touch("hot")

        def reader() -> None:
            for _ in range(500):
                seen.append(s.get("hot").turn_count)

        threads = [threading.Thread(target=writer) for _ in range(4)] + [threading.Thread(target=reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert s.get("hot").turn_count == 200 and max(seen) <= 200
    with sv.open(tmp_path / "v") as vault:
        assert vault.sessions.get("hot").turn_count == 200


def test_sigkill_keeps_every_acknowledged_touch(tmp_path: Path) -> None:
    import signal
    import time

    path = tmp_path / "v"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, sigmavault as sv
                vault = sv.open(sys.argv[1])
                vault.sessions.open("s", user_id="u")
                while True:
                    done = vault.sessions.touch("s", turns=1)
                    print(done.turn_count, flush=True)
                """
            ),
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = 0
    deadline = time.monotonic() + 60
    while acknowledged < 200 and time.monotonic() < deadline:
        acknowledged = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert acknowledged >= 200
    with sv.open(path) as vault:
        assert vault.sessions.get("s").turn_count >= acknowledged
        assert vault.check().ok
