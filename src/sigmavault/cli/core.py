"""Core verbs: init, add, ingest, search, get, update, delete, drop, link, stats, check."""

from __future__ import annotations

import argparse
import json
import os
import sys
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
from sigmavault.embed import MiniLM
from sigmavault.errors import InvalidInput, NotFound


def escape(text: str) -> str:
    """Text printed through rich, shown as is (``[similar 0.7]`` is not markup)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


__all__ = ["read_documents", "register"]

_TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text"}
# JSONL fields that are unit columns; any other field of a line becomes metadata.
_UNIT_FIELDS = {"text", "id", "key", "metadata", "conversation_id", "parent_id", "kind", "kv_ref"}


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

    p = sub.add_parser("update", help="change a unit's text, metadata or state")
    add_common(p)
    p.add_argument("id", help="unit id")
    p.add_argument("--text", help="new text (re-embedded)")
    p.add_argument("--meta", help="new metadata JSON object (replaces the old)")
    p.add_argument("--state", choices=("active", "archived", "expired"), help="new lifecycle state")
    p.set_defaults(handler=cmd_update)

    p = sub.add_parser("delete", help="delete units by id, or every unit matching --where")
    add_common(p, collection=True)
    p.add_argument("ids", nargs="*", help="unit ids")
    p.add_argument("--where", help="delete every unit whose metadata matches this JSON filter")
    p.add_argument("--ignore-missing", action="store_true", help="skip ids that are not in the collection")
    p.set_defaults(handler=cmd_delete)

    p = sub.add_parser("drop", help="remove a whole collection (units, edges, index, vectors)")
    add_common(p)
    p.add_argument("collection", help="collection name")
    p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    p.set_defaults(handler=cmd_drop)

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


def _open(args: argparse.Namespace, *, create: bool = False, read: bool = False) -> sv.Vault:
    """The vault of ``args.path``; a verb that only reads (``read``) opens a read-only directory frozen."""
    # NOTE: an index the search builds on its own shows as a bar (the parts only report).
    frozen = read and Path(args.path).is_dir() and not os.access(args.path, os.W_OK)
    progress = None if getattr(args, "json", False) else terminal_progress()
    return sv.open(args.path, create=create, frozen=frozen, progress=progress)


def _note_model(args: argparse.Namespace, col: sv.Collection, *, embeds: bool = True) -> sv.Collection:
    """Say on stderr that the default embedding model is loading (it takes seconds, and is silent)."""
    if embeds and isinstance(col.embedder, MiniLM) and not col.embedder.loaded and not getattr(args, "json", False):
        print(col.embedder.load_note(), file=sys.stderr, flush=True)
    return col


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
        ids = _note_model(args, vault.collection(args.collection)).add(
            args.texts, ids=args.ids, metadata=meta, parent_id=args.parent, conversation_id=args.conversation
        )
    emit(args, {"ids": ids}, lambda d: console().print("\n".join(d["ids"])))
    return 0


def read_documents(source: Path) -> Iterator[dict[str, Any]]:
    """Documents from a folder of text files or a JSONL file (fields: text, id, metadata, ...)."""
    if source.is_dir() or source.suffix.lower() in _TEXT_SUFFIXES:
        root = source if source.is_dir() else source.parent
        found = source.rglob("*") if source.is_dir() else [source] if source.is_file() else []
        for path in sorted(p for p in found if p.suffix.lower() in _TEXT_SUFFIXES and p.is_file()):
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            name = path.relative_to(root).as_posix()
            if text:
                # NOTE: the key (the file's path) names the unit: a re-run skips it, a changed file replaces it
                yield {"text": text, "key": name, "metadata": {"source": name}}
        if source.exists():
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
    docs = [{**d, "metadata": _metadata(d)} for d in read_documents(Path(args.source))]
    with _open(args, create=True) as vault, progress_bar("ingesting", len(docs), enabled=not args.json) as update:
        col = _note_model(args, vault.collection(args.collection), embeds=bool(docs))
        counts = col.ingest(docs, batch_size=max(1, args.batch), progress=update)
    emit(
        args,
        {**counts, "collection": args.collection},
        lambda d: console().print(
            f"added {d['added']}, replaced {d['replaced']}, unchanged {d['unchanged']} in {d['collection']!r}"
        ),
    )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    where = parse_json_arg(args.where, "--where")
    with _open(args, read=True) as vault:
        col = _note_model(args, vault.collection(args.collection, create=False), embeds=args.mode != "text")
        hits = col.search(args.query, k=args.k, mode=args.mode, where=where)

    def render(found: list[sv.Hit]) -> None:
        from rich.table import Table

        table = Table("score", "id", "text", "metadata", title=escape(f"{args.mode} search: {args.query}"))
        for h in found:
            meta = json.dumps(h.metadata, ensure_ascii=False)[:60]
            table.add_row(f"{h.score:.4f}", escape(h.id), escape((h.text or "")[:90]), escape(meta))
        console().print(table)

    emit(args, hits, render)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _open(args, read=True) as vault:
        unit = vault.get(args.id)

    def render(u: sv.Unit) -> None:
        out = console()
        for name in ("id", "collection", "kind", "state", "conversation_id", "parent_id", "kv_ref"):
            value = getattr(u, name)
            if value is not None:
                out.print(f"{name}: {escape(str(getattr(value, 'value', value)))}")
        out.print(f"metadata: {escape(json.dumps(u.metadata, ensure_ascii=False))}")
        out.print(f"accessed: {u.access_count} times")
        out.print(escape(u.text or ""))

    emit(args, unit, render)
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    meta = parse_json_arg(args.meta, "--meta")
    if meta is not None and not isinstance(meta, dict):
        raise InvalidInput("--meta must be a JSON object")
    if args.text is None and meta is None and args.state is None:
        raise InvalidInput("nothing to change: give --text, --meta or --state")
    with _open(args) as vault:
        col = vault.collection(vault.get(args.id).collection, create=False)
        unit = col.update(args.id, text=args.text, metadata=meta, state=args.state)
    emit(args, unit, lambda u: console().print(f"updated {u.id}"))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    where = parse_json_arg(args.where, "--where")
    if bool(args.ids) == (where is not None):
        raise InvalidInput("give unit ids or --where, one of the two")
    with _open(args) as vault:
        col = vault.collection(args.collection, create=False)
        if where is not None:
            removed = col.delete(where=where)
        else:
            removed = col.delete(args.ids, missing="ignore" if args.ignore_missing else "raise")
    emit(
        args,
        {"deleted": removed, "collection": args.collection},
        lambda d: console().print(f"deleted {d['deleted']} units from {d['collection']!r}"),
    )
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    if not args.yes:
        raise InvalidInput(f"dropping {args.collection!r} deletes all its units; add --yes to confirm")
    with _open(args) as vault:
        removed = vault.drop_collection(args.collection)
    emit(
        args,
        {"dropped": args.collection, "units": removed},
        lambda d: console().print(f"dropped {d['dropped']!r} ({d['units']} units)"),
    )
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    with _open(args) as vault:
        vault.link(args.source, args.target, kind=args.kind, weight=args.weight)
    emit(
        args,
        {"source": args.source, "target": args.target, "kind": args.kind, "weight": args.weight},
        lambda d: console().print(escape(f"{d['source']} -[{d['kind']} {d['weight']}]-> {d['target']}")),
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args, read=True) as vault:
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
    with _open(args, read=True) as vault:
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
