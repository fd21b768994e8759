"""Bundle and migration verbs: ``sigmavault export|verify|import|refresh|migrate|keygen``.

An encrypted vault takes its key from ``SIGMAVAULT_KEY``, ``SIGMAVAULT_KEY_FILE`` or
``SIGMAVAULT_PASSPHRASE``, or from ``--key-file``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sigmavault.cli.output import Subcommands, console, emit, progress_bar
from sigmavault.errors import BundleInvalid, InvalidInput

__all__ = ["register"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("export", help="write a vault (or some collections) to a verifiable bundle")
    p.add_argument("path", help="vault directory")
    p.add_argument("dest", help="bundle to create: a directory, or a file ending in .tar")
    p.add_argument("-c", "--collection", action="append", help="export only this collection (repeatable)")
    p.add_argument("--tar", action="store_true", help="write one tar file even if DEST does not end in .tar")
    p.add_argument("--pii-policy", default="unspecified", help="recorded in the manifest, e.g. none, redacted")
    p.add_argument("--overwrite", action="store_true", help="replace DEST once the new bundle is complete")
    p.add_argument("--sign", metavar="KEYFILE", help="sign the manifest with this Ed25519 key (keygen --sign)")
    _common(p)
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("verify", help="check a bundle's manifest witness and every file's SHA-256")
    p.add_argument("bundle", help="bundle directory or tar file")
    p.add_argument(
        "--trust",
        action="append",
        metavar="PUBKEY",
        help="accept only bundles signed by this Ed25519 public key (hex or .pub file; repeatable)",
    )
    _common(p, key=False)
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("import", help="verify a bundle and materialise it as a vault, atomically")
    p.add_argument("bundle", help="bundle directory or tar file")
    p.add_argument("dest", help="vault directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing vault at DEST")
    p.add_argument(
        "--trust",
        action="append",
        metavar="PUBKEY",
        help="accept only bundles signed by this Ed25519 public key (hex or .pub file; repeatable)",
    )
    _common(p, key=False)
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("refresh", help="update a replica vault from a newer bundle of its lineage")
    p.add_argument("path", help="replica vault directory (made by import)")
    p.add_argument("bundle", help="bundle directory or tar file")
    p.add_argument("--dry-run", action="store_true", help="only report up_to_date / invalidated / missing")
    p.add_argument(
        "--trust",
        action="append",
        metavar="PUBKEY",
        help="accept only bundles signed by this Ed25519 public key (hex or .pub file; repeatable)",
    )
    _common(p, key=False)
    p.set_defaults(handler=cmd_refresh)

    p = sub.add_parser("migrate", help="migrate a JSON knowledge directory or RSU manifest into a vault")
    p.add_argument("source", nargs="?", help="knowledge directory or RSU manifest JSON (not with --rollback)")
    p.add_argument("dest", help="vault directory")
    p.add_argument("-c", "--collection", help="collection to fill (default: concepts, or rsu)")
    p.add_argument("--dry-run", action="store_true", help="migrate and validate aside, change nothing")
    p.add_argument("--replace", action="store_true", help="build DEST from scratch instead of adding to it")
    p.add_argument("--rollback", action="store_true", help="restore DEST as it was before the last migration")
    _common(p)
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("keygen", help="write a new random encryption key file (mode 0600)")
    p.add_argument("file", help="key file to create (never overwritten)")
    p.add_argument(
        "--sign",
        action="store_true",
        help="write an Ed25519 bundle-signing key instead (its public key goes to FILE.pub)",
    )
    p.set_defaults(handler=cmd_keygen)


def _common(p: argparse.ArgumentParser, *, key: bool = True) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if key:
        p.add_argument("--key-file", help="key of an encrypted vault (else SIGMAVAULT_KEY* variables)")


def _key(args: argparse.Namespace) -> Any:
    from sigmavault.crypto import KeyFile

    path = getattr(args, "key_file", None)
    return KeyFile(path) if path else None


def _bar(args: argparse.Namespace, label: str) -> AbstractContextManager[Callable[[int, int], None]]:
    return progress_bar(label, 0, enabled=not args.json)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def cmd_export(args: argparse.Namespace) -> int:
    from sigmavault import bundle

    with _bar(args, "exporting") as bar:
        report = bundle.export(
            args.path,
            args.dest,
            args.collection,
            tar=True if args.tar else None,
            pii_policy=args.pii_policy,
            overwrite=args.overwrite,
            key=_key(args),
            signing_key=args.sign,
            progress=bar,
        )
    emit(
        args,
        report.to_dict(),
        lambda d: console().print(
            f"exported {', '.join(d['collections']) or 'nothing'} (generation {d['generation']}) to {d['path']}: "
            f"{d['files']} files, {_mb(d['bytes'])} in {d['seconds']:.2f} s\nwitness {d['witness'][:32]}…"
        ),
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from sigmavault import bundle

    try:
        with _bar(args, "verifying") as bar:
            report = bundle.verify(args.bundle, trusted_keys=args.trust, progress=bar)
    except BundleInvalid as exc:
        emit(args, {"path": args.bundle, "ok": False, "error": str(exc)},
             lambda d: console().print(f"[red]INVALID[/red] {d['path']}: {d['error']}"))  # fmt: skip
        return 1
    emit(
        args,
        report.to_dict(),
        lambda d: console().print(
            f"[green]OK[/green] {d['path']}: {d['files']} files, {_mb(d['bytes'])}, generation {d['generation']} "
            f"of lineage {d['lineage_id']}\nwitness {d['witness']}\n"
            + (
                f"signed by {d['signed_by']} ({'trusted' if d['trusted'] else 'not checked against trusted keys'})"
                if d["signed_by"]
                else "unsigned"
            )
        ),
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from sigmavault import bundle

    with _bar(args, "importing") as bar:
        report = bundle.import_bundle(
            args.bundle, args.dest, overwrite=args.overwrite, trusted_keys=args.trust, progress=bar
        )
    emit(
        args,
        report.to_dict(),
        lambda d: console().print(
            f"imported {d['path']} into {d['dest']}: {d['files']} files, {_mb(d['bytes'])} "
            f"verified in {d['seconds']:.2f} s"
        ),
    )
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    from sigmavault import bundle

    with _bar(args, "refreshing") as bar:
        report = bundle.refresh(args.path, args.bundle, apply=not args.dry_run, trusted_keys=args.trust, progress=bar)

    def render(d: dict[str, Any]) -> None:
        out = console()
        for status in ("up_to_date", "invalidated", "missing"):
            for rel in d[status]:
                out.print(f"{status:12} {rel}")
        verdict = "updated" if d["applied"] else "stale (dry run)" if d["stale"] else "up to date"
        out.print(f"{d['vault']}: {verdict}, generation {d['generation_before']} -> {d['generation']}")

    emit(args, report.to_dict(), render)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from sigmavault import migrate

    if args.rollback:
        if args.source is not None:
            raise InvalidInput("--rollback takes only DEST: sigmavault migrate --rollback DEST")
        done = migrate.rollback(args.dest)
        emit(
            args,
            done,
            lambda d: console().print(
                f"rolled back {d['dest']}: " + ("previous vault restored" if d["restored_previous"] else "removed")
            ),
        )
        return 0
    if args.source is None:
        raise InvalidInput("migrate needs SOURCE and DEST (or --rollback DEST)")
    with _bar(args, "migrating") as bar:
        report = migrate.migrate(
            args.source,
            args.dest,
            collection=args.collection,
            dry_run=args.dry_run,
            replace=args.replace,
            key=_key(args),
            progress=bar,
        )
    emit(args, report.to_dict(), _render_migration)
    return 0 if report.ok else 1


def _render_migration(d: dict[str, Any]) -> None:
    out = console()
    c = d["counts"]
    out.print(
        f"{d['layout']} {d['source']} -> {d['dest']} [{d['collection']}]: {c.get('migrated', 0)} of "
        f"{c.get('source_records', 0)} records, {c.get('edges_in_vault', 0)} of {c.get('source_edges', 0)} edges, "
        f"{c.get('skipped', 0)} skipped ({d['units_per_s']:,.0f} units/s)"
    )
    out.print(
        f"checksums {d['checksums'].get('matched', 0)} equal; vectors max error {d['vectors'].get('max_abs_error')}; "
        f"searches {d['searches']}"
    )
    for p in d["problems"]:
        out.print(f"[red]problem[/red] {p}")
    for s in d["skipped"][:10]:
        out.print(f"skipped {s['id']}: {s['reason']}")
    if d["dropped_fields"]:
        out.print(f"not carried: {', '.join(d['dropped_fields'])}")
    state = "switched in" if d["switched"] else "NOT switched"
    if d["dry_run"] and d["ok"]:
        state = "dry run, nothing changed"
    out.print(("[green]OK[/green] " if d["ok"] else "[red]FAILED[/red] ") + state)


def cmd_keygen(args: argparse.Namespace) -> int:
    from sigmavault.crypto import write_key_file

    if args.sign:
        from sigmavault.bundle.signing import generate

        path, public = generate(args.file)
        console().print(f"wrote a new Ed25519 signing key to {path} (mode 0600) and its public key to {path}.pub:\n"
                        f"{public}\nsign with `sigmavault export --sign {path}`; "
                        f"recipients verify with `--trust {public}`")  # fmt: skip
        return 0

    path = write_key_file(args.file)
    console().print(f"wrote a new key to {path} (mode {oct(os.stat(path).st_mode & 0o777)}); "
                    f"use it with SIGMAVAULT_KEY_FILE={path}")  # fmt: skip
    return 0
