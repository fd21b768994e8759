"""``sigmavault sessions list|show|expire``: inspect and expire the sessions of a vault."""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

import sigmavault as sv
from sigmavault.cli.output import Subcommands, add_common, console, emit
from sigmavault.errors import InvalidInput

__all__ = ["parse_duration", "register"]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"30m"``, ``"2h"``, ``"7d"`` or ``"1w"``."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text).lower())
    if found is None:
        raise InvalidInput(f"duration {text!r}: use a number of seconds or one with s, m, h, d or w (e.g. 30m)")
    return float(found.group(1)) * _UNITS[found.group(2)]


def register(sub: Subcommands) -> None:
    group = sub.add_parser("sessions", help="list, show and expire sessions")
    verbs = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = verbs.add_parser("list", help="sessions, most recently active first")
    add_common(p)
    p.add_argument("--user", help="only this user's sessions")
    p.add_argument("--state", default="all", choices=("open", "closed", "expired", "all"), help="default: all")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50; 0 for all)")
    p.set_defaults(handler=cmd_list)

    p = verbs.add_parser("show", help="one session by id")
    add_common(p)
    p.add_argument("id", help="session id")
    p.add_argument("--vectors", action="store_true", help="include the context embedding in --json output")
    p.set_defaults(handler=cmd_show)

    p = verbs.add_parser("expire", help="expire sessions idle longer than a TTL")
    add_common(p)
    p.add_argument("--ttl", required=True, help="idle time, e.g. 3600, 30m, 12h, 7d")
    p.add_argument("--delete", action="store_true", help="remove idle sessions instead of marking them expired")
    p.set_defaults(handler=cmd_expire)


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise InvalidInput("--limit must be >= 0 (0 means all)")
    with sv.open(args.path, create=False, frozen=True) as vault:
        found = vault.sessions.find(user_id=args.user, states=args.state, k=args.limit or None)
        counts = vault.sessions.counts()
    data = {"counts": counts, "sessions": [s.to_dict() for s in found]}

    def render(d: dict[str, Any]) -> None:
        from rich.table import Table

        table = Table("id", "user", "state", "turns", "last active (UTC)", "adapter", "kv_ref")
        for s in d["sessions"]:
            table.add_row(
                s["session_id"],
                s["user_id"] or "",
                s["state"],
                str(s["turn_count"]),
                _when(s["last_active"]),
                s["active_adapter"] or "",
                s["kv_ref"] or "",
            )
        out = console()
        out.print(table)
        out.print("  ".join(f"{k}: {v}" for k, v in d["counts"].items()))

    emit(args, data, render)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with sv.open(args.path, create=False, frozen=True) as vault:
        session = vault.sessions.get(args.id)
    data = session.to_dict(vectors=args.vectors)

    def render(d: dict[str, Any]) -> None:
        out = console()
        for key, value in d.items():
            if key in ("created_at", "last_active"):
                value = f"{_when(value)} ({value:.3f})"
            elif key == "metadata":
                value = json.dumps(value, ensure_ascii=False)
            out.print(f"{key:>15}: {value}")

    emit(args, data, render)
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    ttl = parse_duration(args.ttl)
    with sv.open(args.path, create=False) as vault:
        ids = vault.sessions.expire(ttl, delete=args.delete)
    data = {"ttl_seconds": ttl, "action": "deleted" if args.delete else "expired", "sessions": ids}
    emit(
        args,
        data,
        lambda d: console().print(
            f"{d['action']} {len(d['sessions'])} sessions idle longer than {d['ttl_seconds']:g} s"
        ),
    )
    return 0


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))
