"""Text and hybrid search benchmark: latency and relevance on real package descriptions.

Data: the one-line descriptions of Debian packages (``apt-cache dumpavail``), deduplicated and
shuffled exactly as ``benchmarks/ann.py`` does; the first ``--docs`` (default 10k) are stored as
units (text + all-MiniLM-L6-v2 vector, cached in ``bench-out/``, text by text).

Labelled set (built here, deterministic): each query is a held-out description (not stored)
wrapped in a natural-language request to exactly 10 words ("which package provides the
<description>"; a second set has 14 words). Its relevant units are the stored descriptions of
packages built from the same Debian *source* package (binary relevance; queries with 1..20
relevant units are kept). nDCG@10 is averaged over the queries.

Measured side by side, query by query, so every method sees the same machine load:
- ``text``: ``Collection.search(mode="text")`` (the query planner in ``units/textquery.py``);
- ``text_main``: the FTS5 statement main ran before this change (every word OR-ed, BM25 over
  all matches), on a second connection to the same file: a lower bound of main's time, since
  it skips main's Python around the statement;
- ``hybrid``: ``mode="hybrid"`` with the query vector given (embedding time excluded);
- ``hybrid_main``: the vector search plus ``text_main`` fused the same way (main's hybrid);
- ``vector``: vector search alone, for reference;
- ``hybrid_from_text``: ``search(text, mode="hybrid")`` on the same collection opened with the
  default embedder: what a user's hybrid query costs, embedding the query included;
- ``embed_query``: embedding the query alone (all-MiniLM-L6-v2, the default backend);
- ``rank_bm25``: ``rank_bm25.BM25Okapi`` in pure Python (extra ``[bench]``), when installed.

    .venv/bin/python benchmarks/text.py            # 10k docs, 1000 + 200 queries
    .venv/bin/python benchmarks/text.py --quick    # 10k docs, 200 + 50 queries, one run each

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

K = 10
# NOTE: templates of 2..6 words: the description fills the query up to the wanted length.
TEMPLATES = [
    "I need {}",
    "looking for {}",
    "find me the {}",
    "is there a {}",
    "I am looking for {}",
    "which package provides the {}",
    "what should I install for {}",
    "I want to install a {}",
    "where can I find a good {}",
    "is there a package with the {}",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- data -------------------------------------------------------------------------------------


def packages() -> dict[str, set[str]]:
    """Each description and the source packages whose binaries carry it."""
    raw = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    sources: dict[str, set[str]] = defaultdict(set)
    for para in raw.split("\n\n"):
        fields = {}
        for line in para.splitlines():
            if line[:1] not in (" ", "\t"):
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and "Description" in fields:
            sources[fields["Description"]].add((fields.get("Source") or fields["Package"]).split()[0])
    return sources


def labelled(docs: int, queries: int, long_queries: int) -> dict[str, Any]:
    """Stored texts, and the query sets with their relevant units (indexes into the texts)."""
    sources = packages()
    texts = [t for t in sorted(sources) if len(t) >= 12]
    np.random.default_rng(0).shuffle(texts)  # NOTE: the same order as benchmarks/ann.py
    stored = texts[:docs]
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(stored):
        for s in sources[t]:
            by_source[s].append(i)
    sets: dict[str, list[dict[str, Any]]] = {"10": [], "14": []}
    wanted = {"10": queries, "14": long_queries}
    for n, t in enumerate(texts[docs:]):
        relevant = sorted({i for s in sources[t] for i in by_source.get(s, ())})
        if not 1 <= len(relevant) <= 20:
            continue
        words = len(t.split())
        for length, out in sets.items():
            fits = [tpl for tpl in TEMPLATES if len(tpl.split()) - 1 + words == int(length)]
            if fits and len(out) < wanted[length]:
                out.append({"query": fits[n % len(fits)].format(t), "relevant": relevant})
                break
        if all(len(sets[key]) >= wanted[key] for key in sets):
            break
    return {"texts": stored, "sets": sets}


def embedded(out: Path, texts: Sequence[str]) -> np.ndarray:
    """MiniLM vectors of ``texts``; every text embedded once is cached (``bench-out/text-minilm.*``)."""
    cache_v, cache_t = out / "text-minilm.npy", out / "text-minilm.json"
    known: dict[str, int] = {}
    vecs = np.zeros((0, 384), np.float32)
    if cache_v.exists() and cache_t.exists():
        known = {t: i for i, t in enumerate(json.loads(cache_t.read_text()))}
        vecs = np.load(cache_v)
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        from sigmavault.embed import MiniLM

        log(f"embedding {len(missing):,} texts with all-MiniLM-L6-v2 (cached afterwards)")
        new = MiniLM(batch_size=256).embed(missing).astype(np.float32)
        known.update({t: len(vecs) + i for i, t in enumerate(missing)})
        vecs = np.concatenate([vecs, new])
        out.mkdir(parents=True, exist_ok=True)
        np.save(cache_v, vecs)
        cache_t.write_text(json.dumps(sorted(known, key=known.__getitem__)))
    return vecs[[known[t] for t in texts]]


# -- relevance --------------------------------------------------------------------------------


def ndcg(found: Sequence[int], relevant: Sequence[int]) -> float:
    rel = set(relevant)
    dcg = sum(1.0 / math.log2(r + 2) for r, i in enumerate(found[:K]) if i in rel)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(K, len(rel))))
    return dcg / ideal


# -- main's text query, for the same-run comparison -------------------------------------------


def main_match(text: str) -> str | None:
    """The FTS5 query main built: every word quoted, OR-ed."""
    words = re.findall(r"\w+", text.lower())
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words)) if words else None


MAIN_SQL = (
    "SELECT u.uid, -bm25(units_fts) AS score FROM units_fts JOIN units u ON u.rid = units_fts.rowid "
    "WHERE units_fts MATCH ? AND u.collection_id = ? AND u.state IN (?) AND 1 "
    "ORDER BY bm25(units_fts) LIMIT ?"
)


# -- measuring --------------------------------------------------------------------------------


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def run_set(
    methods: dict[str, Callable[[int], list[int]]], queries: list[dict[str, Any]], repeat: int
) -> dict[str, dict[str, float]]:
    """Each method on each query, interleaved query by query; best of ``repeat`` per query."""
    times: dict[str, list[float]] = {m: [] for m in methods}
    scores: dict[str, list[float]] = {m: [] for m in methods}
    found: dict[str, list[list[int]]] = {m: [] for m in methods}
    for qi, q in enumerate(queries):
        if qi and qi % 100 == 0:
            log(f"  {qi}/{len(queries)}")
        for name, fn in methods.items():
            best = math.inf
            for _ in range(repeat):
                start = time.perf_counter()
                got = fn(qi)
                best = min(best, time.perf_counter() - start)
            times[name].append(best)
            scores[name].append(ndcg(got, q["relevant"]))
            found[name].append(got)
    out: dict[str, dict[str, float]] = {}
    for name in methods:
        out[name] = {**percentiles(times[name]), "ndcg10": round(float(np.mean(scores[name])), 4)}
    # NOTE: how often the new text path returns main's top 10 (as a set): pruning at work.
    if "text" in found and "text_main" in found:
        same = [len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(found["text"], found["text_main"], strict=True)]
        out["text"]["overlap_with_main_at10"] = round(float(np.mean(same)), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000, help="descriptions stored (default 10k)")
    parser.add_argument("--queries", type=int, default=1000, help="10-word queries (default 1000)")
    parser.add_argument("--long-queries", type=int, default=200, help="14-word queries (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query; the best counts (default 3)")
    parser.add_argument("--quick", action="store_true", help="200 + 50 queries, 1 run each")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = parser.parse_args()
    if args.quick:
        args.queries, args.long_queries, args.repeat = 200, 50, 1

    import sigmavault as sv
    from sigmavault.units.search import fuse

    log("reading package descriptions and building the labelled set")
    data = labelled(args.docs, args.queries, args.long_queries)
    texts: list[str] = data["texts"]
    sets: dict[str, list[dict[str, Any]]] = data["sets"]
    all_queries = [q["query"] for key in ("10", "14") for q in sets[key]]
    vecs = embedded(args.out, texts + all_queries)
    x, qv = vecs[: len(texts)], vecs[len(texts) :]

    root = args.out / "text-vault"
    shutil.rmtree(root, ignore_errors=True)
    log(f"storing {len(texts):,} units")
    vault = sv.open(root)
    col = vault.collection("bench", embedder=None)
    col.add(texts, vectors=x, ids=[str(i) for i in range(len(texts))])
    cid = sqlite3.connect(root / "vault.db").execute("SELECT id FROM collections WHERE name = 'bench'").fetchone()[0]
    peer = sqlite3.connect(f"{(root / 'vault.db').resolve().as_uri()}?mode=ro", uri=True)

    # NOTE: the same collection with the default embedder: "hybrid_from_text" is what a user's
    # search("...", mode="hybrid") costs, embedding the query included.
    embedded_col: Any = None
    try:
        from sigmavault.embed import MiniLM

        embedded_col = vault.collection("bench", embedder=MiniLM())
        embedded_col.embedder.embed(["warm up"])
    except Exception as exc:  # a benchmark without the embed extra still runs
        log(f"no default embedder ({type(exc).__name__}): no hybrid_from_text figures")
        embedded_col = None

    bm25: Any = None
    try:
        from rank_bm25 import BM25Okapi

        bm25 = BM25Okapi([re.findall(r"\w+", t.lower()) for t in texts])
    except ImportError:
        log("rank_bm25 is not installed (extra [bench]): no pure-Python peer")

    result: dict[str, Any] = {
        "docs": len(texts),
        "k": K,
        "queries": {key: len(value) for key, value in sets.items()},
        "load_avg_before": [round(v, 2) for v in os.getloadavg()],
    }
    offset = 0
    for key in ("10", "14"):
        queries = sets[key]
        vectors = qv[offset : offset + len(queries)]
        offset += len(queries)

        def text_main(qi: int, depth: int = K, queries: list[dict[str, Any]] = queries) -> list[int]:
            match = main_match(queries[qi]["query"])
            rows = peer.execute(MAIN_SQL, (match, cid, "active", depth)).fetchall() if match else []
            return [int(r[0]) for r in rows]

        def text(qi: int, queries: list[dict[str, Any]] = queries) -> list[int]:
            return [int(h.id) for h in col.search(queries[qi]["query"], k=K, mode="text")]

        def hybrid(qi: int, queries: list[dict[str, Any]] = queries, vectors: np.ndarray = vectors) -> list[int]:
            hits = col.search(text=queries[qi]["query"], vector=vectors[qi], k=K, mode="hybrid")
            return [int(h.id) for h in hits]

        def hybrid_main(qi: int, queries: list[dict[str, Any]] = queries, vectors: np.ndarray = vectors) -> list[int]:
            depth = max(2 * K, 20)
            by_vector = col.search(vector=vectors[qi], k=depth)
            match = main_match(queries[qi]["query"])
            rows = peer.execute(MAIN_SQL, (match, cid, "active", depth)).fetchall() if match else []
            by_text = [sv.Hit(id=str(r[0]), score=float(r[1]), text=None, metadata={}) for r in rows]
            return [int(h.id) for h in fuse([by_vector, by_text], K)]

        def vector(qi: int, vectors: np.ndarray = vectors) -> list[int]:
            return [int(h.id) for h in col.search(vector=vectors[qi], k=K)]

        methods: dict[str, Callable[[int], list[int]]] = {
            "text": text,
            "text_main": text_main,
            "hybrid": hybrid,
            "hybrid_main": hybrid_main,
            "vector": vector,
        }
        if embedded_col is not None:

            def hybrid_from_text(qi: int, queries: list[dict[str, Any]] = queries) -> list[int]:
                return [int(h.id) for h in embedded_col.search(queries[qi]["query"], k=K, mode="hybrid")]

            def embed_only(qi: int, queries: list[dict[str, Any]] = queries) -> list[int]:
                embedded_col.embedder.embed([queries[qi]["query"]])
                return []

            methods["hybrid_from_text"] = hybrid_from_text
            methods["embed_query"] = embed_only
        if bm25 is not None:

            def pure(qi: int, queries: list[dict[str, Any]] = queries) -> list[int]:
                scores = bm25.get_scores(re.findall(r"\w+", queries[qi]["query"].lower()))
                top = np.argpartition(-scores, K)[:K]
                return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]

            methods["rank_bm25"] = pure
        log(f"measuring {len(queries)} queries of {key} words")
        got = run_set(methods, queries, args.repeat)
        if "embed_query" in got:
            got["embed_query"].pop("ndcg10")  # it returns no hits: only its time counts
        got["ratios"] = {
            "text_main_over_text_p50": round(got["text_main"]["p50_ms"] / got["text"]["p50_ms"], 2),
            "hybrid_main_over_hybrid_p50": round(got["hybrid_main"]["p50_ms"] / got["hybrid"]["p50_ms"], 2),
        }
        if "rank_bm25" in got:
            got["ratios"]["rank_bm25_over_text_p50"] = round(got["rank_bm25"]["p50_ms"] / got["text"]["p50_ms"], 2)
        result[f"words_{key}"] = got
    result["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    vault.close()
    peer.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
