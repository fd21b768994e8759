"""The ``sigmavault`` command: one subcommand per verb, each module registering its own group."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sigmavault import __version__
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
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except VaultError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False), file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
