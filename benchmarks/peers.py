"""Peers benchmark: sigmavault with its defaults against raw FAISS, Chroma, LanceDB and Qdrant (local mode).

Every store gets the same vectors, the same queries, the same k (10) and the same CPU limits, and is
measured by the same code through a five-method adapter (build, open, one query, a batch, close):

- ``ingest_s``: vectors (and integer ids) in until the store is closed, in its own process; stores
  that need an explicit index step (LanceDB) report it as ``index_s``; ``ready_s`` is the sum;
- ``reopen_first_query_s``: a fresh process opens the store and answers one query (imports are
  timed apart as ``import_s``); the OS page cache stays warm, so this is "cold-ish", not cold;
- ``p50_ms`` / ``p99_ms``: one query at a time, every query, in one process holding all stores,
  interleaved (query i goes to each store in turn, the order rotating), the process pinned to
  one core and FAISS/OpenMP at one thread, so no store spreads a small query over other cores;
- ``batch_qps``: all queries in one call (each store's own batch API, all cores), best of 3
  rounds, interleaved the same way;
- ``recall_at_10`` against brute force (FAISS ``IndexFlatIP``) over the single-query answers;
- ``disk_bytes``: the store's directory after ingest, reopen and the queries.

Configurations, chosen to be fair rather than flattering: raw FAISS is ``IndexHNSWFlat`` M=32,
efConstruction 40, efSearch 64 (the reference of issue 14); Chroma and Qdrant run their defaults
(Chroma: HNSW, inner product; Qdrant's local mode is its pure-Python in-process store, an exact
scan, and says so in its warnings); LanceDB builds IVF_PQ (its documented default kind, ``dim / 8``
sub-vectors) and its ``nprobes`` / ``refine_factor`` are raised along a fixed ladder until
recall@10 >= ``--min-recall`` (0.9) on the first 100 queries, so its speed is quoted at a recall
the others reach too; below 5,000 vectors it is left unindexed (an exact scan). sigmavault uses
``sv.open`` + ``vault.collection(name, embedder=None)`` + ``add`` and nothing else. Recall is
printed beside every speed: a store is only faster than another at the recall it reached.

Data: ``clustered`` (the seeded generator of ``benchmarks/ann.py``, ``--n`` x 384, default 100k)
and ``debian`` (Debian package descriptions from ``apt-cache dumpavail`` embedded with the
project's default embedder, all-MiniLM-L6-v2, cached in ``bench-out/`` as ``ann.py`` does).
A store whose package is missing reports ``{"skipped": "not installed"}``; one that fails or
runs past ``--timeout`` reports ``{"error": ...}``. Everything is written to a temporary directory
under ``bench-out/`` that is removed at the end.

    .venv/bin/python benchmarks/peers.py                  # 100k clustered + 10k Debian texts
    .venv/bin/python benchmarks/peers.py --quick          # 20k + 5k texts, 200 queries, 300 s per store
    .venv/bin/python benchmarks/peers.py --n 2000 --no-text --peers faiss,sigmavault

Prints one JSON object on stdout (``--markdown`` adds a table on stderr); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ann import K, clustered, debian, ground_truth, log, recall  # noqa: E402  (the shared data sets)

PEERS = ("faiss", "chroma", "lancedb", "qdrant", "sigmavault")
MODULES = {
    "faiss": "faiss",
    "chroma": "chromadb",
    "lancedb": "lancedb",
    "qdrant": "qdrant_client",
    "sigmavault": "sigmavault",
}
TUNE_QUERIES = 100
LANCE_LADDER = ((10, 0), (20, 0), (10, 2), (20, 2), (20, 5), (40, 5), (40, 10), (80, 10), (160, 20))


# -- adapters: one per store, the only code that differs between them -------------------------


class TooSlow(RuntimeError):
    """A build that would run past the time allowed, said early with the rate it reached."""


class Store:
    """A store under test: build in one process, open and search in others."""

    knobs: dict[str, Any]
    budget_s = float("inf")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.knobs = {}

    def check_pace(self, done: int, total: int, start: float) -> None:
        """Give up a batched ingest as soon as it is projected to run past ``--timeout``."""
        elapsed = time.perf_counter() - start
        if done < total and elapsed * total / done > self.budget_s:
            raise TooSlow(
                f"ingest projected at {elapsed * total / done:.0f} s ({done / elapsed:.0f} vectors/s after {done:,}),"
                f" over --timeout {self.budget_s:.0f} s"
            )

    def build(self, x: np.ndarray) -> dict[str, Any]:
        """Ingest ``x`` with ids 0..n-1 and close; return extra timings (``index_s``) or settings."""
        raise NotImplementedError

    def open(self) -> None:
        raise NotImplementedError

    def one(self, v: np.ndarray) -> list[int]:
        raise NotImplementedError

    def many(self, q: np.ndarray) -> list[list[int]]:
        raise NotImplementedError

    def tune(self, q: np.ndarray, truth: np.ndarray, min_recall: float) -> None:
        """Stores with query-time knobs pick the cheapest setting reaching ``min_recall``."""

    def close(self) -> None:
        pass


class Faiss(Store):
    M, EF_CONSTRUCTION, EF_SEARCH = 32, 40, 64

    def build(self, x: np.ndarray) -> dict[str, Any]:
        import faiss

        index = faiss.IndexHNSWFlat(x.shape[1], self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.EF_CONSTRUCTION
        for s in range(0, len(x), 50_000):
            index.add(np.ascontiguousarray(x[s : s + 50_000]))
        self.path.mkdir(parents=True, exist_ok=True)
        faiss.write_index(index, str(self.path / "hnsw.faiss"))
        return {"config": f"IndexHNSWFlat M={self.M} efConstruction={self.EF_CONSTRUCTION} efSearch={self.EF_SEARCH}"}

    def open(self) -> None:
        import faiss

        self.index = faiss.read_index(str(self.path / "hnsw.faiss"))
        self.index.hnsw.efSearch = self.EF_SEARCH

    def one(self, v: np.ndarray) -> list[int]:
        return self.index.search(v[None, :], K)[1][0].tolist()  # type: ignore[no-any-return]

    def many(self, q: np.ndarray) -> list[list[int]]:
        return self.index.search(q, K)[1].tolist()  # type: ignore[no-any-return]


class Chroma(Store):
    def _client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        return chromadb.PersistentClient(path=str(self.path), settings=Settings(anonymized_telemetry=False))

    def build(self, x: np.ndarray) -> dict[str, Any]:
        client = self._client()
        col = client.create_collection("bench", metadata={"hnsw:space": "ip"})
        step, start = min(5_000, client.get_max_batch_size()), time.perf_counter()
        for s in range(0, len(x), step):
            e = min(len(x), s + step)
            col.add(ids=[str(i) for i in range(s, e)], embeddings=x[s:e])
            self.check_pace(e, len(x), start)
        return {"config": "defaults (HNSW), space ip"}

    def open(self) -> None:
        self.client = self._client()
        self.col = self.client.get_collection("bench")

    def one(self, v: np.ndarray) -> list[int]:
        out = self.col.query(query_embeddings=v[None, :], n_results=K, include=[])
        return [int(i) for i in out["ids"][0]]

    def many(self, q: np.ndarray) -> list[list[int]]:
        out = self.col.query(query_embeddings=q, n_results=K, include=[])
        return [[int(i) for i in ids] for ids in out["ids"]]


class Lance(Store):
    MIN_INDEXED = 5_000

    def build(self, x: np.ndarray) -> dict[str, Any]:
        import lancedb
        import pyarrow as pa

        db = lancedb.connect(str(self.path))
        dim = x.shape[1]
        table = None
        for s in range(0, len(x), 100_000):
            chunk = np.ascontiguousarray(x[s : s + 100_000], dtype=np.float32)
            batch = pa.table(
                {
                    "id": pa.array(np.arange(s, s + len(chunk), dtype=np.int64)),
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(chunk.reshape(-1)), dim),
                }
            )
            if table is None:
                table = db.create_table("bench", batch)
            else:
                table.add(batch)
        assert table is not None
        ingest_done = time.perf_counter()
        config = "no index (exact scan)"
        if len(x) >= self.MIN_INDEXED:
            from lancedb.index import IvfPq

            table.create_index("vector", config=IvfPq(distance_type="dot", num_sub_vectors=dim // 8))
            config = f"IVF_PQ dot, num_partitions sqrt(n), num_sub_vectors {dim // 8}"
        return {"index_s": time.perf_counter() - ingest_done, "config": config}

    def open(self) -> None:
        import lancedb

        self.table = lancedb.connect(str(self.path)).open_table("bench")
        self.indexed = bool(self.table.list_indices())

    def _query(self, q: Any) -> Any:
        s = self.table.search(q).distance_type("dot").limit(K).select(["id", "_distance"])
        if self.indexed and self.knobs:
            s = s.nprobes(self.knobs["nprobes"])
            if self.knobs["refine_factor"]:
                s = s.refine_factor(self.knobs["refine_factor"])
        return s.to_arrow()

    def one(self, v: np.ndarray) -> list[int]:
        return self._query(v).column("id").to_pylist()  # type: ignore[no-any-return]

    def many(self, q: np.ndarray) -> list[list[int]]:
        t = self._query(list(q))
        out: list[list[int]] = [[] for _ in range(len(q))]
        for qi, i in zip(t.column("query_index").to_pylist(), t.column("id").to_pylist(), strict=True):
            out[qi].append(i)
        return out

    def tune(self, q: np.ndarray, truth: np.ndarray, min_recall: float) -> None:
        if not self.indexed:
            return
        for nprobes, refine in LANCE_LADDER:
            self.knobs = {"nprobes": nprobes, "refine_factor": refine}
            got = recall(pad([self.one(v) for v in q]), truth)
            if got >= min_recall:
                break
        self.knobs["tuned_recall"] = round(got, 4)


class Qdrant(Store):
    def build(self, x: np.ndarray) -> dict[str, Any]:
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=str(self.path))
        client.create_collection(
            "bench", vectors_config=models.VectorParams(size=x.shape[1], distance=models.Distance.DOT)
        )
        start = time.perf_counter()
        try:
            for s in range(0, len(x), 1_000):
                e = min(len(x), s + 1_000)
                client.upsert("bench", points=models.Batch(ids=list(range(s, e)), vectors=x[s:e].tolist()))
                self.check_pace(e, len(x), start)
        finally:
            client.close()
        return {"config": "local mode (in-process, exact), distance dot"}

    def open(self) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(path=str(self.path))

    def one(self, v: np.ndarray) -> list[int]:
        points = self.client.query_points("bench", query=v.tolist(), limit=K, with_payload=False).points
        return [int(p.id) for p in points]

    def many(self, q: np.ndarray) -> list[list[int]]:
        from qdrant_client import models

        reqs = [models.QueryRequest(query=v.tolist(), limit=K, with_payload=False) for v in q]
        return [[int(p.id) for p in r.points] for r in self.client.query_batch_points("bench", requests=reqs)]

    def close(self) -> None:
        self.client.close()


class Sigmavault(Store):
    def build(self, x: np.ndarray) -> dict[str, Any]:
        import sigmavault as sv

        with sv.open(self.path) as vault:
            vault.collection("bench", embedder=None).add(vectors=x, ids=[str(i) for i in range(len(x))])
        return {"config": "defaults: sv.open, collection(embedder=None), add"}

    def open(self) -> None:
        import sigmavault as sv

        self.vault = sv.open(self.path)
        self.col = self.vault.collection("bench", embedder=None)

    def one(self, v: np.ndarray) -> list[int]:
        return [int(h.id) for h in self.col.search(v, K)]

    def many(self, q: np.ndarray) -> list[list[int]]:
        return [[int(h.id) for h in hits] for hits in self.col.search_batch(q, K)]

    def close(self) -> None:
        self.vault.close()


ADAPTERS: dict[str, type[Store]] = {
    "faiss": Faiss,
    "chroma": Chroma,
    "lancedb": Lance,
    "qdrant": Qdrant,
    "sigmavault": Sigmavault,
}


def pad(found: list[list[int]]) -> np.ndarray:
    return np.array([(f + [-1] * K)[:K] for f in found], dtype=np.int64)


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- children: each phase in a fresh process ---------------------------------------------------


def pin_one_core() -> None:
    """Runs in the forked child before it starts Python: every thread pool it makes sees one CPU."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def faiss_one_thread() -> None:
    import faiss

    faiss.omp_set_num_threads(1)


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    names = args.names.split(",")
    Store.budget_s = args.timeout
    if args.child == "single":
        faiss_one_thread()
    started = time.perf_counter()
    for name in names:
        importlib.import_module(MODULES[name])
    import_s = time.perf_counter() - started
    if args.child == "build":
        (name,) = names
        x = np.load(work / "x.npy", mmap_mode="r")
        start = time.perf_counter()
        try:
            extra = ADAPTERS[name](work / name).build(np.asarray(x))
        except TooSlow as exc:
            sys.exit(f"TooSlow: {exc}")
        total = time.perf_counter() - start
        index_s = extra.pop("index_s", 0.0)
        print(json.dumps({
            "ingest_s": round(total - index_s, 3), "index_s": round(index_s, 3), "ready_s": round(total, 3),
            **extra,
        }))  # fmt: skip
        return
    q, truth = np.load(work / "q.npy"), np.load(work / "truth.npy")
    if args.child == "open":
        (name,) = names
        start = time.perf_counter()
        store = ADAPTERS[name](work / name)
        store.open()
        store.one(q[0])
        out: dict[str, Any] = {"reopen_first_query_s": round(time.perf_counter() - start, 3)}
        out["import_s"] = round(import_s, 3)
        store.close()
        print(json.dumps(out))
        return
    stores = {name: ADAPTERS[name](work / name) for name in names}
    for name, store in stores.items():
        store.open()
        knobs = work / f"{name}-knobs.json"  # the batch phase searches with the knobs the single phase tuned
        if args.child == "single":
            store.tune(q[:TUNE_QUERIES], truth[:TUNE_QUERIES], args.min_recall)
            knobs.write_text(json.dumps(store.knobs))
        elif knobs.exists():
            store.knobs = json.loads(knobs.read_text())
        for v in q[: min(20, len(q))]:  # warm up each store the same way
            store.one(v)
    result: dict[str, dict[str, Any]] = {name: {} for name in stores}
    order = list(stores)
    if args.child == "single":
        lat: dict[str, list[float]] = {name: [] for name in stores}
        found: dict[str, list[list[int]]] = {name: [] for name in stores}
        for i, v in enumerate(q):
            for name in order[i % len(order) :] + order[: i % len(order)]:
                t = time.perf_counter()
                ids = stores[name].one(v)
                lat[name].append(time.perf_counter() - t)
                found[name].append(ids)
        for name, store in stores.items():
            ms = np.array(lat[name]) * 1e3
            result[name] = {
                "p50_ms": round(float(np.percentile(ms, 50)), 3),
                "p99_ms": round(float(np.percentile(ms, 99)), 3),
                "recall_at_10": round(recall(pad(found[name]), truth), 4),
            }
            if store.knobs:
                result[name]["tuned"] = store.knobs
    else:
        best = {name: np.inf for name in stores}
        batch_recall = {}
        for r in range(3):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                t = time.perf_counter()
                got = stores[name].many(q)
                best[name] = min(best[name], time.perf_counter() - t)
                batch_recall[name] = recall(pad(got), truth)
        for name in stores:
            result[name] = {"batch_qps": round(len(q) / best[name]), "batch_recall_at_10": round(batch_recall[name], 4)}
    for store in stores.values():
        store.close()
    print(json.dumps(result))


def spawn(phase: str, names: list[str], work: Path, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Run one phase in a fresh process; raise RuntimeError with its stderr tail when it fails."""
    cmd = [
        sys.executable, __file__, "--child", phase, "--names", ",".join(names), "--work", str(work),
        "--min-recall", str(args.min_recall), "--timeout", str(timeout),
    ]  # fmt: skip
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    # NOTE: single queries run pinned to one core from exec on, so numpy's BLAS, OpenMP and the Rust
    # stores' pools all size themselves to one CPU; a store cannot fan one query out to idle cores.
    pin = pin_one_core if phase == "single" else None
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout + 60, check=False, env=env, preexec_fn=pin
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{phase}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{phase}: exit {proc.returncode}: {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def speed(phase: str, names: list[str], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """All stores in one process (interleaved); if that process fails, each store alone."""
    if not names:
        return {}
    try:
        return spawn(phase, names, work, args, args.timeout * len(names))
    except RuntimeError as exc:
        if len(names) == 1:
            return {names[0]: {"error": str(exc)}}
        log(f"  {phase} with all stores failed ({exc}); measuring each alone")
    out = {}
    for name in names:
        try:
            out.update(spawn(phase, [name], work, args, args.timeout))
        except RuntimeError as exc:
            out[name] = {"error": str(exc)}
    return out


def run_set(label: str, x: np.ndarray, q: np.ndarray, peers: list[str], args: argparse.Namespace) -> dict[str, Any]:
    log(f"{label}: {len(x):,} x {x.shape[1]}, {len(q)} queries; brute-force ground truth")
    work = Path(tempfile.mkdtemp(prefix=f"peers-{label}-", dir=args.out))
    result: dict[str, Any] = {"vectors": len(x), "dim": int(x.shape[1]), "queries": len(q)}
    stores: dict[str, dict[str, Any]] = {}
    try:
        np.save(work / "x.npy", x)
        np.save(work / "q.npy", q)
        np.save(work / "truth.npy", ground_truth(x, q))
        ok = []
        for name in peers:
            if importlib.util.find_spec(MODULES[name]) is None:
                stores[name] = {"skipped": "not installed"}
                continue
            log(f"{label}/{name}: ingest, then reopen + first query in a fresh process")
            try:
                stores[name] = spawn("build", [name], work, args, args.timeout)
                stores[name].update(spawn("open", [name], work, args, args.timeout))
                ok.append(name)
            except RuntimeError as exc:
                stores[name] = {"error": str(exc)}
            log(f"  {json.dumps(stores[name])}")
        log(f"{label}: single queries, interleaved, one core: {', '.join(ok)}")
        single = speed("single", ok, work, args)
        log(f"{label}: batches, interleaved, all cores")
        batch = speed("batch", [n for n in ok if "error" not in single.get(n, {})], work, args)
        for name in ok:
            stores[name].update(single.get(name, {}))
            stores[name].update(batch.get(name, {}))
            stores[name]["disk_bytes"] = disk_bytes(work / name)
        sv = stores.get("sigmavault", {})
        for name, row in stores.items():
            if name != "sigmavault" and "p50_ms" in row and "p50_ms" in sv:
                row["sigmavault_over_this"] = {
                    "p50_ms": round(sv["p50_ms"] / row["p50_ms"], 3),
                    "batch_qps": round(sv["batch_qps"] / row["batch_qps"], 3)
                    if "batch_qps" in row and "batch_qps" in sv
                    else None,
                    "ready_s": round(sv["ready_s"] / row["ready_s"], 3),
                    "reopen_first_query_s": round(sv["reopen_first_query_s"] / row["reopen_first_query_s"], 3),
                    "disk_bytes": round(sv["disk_bytes"] / row["disk_bytes"], 3),
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["stores"] = stores
    log(f"{label} done (load average {os.getloadavg()[0]:.2f}): {json.dumps(result)}")  # kept if a later set dies
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for label in ("clustered", "debian_minilm"):
        if label not in report:
            continue
        s = report[label]
        lines += [
            f"\n{label}: {s['vectors']:,} x {s['dim']}, {s['queries']} queries, k={K}\n",
            "| store | recall@10 | p50 / p99 ms | batch QPS | ingest (+ index) s | reopen + 1st query s | disk MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in s["stores"].items():
            if "skipped" in r or "error" in r:
                lines.append(f"| {name} | {r.get('skipped') or r.get('error')} | | | | | |")
                continue
            ready = f"{r['ingest_s']:.2f}" + (f" (+ {r['index_s']:.1f})" if r.get("index_s") else "")
            lines.append(
                f"| {name} | {r.get('recall_at_10', '-')} | {r.get('p50_ms', '-')} / {r.get('p99_ms', '-')} "
                f"| {r.get('batch_qps', '-')} | {ready} | {r['reopen_first_query_s']} | {r['disk_bytes'] / 1e6:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="clustered vectors (default 100k)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--text-units", type=int, default=10_000, help="Debian descriptions stored (default 10k)")
    parser.add_argument("--no-text", action="store_true", help="skip the Debian/MiniLM set")
    parser.add_argument("--no-clustered", action="store_true", help="skip the clustered set")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of: {', '.join(PEERS)}")
    parser.add_argument("--timeout", type=float, help="seconds per store and phase (default 1800; 300 with --quick)")
    parser.add_argument("--min-recall", type=float, default=0.9, help="recall LanceDB's knobs are raised to")
    parser.add_argument("--quick", action="store_true", help="20k vectors, 5k texts, 200 queries")
    parser.add_argument("--markdown", action="store_true", help="also print the README table on stderr")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--child", choices=("build", "open", "single", "batch"), help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.n, args.text_units, args.queries = min(args.n, 20_000), min(args.text_units, 5_000), 200
    if args.timeout is None:
        args.timeout = 300.0 if args.quick else 1800.0
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {}
    for name in peers:
        dist = {"faiss": "faiss-cpu", "qdrant": "qdrant-client"}.get(name, MODULES[name])
        try:
            from importlib.metadata import version

            versions[name] = version(dist)
        except Exception:
            versions[name] = None
    started = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "peers",
        "quick": args.quick,
        "k": K,
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "versions": versions,
    }
    if not args.no_clustered:
        log(f"generating {args.n:,} x {args.dim} clustered vectors (seeded)")
        x, q = clustered(args.n, args.dim, seed=42, queries=args.queries)
        report["clustered"] = run_set("clustered", x, q, peers, args)
        del x, q
    if not args.no_text:
        x, q, _ = debian(args.out, args.text_units, args.queries)
        report["debian_minilm"] = run_set("debian", x, q, peers, args)
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    report["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    if args.markdown:
        print(markdown(report), file=sys.stderr)


if __name__ == "__main__":
    main()
