"""KV compression benchmark: token pruning and quantization of a stored long-context cache, with their quality.

On the tiny Llama-style model trained locally on the bundled corpus (``sigmavault.testing.tiny_llm``, built once
into ``--model`` and reused) and a ``--tokens``-long sequence of that corpus, for each pruning policy at ratios
0.75 / 0.5 / 0.25, for q8 and q4 without pruning, and for the lossless cache: bytes on disk, bytes per kept token,
warm-start time (open the vault, ``vault.kv.load`` from disk, one forward step for the next token) against a cold
prefill, top-1 agreement and mean KL of next-token distributions over ``--new`` greedy tokens against the lossless
cache, the perplexity change on a held-out continuation of ``--heldout`` tokens, and whether the save-time gate
(``max_kl``) stores the pruned cache or refuses it.

    .venv/bin/python benchmarks/kv_compression.py               # JSON
    .venv/bin/python benchmarks/kv_compression.py --markdown    # the same rows as a table

NOTE: chunk files written moments before are in the OS page cache; warm starts measure the store's own work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import sigmavault as sv
from sigmavault.kv import PRUNE_POLICIES
from sigmavault.testing import tiny_llm

RATIOS = (0.75, 0.5, 0.25)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0] if os.path.exists("/proc/loadavg") else "n/a"


def median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sequence(tokenizer: Any, length: int) -> Any:
    ids = tokenizer("</s>".join(tiny_llm.corpus_texts()))["input_ids"]
    if len(ids) < length:
        raise SystemExit(f"the corpus has only {len(ids)} tokens")
    return torch.tensor(ids[:length])[None]


def measure(
    model: Any,
    ids: Any,
    cache: Any,
    root: Path,
    args: argparse.Namespace,
    *,
    prune: str | None,
    ratio: float | None,
    codec: str,
) -> dict[str, Any]:
    """One row: save with the gate, reopen, time warm starts, and evaluate quality."""
    context = ids[:, : ids.shape[1] - args.heldout]
    n = context.shape[1]
    path = root / f"{prune}-{ratio}-{codec}"
    with sv.open(path) as vault:
        saved = vault.kv.save(model, context, cache, prune=prune, ratio=ratio, codec=codec, max_kl=args.max_kl)
        quality = vault.kv.evaluate(
            model, ids, prune=prune, ratio=ratio, codec=codec, new_tokens=args.new, heldout=args.heldout
        )
    nxt = ids[:, : n + 1]
    loaded_prune = saved.prune  # what the gate let through: load exactly that

    def warm() -> None:
        with sv.open(path) as vault, torch.no_grad():
            got = vault.kv.load(model, nxt, codec=codec, prune=loaded_prune)
            assert got.tokens == n, (got.tokens, n)
            model(nxt[:, n:], cache=got.cache, position_ids=torch.tensor([[n]]))

    row = {
        "prune": prune,
        "ratio": ratio,
        "codec": codec.split(",")[0],
        "kept": quality.kept,
        "bytes": saved.new_bytes,
        "bytes_per_kept_token": round(saved.new_bytes / (saved.kept or n), 1),
        "warm_start_s": round(median_time(warm, args.repeats), 4),
        "top1": round(quality.top1, 4),
        "mean_kl": round(quality.mean_kl, 5),
        "max_kl": round(quality.max_kl, 4),
        "ppl_change": round(quality.ppl_change or 0.0, 4),
        "gate_kl": None if saved.kl is None else round(saved.kl, 5),
        "stored": "pruned" if saved.prune else ("lossless" if prune is None else "refused: lossless"),
    }
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    before = loadavg()
    model, tokenizer = tiny_llm.ensure(args.model, steps=args.steps)
    model.set_attn_implementation("eager")  # h2o reads the model's attention weights
    info = json.loads((Path(args.model) / "tiny_llm.json").read_text())
    ids = sequence(tokenizer, args.tokens + args.heldout)
    context = ids[:, : args.tokens]
    with torch.no_grad():
        cache = model(context, use_cache=True).cache
    prefill_s = median_time(lambda: model(context, use_cache=True), args.repeats)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sv-kvc-") as tmp:
        root = Path(tmp)
        rows.append(measure(model, ids, cache, root, args, prune=None, ratio=None, codec="native"))
        for codec in ("q8", "q4"):
            rows.append(measure(model, ids, cache, root, args, prune=None, ratio=None, codec=codec))
        for policy in PRUNE_POLICIES:
            for ratio in RATIOS:
                rows.append(measure(model, ids, cache, root, args, prune=policy, ratio=ratio, codec="native"))
        for policy in PRUNE_POLICIES:
            rows.append(measure(model, ids, cache, root, args, prune=policy, ratio=0.5, codec="q8"))
    lossless = rows[0]["bytes"]
    for row in rows:
        row["bytes_vs_lossless"] = round(row["bytes"] / lossless, 3)
        row["warm_vs_prefill"] = round(row["warm_start_s"] / prefill_s, 3)
    good = [r for r in rows if r["prune"] and r["ratio"] == 0.5 and r["codec"] == "native" and r["top1"] >= 0.95]
    gate_ok = all((r["top1"] >= 0.95) == (r["stored"] == "pruned") for r in rows if r["prune"])
    return {
        "model": {"dir": str(args.model), **info},
        "tokens": args.tokens,
        "heldout": args.heldout,
        "new_tokens": args.new,
        "max_kl": args.max_kl,
        "threads": args.threads,
        "prefill_s": round(prefill_s, 4),
        "load_average": {"before": before, "after": loadavg()},
        "rows": rows,
        "target_top1_at_half": [r["prune"] for r in good],
        "gate_stops_exactly_those_below_top1_0.95": gate_ok,
    }


def markdown(result: dict[str, Any]) -> str:
    cols = [
        "prune",
        "ratio",
        "codec",
        "kept",
        "bytes",
        "bytes_per_kept_token",
        "warm_start_s",
        "top1",
        "mean_kl",
        "ppl_change",
        "gate_kl",
        "stored",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in result["rows"]:
        lines.append("| " + " | ".join("-" if row[c] is None else str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("bench-out/tiny-model"), help="tiny model dir (reused)")
    parser.add_argument("--steps", type=int, default=tiny_llm.DEFAULT_STEPS, help="training steps if the dir is empty")
    parser.add_argument("--tokens", type=int, default=2048, help="context tokens whose cache is compressed")
    parser.add_argument("--heldout", type=int, default=64, help="held-out continuation for perplexity")
    parser.add_argument("--new", type=int, default=32, help="greedy tokens compared (top-1, KL)")
    parser.add_argument("--max-kl", type=float, default=0.05, help="the gate: mean KL (nats) a pruning may cost")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true", help="print the rows as a markdown table too")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    if args.markdown:
        print(markdown(result))


if __name__ == "__main__":
    main()
