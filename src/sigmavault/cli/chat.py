"""``sigmavault chat PATH --model DIR``: an interactive chat on a local transformers model, the vault as memory.

Each line read from standard input is one turn (``sv.Runtime.chat``); after each reply a status line gives
the prompt tokens reused from the vault's KV store and the latency (time to first token and total). With
``--json`` each turn prints its :meth:`Reply.to_dict` as one JSON line instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import sigmavault as sv
from sigmavault.cli.output import Subcommands
from sigmavault.errors import InvalidInput, NotFound, VaultError
from sigmavault.runtime import Runtime

__all__ = ["load_model", "register"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("chat", help="chat with a local transformers model, the vault as its memory")
    p.add_argument("path", help="vault directory (created if missing)")
    p.add_argument("--model", required=True, help="local model directory (config, weights, tokenizer)")
    p.add_argument("--collection", default="docs", help="collection searched for context (default: docs)")
    p.add_argument("--session", default="cli", help="session id to continue or start (default: cli)")
    p.add_argument("--user", help="user id recorded with a new session")
    p.add_argument("--system", default="You answer from the context.", help="system prompt")
    p.add_argument("-k", type=int, default=4, help="units retrieved per turn (default 4)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="default 64")
    p.add_argument("--json", action="store_true", help="print each turn as one JSON line")
    p.set_defaults(handler=cmd_chat)


def load_model(directory: str) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local directory, in eval mode; never downloads anything."""
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise NotFound(f"no model at {directory} (no config.json); give a transformers model directory")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise VaultError("chat needs transformers: pip install 'sigmavault[kv]'") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()  # type: ignore[no-untyped-call]
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"cannot load the model at {directory}: {exc}") from None
    return model, tokenizer


def cmd_chat(args: argparse.Namespace) -> int:
    if args.k < 1 or args.max_new_tokens < 1:
        raise InvalidInput("-k and --max-new-tokens must be positive")
    model, tokenizer = load_model(args.model)
    with sv.open(args.path) as vault:
        rt = Runtime(vault, model, tokenizer, collection=args.collection, system_prompt=args.system)
        try:
            _loop(rt, args)
        finally:
            rt.close()
    return 0


def _loop(rt: Runtime, args: argparse.Namespace) -> None:
    """One turn per line of standard input, until it ends."""
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        message = line.strip()
        if not message:
            continue
        reply = rt.chat(args.session, message, user_id=args.user, k=args.k, max_new_tokens=args.max_new_tokens)
        if args.json:
            print(json.dumps(reply.to_dict(), ensure_ascii=False), flush=True)
            continue
        lat = reply.latency
        print(reply.text.strip(), flush=True)
        print(
            f"[turn {reply.request_id[:8]}: reused {reply.cached_tokens}/{reply.prompt_tokens} prompt tokens, "
            f"{reply.completion_tokens} generated; ttft {lat['ttft_ms']:.0f} ms, total {lat['total_ms']:.0f} ms]",
            flush=True,
        )
