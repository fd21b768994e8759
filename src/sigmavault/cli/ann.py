"""``sigmavault index`` (show, choose, rebuild ANN indexes) and ``sigmavault compact`` (drop deleted vectors)."""

from __future__ import annotations

import argparse
from typing import Any

import sigmavault as sv
from sigmavault.cli.output import Subcommands, add_common, console, emit, progress_bar
from sigmavault.units.indexes import CHOICES

__all__ = ["register"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("index", help="show how each collection is searched; choose or rebuild its ANN index")
    add_common(p)
    p.add_argument("-c", "--collection", help="only this collection (default: all)")
    p.add_argument("--kind", choices=CHOICES, help="store a new index choice for the collection(s)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the ANN index now (with a progress bar)")
    p.add_argument("--threads", type=int, help="FAISS threads for the rebuild (default: all cores)")
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser("compact", help="rebuild ANN indexes without deleted or replaced vectors")
    add_common(p)
    p.add_argument("-c", "--collection", help="only this collection (default: all)")
    p.add_argument("--threads", type=int, help="FAISS threads (default: all cores)")
    p.set_defaults(handler=cmd_compact)


def cmd_index(args: argparse.Namespace) -> int:
    if args.threads:
        sv.set_threads(args.threads)
    frozen = args.kind is None and not args.rebuild
    with sv.open(args.path, create=False, frozen=frozen) as vault:
        names = [args.collection] if args.collection else vault.collections()
        data: dict[str, Any] = {}
        for name in names:
            col = vault.collection(name, embedder=None, create=False, index=args.kind)
            if args.rebuild:
                with progress_bar(f"indexing {name}", 0, enabled=not args.json) as update:
                    col.build_index(progress=update)
            data[name] = col.index_info()
    emit(args, data, _render_info)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    if args.threads:
        sv.set_threads(args.threads)
    with sv.open(args.path, create=False) as vault:
        names = [args.collection] if args.collection else vault.collections()
        done = []
        for name in names:
            with progress_bar(f"compacting {name}", 0, enabled=not args.json) as update:
                done += vault.compact(name, progress=update)
    emit(args, {"collections": done}, _render_compact)
    return 0


def _render_info(data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        "collection", "configured", "searching with", "vectors", "index covers", "entries", "dead", "file size"
    )
    for name, info in data.items():
        f = info.get("file") or {}
        table.add_row(
            name,
            info["configured"],
            info["active"],
            f"{info['vector_rows']:,}",
            f"{f['covers']:,}" if f else "-",
            f"{f['entries']:,}" if f else "-",
            f"{f['dead_entries']:,}" if f else "-",
            _size(f["bytes"]) if f else "-",
        )
    console().print(table)


def _render_compact(data: dict[str, Any]) -> None:
    out = console()
    for c in data["collections"]:
        if c["rebuilt"]:
            before, after = c["entries_before"], c["entries"]
            out.print(f"{c['collection']}: {c['index']} index rebuilt, {before:,} -> {after:,} entries")
        else:
            out.print(f"{c['collection']}: searched exactly, nothing to compact")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
