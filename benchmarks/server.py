"""Server benchmark: vector search over HTTP, sigmavault's server against Chroma's own (``chroma run``).

Both servers run as their own processes on loopback and get the same seeded clustered unit vectors
of ``benchmarks/ann.py`` (``--n`` × ``--dim``, default 100k × 384) and the same held-out queries.
The client is one asyncio process (httpx) keeping 1, 8 and 32 requests in flight; each level runs the same number
of requests against each server, interleaved. Reported per level: requests/s and p50/p99 latency,
recall@10 against brute force (numpy), and the server process's CPU time per request (all its
threads, from /proc: less sensitive to the machine's load than wall time). Also: add throughput
over HTTP (sigmavault with base64 float32 batches and with JSON lists; Chroma with JSON lists, its
only form), and sigmavault's added latency over the in-process call (HTTP p50 at 1 client minus
``Collection.search`` p50).

    .venv/bin/python benchmarks/server.py                        # 100k × 384, 1/8/32 clients, with Chroma
    .venv/bin/python benchmarks/server.py --n 20000 --no-chroma  # a smoke run
    .venv/bin/python benchmarks/server.py --chroma /path/to/venv/bin/chroma

Chroma is the ``bench`` extra (``pip install 'sigmavault[bench]'``); without a ``chroma`` command
the Chroma columns are left out. Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from ann import clustered

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

K = 10
ROUNDS = 4
CHROMA_API = "/api/v2/tenants/default_tenant/databases/default_database"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data(n: int, dim: int, queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ANN benchmark's seeded clustered unit vectors, held-out queries, and each query's exact top-K."""
    vecs, qs = clustered(n, dim, seed=42, queries=queries)
    truth = np.argsort(-(qs @ vecs.T), axis=1)[:, :K]
    return vecs, qs, truth


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


async def load(
    send: Callable[[httpx.AsyncClient, int], Awaitable[list[int]]], url: str, clients: int, requests: int, nq: int
) -> tuple[list[float], float, dict[int, list[int]]]:
    """``requests`` calls with ``clients`` in flight; returns the latencies, the elapsed time and the ids per query."""
    latencies: list[float] = []
    found: dict[int, list[int]] = {}
    counter = iter(range(requests))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as client:

        async def worker() -> None:
            for i in counter:
                start = time.perf_counter()
                ids = await send(client, i % nq)
                latencies.append(time.perf_counter() - start)
                found.setdefault(i % nq, ids)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return latencies, elapsed, found


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    ms = np.array(latencies) * 1000
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recall(found: dict[int, list[int]], truth: np.ndarray) -> float:
    hits = [len(set(ids) & set(truth[q].tolist())) / K for q, ids in found.items()]
    return round(float(np.mean(hits)), 4)


class Sigmavault:
    name = "sigmavault"

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-c",
            "import sys; from sigmavault.cli import main; sys.exit(main())",
            "serve",
            str(root),
            "--port",
            str(port),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_up(self.url + "/healthz", self.proc)
        self.qs: np.ndarray | None = None

    def add(self, vecs: np.ndarray, batch: int, *, b64: bool, collection: str = "bench", prefix: str = "") -> float:
        start = time.perf_counter()
        with httpx.Client(base_url=self.url, timeout=600) as c:
            for lo in range(0, len(vecs), batch):
                rows = vecs[lo : lo + batch]
                ids = [f"{prefix}{i}" for i in range(lo, lo + len(rows))]  # NOTE: ids are unique per vault
                if b64:
                    body: dict[str, Any] = {
                        "vectors_b64": base64.b64encode(rows.astype("<f4").tobytes()).decode(),
                        "dim": rows.shape[1],
                        "ids": ids,
                    }
                else:
                    body = {"vectors": rows.tolist(), "ids": ids}
                r = c.post(f"/v1/collections/{collection}/units", json=body)
                r.raise_for_status()
        return time.perf_counter() - start

    async def search(self, client: httpx.AsyncClient, q: int) -> list[int]:
        assert self.qs is not None
        r = await client.post("/v1/collections/bench/search", json={"vector": self.qs[q].tolist(), "k": K})
        r.raise_for_status()
        return [int(h["id"]) for h in r.json()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


class Chroma:
    name = "chroma"

    def __init__(self, exe: str, root: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [exe, "run", "--path", str(root), "--port", str(port), "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_up(self.url + "/api/v2/heartbeat", self.proc)
        made = httpx.post(
            f"{self.url}{CHROMA_API}/collections",
            json={"name": "bench", "configuration": {"hnsw": {"space": "cosine"}}},
            timeout=60,
        )
        made.raise_for_status()
        self.cid = made.json()["id"]
        self.qs: np.ndarray | None = None

    def add(self, vecs: np.ndarray, batch: int) -> float:
        start = time.perf_counter()
        with httpx.Client(base_url=self.url, timeout=600) as c:
            for lo in range(0, len(vecs), batch):
                rows = vecs[lo : lo + batch]
                body = {"ids": [str(i) for i in range(lo, lo + len(rows))], "embeddings": rows.tolist()}
                c.post(f"{CHROMA_API}/collections/{self.cid}/add", json=body).raise_for_status()
        return time.perf_counter() - start

    async def search(self, client: httpx.AsyncClient, q: int) -> list[int]:
        assert self.qs is not None
        body = {"query_embeddings": [self.qs[q].tolist()], "n_results": K, "include": ["distances"]}
        r = await client.post(f"{CHROMA_API}/collections/{self.cid}/query", json=body)
        r.raise_for_status()
        return [int(i) for i in r.json()["ids"][0]]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def in_process_p50(root: Path, qs: np.ndarray) -> float:
    import sigmavault as sv

    sv.set_threads(1)
    with sv.open(root) as vault:
        col = vault.collection("bench", embedder=None, create=False)
        for q in qs[:20]:
            col.search(q, K)
        times = []
        for q in qs:
            start = time.perf_counter()
            col.search(q, K)
            times.append(time.perf_counter() - start)
    return float(np.percentile(np.array(times) * 1000, 50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", type=int, default=1000, help="search requests per level and server")
    parser.add_argument("--batch", type=int, default=2000, help="units per add request")
    parser.add_argument("--chroma", default=shutil.which("chroma"), help="the chroma command (default: on PATH)")
    parser.add_argument("--no-chroma", action="store_true")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    vecs, qs, truth = data(args.n, args.dim, args.queries)
    tmp = Path(tempfile.mkdtemp(prefix="sv-bench-server-"))
    out: dict[str, Any] = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "requests": args.requests,
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }
    servers: list[Any] = []
    try:
        sv_server = Sigmavault(tmp / "sv", free_port())
        servers.append(sv_server)
        log(f"sigmavault: adding {args.n} vectors over HTTP (base64 batches of {args.batch})")
        t = sv_server.add(vecs, args.batch, b64=True)
        small = min(args.n, 20_000)
        t_json = sv_server.add(vecs[:small], args.batch, b64=False, collection="json", prefix="j")
        out["add_units_per_s"] = {"sigmavault_b64": round(args.n / t), "sigmavault_json": round(small / t_json)}
        sv_server.qs = qs
        start = time.perf_counter()
        asyncio.run(load(sv_server.search, sv_server.url, 1, 1, args.queries))  # NOTE: builds the ANN index
        out["sigmavault_first_search_s"] = round(time.perf_counter() - start, 2)
        if args.chroma and not args.no_chroma:
            ch = Chroma(args.chroma, tmp / "chroma", free_port())
            servers.append(ch)
            log(f"chroma: adding {args.n} vectors over HTTP (JSON batches of {args.batch})")
            out["add_units_per_s"]["chroma_json"] = round(args.n / ch.add(vecs, args.batch))
            ch.qs = qs
            asyncio.run(load(ch.search, ch.url, 1, 1, args.queries))
        for clients in levels:
            runs: dict[str, tuple[list[float], float, dict[int, list[int]]]] = {s.name: ([], 0.0, {}) for s in servers}
            cpu_used = {s.name: 0.0 for s in servers}
            log(f"{args.requests} searches per server, {clients} in flight, in {ROUNDS} alternating rounds")
            for _ in range(ROUNDS):  # NOTE: alternating rounds, so drifting machine load hits both servers alike
                for server in servers:
                    cpu = cpu_seconds(server.proc.pid)
                    lat, took, found = asyncio.run(
                        load(server.search, server.url, clients, args.requests // ROUNDS, args.queries)
                    )
                    cpu_used[server.name] += cpu_seconds(server.proc.pid) - cpu
                    before = runs[server.name]
                    runs[server.name] = (before[0] + lat, before[1] + took, {**found, **before[2]})
            for name, (lat, took, found) in runs.items():
                stats: dict[str, Any] = summary(lat, took)
                stats["recall@10"] = recall(found, truth)
                stats["server_cpu_ms_per_request"] = round(1000 * cpu_used[name] / len(lat), 2)
                out.setdefault("search", {}).setdefault(str(clients), {})[name] = stats
            if len(servers) == 2:
                level = out["search"][str(clients)]
                level["rps_ratio"] = round(level["sigmavault"]["rps"] / level["chroma"]["rps"], 2)
    finally:
        for server in servers:
            server.stop()
    local = in_process_p50(tmp / "sv", qs)
    http = out["search"][str(levels[0])]["sigmavault"]["p50_ms"]
    out["in_process_p50_ms"] = round(local, 3)
    out["http_added_p50_ms"] = round(http - local, 2)
    out["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
