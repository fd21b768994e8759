"""The policies part's self-check: every stored entry decodes and is shaped as its columns say."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from sigmavault.policies.model import SOURCES
from sigmavault.policies.schema import CLOCK, COLUMNS
from sigmavault.store import Database
from sigmavault.store.sealed import open_text
from sigmavault.types import CheckReport

__all__ = ["check_rows"]


def check_rows(db: Database, report: CheckReport) -> None:
    """Report damaged entries (at most 20 by name), sealed params left unverified, and dangling replacements."""
    clocks = int(db.one(f"SELECT COUNT(*) FROM {CLOCK}")[0])
    if clocks != 1:
        report.problems.append(f"policies: the cache clock table holds {clocks} rows, expected 1")
    bad: list[str] = []
    sealed = 0
    for raw in db.all(f"SELECT {COLUMNS} FROM policies"):
        locked = isinstance(raw[2], bytes) and db.cipher is None
        sealed += locked
        problem = _row_problem(db, raw, verify_params=not locked)
        if problem:
            bad.append(f"policies: {raw[0]}: {problem}")
    report.problems += bad[:20]
    if len(bad) > 20:
        report.problems.append(f"policies: {len(bad) - 20} more damaged entries")
    if sealed:
        report.notes.append(f"policies: {sealed} sealed params not verified (no key given)")
    dangling = int(
        db.one(
            "SELECT COUNT(*) FROM policies WHERE state = 'archived' AND replaced_by IS NOT NULL "
            "AND replaced_by NOT IN (SELECT pid FROM policies)"
        )[0]
    )
    if dangling:
        report.notes.append(f"policies: {dangling} archived entries name a replacement that was deleted since")


def _row_problem(db: Database, raw: Sequence[Any], *, verify_params: bool) -> str | None:
    try:
        if verify_params:
            json.loads(open_text(db, f"policies/{raw[0]}/params", raw[2]))
        prov = json.loads(raw[9])
    except Exception as exc:  # NOTE: check reports any damage instead of raising
        return f"a JSON field does not decode ({type(exc).__name__}: {exc})"
    if not isinstance(prov, list) or not all(isinstance(p, str) for p in prov):
        return "provenance is not a list of ids"
    if raw[6] not in SOURCES:
        return f"unknown source {raw[6]!r}"
    emb, dim = raw[4], raw[3]
    if (emb is None) != (dim is None) or (emb is not None and len(emb) != 4 * int(dim)):
        return "embedding length does not match its recorded dimension"
    for name, blob in (("embedding", emb), ("fisher", raw[7])):
        if blob is not None and (len(blob) % 4 or not np.isfinite(np.frombuffer(blob, dtype=np.float32)).all()):
            return f"{name} is not a finite float32 vector"
    if raw[8] == "archived" and raw[10] is None:
        return "archived without replaced_by"
    return None
