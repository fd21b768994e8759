"""``migrate`` and ``rollback``: build the migrated vault aside, validate it, switch it in atomically.

The source is only read (its files' SHA-256 are compared before and after). The destination is
never written in place: a hidden sibling directory receives a copy of the existing destination
(or starts empty with ``replace=True``), the migrated units and edges, and is validated read-only.
Only a passing validation renames it into place; the previous destination is kept as the hidden
sibling ``.<name>.previous`` so that ``rollback`` can restore it. ``dry_run`` does everything but
the switch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from sigmavault import validate as arguments
from sigmavault.bundle.container import DirWriter
from sigmavault.bundle.snapshot import DB_NAME, take
from sigmavault.errors import InvalidInput, NotFound
from sigmavault.migrate.sources import Record, Source, read_source
from sigmavault.migrate.validate import MigrationReport, validate
from sigmavault.store.files import atomic_write, file_digest, remove_file
from sigmavault.store.tree import aside, remove_tree, swap_in
from sigmavault.store.vectors import fsync_dir
from sigmavault.vault import Vault

__all__ = ["migrate", "previous_path", "rollback"]

Progress = Callable[[int, int], None]
_BATCH = 20_000


def previous_path(dest: Path) -> Path:
    """Where the destination as it was before the last migration is kept."""
    return dest.parent / f".{dest.name}.previous"


def _state_path(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.migrate.json"


def migrate(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    collection: str | None = None,
    dry_run: bool = False,
    replace: bool = False,
    key: Any = None,
    tolerance: float = 1e-6,
    progress: Progress | None = None,
) -> MigrationReport:
    """Migrate a legacy JSON store at ``source`` into the vault ``dest``; returns the validation report.

    ``source`` is a JSON knowledge directory (concepts.json, associations.json, embeddings.json)
    or an RSU manifest file. Units go into ``collection`` (default ``concepts`` or ``rsu``) of
    the existing vault at ``dest`` (or of a new one with ``replace=True`` or when there is none).
    The result is switched in only when ``report.ok``; check it (the CLI exits 1 when it is not).
    """
    started = time.perf_counter()
    target = Path(arguments.path(dest, "dest"))
    src = read_source(arguments.path(source, "source"))
    before = {p: file_digest(p) for p in src.files}
    if target.exists() and not (target / DB_NAME).exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput(f"{target} exists and is not a vault; migrate into a vault or a new path")
    had_previous = (target / DB_NAME).exists()
    merge = had_previous and not replace
    name = collection or src.default_collection
    report = MigrationReport(
        source=str(src.path),
        layout=src.layout,
        dest=str(target),
        collection=name,
        dry_run=dry_run,
        skipped=src.skipped[:50],
        notes=src.notes[:50],
        dropped_fields=src.dropped_fields,
    )
    work = _prepare(target, merge=merge, key=key)
    try:
        fresh, new_edges = _write(work, src, name, key=key, progress=progress)
        with Vault(work, create=False, frozen=True, key=key) as vault:
            validate(vault, src, name, report, tolerance=tolerance, fresh=fresh, new_edges=new_edges)
        report.counts["skipped"] = len(src.skipped)
        report.source_unchanged = before == {p: file_digest(p) for p in src.files}
        if not report.source_unchanged:
            report.ok = False
            report.problems.append("the source files changed during the migration; run it again")
        if report.ok and not dry_run:
            keep = previous_path(target) if had_previous else None
            if keep is not None:
                remove_tree(keep)
            swap_in(work, target, keep=keep)
            _write_state(target, had_previous=had_previous, source=str(src.path))
            report.switched = True
            report.previous = str(keep) if keep is not None else None
    finally:
        remove_tree(work)
    report.seconds = time.perf_counter() - started
    return report


def _prepare(target: Path, *, merge: bool, key: Any) -> Path:
    """A hidden sibling of ``target``: a copy of the existing vault, or an empty directory."""
    if not merge:
        work = aside(target, "migrate")
        work.mkdir()
        return work
    writer = DirWriter(target, prefix="")
    try:
        with Vault(target, create=False, key=key) as vault:
            take(vault, writer, bump=False)
        writer.finish(None)
    except BaseException:
        writer.abort()
        raise
    return writer.work


def _write(work: Path, src: Source, name: str, *, key: Any, progress: Progress | None) -> tuple[bool, int]:
    """Store the source's units and edges in the vault at ``work``.

    Returns whether the collection was new (or empty) and how many edges the vault gained.
    """
    with Vault(work, key=key) as vault:
        edges_before = vault.stats()["edges"]
        fresh = name not in vault.collections() or len(vault.collection(name, embedder=None)) == 0
        coll = vault.collection(name, embedder=None)
        if src.embedder and coll.info.embedder is None:
            # NOTE: records which model made the vectors, so text queries use the same one.
            with vault.transaction():
                vault.context.catalog.set_embedder(coll.info, src.embedder)
        total = len(src.records)
        done = 0
        for start in range(0, total, _BATCH):
            chunk = src.records[start : start + _BATCH]
            for has_text, run in groupby(chunk, key=lambda r: r.text is not None):
                _add_run(coll, list(run), has_text)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        history = [
            (r.id, r.state, r.created_at or time.time(), r.accessed_at or r.created_at or time.time(), r.access_count)
            for r in src.records
        ]
        if history:
            vault.context.units.restore_history(coll.info.id, history)
        with vault.transaction():
            for e in src.edges:
                vault.link(e.source, e.target, kind=e.kind, weight=e.weight)
        return fresh, int(vault.stats()["edges"]) - int(edges_before)


def _add_run(coll: Any, run: list[Record], has_text: bool) -> None:
    coll.add(
        [r.text for r in run] if has_text else None,
        vectors=np.stack([r.vector for r in run]),
        ids=[r.id for r in run],
        metadata=[r.metadata for r in run],
        kind=[r.kind for r in run],
        conversation_id=[r.conversation_id for r in run],
        parent_id=[r.parent_id for r in run],
        batch_size=_BATCH,
    )


def _write_state(target: Path, *, had_previous: bool, source: str) -> None:
    with atomic_write(_state_path(target)) as fh:
        fh.write(json.dumps({"had_previous": had_previous, "source": source, "migrated_at": time.time()}).encode())


def rollback(dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Put back the destination as it was before the last migration (or remove it if there was none).

    Close the vault in every process first. Returns ``{"dest", "restored_previous"}``.
    """
    target = Path(arguments.path(dest, "dest"))
    state_path = _state_path(target)
    if not state_path.exists():
        raise NotFound(f"no migration of {target} to roll back (no {state_path.name} beside it)")
    state = json.loads(state_path.read_text())
    keep = previous_path(target)
    if state.get("had_previous"):
        if not (keep / DB_NAME).exists():
            raise NotFound(f"the previous destination {keep} is gone; nothing to restore")
        swap_in(keep, target)
    else:
        trash = aside(target, "rolled-back")
        if target.exists():
            os.rename(target, trash)
            fsync_dir(target.parent)
            remove_tree(trash)
    remove_file(state_path)
    return {"dest": str(target), "restored_previous": bool(state.get("had_previous"))}
