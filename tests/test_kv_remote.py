"""The Redis KV tier on a real ``redis-server`` (started here on a free loopback port): two vaults in
two processes warm-start each other with identical greedy output, a damaged or partial value is
dropped and counted, and a stopped or frozen server only costs a warning and a counter."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_py
from test_kv_model import greedy, prefill, prompt, tiny_model

import sigmavault as sv
from sigmavault.cli import main
from sigmavault.errors import InvalidInput
from sigmavault.kv.remote import PART_BYTES, parse_ttl

redis = pytest.importorskip("redis")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis-server)"
)


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1 (no persistence), ready when the constructor returns."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the server says when it accepts connections: no polling, no sleep
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server exited with {self.proc.wait()}")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.client.close()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    srv = RedisServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_model()


def remote_vault(path: Path, url: str) -> sv.Vault:
    """A vault on the Redis tier; a generous timeout, so a loaded test machine never looks like a slow Redis."""
    vault = sv.open(path)
    vault.kv.configure(chunk_tokens=32, remote=url, remote_ttl="2h", remote_prefix="tenant-a", remote_timeout=10.0)
    return vault


WARM_START = """
import json, sys
import sigmavault as sv
from test_kv_model import greedy, prompt, tiny_model
model = tiny_model()
ids = prompt(100)
with sv.open(sys.argv[1]) as vault:
    vault.kv.configure(chunk_tokens=32, remote=sys.argv[2], remote_prefix="tenant-a", remote_timeout=10.0)
    cache, n = vault.kv.load(model, ids)
    output = greedy(model, ids, cache=cache)
    again, n2 = vault.kv.load(model, ids)   # now served by the local tiers it was promoted to
    stats = vault.kv.stats()
print(json.dumps({"n": n, "n2": n2, "same": output == greedy(model, ids), "remote": stats["remote"],
                  "disk_chunks": stats["disk"]["chunks"], "ram_hits": stats["ram_hits"]}))
"""


def test_second_process_warm_starts_from_redis_with_identical_output(
    model: Any, server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = prompt(100)
    with remote_vault(tmp_path / "a", server.url) as vault:
        saved = vault.kv.save(model, ids, prefill(model, ids))
        assert saved.new_chunks == 4
        assert vault.kv.stats()["remote"]["chunks_written"] == 4
    keys = sorted(k.decode() for k in server.client.keys("*"))
    assert len(keys) == 8 and all(k.startswith("tenant-a:kv:") for k in keys)  # a meta and one part per chunk
    assert all(0 < server.client.ttl(k) <= parse_ttl("2h") for k in keys)

    out = run_py(WARM_START, str(tmp_path / "b"), server.url)
    assert out["same"] is True
    assert out["n"] == 96  # the three full chunks; the short tail is not looked up remotely
    assert out["remote"]["hits"] == 3 and out["remote"]["errors"] == 0 and out["remote"]["bytes_read"] > 0
    assert out["disk_chunks"] == 3 and out["n2"] == 96 and out["remote"]["hits"] == 3

    capsys.readouterr()
    assert main(["kv", "stats", str(tmp_path / "b"), "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)["remote"]
    assert (remote["hits"], remote["misses"], remote["errors"]) == (3, 0, 0) and remote["bytes_read"] > 0


def test_damaged_or_partial_values_are_dropped_and_counted(model: Any, server: RedisServer, tmp_path: Path) -> None:
    ids = prompt(100)
    reference = greedy(model, ids)
    with remote_vault(tmp_path / "a", server.url) as vault:
        vault.kv.save(model, ids, prefill(model, ids))
    metas = [k for k in server.client.keys("tenant-a:kv:*") if k.count(b":") == 3]
    by_start = {}
    for meta in metas:
        payload = server.client.get(meta + b":0")
        by_start[_start_of(payload)] = meta
    server.client.setrange(by_start[64] + b":0", 200, b"\xff\xfe")  # flip bytes inside chunk 3's KV
    with remote_vault(tmp_path / "b", server.url) as vault:
        cache, n = vault.kv.load(model, ids)
        assert n == 64  # chunks 1-2 served; the damaged third is never fed to the model
        assert greedy(model, ids, cache=cache) == reference
        stats = vault.kv.stats()["remote"]
        assert (stats["hits"], stats["corrupted"]) == (2, 1)
    assert server.client.exists(by_start[64]) == 0  # dropped from Redis too

    server.client.delete(by_start[32] + b":0")  # a partial value: its meta without its part
    with remote_vault(tmp_path / "c", server.url) as vault:
        cache, n = vault.kv.load(model, ids)
        assert n == 32 and greedy(model, ids, cache=cache) == reference
        assert vault.kv.stats()["remote"]["corrupted"] == 1


def _start_of(payload: bytes) -> int:
    hlen = int.from_bytes(payload[:4], "little")
    return int(json.loads(payload[4 : 4 + hlen])["start"])


def test_redis_down_or_frozen_degrades_to_local_tiers(model: Any, server: RedisServer, tmp_path: Path) -> None:
    ids, other = prompt(100), prompt(80, seed=5)
    with remote_vault(tmp_path / "a", server.url) as vault:
        vault.kv.save(model, ids, prefill(model, ids))
        vault.kv.configure(remote_timeout=0.2)
        os.kill(server.proc.pid, signal.SIGSTOP)  # slow: the server accepts nothing and answers nothing
        with pytest.warns(RuntimeWarning, match="Redis KV tier"):
            cache, n = vault.kv.load(model, other)
        assert n == 0
        assert vault.kv.stats()["remote"]["errors"] == 1
        # resting after the error: the next request does not wait on the server again
        cache, n = vault.kv.load(model, ids)
        assert n == 99 and greedy(model, ids, cache=cache) == greedy(model, ids)
        server.stop()  # down: connection refused
    with remote_vault(tmp_path / "b", server.url) as vault, pytest.warns(RuntimeWarning, match="Redis KV tier"):
        saved = vault.kv.save(model, other, prefill(model, other))
        assert saved.new_chunks == 3  # stored locally although the write-through failed
        stats = vault.kv.stats()["remote"]
        assert stats["errors"] == 1 and stats["chunks_written"] == 0
        cache, n = vault.kv.load(model, other)
        assert n == 79
        _, n = vault.kv.load(model, prompt(70, seed=9))  # not stored here; the resting tier is not asked
        assert n == 0 and vault.kv.stats()["remote"]["skipped"] == 1


def test_remote_settings_are_checked_and_persisted(server: RedisServer, tmp_path: Path) -> None:
    with sv.open(tmp_path / "v") as vault:
        for bad in ({"remote": "http://x"}, {"remote_ttl": "soon"}, {"remote_ttl": 0}, {"remote_prefix": "a b"}):
            with pytest.raises(InvalidInput):
                vault.kv.configure(**bad)
        vault.kv.configure(remote=server.url.replace("//", "//user:secret@"), remote_ttl="3d")
    with sv.open(tmp_path / "v") as vault:
        config = vault.kv.stats()["config"]
        assert config["remote_ttl"] == 3 * 86400 and "secret" not in json.dumps(vault.kv.stats())
        vault.kv.configure(remote=None)
        assert vault.kv.stats()["remote"]["enabled"] is False
    assert PART_BYTES < 2**20
