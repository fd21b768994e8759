"""``sigmavault policies list|show|consolidate|prune``: inspect and maintain learned policies."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import sigmavault as sv
from sigmavault.cli.output import Subcommands, add_common, console, emit
from sigmavault.errors import InvalidInput

__all__ = ["register"]


def register(sub: Subcommands) -> None:
    group = sub.add_parser("policies", help="list, show, consolidate and prune learned policies")
    verbs = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = verbs.add_parser("list", help="policy entries, oldest first, and counts per kind")
    add_common(p)
    p.add_argument("--kind", help="only this kind")
    p.add_argument("--state", default="active", choices=("active", "archived", "all"), help="default: active")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50; 0 for all)")
    p.set_defaults(handler=cmd_list)

    p = verbs.add_parser("show", help="one policy entry by id")
    add_common(p)
    p.add_argument("id", help="policy id")
    p.add_argument("--vectors", action="store_true", help="include embedding and Fisher diagonal in --json output")
    p.set_defaults(handler=cmd_show)

    p = verbs.add_parser("consolidate", help="cluster a kind's entries into K representatives (k-means++)")
    add_common(p)
    p.add_argument("--kind", required=True, help="the kind to consolidate")
    p.add_argument("-k", type=int, required=True, help="number of representatives")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--remove", action="store_true", help="delete the members instead of archiving them")
    p.set_defaults(handler=cmd_consolidate)

    p = verbs.add_parser("prune", help="fold near-duplicate entries into one")
    add_common(p)
    p.add_argument("--kind", help="only this kind (default: every kind)")
    p.add_argument("--threshold", type=float, default=0.98, help="cosine similarity (default 0.98)")
    p.add_argument("--remove", action="store_true", help="delete duplicates instead of archiving them")
    p.set_defaults(handler=cmd_prune)


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise InvalidInput("--limit must be >= 0 (0 means all)")
    with sv.open(args.path, create=False, frozen=True) as vault:
        found = vault.policies.list(args.kind, states=args.state, limit=args.limit or None)
        kinds = vault.policies.kinds(states=args.state)
    data = {"kinds": kinds, "policies": [p.to_dict() for p in found]}

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        table = Table("id", "kind", "state", "confidence", "source", "dim", "replaces", "params")
        for p in d["policies"]:
            table.add_row(
                p["id"],
                p["kind"],
                p["state"],
                f"{p['confidence']:.3f}",
                p["source"],
                str(p["dim"] or ""),
                str(len(p["provenance"]) or ""),
                json.dumps(p["params"], ensure_ascii=False)[:60],
            )
        out = console()
        out.print(table)
        out.print("  ".join(f"{k}: {v}" for k, v in d["kinds"].items()) or "no policies")

    emit(args, data, render)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False, frozen=True) as vault:
        policy = vault.policies.get(args.id, touch=False)
    data = policy.to_dict(vectors=args.vectors)

    def render(d: dict[str, Any]) -> None:
        out = console()
        for key, value in d.items():
            if key in ("created_at", "last_accessed"):
                value = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(value))} ({value:.3f})"
            elif key in ("params", "provenance"):
                value = json.dumps(value, ensure_ascii=False)
            out.print(f"{key:>13}: {value}")

    emit(args, data, render)
    return 0


def cmd_consolidate(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False) as vault:
        before = vault.policies.count(args.kind)
        reps = vault.policies.consolidate(args.kind, args.k, seed=args.seed, remove=args.remove)
    data = {"kind": args.kind, "before": before, "representatives": [p.to_dict() for p in reps]}
    emit(
        args,
        data,
        lambda d: console().print(f"{d['kind']}: {d['before']} entries -> {len(d['representatives'])} representatives"),
    )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False) as vault:
        pruned = vault.policies.prune_duplicates(args.kind, threshold=args.threshold, remove=args.remove)
    data = {"threshold": args.threshold, "removed" if args.remove else "archived": pruned}
    emit(args, data, lambda d: console().print(f"pruned {len(pruned)} near-duplicate entries"))
    return 0
