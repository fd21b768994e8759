"""Core verbs: init, add, ingest, search, get, link, stats, check."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sigmavault as sv
from sigmavault.cli.output import (
    Subcommands,
    add_common,
    console,
    emit,
    parse_json_arg,
    progress_bar,
    terminal_progress,
)
from sigmavault.errors import InvalidInput, NotFound

__all__ = ["read_documents", "register"]

_TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text"}
# JSONL fields that are unit columns; any other field of a line becomes metadata.
_UNIT_FIELDS = {"text", "id", "metadata", "conversation_id", "parent_id", "kind", "kv_ref"}


def register(sub: Subcommands) -> None:
    p = sub.add_parser("init", help="create an empty vault")
    add_common(p)
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("add", help="add one or more texts as units")
    add_common(p, collection=True)
    p.add_argument("texts", nargs="+", help="texts to store (one unit each)")
    p.add_argument("--meta", help="metadata JSON object applied to every unit")
    p.add_argument("--id", dest="ids", action="append", help="unit id (repeat once per text)")
    p.add_argument("--parent", help="parent unit id")
    p.add_argument("--conversation", help="conversation id")
    p.set_defaults(handler=cmd_add)

    p = sub.add_parser("ingest", help="add a folder of text files or a JSONL file, with a progress bar")
    add_common(p, collection=True)
    p.add_argument("source", help="a directory (each .txt/.md/.rst file is a unit) or a .jsonl file")
    p.add_argument("--batch", type=int, default=256, help="units embedded and committed per batch")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("search", help="search a collection by meaning, keywords or both")
    add_common(p, collection=True)
    p.add_argument("query", help="query text")
    p.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    p.add_argument("--mode", choices=("vector", "text", "hybrid"), default="vector")
    p.add_argument("--where", help='metadata filter as JSON, e.g. \'{"topic": "a"}\'')
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("get", help="show one unit by id")
    add_common(p)
    p.add_argument("id", help="unit id")
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser("link", help="add an edge between two units")
    add_common(p)
    p.add_argument("source", help="source unit id")
    p.add_argument("target", help="target unit id")
    p.add_argument("--kind", default="related", help="edge kind (default: related)")
    p.add_argument("--weight", type=float, default=1.0, help="edge weight (default 1.0)")
    p.set_defaults(handler=cmd_link)

    p = sub.add_parser("stats", help="counts and sizes of a vault")
    add_common(p)
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("check", help="verify a vault; exits 1 when something is wrong")
    add_common(p)
    p.set_defaults(handler=cmd_check)


def _open(args: argparse.Namespace, *, create: bool = False) -> sv.Vault:
    # NOTE: an index the search builds on its own shows as a bar (the parts only report).
    return sv.open(args.path, create=create, progress=None if getattr(args, "json", False) else terminal_progress())


def cmd_init(args: argparse.Namespace) -> int:
    existed = (Path(args.path) / "vault.db").exists()
    with _open(args, create=True) as vault:
        data = {"path": str(vault.root), "created": not existed}
    emit(args, data, lambda d: console().print(f"{'created' if d['created'] else 'exists'}: {d['path']}"))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    meta = parse_json_arg(args.meta, "--meta") or {}
    if not isinstance(meta, dict):
        raise InvalidInput("--meta must be a JSON object")
    with _open(args, create=True) as vault:
        ids = vault.collection(args.collection).add(
            args.texts, ids=args.ids, metadata=meta, parent_id=args.parent, conversation_id=args.conversation
        )
    emit(args, {"ids": ids}, lambda d: console().print("\n".join(d["ids"])))
    return 0


def read_documents(source: Path) -> Iterator[dict[str, Any]]:
    """Documents from a folder of text files or a JSONL file (fields: text, id, metadata, ...)."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.suffix.lower() in _TEXT_SUFFIXES and p.is_file()):
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                yield {"text": text, "metadata": {"source": str(path.relative_to(source))}}
        return
    if not source.is_file():
        raise NotFound(f"{source}: no such file or directory")
    with source.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{source}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                raise InvalidInput(f"{source}:{lineno}: each line needs a JSON object with a string 'text'")
            yield doc


def _metadata(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        return meta
    return {k: v for k, v in doc.items() if k not in _UNIT_FIELDS and v is not None}


def cmd_ingest(args: argparse.Namespace) -> int:
    docs = list(read_documents(Path(args.source)))
    with _open(args, create=True) as vault, progress_bar("ingesting", len(docs), enabled=not args.json) as update:
        ids = vault.collection(args.collection).add(
            [d["text"] for d in docs],
            ids=[str(d["id"]) for d in docs] if docs and all("id" in d for d in docs) else None,
            metadata=[_metadata(d) for d in docs],
            conversation_id=[d.get("conversation_id") for d in docs],
            parent_id=[d.get("parent_id") for d in docs],
            batch_size=max(1, args.batch),
            progress=update,
        )
    emit(args, {"added": len(ids), "collection": args.collection},
         lambda d: console().print(f"added {d['added']} units to {d['collection']!r}"))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    where = parse_json_arg(args.where, "--where")
    with _open(args) as vault:
        hits = vault.collection(args.collection, create=False).search(args.query, k=args.k, mode=args.mode, where=where)

    def render(found: list[sv.Hit]) -> None:
        from rich.table import Table

        table = Table("score", "id", "text", "metadata", title=f"{args.mode} search: {args.query}")
        for h in found:
            table.add_row(f"{h.score:.4f}", h.id, (h.text or "")[:90], json.dumps(h.metadata)[:60])
        console().print(table)

    emit(args, hits, render)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _open(args) as vault:
        unit = vault.get(args.id)
    emit(args, unit, lambda u: console().print(u))
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    with _open(args) as vault:
        vault.link(args.source, args.target, kind=args.kind, weight=args.weight)
    emit(args, {"source": args.source, "target": args.target, "kind": args.kind, "weight": args.weight},
         lambda d: console().print(f"{d['source']} -[{d['kind']} {d['weight']}]-> {d['target']}"))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as vault:
        data = vault.stats()

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        table = Table("collection", "units", "dim", "metric", "embedder", title=d["path"])
        for name, c in d["collections"].items():
            table.add_row(name, str(c["units"]), str(c["dim"]), c["metric"], str(c["embedder"]))
        out = console()
        out.print(table)
        out.print(f"edges: {d['edges']}   bytes on disk: {d['bytes_on_disk']:,}")

    emit(args, data, render)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    with _open(args) as vault:
        report = vault.check()

    def render(r: sv.CheckReport) -> None:
        out = console()
        for p in r.problems:
            out.print(f"[red]problem[/red]: {p}")
        for n in r.notes:
            out.print(f"note: {n}")
        out.print("[green]ok[/green]" if r.ok else f"[red]{len(r.problems)} problem(s)[/red]")

    emit(args, report.to_dict() if args.json else report, render)
    return 0 if report.ok else 1
