"""``sigmavault serve`` as a real process: several workers on one vault, keys from ``keys add``,
and the refusal to bind a public address without keys."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from conftest import python_env

import sigmavault as sv

CLI = [sys.executable, "-c", "import sys; from sigmavault.cli import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[str], key: str) -> None:
    """Retry until the server answers (it starts its workers first); fails if the process dies."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(f"{url}/v1/collections", headers={"Authorization": f"Bearer {key}"}).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the server did not come up")


def test_refuses_public_host_without_keys(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "serve", str(tmp_path / "v"), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=120,
    )
    assert done.returncode == 2 and "without keys" in done.stderr and "Traceback" not in done.stderr


def test_serve_with_workers_and_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    made = subprocess.run(
        [*CLI, "keys", "add", str(keys), "--scope", "write"],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=120,
        check=True,
    )
    key = made.stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*CLI, "serve", str(tmp_path / "v"), "--port", str(port), "--keys", str(keys), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    try:
        wait_until_up(url, proc, key)
        headers = {"Authorization": f"Bearer {key}"}

        def add(i: int) -> int:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                body = {"vectors": [[float(i), 1.0, 2.0]] * 5, "ids": [f"w{i}-{j}" for j in range(5)]}
                return c.post("/v1/collections/shared/units", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(add, range(40))) == {201}
        assert httpx.get(f"{url}/v1/collections/shared", headers=headers).json()["units"] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    with sv.open(tmp_path / "v") as vault:
        assert len(vault.collection("shared", embedder=None)) == 200 and vault.check().ok
