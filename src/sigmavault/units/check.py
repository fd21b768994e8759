"""The units part checks itself: FTS against texts, vector files against watermarks and hashes, parents.

Called through ``UnitStore.check`` by ``Vault.check()`` (via the parts registry); a problem is
something wrong, a note something harmless (a crash tail the next writable open will cut).
"""

from __future__ import annotations

import sqlite3

import numpy as np

from sigmavault.errors import VaultError
from sigmavault.index import signatures
from sigmavault.store import Database
from sigmavault.store.vectors import HEADER_SIZE
from sigmavault.types import CheckReport
from sigmavault.units import integrity
from sigmavault.units.catalog import Catalog

__all__ = ["check_units"]


def check_units(db: Database, catalog: Catalog, report: CheckReport) -> None:
    """Append every broken rule of the units tables and vector files to ``report``."""
    _check_fts(db, report)
    _check_records(db, report)
    for name in catalog.names():
        _check_collection(db, catalog, name, report)
    orphans = db.all(
        "SELECT uid, parent_id FROM units WHERE parent_id IS NOT NULL "
        "AND parent_id NOT IN (SELECT uid FROM units) LIMIT 20"
    )
    for uid, parent in orphans:
        report.problems.append(f"units: {uid} has parent_id {parent}, which does not exist")


def _check_fts(db: Database, report: CheckReport) -> None:
    if db.cipher is not None:
        # NOTE: an encrypted vault never indexes text (the index would hold the words in plain).
        if db.one("SELECT 1 FROM units_fts_docsize LIMIT 1") is not None:
            report.problems.append("fts: the full-text index of an encrypted vault holds entries (plain words)")
        return
    with_text = int(db.one("SELECT COUNT(*) FROM units WHERE text IS NOT NULL")[0])
    indexed = int(db.one("SELECT COUNT(*) FROM units_fts_docsize")[0])
    if with_text != indexed:
        report.problems.append(f"fts: {indexed} documents indexed but {with_text} units have text")
    if db.readonly:
        return
    try:
        # NOTE: on an external-content table this also compares the index with the units' text.
        with db.write() as conn:
            conn.execute("INSERT INTO units_fts (units_fts, rank) VALUES ('integrity-check', 1)")
    except (sqlite3.DatabaseError, VaultError) as exc:
        report.problems.append(f"fts: full-text index does not match the unit texts ({exc}); rebuild it")


def _check_collection(db: Database, catalog: Catalog, name: str, report: CheckReport) -> None:
    info = catalog.find(name)
    if info is None or not info.dim:
        return
    path = catalog.vector_dir / f"{info.id}.f32"
    if not path.exists():
        if info.watermark:
            report.problems.append(f"{name}: vector file {path.name} is missing ({info.watermark} rows committed)")
        return
    row_bytes = info.dim * 4
    size = path.stat().st_size
    on_disk = max(0, (size - HEADER_SIZE) // row_bytes)
    if on_disk < info.watermark:
        report.problems.append(f"{name}: vector file holds {on_disk} rows, {info.watermark} are committed")
        return
    if size > HEADER_SIZE + info.watermark * row_bytes:
        report.notes.append(f"{name}: uncommitted tail past row {info.watermark} (cut at the next writable open)")
    rows = db.all(
        "SELECT vec_row, semantic_hash, uid FROM units WHERE collection_id = ? AND vec_row IS NOT NULL", (info.id,)
    )
    if not rows:
        return
    vec_rows = np.array([r[0] for r in rows], dtype=np.int64)
    if vec_rows.max() >= info.watermark or vec_rows.min() < 0:
        report.problems.append(f"{name}: units point at vector rows outside 0..{info.watermark - 1}")
        return
    try:
        st = catalog.state(info.id)
    except VaultError as exc:
        report.problems.append(f"{name}: cannot load: {exc}")
        return
    matrix = st.matrix()
    assert st.planes is not None
    stored = np.array([r[1] for r in rows], dtype=np.int64).view(np.uint64)
    bad = 0
    first = None
    for start in range(0, len(vec_rows), 65536):
        part = vec_rows[start : start + 65536]
        block = np.asarray(matrix[part])
        finite = np.isfinite(block).all(axis=1)
        with np.errstate(over="ignore", invalid="ignore"):  # NOTE: damaged rows may hold huge values
            sig = signatures(np.nan_to_num(block), st.planes)
        wrong = (sig != stored[start : start + 65536]) | ~finite
        if wrong.any():
            bad += int(wrong.sum())
            first = first or rows[start + int(np.flatnonzero(wrong)[0])][2]
    if bad:
        report.problems.append(
            f"{name}: {bad} vectors no longer match their stored semantic hash (first: unit {first}); "
            "the vector file was modified outside sigmavault"
        )
    _check_checksums(db, info.id, name, matrix, report)


def _check_records(db: Database, report: CheckReport) -> None:
    """Every unit record against its checksum: finds values changed inside well-formed SQLite pages."""
    bad, first, unchecked = integrity.verify_records(db)
    if bad:
        report.problems.append(
            f"units: {bad} records fail their checksum (first: unit {first}); vault.db was damaged: restore a bundle"
        )
    if unchecked:
        report.notes.append(f"units: {unchecked} records predate record checksums and are not verified")


def _check_checksums(db: Database, cid: int, name: str, matrix: np.ndarray, report: CheckReport) -> None:
    """Every vector row against its CRC32: finds the flips the semantic hash (64 signs) cannot see."""
    bad, first, unchecked = integrity.verify_vectors(db, cid, matrix)
    if bad:
        report.problems.append(
            f"{name}: {bad} vector rows fail their checksum (first: unit {first}); the vector file is damaged: "
            "restore it from a bundle"
        )
    if unchecked:
        report.notes.append(f"{name}: {unchecked} vector rows predate checksums and are checked by semantic hash only")
