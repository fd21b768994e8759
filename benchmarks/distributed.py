"""Scale-out benchmark: a sharded collection on a local Ray cluster vs one vault, and KV warm starts
through the Redis tier vs the disk tier vs prefill. Prints one JSON object.

    .venv/bin/python benchmarks/distributed.py --vectors 1000000 --dim 384 --shards 4   # the issue's size
    .venv/bin/python benchmarks/distributed.py --vectors 100000 --index exact           # a busy shared box
    .venv/bin/python benchmarks/distributed.py --quick                                  # a smoke run

Vectors: ingest time, open time, single-query p50/p99 and QPS, batched QPS, recall@10 against a
brute-force scan, for one vault and for ``--shards`` shards on ``ray.init(num_cpus=2)``. On one
machine the shards share its cores, so they cannot be faster; the figure that carries over is the
scatter-gather overhead per query (the wall time of a scatter-gather minus the slowest shard's
search time measured inside its actor: RPC, serialisation, queueing and merge) and the per-shard
cost (one shard actor called directly), from which ``projection`` estimates
latency and throughput with one shard per machine on N machines (stated assumptions, on paper).

KV: a Llama-style model with random weights (built here) reads a ``--kv-tokens`` prompt; time to
first token by prefill (the peer), by a warm start from the disk tier of a freshly opened vault, and
by a warm start of an empty vault from a ``redis-server`` on loopback (started here), timed in turns.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import sigmavault as sv


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latency(fn: Callable[[Any], Any], queries: np.ndarray) -> dict[str, float]:
    times = [timed(lambda q=q: fn(q)) for q in queries]
    return {
        "p50_ms": round(1000 * float(np.percentile(times, 50)), 3),
        "p99_ms": round(1000 * float(np.percentile(times, 99)), 3),
        "qps": round(len(times) / sum(times), 1),
    }


def shard_p50(actor: Any, queries: np.ndarray) -> float:
    """One shard's own search latency, called directly (no scatter, no merge)."""
    import ray

    return latency(lambda q: ray.get(actor.search.remote(q, 10, {})), queries)["p50_ms"]


def gather_overhead(docs: Any, queries: np.ndarray) -> dict[str, float]:
    """Per query: wall time of a scatter-gather (submit to every shard, wait, merge) minus the slowest
    shard's own search time measured inside its actor, i.e. RPC, serialisation, queueing and merge."""
    import ray

    actors = [docs.actor(s) for s in range(docs.shards)]
    extra, inside = [], []
    for q in queries:
        start = time.perf_counter()
        answers = ray.get([a.search_timed.remote(q, 10, {}) for a in actors])
        merged = sorted((h for hits, _ in answers for h in hits), key=lambda h: (-h.score, h.id))[:10]
        wall = time.perf_counter() - start
        assert len(merged) == 10
        extra.append(wall - max(t for _, t in answers))
        inside.append(max(t for _, t in answers))
    return {
        "p50_ms": round(1000 * float(np.percentile(extra, 50)), 3),
        "p99_ms": round(1000 * float(np.percentile(extra, 99)), 3),
        "slowest_shard_inside_actor_p50_ms": round(1000 * float(np.percentile(inside, 50)), 3),
    }


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])), 4)


def vectors_part(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import ray

    from sigmavault.distributed import ShardedCollection

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.vectors, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(args.vectors)]
    queries = x[rng.choice(args.vectors, args.queries, replace=False)] + 0.1 * rng.standard_normal(
        (args.queries, args.dim)
    ).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = [[ids[i] for i in np.argsort(-(x @ q))[:10]] for q in queries]
    batch = 100
    out: dict[str, Any] = {}

    # one vault
    path = root / "one"
    with sv.open(path) as vault:
        col = vault.collection("docs", embedder=None, index=args.index)
        ingest = timed(lambda: col.add(vectors=x, ids=ids))
        col.search(queries[0], k=10)  # builds the ANN index when the choice makes one
    opened: dict[str, Any] = {}
    open_s = timed(lambda: opened.update(vault=sv.open(path)))
    vault = opened["vault"]
    col = vault.collection("docs", embedder=None)
    one = latency(lambda q: col.search(q, k=10), queries)
    batched = timed(lambda: [col.search_batch(queries[i : i + batch], k=10) for i in range(0, len(queries), batch)])
    found = [[h.id for h in col.search(q, k=10)] for q in queries]
    out["one_vault"] = {
        "ingest_s": round(ingest, 2),
        "open_s": round(open_s, 3),
        **one,
        "batched_qps": round(len(queries) / batched, 1),
        "recall_at_10": recall(found, truth),
        "index": col.index_info().get("active"),
    }
    vault.close()

    # shards on a local Ray cluster
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        create_s = timed(
            lambda: opened.update(docs=ShardedCollection.create(root, "sharded", shards=args.shards, index=args.index))
        )
        docs = opened["docs"]
        ingest = timed(lambda: docs.add(vectors=x, ids=ids))
        docs.search(queries[0], k=10)  # each shard builds its ANN index when the choice makes one
        docs.close()
        open_s = timed(lambda: opened.update(docs=ShardedCollection.open(root, "sharded")) or opened["docs"].count())
        docs = opened["docs"]
        sharded = latency(lambda q: docs.search(q, k=10), queries)
        batched = timed(
            lambda: [docs.search_batch(queries[i : i + batch], k=10) for i in range(0, len(queries), batch)]
        )
        found = [[h.id for h in docs.search(q, k=10)] for q in queries]
        shard_alone = [shard_p50(docs.actor(s), queries) for s in range(args.shards)]
        overhead = gather_overhead(docs, queries)
        out["sharded"] = {
            "shards": args.shards,
            "create_s": round(create_s, 2),
            "ingest_s": round(ingest, 2),
            "open_s": round(open_s, 3),
            **sharded,
            "batched_qps": round(len(queries) / batched, 1),
            "recall_at_10": recall(found, truth),
            "one_shard_call_p50_ms": shard_alone,
        }
        docs.close()
    finally:
        ray.shutdown()
    out["scatter_gather_overhead"] = {
        "p50_ms_vs_one_vault": round(sharded["p50_ms"] - one["p50_ms"], 3),
        "beyond_slowest_shard_inside_actor": overhead,
    }
    # NOTE: on paper. One shard per machine; an exact (or IVF) scan costs time linear in the rows a
    # shard holds, so a shard of N/M rows searches in inside * shards / M; a query waits for every
    # shard plus the measured gather overhead (RPC, serialisation, merge); each machine's core serves
    # one query per shard search time.
    inside = overhead["slowest_shard_inside_actor_p50_ms"]
    gather = overhead["p50_ms"]
    per_shard_rows = args.vectors / args.shards
    out["projection"] = {
        "assumptions": "one shard per machine, a shard's search time (inside its actor) linear in its rows, "
        "plus the measured gather overhead p50; 1 core per shard; network RTT not included",
        "machines": {
            str(m): {
                "shard_search_ms": round(inside * args.shards / m, 3),
                "latency_p50_ms": round(inside * args.shards / m + gather, 3),
                "qps_per_core": round(1000 / (inside * args.shards / m), 1),
            }
            for m in (1, 2, 4, 8, 16)
        },
        "measured_rows_per_shard": int(per_shard_rows),
    }
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kv_part(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    server = shutil.which("redis-server")
    if server is None:
        return {"skipped": "redis-server is not installed"}
    torch.manual_seed(0)
    dims = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "vocab_size": 8000}
    if not args.quick:
        dims = {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 8, "vocab_size": 32000}
    config = LlamaConfig(num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096, **dims)
    model = LlamaForCausalLM(config).eval()
    ids = torch.from_numpy(np.random.default_rng(1).integers(3, dims["vocab_size"], (1, args.kv_tokens))).long()

    @torch.no_grad()
    def prefill() -> Any:
        return model(ids, use_cache=True, logits_to_keep=1)

    @torch.no_grad()
    def warm(vault: sv.Vault) -> int:
        cache, n = vault.kv.load(model, ids)
        return int(model(ids[:, n:], cache=cache, use_cache=True, logits_to_keep=1).logits[0, -1].argmax())

    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ready to accept connections" in line:
            break
    url = f"redis://127.0.0.1:{port}/0"
    try:
        prefill()  # warm up kernels
        with sv.open(root / "kv-a") as vault:
            vault.kv.configure(remote=url, remote_timeout=5.0)
            saved = vault.kv.save(model, ids, prefill().cache)
        rounds = []
        for r in range(args.repeats):
            cold = timed(prefill)
            with sv.open(root / "kv-a") as vault:
                vault.kv.configure(ram_bytes=0)  # NOTE: every load reads the chunk files
                disk = timed(lambda v=vault: warm(v))
            with sv.open(root / f"kv-b{r}") as fresh:  # an empty vault on "another machine"
                fresh.kv.configure(remote=url, remote_timeout=5.0)
                remote = timed(lambda v=fresh: warm(v))
                hits = fresh.kv.stats()["remote"]["hits"]
            rounds.append((cold, disk, remote))
    finally:
        proc.kill()
        proc.wait()
    cold_s, disk_s, remote_s = (statistics.median(r[i] for r in rounds) for i in range(3))
    return {
        "model": dims,
        "prompt_tokens": args.kv_tokens,
        "stored_bytes": saved.new_bytes,
        "chunks_from_redis_per_start": hits,
        "prefill_s": round(cold_s, 4),
        "warm_disk_s": round(disk_s, 4),
        "warm_redis_s": round(remote_s, 4),
        "ttft_ratio_prefill_over_disk": round(statistics.median(r[0] / r[1] for r in rounds), 1),
        "ttft_ratio_prefill_over_redis": round(statistics.median(r[0] / r[2] for r in rounds), 1),
        "ttft_ratio_redis_over_disk": round(statistics.median(r[2] / r[1] for r in rounds), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--index", default="auto", choices=["auto", "exact", "hnsw", "ivf-rabitq"])
    parser.add_argument("--kv-tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20k vectors, 100 queries, a small KV model")
    parser.add_argument("--skip", choices=["vectors", "kv"], help="leave one part out")
    args = parser.parse_args()
    if args.quick:
        args.vectors, args.queries, args.repeats = 20_000, 100, 3
    result: dict[str, Any] = {"args": vars(args), "loadavg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="sv-dist-") as tmp:
        if args.skip != "vectors":
            result["vectors"] = vectors_part(args, Path(tmp))
        if args.skip != "kv":
            result["kv"] = kv_part(args, Path(tmp))
    result["loadavg_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
