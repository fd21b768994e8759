"""export, verify, import_bundle and refresh: the public verbs of ``sv.bundle``."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sigmavault import validate
from sigmavault.bundle.container import DirWriter, TarWriter, read_bundle
from sigmavault.bundle.manifest import FORMAT, FORMAT_VERSION, FileEntry, dump_manifest
from sigmavault.bundle.signing import check_trust
from sigmavault.bundle.snapshot import DB_NAME, take
from sigmavault.context import read_meta, write_meta
from sigmavault.errors import BundleInvalid, InvalidInput
from sigmavault.store import Database
from sigmavault.store.tree import aside, remove_tree, sqlite_file, swap_in

__all__ = ["BundleReport", "RefreshReport", "export", "import_bundle", "refresh", "verify"]

Progress = Callable[[int, int], None]
_SOURCE_KEY = "bundle_source"
_POLICY = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


@dataclass(frozen=True, slots=True)
class BundleReport:
    """What a bundle holds, as written by ``export`` or checked by ``verify`` / ``import_bundle``."""

    path: str
    ok: bool
    format_version: int
    generation: int | str
    lineage_id: str
    created_at: float
    pii_policy: str
    collections: list[str]
    dimensions: dict[str, int | None]
    embedders: dict[str, str | None]
    encrypted: bool
    files: int
    bytes: int
    witness: str
    seconds: float
    dest: str | None = None
    signed_by: str | None = None  # the Ed25519 public key (hex) that signed the manifest, if any
    trusted: bool = False  # signed by one of the trusted_keys the caller gave

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class RefreshReport:
    """Per bundle file: already held (``up_to_date``), changed since (``invalidated``) or new (``missing``)."""

    vault: str
    bundle: str
    up_to_date: list[str] = field(default_factory=list)
    invalidated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    generation_before: int | str | None = None
    generation: int | str | None = None
    applied: bool = False

    @property
    def stale(self) -> bool:
        return bool(self.invalidated or self.missing)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stale": self.stale}


def _report(
    path: Path, manifest: dict[str, Any], entries: list[FileEntry], seconds: float, **extra: Any
) -> BundleReport:
    return BundleReport(
        path=str(path),
        ok=True,
        format_version=int(manifest["format_version"]),
        generation=manifest["generation"],
        lineage_id=str(manifest["lineage_id"]),
        created_at=float(manifest["created_at"]),
        pii_policy=str(manifest["pii_policy"]),
        collections=list(manifest.get("collections", [])),
        dimensions=dict(manifest["dimensions"]),
        embedders=dict(manifest["embedders"]),
        encrypted=bool(manifest.get("encrypted", False)),
        files=len(entries),
        bytes=sum(e.bytes for e in entries),
        witness=str(manifest["witness"]["digest"]),
        seconds=seconds,
        signed_by=manifest["signature"]["public_key"] if isinstance(manifest.get("signature"), dict) else None,
        **extra,
    )


def _bytes_progress(progress: Progress | None, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress(done, max(total, done))

    return step


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# -- export -----------------------------------------------------------------------------------


def export(
    vault_or_path: Any,
    dest: str | os.PathLike[str],
    collections: Sequence[str] | None = None,
    *,
    tar: bool | None = None,
    pii_policy: str = "unspecified",
    overwrite: bool = False,
    key: Any = None,
    signing_key: Any = None,
    progress: Progress | None = None,
) -> BundleReport:
    """Write a bundle of a vault (or of its ``collections``) at ``dest``: a directory, or a tar file.

    ``signing_key`` (an Ed25519 PEM file from ``sigmavault keygen --sign``, or a key object) signs
    the manifest, so that ``verify(..., trusted_keys=[its public key])`` can tell who exported it.

    ``tar`` defaults to ``dest`` ending in ``.tar``. ``pii_policy`` is recorded as given (e.g.
    ``none``, ``redacted``, ``contains-pii``). An existing ``dest`` is replaced only with
    ``overwrite=True``, and only once the new bundle is complete. ``key`` opens an encrypted vault
    given by path; its records stay sealed in the bundle.
    """
    from sigmavault.vault import Vault
    from sigmavault.vault import open as open_vault

    target = Path(validate.path(dest, "dest"))
    if tar is None:
        tar = target.suffix == ".tar"
    if not _POLICY.match(pii_policy):
        raise InvalidInput(f"pii_policy {pii_policy!r}: use 1-64 letters, digits, '_', '-', '.' or ':'")
    if collections is not None:
        if isinstance(collections, str):
            collections = [collections]
        collections = list(dict.fromkeys(collections))
        if not collections:
            raise InvalidInput("collections is empty; pass None to export the whole vault")
    if target.exists() and not overwrite:
        raise InvalidInput(f"{target} exists; choose a new path or pass overwrite=True")
    if signing_key is not None:
        from sigmavault.bundle.signing import sign

        sign(signing_key, "0" * 128)  # NOTE: a bad key is refused before anything is written
    if target.exists() and not tar and not (target / "manifest.json").exists() and any(target.iterdir()):
        raise InvalidInput(f"{target} is a non-empty directory that is not a bundle; refusing to replace it")
    own = not isinstance(vault_or_path, Vault)
    vault = open_vault(vault_or_path, create=False, key=key) if own else vault_or_path
    started = time.perf_counter()
    try:
        if target.resolve().is_relative_to(vault.root.resolve()):
            raise InvalidInput(f"{target} is inside the vault {vault.root}; export to a path outside it")
        step = _bytes_progress(progress, _tree_bytes(vault.root))
        writer = TarWriter(target, progress=step, mtime=int(time.time())) if tar else DirWriter(target, progress=step)
        try:
            snap = take(vault, writer, collections=collections)
            fields = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "pii_policy": pii_policy,
                "sigmavault_version": _version(),
                **snap.fields,
            }
            manifest, data = dump_manifest(fields, snap.files, signing_key=signing_key)
            writer.finish(data)
            if isinstance(writer, DirWriter):
                swap_in(writer.work, target)
        except BaseException:
            writer.abort()
            raise
    finally:
        if own:
            vault.close()
    return _report(target, manifest, snap.files, time.perf_counter() - started)


def _version() -> str:
    from sigmavault import __version__

    return __version__


# -- verify / import --------------------------------------------------------------------------


def _total(path: Path) -> int:
    return _tree_bytes(path) if path.is_dir() else path.stat().st_size if path.exists() else 0


def verify(path: str | os.PathLike[str], *, trusted_keys: Any = None, progress: Progress | None = None) -> BundleReport:
    """Check the manifest, its witness, its signature and every file's SHA-256; raises
    :class:`BundleInvalid` naming the first mismatch, else returns what the bundle holds.

    ``trusted_keys`` (Ed25519 public keys: hex strings, ``.pub`` files, key objects) makes an
    unsigned bundle, or one signed by any other key, invalid. Without it a signature is still
    checked, and the report names the signer (``signed_by``) with ``trusted=False``.
    """
    return _verify(Path(validate.path(path, "path")), progress, trusted_keys)[0]


def _verify(source: Path, progress: Progress | None, trusted_keys: Any = None) -> tuple[BundleReport, list[FileEntry]]:
    trusted = _trusted(trusted_keys)
    started = time.perf_counter()
    manifest, entries = read_bundle(source, progress=_bytes_progress(progress, _total(source)))
    _, ok = check_trust(manifest, trusted, source)
    return _report(source, manifest, entries, time.perf_counter() - started, trusted=ok), entries


def _trusted(trusted_keys: Any) -> set[str] | None:
    if trusted_keys is None:
        return None
    from sigmavault.bundle.signing import trusted_hexes

    return trusted_hexes(trusted_keys)


def _check_dest(dest: Path, *, overwrite: bool) -> None:
    """Refuse a ``dest`` that is not a directory, or a non-empty one unless it is a vault to overwrite."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise InvalidInput(f"{dest} exists and is not a directory; a vault is a directory")
    if not dest.exists() or not any(dest.iterdir()):
        return
    if not overwrite:
        raise InvalidInput(f"{dest} is not empty; import into a new path, or pass overwrite=True to replace it")
    if not (dest / DB_NAME).exists():
        raise InvalidInput(f"{dest} is not a vault (no {DB_NAME}); refusing to replace it")


def import_bundle(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    trusted_keys: Any = None,
    progress: Progress | None = None,
) -> BundleReport:
    """Verify the bundle at ``path`` and materialise it as the vault ``dest``, atomically.

    ``trusted_keys`` as in :func:`verify`: an import then requires a signature by one of them.

    The files are hashed while they are copied into a hidden sibling of ``dest``; only when all
    of them match is that directory renamed into place, so a failed import leaves ``dest`` as it
    was. A vault being replaced (``overwrite=True``) must be closed by every process first.
    """
    source, target = Path(validate.path(path, "path")), Path(validate.path(dest, "dest"))
    trusted = _trusted(trusted_keys)
    _check_dest(target, overwrite=overwrite)
    started = time.perf_counter()
    work = aside(target, "import")
    work.mkdir()
    try:
        manifest, entries = read_bundle(source, sink=work, progress=_bytes_progress(progress, _total(source)))
        _, ok = check_trust(manifest, trusted, source)
        if DB_NAME not in {e.path for e in entries}:
            raise BundleInvalid(f"{source}: the bundle holds no {DB_NAME}; it is not a vault bundle")
        record = {
            "lineage_id": manifest["lineage_id"],
            "generation": manifest["generation"],
            "witness": manifest["witness"]["digest"],
            "files": {e.path: e.sha256 for e in entries},
            "imported_at": time.time(),
        }
        with sqlite_file(work / DB_NAME) as conn:
            write_meta(conn, _SOURCE_KEY, json.dumps(record, sort_keys=True))
        swap_in(work, target)
    except BaseException:
        remove_tree(work)
        raise
    return _report(source, manifest, entries, time.perf_counter() - started, dest=str(target), trusted=ok)


# -- refresh ----------------------------------------------------------------------------------


def _vault_facts(root: Path) -> tuple[str | None, dict[str, Any] | None]:
    db = Database(root / DB_NAME, readonly=True)
    try:
        with db.read() as conn:
            vault_id, src = read_meta(conn, "vault_id"), read_meta(conn, _SOURCE_KEY)
    finally:
        db.close()
    return vault_id, (json.loads(src) if src else None)


def refresh(
    vault_path: str | os.PathLike[str],
    bundle_path: str | os.PathLike[str],
    *,
    apply: bool = True,
    trusted_keys: Any = None,
    progress: Progress | None = None,
) -> RefreshReport:
    """Bring a replica vault up to a newer bundle of its lineage, reporting each file's status.

    A replica is a vault made by ``import_bundle``; it remembers the lineage, generation and
    file hashes it came from. Files whose hash is unchanged are ``up_to_date``, changed ones are
    ``invalidated`` (or dropped from the bundle), and new ones are ``missing``. With ``apply``
    (the default) a stale replica is replaced by the bundle atomically; ``apply=False`` only
    reports. A bundle of another lineage, or an older generation, is refused.
    """
    root, source = Path(validate.path(vault_path, "vault_path")), Path(validate.path(bundle_path, "bundle_path"))
    bundle, entries = _verify(source, progress, trusted_keys)
    manifest_files = {e.path: e.sha256 for e in entries}
    report = RefreshReport(vault=str(root), bundle=str(source), generation=bundle.generation)
    if not (root / DB_NAME).exists():
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise InvalidInput(f"{root} exists but is not a vault; refresh into an empty or new path")
        report.missing = sorted(manifest_files)
    else:
        vault_id, record = _vault_facts(root)
        if record is None:
            origin = vault_id == bundle.lineage_id
            why = "it is the origin of this lineage" if origin else "it was not imported from a bundle"
            raise InvalidInput(f"cannot refresh {root}: {why}; refresh updates replicas made by import_bundle")
        if record["lineage_id"] != bundle.lineage_id:
            raise InvalidInput(
                f"{source} belongs to lineage {bundle.lineage_id}, but {root} is a replica of "
                f"{record['lineage_id']}; import it elsewhere instead"
            )
        report.generation_before = record["generation"]
        if _older(bundle.generation, record["generation"]):
            raise InvalidInput(
                f"{source} is generation {bundle.generation}, older than the {record['generation']} "
                f"{root} holds; refusing to go back"
            )
        held: dict[str, str] = record["files"]
        for rel, digest in sorted(manifest_files.items()):
            if rel not in held:
                report.missing.append(rel)
            elif held[rel] == digest:
                report.up_to_date.append(rel)
            else:
                report.invalidated.append(rel)
        report.invalidated += sorted(set(held) - set(manifest_files))
    if apply and report.stale:
        import_bundle(source, root, overwrite=True, trusted_keys=trusted_keys, progress=progress)
        report.applied = True
    return report


def _older(new: int | str, old: int | str) -> bool:
    if isinstance(new, int) and isinstance(old, int):
        return new < old
    return False
