"""KV cache verbs: ``sigmavault kv stats|clear|gc|evaluate PATH``."""

from __future__ import annotations

import argparse
import re
from typing import Any

import sigmavault as sv
from sigmavault.cli.output import Subcommands, add_common, console, emit, progress_bar
from sigmavault.errors import InvalidInput

__all__ = ["parse_bytes", "register"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 10**3,
    "kib": 2**10,
    "m": 2**20,
    "mb": 10**6,
    "mib": 2**20,
    "g": 2**30,
    "gb": 10**9,
    "gib": 2**30,
    "t": 2**40,
    "tb": 10**12,
    "tib": 2**40,
}


def parse_bytes(text: str) -> int:
    """``"512MiB"``, ``"2G"``, ``"1000000"`` as a byte count."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InvalidInput(f"{text!r} is not a size; write e.g. 500000000, 512MiB or 2GB")
    return int(float(match.group(1)) * _UNITS[unit])


def register(sub: Subcommands) -> None:
    group = sub.add_parser("kv", help="the KV cache store: stats, clear, gc, evaluate")
    verbs = group.add_subparsers(dest="kv_verb", metavar="VERB", required=True)

    p = verbs.add_parser("stats", help="hits, misses, hit rate, tokens served, bytes per tier")
    add_common(p)
    p.set_defaults(handler=cmd_stats)

    p = verbs.add_parser("clear", help="remove stored KV chunks (all, or one model's)")
    add_common(p)
    p.add_argument("--model", help="only this model's chunks (the model name shown by `kv stats --json`)")
    p.set_defaults(handler=cmd_clear)

    p = verbs.add_parser("gc", help="drop damaged or unreachable chunks and orphan files; enforce the disk budget")
    add_common(p)
    p.add_argument("--verify", action="store_true", help="read every chunk and check its checksum and key")
    p.add_argument("--grace", type=float, default=60.0, help="seconds an unindexed file may be a save in flight")
    p.add_argument("--disk-bytes", help="set the disk budget first, e.g. 20GiB ('none' removes it)")
    p.set_defaults(handler=cmd_gc)

    p = verbs.add_parser("evaluate", help="what pruning/quantizing a text's KV cache costs in quality (stores nothing)")
    add_common(p)
    p.add_argument("--model", required=True, help="a local transformers model directory (from_pretrained)")
    p.add_argument("--text", required=True, help="a UTF-8 text file: the context, then the held-out continuation")
    p.add_argument("--prune", help="sink_window, key_norm or h2o (default: the vault's configured pruning)")
    p.add_argument("--ratio", type=float, help="fraction of the context's tokens kept")
    p.add_argument("--codec", help="native, fp16, q8 or q4 (default: the vault's codec)")
    p.add_argument("--new-tokens", type=int, default=32, help="greedy tokens compared (top-1, KL)")
    p.add_argument("--heldout", type=int, default=64, help="held-out tokens for the perplexity change")
    p.set_defaults(handler=cmd_evaluate)


def cmd_stats(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False) as vault:
        data = vault.kv.stats()
    emit(args, data, _render_stats)
    return 0


def _render_stats(data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="KV cache store", show_header=False)
    table.add_row("lookups", f"{data['hits'] + data['misses']} ({data['hits']} hits, {data['misses']} misses)")
    table.add_row("hit rate", f"{data['hit_rate']:.1%} of lookups, {data['token_hit_rate']:.1%} of tokens")
    table.add_row("tokens served", str(data["tokens_served"]))
    ram, disk = data["ram"], data["disk"]
    used = f"{_size(ram['bytes'])} of {_size(ram['budget'])}"
    table.add_row("RAM tier", f"{used}, {ram['chunks']} chunks ({ram['policy']})")
    budget = "no budget" if disk["budget"] is None else f"of {_size(disk['budget'])}"
    table.add_row("disk tier", f"{_size(disk['bytes'])} {budget}, {disk['chunks']} chunks, {disk['tokens']} tokens")
    for codec, entry in sorted(disk["by_codec"].items()):
        per_token = entry["bytes"] / entry["tokens"] if entry["tokens"] else 0.0
        table.add_row(f"  {codec}", f"{entry['chunks']} chunks, {_size(entry['bytes'])}, {per_token:.0f} B/token")
    table.add_row("evictions", f"{data['ram_evictions']} from RAM, {data['disk_evictions']} from disk")
    table.add_row("corrupted chunks dropped", str(data["corrupted"]))
    pruned = f"{data['pruned_saves']} saved, {data['pruned_hits']} served, {data['prune_refused']} refused by max_kl"
    table.add_row("pruned prefixes", pruned)
    remote = data.get("remote", {})
    if remote.get("enabled"):
        table.add_row(
            "remote tier (Redis)",
            f"{remote['url']}: {remote['hits']} chunk hits, {remote['misses']} misses, "
            f"{_size(remote['bytes_read'])} read, {_size(remote['bytes_written'])} written",
        )
        table.add_row("remote errors", f"{remote['errors']} errors, {remote['corrupted']} damaged values dropped")
    console().print(table)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_clear(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False) as vault:
        removed = vault.kv.clear(model=args.model)
    emit(args, {"removed": removed}, lambda d: console().print(f"removed {d['removed']} chunks"))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False) as vault:
        if args.disk_bytes is not None:
            text = str(args.disk_bytes)
            vault.kv.configure(disk_bytes=None if text.lower() == "none" else parse_bytes(text))
        total = vault.kv.stats()["disk"]["chunks"]
        with progress_bar("checking KV chunks", total, enabled=not args.json) as update:
            report = vault.kv.gc(verify=args.verify, grace=args.grace, progress=update)
    emit(args, report, lambda d: console().print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in d.items())))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise InvalidInput("kv evaluate needs torch and transformers: pip install 'sigmavault[kv]'") from None
    try:
        text = Path(args.text).read_text(encoding="utf-8")
        model = AutoModelForCausalLM.from_pretrained(
            args.model, local_files_only=True, attn_implementation="eager"
        ).eval()  # type: ignore[no-untyped-call]
        tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the text or the model: {exc}") from None
    ids = tokenizer(text)["input_ids"]
    with sv.open(args.path, create=False) as vault:
        prune = args.prune if args.prune is not None else vault.kv.config.prune
        quality = vault.kv.evaluate(
            model,
            ids,
            prune=prune,
            ratio=args.ratio,
            codec=args.codec,
            new_tokens=args.new_tokens,
            heldout=args.heldout,
        )
    emit(args, quality.to_dict(), _render_quality)
    return 0


def _render_quality(data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="KV compression quality vs the lossless cache", show_header=False)
    table.add_row("pruning / codec", f"{data['prune'] or 'none'} / {data['codec']}")
    table.add_row("tokens kept", f"{data['kept']} of {data['context_tokens']}")
    table.add_row("top-1 agreement", f"{data['top1']:.3f} over {data['compared']} greedy tokens")
    table.add_row("KL mean / max (nats)", f"{data['mean_kl']:.4g} / {data['max_kl']:.4g}")
    change = data["ppl_change"]
    table.add_row("held-out perplexity", f"{data['ppl_full']:.2f} -> {data['ppl_lossy']:.2f} ({change:+.1%})")
    console().print(table)
