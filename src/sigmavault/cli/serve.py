"""``sigmavault serve``, ``sigmavault mcp`` and ``sigmavault keys add``: the vault as a server."""

from __future__ import annotations

import argparse
import os
import sys

from sigmavault.cli.output import Subcommands
from sigmavault.errors import InvalidInput

__all__ = ["register"]


def _missing_server_extra() -> bool:
    """True (after saying what to install) when the ``server`` extra is not installed."""
    try:
        import fastapi  # noqa: F401
        import mcp  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(
            f"error: the server needs the 'server' extra ({exc.name} is missing): pip install 'sigmavault[server]'",
            file=sys.stderr,
        )
        return True
    return False


def register(sub: Subcommands) -> None:
    p = sub.add_parser("serve", help="serve a vault over HTTP (/v1), MCP (/mcp), /metrics and a dashboard (/)")
    p.add_argument("path", help="vault directory (with --tenants: the root holding one vault per tenant)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --keys)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--keys", help="keys file: every request then needs 'Authorization: Bearer <key>'")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--tenants", action="store_true", help="one vault per key tenant under PATH (needs --keys)")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("mcp", help="serve a vault's memory tools over MCP on stdio (for desktop agent clients)")
    p.add_argument("path", help="vault directory")
    p.set_defaults(handler=cmd_mcp)

    group = sub.add_parser("keys", help="manage the API keys of 'sigmavault serve --keys FILE'")
    verbs = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = verbs.add_parser("add", help="create a key and print it once (the file keeps only its hash)")
    p.add_argument("file", help="keys file (created if missing)")
    p.add_argument("--tenant", default="default", help="tenant the key belongs to (default: default)")
    p.add_argument("--scope", default="read", choices=("read", "write", "admin"), help="default: read")
    p.set_defaults(handler=cmd_keys_add)


def cmd_serve(args: argparse.Namespace) -> int:
    if _missing_server_extra():
        return 2
    import uvicorn

    from sigmavault.server.app import create_app

    if args.workers < 1:
        raise InvalidInput("--workers must be at least 1")
    _one_search_thread()
    # NOTE: build the app once here even with workers, so bad flags, keys or paths fail before forking.
    app = create_app(args.path, keys=args.keys, tenants=args.tenants, host=args.host, warm=True)
    print(
        f"sigmavault: serving {args.path} on http://{args.host}:{args.port} "
        f"({'keys required' if args.keys else 'no keys: loopback only'})",
        file=sys.stderr,
        flush=True,
    )
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    app.state.hub.close()
    os.environ.update(
        SIGMAVAULT_SERVE_PATH=str(args.path),
        SIGMAVAULT_SERVE_KEYS=args.keys or "",
        SIGMAVAULT_SERVE_TENANTS="1" if args.tenants else "",
        SIGMAVAULT_SERVE_HOST=args.host,
    )
    uvicorn.run(
        "sigmavault.server.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )
    return 0


def _one_search_thread() -> None:
    """One OpenMP (FAISS) thread per search: a server runs many searches at once, one per request thread.

    NOTE: OpenMP threads splitting one small query wait on each other, and on a busy machine that
    wait dominates (~4 ms per request on the 2-core benchmark box). ``set_threads`` would only set
    the calling thread's count, so the default goes through the environment, read when FAISS loads
    (not yet at this point) and inherited by ``--workers`` processes. An explicit setting wins.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def cmd_mcp(args: argparse.Namespace) -> int:
    if _missing_server_extra():
        return 2
    import sigmavault as sv
    from sigmavault.server.mcp import build_mcp, single_vault

    with sv.open(args.path) as vault:
        build_mcp(single_vault(vault)).run("stdio")
    return 0


def cmd_keys_add(args: argparse.Namespace) -> int:
    from sigmavault.server.keys import add_key

    key, principal = add_key(args.file, tenant=args.tenant, scope=args.scope)
    print(key)
    print(
        f"key {principal.key_id}: tenant {principal.tenant!r}, scope {principal.scope!r}; "
        f"stored hashed in {args.file}: copy the key now, it is not shown again",
        file=sys.stderr,
    )
    return 0
