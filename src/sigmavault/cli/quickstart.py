"""``sigmavault quickstart``: build a vault from the shipped sample corpus and tour every feature.

The corpus (``sigmavault/data/corpus.jsonl``, CC0-1.0, see CORPUS_LICENSE.md) holds a few hundred
short documents on twelve topics, six conversation threads, and typed links between documents.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from typing import Any

import sigmavault as sv
from sigmavault.cli.output import Subcommands, console, emit, progress_bar
from sigmavault.embed import MiniLM

__all__ = ["SEARCHES", "load_corpus", "register", "run"]

COLLECTION = "quickstart"
SEARCHES: list[dict[str, Any]] = [
    {"query": "Why is the sky blue?", "mode": "vector"},
    {"query": "how do readers and writers share a database without blocking", "mode": "vector"},
    {"query": "write-ahead log checkpoint", "mode": "text"},
    {"query": "how does a telescope collect light", "mode": "hybrid"},
    {"query": "an important discovery", "mode": "vector", "where": {"topic": "physics", "year": {"$lt": 1920}}},
]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("quickstart", help="build a demo vault from the bundled corpus and tour it")
    p.add_argument("path", nargs="?", default="quickstart-vault", help="vault directory (default: ./quickstart-vault)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(handler=cmd_quickstart)


def load_corpus() -> list[dict[str, Any]]:
    text = resources.files("sigmavault").joinpath("data/corpus.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run(path: str, *, show_progress: bool = True) -> dict[str, Any]:
    """Build (or reuse) the demo vault at ``path`` and return what the tour found."""
    docs = load_corpus()
    out: dict[str, Any] = {"path": path, "documents": len(docs)}
    with sv.open(path) as vault:
        col = vault.collection(COLLECTION)
        if len(col) < len(docs):
            started = time.perf_counter()
            if show_progress and isinstance(col.embedder, MiniLM) and not col.embedder.loaded:
                print(col.embedder.load_note(), file=sys.stderr, flush=True)
            with progress_bar("embedding and storing", len(docs), enabled=show_progress) as update:
                col.add(
                    [d["text"] for d in docs],
                    ids=[d["id"] for d in docs],
                    metadata=[{"topic": d["topic"], "year": d["year"]} for d in docs],
                    conversation_id=[d["conversation_id"] for d in docs],
                    parent_id=[d["parent_id"] for d in docs],
                    batch_size=64,
                    progress=update,
                )
            for d in docs:
                for link in d["links"]:
                    vault.link(d["id"], link["to"], kind=link["kind"], weight=link["weight"])
            out["build_seconds"] = round(time.perf_counter() - started, 2)
        else:
            out["build_seconds"] = 0.0
        out["searches"] = [
            {
                **s,
                "hits": [
                    {"id": h.id, "score": round(h.score, 4), "text": h.text}
                    for h in col.search(s["query"], k=3, mode=s["mode"], where=s.get("where"))
                ],
            }
            for s in SEARCHES
        ]
        out["near_duplicates_of_astro-001"] = [
            {"id": h.id, "similarity": h.score} for h in col.find_similar("astro-001", threshold=0.7, k=5)
        ]
        out["neighbors_of_astro-001"] = [
            {"target": e.target, "kind": e.kind, "weight": e.weight} for e in vault.neighbors("astro-001")
        ]
        out["path_phys-001_to_comp-005"] = vault.path("phys-001", "comp-005", max_depth=12, directed=False)
        last_turn = [d["id"] for d in docs if d["conversation_id"] == "debug-segfault"][-1]
        out["chain_of_" + last_turn] = vault.chain(last_turn)
        out["conversation_debug-segfault"] = [u.text for u in vault.conversation("debug-segfault")]
        out["stats"] = vault.stats()
        report = vault.check()
        out["check"] = report.to_dict()
    return out


def cmd_quickstart(args: argparse.Namespace) -> int:
    result = run(args.path, show_progress=not args.json)

    def render(r: dict[str, Any]) -> None:
        from rich.markup import escape
        from rich.panel import Panel
        from rich.table import Table

        c = console()
        built = f"built in {r['build_seconds']} s" if r["build_seconds"] else "reused"
        c.print(Panel(f"ΣVAULT quickstart: {r['documents']} documents in {r['path']} ({built})"))
        for s in r["searches"]:
            title = f"{s['mode']} search: {s['query']!r}" + (f" where {json.dumps(s['where'])}" if "where" in s else "")
            table = Table("score", "id", "text", title=title, title_justify="left")
            for h in s["hits"]:
                table.add_row(f"{h['score']:.4f}", h["id"], escape(h["text"][:100]))
            c.print(table)
        dups = ", ".join(f"{d['id']} ({d['similarity']:.2f})" for d in r["near_duplicates_of_astro-001"]) or "none"
        c.print(f"[bold]near duplicates of astro-001[/bold] (SimHash): {dups}")
        near = ", ".join(f"{e['target']} ({e['kind']}, {e['weight']})" for e in r["neighbors_of_astro-001"])
        c.print(f"[bold]links from astro-001[/bold]: {near}")
        c.print(f"[bold]shortest path phys-001 → comp-005[/bold]: {' → '.join(r['path_phys-001_to_comp-005'] or [])}")
        for key, value in r.items():
            if key.startswith("chain_of_"):
                c.print(f"[bold]{key.replace('_', ' ')}[/bold]: {' ← '.join(value)}")
        c.print("[bold]conversation debug-segfault[/bold]:")
        for turn in r["conversation_debug-segfault"]:
            c.print(f"  {escape(turn[:110])}")
        stats = r["stats"]
        c.print(f"[bold]stats[/bold]: {stats['units']} units, {stats['edges']} edges, {stats['bytes_on_disk']:,} bytes")
        c.print("[bold]check[/bold]: " + ("[green]ok[/green]" if r["check"]["ok"] else str(r["check"]["problems"])))

    emit(args, result, render)
    return 0 if result["check"]["ok"] else 1
