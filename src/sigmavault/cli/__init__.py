"""The ``sigmavault`` command: one subcommand per verb, each module registering its own group."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Sequence

from sigmavault import __version__
from sigmavault.cli import output
from sigmavault.errors import VaultError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from sigmavault.cli import ann, bundle, chat, core, kv, policies, quickstart, serve, sessions, witness

    parser = argparse.ArgumentParser(
        prog="sigmavault",
        description="ΣVAULT: the embedded memory engine for LLM runtimes.",
    )
    parser.add_argument("--version", action="version", version=f"sigmavault {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (quickstart, core, ann, kv, sessions, policies, witness, bundle, chat, serve):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code.

    Every error is one line on stderr and exit code 2 (never a traceback; set
    ``SIGMAVAULT_DEBUG=1`` to see one): the vault's own errors, filesystem errors (a missing or
    unwritable path, no permission) and damaged files alike.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    output.set_wide(bool(getattr(args, "wide", False)))
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("SIGMAVAULT_DEBUG"):
            raise
        code, message = _describe(exc)
        if getattr(args, "json", False):
            body = exc.to_dict() if isinstance(exc, VaultError) else {"code": code, "message": message}
            print(json.dumps({"error": body}, ensure_ascii=False), file=sys.stderr)
        else:
            print(f"error: {message}", file=sys.stderr)
        return 2


def _describe(exc: Exception) -> tuple[str, str]:
    """``(code, one-line message)`` for any error a verb raised, in the terms of a command line."""
    if isinstance(exc, VaultError):
        text = str(exc).replace("sigmavault.open(path)", "sigmavault init PATH")
        text = text.replace("overwrite=True", "--overwrite")
        return exc.code, " ".join(text.split())
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return "filesystem", f"{where}{exc.strerror or exc}"
    if isinstance(exc, sqlite3.Error):
        return "storage", f"the vault's database cannot be used ({exc}); run `sigmavault check`"
    return "internal", f"{type(exc).__name__}: {' '.join(str(exc).split())} (SIGMAVAULT_DEBUG=1 shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())
