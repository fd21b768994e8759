"""`Vault.check()`: every consistency rule the store promises, verified against the files.

SQLite checks its own file first; then each part of the registry (:mod:`sigmavault.parts`)
checks its own tables and files. A problem is something wrong (the vault needs repair or a
restore); a note is something harmless worth knowing (a crash tail the next writable open cuts).
"""

from __future__ import annotations

from sigmavault.context import VaultContext
from sigmavault.parts import PARTS
from sigmavault.types import CheckReport

__all__ = ["run_checks"]


def run_checks(ctx: VaultContext) -> CheckReport:
    """SQLite's integrity check, then every part's own check, in registry order."""
    report = CheckReport()
    report.problems += ctx.db.integrity_problems()
    damaged = bool(report.problems)
    for spec in PARTS:
        if spec.check_when_damaged or not damaged:
            spec.check(ctx, report)
    return report
