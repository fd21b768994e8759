"""The registry of parts: one entry per part says how it is built, how it checks itself and what
bundles carry of it. ``Vault`` (its part properties), ``check()`` and bundles read it; adding a
part is one entry here.

Core parts (units, graph, ann) are built with the :class:`~sigmavault.context.VaultContext`;
the others are built on first use, so a vault that never touches the KV store never imports torch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sigmavault import graph
from sigmavault.context import Part, VaultContext
from sigmavault.store import Database
from sigmavault.store.sqlite import prune_schema
from sigmavault.types import CheckReport
from sigmavault.units import snapshot as unit_rows
from sigmavault.units.indexes import keep_indexes

__all__ = ["PARTS", "PartSpec", "carried_by_subsets", "part", "snapshot_counts", "spec", "subset_snapshot"]

# Tables the vault itself owns (its id and lineage) and SQLite's and the store's own bookkeeping.
_VAULT_TABLES = ("vault_meta", "sv_schema", "sqlite_")


@dataclass(frozen=True, slots=True)
class PartSpec:
    """One part: its name (also its schema record), the tables it owns (name prefixes), how it is
    built (``None``: built with the context), how it checks itself, and whether bundles of a
    collection subset carry it (parts that hold per-collection data) or drop it (vault-wide parts)."""

    name: str
    tables: tuple[str, ...]
    check: Callable[[VaultContext, CheckReport], None]
    build: Callable[[Database, Path], Part] | None = None
    per_collection: bool = False
    # NOTE: the units and graph rules read tables SQLite may just have called damaged; they are
    # skipped then (the integrity problems say it all), while the others report what they can.
    check_when_damaged: bool = True


def _kv(db: Database, root: Path) -> Part:
    from sigmavault.kv import KVStore  # lazy: keeps `import sigmavault` light (torch)

    return KVStore(db, root)


def _sessions(db: Database, root: Path) -> Part:
    from sigmavault.sessions import Sessions

    return Sessions(db, root)


def _policies(db: Database, root: Path) -> Part:
    from sigmavault.policies import Policies

    return Policies(db, root)


def _witness(db: Database, root: Path) -> Part:
    from sigmavault.witness import Witness  # lazy: the writer thread starts on first record()

    return Witness(db, root)


def _check_built(name: str) -> Callable[[VaultContext, CheckReport], None]:
    def check(ctx: VaultContext, report: CheckReport) -> None:
        # NOTE: builds the part, so a part never used in this process is checked too.
        part(ctx, name).check(report)

    return check


PARTS: tuple[PartSpec, ...] = (
    PartSpec(
        "units",
        ("collections", "units"),
        lambda ctx, r: ctx.units.check(r),
        per_collection=True,
        check_when_damaged=False,
    ),
    PartSpec(
        "graph",
        ("edges",),
        lambda ctx, r: ctx.graph.check(r, live=ctx.units.ids()),
        per_collection=True,
        check_when_damaged=False,
    ),
    PartSpec("ann", ("ann_",), lambda ctx, r: ctx.indexes.check(r), per_collection=True),
    PartSpec("sessions", ("sessions",), _check_built("sessions"), build=_sessions),
    PartSpec("policies", ("policies",), _check_built("policies"), build=_policies),
    PartSpec("kv", ("kv_",), _check_built("kv"), build=_kv),
    PartSpec("witness", ("witness",), _check_built("witness"), build=_witness),
)


def spec(name: str) -> PartSpec:
    for s in PARTS:
        if s.name == name:
            return s
    raise KeyError(name)


def part(ctx: VaultContext, name: str) -> Part:
    """The lazily built part ``name`` of this vault (built and remembered on first use)."""
    ctx.db.conn  # noqa: B018 - raises VaultClosed on a closed vault
    built = ctx.parts.get(name)
    if built is None:
        build = spec(name).build
        assert build is not None, f"{name} is a core part, built with the context"
        built = build(ctx.db, ctx.root)
        ctx.parts[name] = built
    return built


def carried_by_subsets() -> tuple[str, ...]:
    """Schema records a collection-subset bundle keeps: the vault's and its per-collection parts'."""
    return ("vault", *(s.name for s in PARTS if s.per_collection))


def snapshot_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many units and edges a snapshot copy holds (recorded in a bundle's manifest)."""
    return {"units": unit_rows.count_units(conn), "edges": graph.count_edges(conn)}


def subset_snapshot(conn: sqlite3.Connection, cids: Sequence[int], *, encrypted: bool) -> int:
    """Reduce a snapshot copy to the collections ``cids`` (inside the caller's transaction).

    Each per-collection part reduces its own tables; every table of a vault-wide part is dropped
    with its schema record, so the receiving vault sees that part as never used. Returns how many
    kept units lost a parent that lived in another collection.
    """
    detached = unit_rows.keep_collections(conn, cids, encrypted=encrypted)
    graph.keep_nodes(conn, unit_rows.unit_ids(conn))
    keep_indexes(conn, cids)
    kept = _VAULT_TABLES + tuple(t for s in PARTS if s.per_collection for t in s.tables)
    views = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")]
    for view in views:
        if not view.startswith(kept):
            conn.execute(f'DROP VIEW IF EXISTS "{view}"')
    # NOTE: virtual tables first: dropping one drops its shadow tables with it.
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY sql LIKE 'CREATE VIRTUAL%' DESC, name"
        )
    ]
    for table in tables:
        if not table.startswith(kept):
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    prune_schema(conn, carried_by_subsets())
    return detached
