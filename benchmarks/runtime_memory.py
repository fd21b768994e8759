"""Runtime memory: session recovery, witness record() latency, persisted throughput, aggregates at 1M.

    .venv/bin/python benchmarks/runtime_memory.py            # full: aggregates over 1M entries
    .venv/bin/python benchmarks/runtime_memory.py --quick    # 100k entries, fewer samples
    .venv/bin/python benchmarks/runtime_memory.py --quick --witness-writes --burners 2   # writes, idle and busy

Prints one JSON object. Peers, measured in the same run on the same machine:
- sessions: one JSON file per session (read + parse), the usual home-made session store;
- witness writes: a synchronous SQLite insert + commit per record (WAL, synchronous=NORMAL: the
  same durability class as the witness writer), and a JSONL log with an fsync per record;
- witness aggregates: the same percentiles computed from a plain JSONL request log (parse every
  line, then numpy), which is what a log without a query engine needs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import sigmavault as sv
from sigmavault.witness.entry import normalize  # the paced floor: record()'s own validation

MODELS = ("llama-3-8b", "mistral-7b", "qwen-2-7b", "phi-3-mini")
DAY_MS = 86_400_000
PERCENTILES = (50, 90, 95, 99)


def pct(samples_ns: list[int] | np.ndarray, ps: tuple[float, ...] = (50, 99, 99.9)) -> dict[str, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return {f"p{p:g}_us": round(float(v), 2) for p, v in zip(ps, np.percentile(arr, ps), strict=True)}


def make_entries(n: int, rng: np.random.Generator, *, dim: int, start_ms: int, span_ms: int) -> list[dict[str, Any]]:
    """Realistic entries: latency breakdown, tokens, routing, context ids, optional embeddings."""
    times = np.sort(rng.integers(start_ms, start_ms + span_ms, size=n))
    gen = rng.lognormal(5.5, 0.6, size=n)
    out = []
    vecs = rng.standard_normal((min(n, 2048), dim)).astype(np.float32) if dim else None
    for i in range(n):
        e: dict[str, Any] = {
            "session_id": f"s{i % 1000}",
            "timestamp": int(times[i]),
            "model": MODELS[i % len(MODELS)],
            "quality": float(rng.random()),
            "embedding_ms": 4.0,
            "retrieval_ms": 7.5,
            "routing_ms": 0.4,
            "generation_ms": float(gen[i]),
            "total_ms": float(gen[i] + 11.9),
            "prompt_tokens": 512,
            "completion_tokens": 128,
            "context_ids": ["u1", "u2", "u3"],
            "routing": {"model": MODELS[i % len(MODELS)], "context_bucket": "4k", "temperature": 0.7,
                        "top_p": 0.9, "confidence": 0.82},
        }  # fmt: skip
        if i % 50 == 0:
            e["error_type"] = "Timeout"
            e["error_message"] = "generation exceeded the deadline"
        if vecs is not None:
            e["query_embedding"] = vecs[i % len(vecs)]
            e["response_embedding"] = vecs[(i + 1) % len(vecs)]
        out.append(e)
    return out


# -- sessions -------------------------------------------------------------------------------


def bench_sessions(root: Path, n: int, lookups: int, rng: np.random.Generator) -> dict[str, Any]:
    vault = sv.open(root / "sessions")
    try:
        sessions = vault.sessions
    except (AttributeError, ImportError) as exc:
        vault.close()
        return {"available": False, "reason": f"vault.sessions is not built yet ({type(exc).__name__}: {exc})"}
    ctx = rng.standard_normal((n, 384)).astype(np.float32)
    ids = [f"sess-{i:06d}" for i in range(n)]
    for i, sid in enumerate(ids):
        sessions.open(sid, user_id=f"user{i % 100}", metadata={"lang": "en", "turn_budget": 20}, context=ctx[i])
    order = rng.integers(0, n, size=lookups)
    pc = time.perf_counter_ns
    ours = []
    for j in order:
        t = pc()
        sessions.get(ids[j])
        ours.append(pc() - t)
    vault.close()
    # peer: one JSON file per session
    folder = root / "sessions-json"
    folder.mkdir()
    for i, sid in enumerate(ids):
        doc = {"session_id": sid, "user_id": f"user{i % 100}", "turn_count": 0, "metadata": {"lang": "en"},
               "context": ctx[i].tolist()}  # fmt: skip
        (folder / f"{sid}.json").write_text(json.dumps(doc))
    peer = []
    for j in order:
        t = pc()
        json.loads((folder / f"{ids[j]}.json").read_text())
        peer.append(pc() - t)
    o, p = pct(ours), pct(peer)
    return {
        "available": True, "sessions": n, "lookups": lookups, "get": o, "peer_json_file_per_session": p,
        "speedup_p50": round(p["p50_us"] / o["p50_us"], 2), "speedup_p99": round(p["p99_us"] / o["p99_us"], 2),
    }  # fmt: skip


# -- witness writes -------------------------------------------------------------------------


def bench_record(root: Path, name: str, entries: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    """record() on the caller's thread in a tight loop, then flush: latency and persisted rate."""
    gc.collect()
    vault = sv.open(root / name)
    w = vault.witness
    w.configure(**config)
    pc = time.perf_counter_ns
    lat = np.empty(len(entries), dtype=np.int64)
    cpu0 = time.process_time()
    caller0 = time.thread_time()
    t0 = time.perf_counter()
    for i, e in enumerate(entries):
        t = pc()
        w.record(e)
        lat[i] = pc() - t
    t_loop = time.perf_counter() - t0
    caller = time.thread_time() - caller0
    w.flush()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    status = w.status()
    assert status["entries"] == len(entries) and status["dropped"] == 0, status
    vault.close()
    # NOTE: cpu_us_per_record (caller + writer thread, process CPU time) depends far less on what else
    # the machine runs than the rates do; 1e6 / it is the rate one idle core would give.
    return {
        "entries": len(entries), "record": pct(lat), "caller_loop_s": round(t_loop, 3),
        "persisted_per_s": round(len(entries) / elapsed), "cpu_us_per_record": round(cpu / len(entries) * 1e6, 2),
        "caller_cpu_us_per_record": round(caller / len(entries) * 1e6, 2),
        "db_bytes": _size(root / name), "loadavg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def bench_record_paced(root: Path, entries: list[dict[str, Any]], rate: int) -> dict[str, Any]:
    """record() latency when requests arrive at ``rate`` per second, the caller sleeping in between
    (as a server waits on the network or the GPU, releasing the GIL), not in a tight loop.

    ``validation_only`` is the floor under it, paced the same way in the same run: only the
    validation and copy record() does on the caller's thread (entry.normalize), no queue and no
    writer. After each sleep the caller's caches are cold, so this costs ~3x its tight-loop time.
    """
    vault = sv.open(root / "paced")
    w = vault.witness
    out: dict[str, Any] = {"rate_per_s": rate, "entries": len(entries)}
    for name, fn in (("record", w.record), ("validation_only", normalize)):
        out[name] = pct(_paced(fn, entries, rate))
    w.flush()
    vault.close()
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return out


def _paced(fn: Callable[[Any], Any], entries: list[dict[str, Any]], rate: int) -> np.ndarray:
    pc = time.perf_counter_ns
    gap = 1_000_000_000 // rate
    lat = np.empty(len(entries), dtype=np.int64)
    start = pc()
    for i, e in enumerate(entries):
        wait = start + i * gap - pc()
        if wait > 0:
            time.sleep(wait / 1e9)
        t = pc()
        fn(e)
        lat[i] = pc() - t
    return lat


def _row(e: dict[str, Any]) -> tuple[Any, ...]:
    return (
        e["session_id"], e["timestamp"], e["model"], e["quality"], e["total_ms"],
        json.dumps({"context_ids": e["context_ids"], "routing": e["routing"], "error": e.get("error_message")}),
        None if "query_embedding" not in e else e["query_embedding"].tobytes(),
        None if "response_embedding" not in e else e["response_embedding"].tobytes(),
    )  # fmt: skip


def peer_sqlite_per_record(root: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The naive way: INSERT + COMMIT on the request path, one record at a time."""
    con = sqlite3.connect(root / "peer.db", isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute("CREATE TABLE log (session TEXT, ts INTEGER, model TEXT, quality REAL, total_ms REAL, payload TEXT, "
                "qv BLOB, rv BLOB)")  # fmt: skip
    pc = time.perf_counter_ns
    lat = np.empty(len(entries), dtype=np.int64)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i, e in enumerate(entries):
        t = pc()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(e))
        con.execute("COMMIT")
        lat[i] = pc() - t
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    con.close()
    return {
        "entries": len(entries), "record": pct(lat), "persisted_per_s": round(len(entries) / elapsed),
        "cpu_us_per_record": round(cpu / len(entries) * 1e6, 2),
    }  # fmt: skip


def peer_jsonl_fsync(root: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSONL request log, appended and fsynced per record (durable like a committed row)."""
    pc = time.perf_counter_ns
    lat = np.empty(len(entries), dtype=np.int64)
    t0 = time.perf_counter()
    with (root / "peer.jsonl").open("a") as fh:
        for i, e in enumerate(entries):
            t = pc()
            fh.write(json.dumps(_plain(e)) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            lat[i] = pc() - t
    elapsed = time.perf_counter() - t0
    return {"entries": len(entries), "record": pct(lat), "persisted_per_s": round(len(entries) / elapsed)}


def _plain(e: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in e.items()}


# -- witness reads at scale -----------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, float, Any]:
    """(first call ms, best of ``repeat`` later calls ms, result)."""
    t = time.perf_counter()
    result = fn()
    first = (time.perf_counter() - t) * 1000
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t) * 1000)
    return round(first, 1), round(best, 1), result


def bench_aggregates(root: Path, n: int, rng: np.random.Generator) -> dict[str, Any]:
    span = 30 * DAY_MS
    start = int(time.time() * 1000) - span
    vault = sv.open(root / "big")
    w = vault.witness
    w.configure(batch_size=1000, queue_size=200_000, overflow="block")
    peer_path = root / "big-peer.jsonl"
    t_load = 0.0
    chunk = 100_000
    with peer_path.open("w") as peer:
        for offset in range(0, n, chunk):
            part = make_entries(min(chunk, n - offset), rng, dim=0, start_ms=start + offset * span // n,
                                span_ms=max(1, span // max(1, n // chunk)))  # fmt: skip
            t = time.perf_counter()
            for e in part:
                w.record(e)
            w.flush()
            t_load += time.perf_counter() - t
            peer.writelines(json.dumps(e) + "\n" for e in part)
    out: dict[str, Any] = {"entries": n, "load_persisted_per_s": round(n / t_load)}
    first, best, ours = timed(lambda: w.stats("total_ms", by="model", percentiles=PERCENTILES))
    out["stats_by_model_ms"] = {"first": first, "best": best}
    first, best, _ = timed(lambda: w.stats("total_ms", by=("model", "time"), bucket="1d", percentiles=PERCENTILES))
    out["stats_by_model_and_day_ms"] = {"first": first, "best": best}
    first, best, _ = timed(lambda: w.stats("generation_ms", by=None, percentiles=PERCENTILES, model=MODELS[0]))
    out["stats_one_model_ms"] = {"first": first, "best": best}
    first, best, _ = timed(lambda: w.quality_trend(bucket="1d"))
    out["quality_trend_ms"] = {"first": first, "best": best}
    first, best, _ = timed(lambda: w.model_usage())
    out["model_usage_ms"] = {"first": first, "best": best}
    first, best, found = timed(lambda: w.query(model=MODELS[1], quality_below=0.05, limit=100, embeddings=False))
    out["query_filtered_100_ms"] = {"first": first, "best": best, "found": len(found)}
    first, best, _ = timed(lambda: w.query(errors_only=True, since=start + span - DAY_MS, limit=50))
    out["query_recent_errors_ms"] = {"first": first, "best": best}
    report = sv.CheckReport()
    t = time.perf_counter()
    w.check(report)  # recomputes every entry's digest and every batch hash
    out["verify_chain_s"] = round(time.perf_counter() - t, 2)
    out["verify_chain_ok"] = report.ok
    vault.close()
    out["db_bytes"] = _size(root / "big")
    # peer: parse the JSONL log, then numpy
    t = time.perf_counter()
    by_model: dict[str, list[float]] = {}
    with peer_path.open() as fh:
        for line in fh:
            e = json.loads(line)
            by_model.setdefault(e["model"], []).append(e["total_ms"])
    theirs = {m: np.percentile(np.asarray(v), PERCENTILES) for m, v in by_model.items()}
    peer_ms = (time.perf_counter() - t) * 1000
    out["peer_jsonl_stats_by_model_ms"] = round(peer_ms, 1)
    out["speedup_vs_jsonl_first"] = round(peer_ms / out["stats_by_model_ms"]["first"], 1)
    out["speedup_vs_jsonl_best"] = round(peer_ms / out["stats_by_model_ms"]["best"], 1)
    out["percentiles_agree_with_peer"] = all(
        np.array_equal(np.array([r[f"p{p}"] for p in PERCENTILES]), theirs[r["model"]]) for r in ours
    )
    return out


def bench_similarity(root: Path, name: str, dim: int) -> dict[str, Any]:
    vault = sv.open(root / name)
    w = vault.witness
    n = w.count()
    probe = np.random.default_rng(9).standard_normal(dim).astype(np.float32)
    first, best, _ = timed(lambda: w.similar(vector=probe, k=10))
    first_err, best_err, _ = timed(lambda: w.similar_errors(vector=probe, k=10))
    vault.close()
    return {"entries": n, "dim": dim, "similar_k10_ms": {"first": first, "best": best},
            "similar_errors_k10_ms": {"first": first_err, "best": best_err}}  # fmt: skip


def bench_witness_writes(root: Path, n: int, rng: np.random.Generator, *, quick: bool) -> dict[str, Any]:
    """record() in a tight loop (with and without embeddings), paced, and the two peers, in one go."""
    root.mkdir(parents=True)
    now = int(time.time() * 1000)
    plain = make_entries(n, rng, dim=0, start_ms=now - DAY_MS, span_ms=DAY_MS)
    embedded = make_entries(n // 2, rng, dim=384, start_ms=now - DAY_MS, span_ms=DAY_MS)
    witness: dict[str, Any] = {
        "record_no_embeddings": bench_record(root, "w-plain", plain),
        "record_2x384d_embeddings": bench_record(root, "w-embedded", embedded),
        "record_paced_5k_per_s": bench_record_paced(root, plain[: 10_000 if quick else 25_000], 5_000),
    }
    n_peer = 2_000 if quick else 5_000
    (root / "peers").mkdir()
    witness["peer_sqlite_commit_per_record"] = peer_sqlite_per_record(root / "peers", plain[:n_peer])
    witness["peer_jsonl_fsync_per_record"] = peer_jsonl_fsync(root / "peers", plain[:n_peer])
    ours = witness["record_no_embeddings"]
    for peer in ("peer_sqlite_commit_per_record", "peer_jsonl_fsync_per_record"):
        theirs = witness[peer]
        witness[f"ratio_vs_{peer[5:]}"] = {
            "record_p50": round(theirs["record"]["p50_us"] / ours["record"]["p50_us"], 1),
            "record_p99": round(theirs["record"]["p99_us"] / ours["record"]["p99_us"], 1),
            "persisted_per_s": round(ours["persisted_per_s"] / theirs["persisted_per_s"], 1),
        }
    return witness


@contextlib.contextmanager
def burners(n: int) -> Iterator[None]:
    """``n`` processes spinning on a CPU each: a busy machine, made on purpose."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(1.0)  # let the scheduler see them
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k entries for aggregates, fewer samples")
    parser.add_argument("--dir", help="working directory (default: a temp dir, removed afterwards)")
    parser.add_argument("--witness-writes", action="store_true", help="only the witness write figures and peers")
    parser.add_argument(
        "--burners", type=int, default=0, help="also measure witness writes with N busy-loop processes running"
    )
    args = parser.parse_args()
    quick = args.quick
    rng = np.random.default_rng(2024)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="sv-runtime-"))
    root.mkdir(parents=True, exist_ok=True)
    n_write = 20_000 if quick else 100_000
    n_agg = 100_000 if quick else 1_000_000
    result: dict[str, Any] = {
        "benchmark": "runtime_memory", "quick": quick, "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version, "cpus": os.cpu_count(), "machine": platform.machine(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    try:
        if not args.witness_writes:
            result["session_recovery"] = bench_sessions(
                root, 2_000 if quick else 10_000, 20_000 if quick else 100_000, rng
            )
        witness = bench_witness_writes(root / "writes", n_write, rng, quick=quick)
        if args.burners:
            with burners(args.burners):
                result["witness_busy"] = {
                    "burners": args.burners,
                    **bench_witness_writes(root / "writes-busy", n_write, rng, quick=quick),
                }
        if not args.witness_writes:
            witness["similarity"] = bench_similarity(root / "writes", "w-embedded", 384)
            witness["aggregates"] = bench_aggregates(root, n_agg, rng)
        result["witness"] = witness
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
