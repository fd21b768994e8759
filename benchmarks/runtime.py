"""Runtime benchmark: what the vault saves and costs per chat turn, against recomputing in the same run.

1. An 8-turn conversation (retrieval from the packaged corpus with the default MiniLM embedder, k passages
   a turn) that grows past 2,000 tokens, run twice turn by turn: ``sv.Runtime`` with the vault's KV store
   (warm: only the new tokens are prefilled) and ``sv.Runtime(kv=False)`` (every turn prefills its whole
   prompt). Per turn: time to first token, prefill, the ratio, and whether the greedy output is identical
   (native, lossless codec). The model is a Llama-style model with random weights, sized so that a 2k-token
   prefill costs real time on a CPU.
2. The same conversation with a restart after turn 4: turns 1-4 run in one process, 5-8 in a new one.
3. The vault's own overhead per warm turn: embed, retrieval, routing, prompt building, KV load and save,
   remembering the messages, the session update and the witness record: the turn's wall time minus
   prefill and decode, in ms and as a share of the turn, with the mean time of each step.
4. 1,000 sessions, each with its own KV prefix, under a 256 MiB RAM budget (tiny model): the RAM tier's
   bytes are read after every turn; the vault is then reopened and every session's next turn must start
   warm from disk.

    .venv/bin/python benchmarks/runtime.py              # full run
    .venv/bin/python benchmarks/runtime.py --quick      # smaller model, 3 turns, 50 sessions (a smoke run)

Prints one JSON object. Figures depend on the machine's load: note ``cat /proc/loadavg`` beside them.
torch runs on ``--threads`` threads (default 1): on a machine shared with other work, more threads than
idle cores spin on each other and time becomes noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import sigmavault as sv
from sigmavault.testing import tiny_llm

SYSTEM = "You answer from the context. Cite the passages you use."
QUESTIONS = [
    "How do readers avoid blocking writers?",
    "What happens when a writer waits on the lock?",
    "How is the write-ahead log checkpointed?",
    "How are vectors stored on disk?",
    "What does the KV cache store keep per chunk?",
    "How are sessions recovered after a restart?",
    "How do policies get consolidated?",
    "What does the witness log record for each request?",
]
OVERHEAD = (
    "embed_ms",
    "retrieval_ms",
    "routing_ms",
    "prompt_ms",
    "kv_load_ms",
    "kv_save_ms",
    "remember_ms",
    "session_ms",
    "witness_ms",
)


class HashEmbedder:
    """Words hashed into 64 signed buckets: a near-free embedder for the many-sessions part (not a quality one)."""

    name = "bench-hash-64"
    dim = 64

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = hashlib.sha256(word.encode()).digest()
                out[i, int.from_bytes(h[:4], "little") % self.dim] += 1.0 if h[4] & 1 else -1.0
            out[i, 0] += 1e-3
        return out


def turn_record(reply: Any) -> dict[str, Any]:
    lat = reply.latency
    return {
        "prompt_tokens": reply.prompt_tokens,
        "cached_tokens": reply.cached_tokens,
        "completion_tokens": reply.completion_tokens,
        "ttft_ms": lat["ttft_ms"],
        "prefill_ms": lat["prefill_ms"],
        "decode_ms": lat["decode_ms"],
        "total_ms": lat["total_ms"],
        # NOTE: wall time outside the model (the KV save overlaps the reply's embedding, so steps do not add up)
        "overhead_ms": round(lat["total_ms"] + lat.get("witness_ms", 0.0) - lat["prefill_ms"] - lat["decode_ms"], 3),
        "overhead": {key: lat.get(key, 0.0) for key in OVERHEAD},
        "ids": reply.output_ids,
    }


def warm_up(model: Any, tokenizer: Any) -> None:
    """One generate call on a prompt of a realistic length: the first call of a process pays one-time costs."""
    import torch

    ids = torch.tensor([tokenizer("\n".join(tiny_llm.corpus_texts()[:6]))["input_ids"][:400]])
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False, pad_token_id=0)
    sv.open(tempfile.mkdtemp(prefix="sv-warm-")).collection("warm").embedder.embed(["warm up"])  # type: ignore[union-attr]


def runtime(vault: sv.Vault, model: Any, tokenizer: Any, *, kv: bool = True) -> sv.Runtime:
    return sv.Runtime(
        vault, model, tokenizer, collection="docs", system_prompt=SYSTEM, kv=kv, generation=no_blanks(tokenizer)
    )


def no_blanks(tokenizer: Any) -> dict[str, Any]:
    """Generation settings that keep a random model from answering in whitespace only (which is not stored)."""
    blank = [i for i in range(len(tokenizer)) if not tokenizer.decode([i], skip_special_tokens=True).strip()]
    return {"suppress_tokens": blank}


def child(args: argparse.Namespace) -> None:
    """Turns ``args.first``..``args.last`` (1-based) of the conversation in this process; one JSON line each."""
    model, tokenizer = tiny_llm.load(args.model_dir)
    warm_up(model, tokenizer)
    with sv.open(args.vault) as vault:
        rt = runtime(vault, model, tokenizer)
        for q in QUESTIONS[args.first - 1 : args.last]:
            reply = rt.chat("talk", q, k=args.k, max_new_tokens=args.max_new_tokens)
            print(json.dumps(turn_record(reply)), flush=True)


def run_child(vault: Path, model_dir: Path, first: int, last: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--vault",
        str(vault),
        "--model-dir",
        str(model_dir),
        "--first",
        str(first),
        "--last",
        str(last),
        "--k",
        str(args.k),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def conversation(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model_dir = work / "model"
    tokenizer = tiny_llm.build_tokenizer()
    model = tiny_llm.build_model(
        tokenizer, hidden_size=args.hidden, layers=args.layers, heads=8, kv_heads=4, max_positions=8192, seed=0
    )
    tiny_llm.save(model, tokenizer, model_dir, info={"benchmark": "runtime"})
    params = sum(p.numel() for p in model.parameters())
    warm_up(model, tokenizer)
    base = work / "base"
    with sv.open(base) as vault:
        vault.collection("docs").add(tiny_llm.corpus_texts())
    for name in ("warm", "cold", "restart"):
        shutil.copytree(base, work / name)
    turns = []
    with sv.open(work / "warm") as wv, sv.open(work / "cold") as cv:
        warm, cold = runtime(wv, model, tokenizer), runtime(cv, model, tokenizer, kv=False)
        for q in QUESTIONS[: args.turns]:
            # NOTE: interleaved, so both see the same machine load at each turn
            w = turn_record(warm.chat("talk", q, k=args.k, max_new_tokens=args.max_new_tokens))
            c = turn_record(cold.chat("talk", q, k=args.k, max_new_tokens=args.max_new_tokens))
            turns.append({"warm": w, "cold": c})
    half = args.turns // 2
    restarted = run_child(work / "restart", model_dir, 1, half, args)
    restarted += run_child(work / "restart", model_dir, half + 1, args.turns, args)
    per_turn = []
    for i, (t, r) in enumerate(zip(turns, restarted, strict=True), 1):
        w, c = t["warm"], t["cold"]
        per_turn.append(
            {
                "turn": i,
                "prompt_tokens": w["prompt_tokens"],
                "cached_tokens": w["cached_tokens"],
                "ttft_ms_vault": w["ttft_ms"],
                "ttft_ms_no_cache": c["ttft_ms"],
                "ttft_speedup": round(c["ttft_ms"] / w["ttft_ms"], 2),
                "prefill_ms_vault": w["prefill_ms"],
                "prefill_ms_no_cache": c["prefill_ms"],
                "output_identical": w["ids"] == c["ids"],
                "warm_total_ms": w["total_ms"],
                "vault_overhead_ms": w["overhead_ms"],
                "vault_overhead_share": round(w["overhead_ms"] / w["total_ms"], 4),
                "restart_cached_tokens": r["cached_tokens"],
                "restart_ttft_ms": r["ttft_ms"],
                "restart_output_identical": r["ids"] == w["ids"],
            }
        )
    later = per_turn[1:]
    warm_turns = [t["warm"] for t in turns[1:]]
    return {
        "model": {"parameters": params, "hidden": args.hidden, "layers": args.layers, "kv_heads": 4},
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "turns": per_turn,
        "summary": {
            "final_prompt_tokens": per_turn[-1]["prompt_tokens"],
            "ttft_speedup_min_from_turn_2": min(t["ttft_speedup"] for t in later),
            "ttft_speedup_last_turn": per_turn[-1]["ttft_speedup"],
            "output_identical_all_turns": all(t["output_identical"] for t in per_turn),
            "restart_turn": half + 1,
            "restart_cached_tokens": per_turn[half]["restart_cached_tokens"],
            "no_restart_cached_tokens": per_turn[half]["cached_tokens"],
            "restart_ttft_ms": per_turn[half]["restart_ttft_ms"],
            "no_restart_ttft_ms": per_turn[half]["ttft_ms_vault"],
            "restart_outputs_identical": all(t["restart_output_identical"] for t in per_turn),
            "vault_overhead_ms_mean": round(statistics.mean(w["overhead_ms"] for w in warm_turns), 2),
            "vault_overhead_share_mean": round(
                statistics.mean(w["overhead_ms"] / w["total_ms"] for w in warm_turns), 4
            ),
            "vault_overhead_ms_by_step": {
                key: round(statistics.mean(w["overhead"][key] for w in warm_turns), 2) for key in OVERHEAD
            },
        },
    }


def many_sessions(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    tokenizer = tiny_llm.build_tokenizer()
    model = tiny_llm.build_model(tokenizer, seed=0)
    texts = tiny_llm.corpus_texts()
    budget = 256 * 2**20
    path = work / "sessions"
    messages = [f"Session {i}: {texts[i % len(texts)]} {texts[(i * 7 + 3) % len(texts)]}" for i in range(args.sessions)]
    ram_max = 0
    first: list[Any] = []
    start = time.perf_counter()
    with sv.open(path) as vault:
        vault.kv.configure(ram_bytes=budget)
        rt = sv.Runtime(
            vault,
            model,
            tokenizer,
            collection="empty",
            embedder=HashEmbedder(),
            system_prompt=SYSTEM,
            generation=no_blanks(tokenizer),
        )
        for i, message in enumerate(messages):
            first.append(rt.chat(f"user-{i}", message, max_new_tokens=2))
            ram_max = max(ram_max, vault.kv.stats()["ram"]["bytes"])
        stats = vault.kv.stats()
        first_pass = {
            "seconds": round(time.perf_counter() - start, 1),
            "ram_bytes_max": ram_max,
            "ram_evictions": stats["ram_evictions"],
            "disk_bytes": stats["disk"]["bytes"] if "bytes" in stats["disk"] else stats["disk"],
        }
    start = time.perf_counter()
    warm = 0
    ram_max_after = 0
    with sv.open(path) as vault:  # NOTE: reopened: the RAM tier starts empty, so every prefix comes from disk
        rt = sv.Runtime(
            vault,
            model,
            tokenizer,
            collection="empty",
            embedder=HashEmbedder(),
            system_prompt=SYSTEM,
            generation=no_blanks(tokenizer),
        )
        for i, before in enumerate(first):
            reply = rt.chat(f"user-{i}", "And then?", max_new_tokens=2)
            warm += reply.cached_tokens == before.prompt_tokens + before.completion_tokens - 1
            ram_max_after = max(ram_max_after, vault.kv.stats()["ram"]["bytes"])
        stats = vault.kv.stats()
        second = {
            "seconds": round(time.perf_counter() - start, 1),
            "sessions_warm": warm,
            "disk_hits": stats["disk_hits"],
            "ram_bytes_max": ram_max_after,
        }
    prefix_tokens = statistics.mean(r.prompt_tokens + r.completion_tokens for r in first)
    return {
        "sessions": args.sessions,
        "ram_budget_bytes": budget,
        "mean_prefix_tokens": round(prefix_tokens, 1),
        "first_turns": first_pass,
        "after_reopen": second,
        "ram_never_over_budget": max(ram_max, ram_max_after) <= budget,
        "every_session_warm": warm == args.sessions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small model, 3 turns, 50 sessions")
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--k", type=int, default=3, help="passages retrieved per turn")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: on a shared machine more threads spin)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--vault", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--last", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return
    if args.quick:
        args.turns, args.hidden, args.layers, args.sessions = 4, 128, 2, 50
    work = Path(tempfile.mkdtemp(prefix="sv-bench-runtime-"))
    try:
        load_before = os.getloadavg()
        result = {
            "benchmark": "runtime",
            "loadavg_before": [round(x, 2) for x in load_before],
            "torch_threads": args.threads,
            "conversation": conversation(args, work),
            "many_sessions": many_sessions(args, work),
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
